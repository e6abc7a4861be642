"""Draws the template browser's card pictures (example_workflows/<template>.jpg): the title and a one-line
description in type that stays readable at card size, over the template's inputs (the sample photo, a pose frame
of the driving clip, frames of the person clip). The frontend shows a custom pack's template by its file name only
(1.49 and 1.58 alike), so the picture is where the description can be seen on the card.

    python tools/template_thumbnails.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "example_workflows"
INPUTS = WORKFLOWS / "input"
POSES = ROOT.parent / "shared" / "samples" / "dwpose" / "vid1.mp4"  # DWPose render of the driving clip's source
SIZE = 512
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

# Template file name (without .json) -> (title on the picture, one-line description, which inputs to show).
TEMPLATES = {
    "1 Animate a photo (core nodes)": ("Animate a photo", "photo + driving video -> talking video, ComfyUI's own video nodes", "render"),
    "2 Animate a photo (VideoHelperSuite)": ("Animate a photo", "the same with VideoHelperSuite's Load Video and Video Combine", "render"),
    "3 Long video in chunks": ("Long video", "any length in chunks at bounded memory, with no seams", "render"),
    "4 Personalize - train a LoRA": ("Personalize: train", "fine-tune on one person's clip; writes person.safetensors", "train"),
    "5 Personalize - render with the LoRA": ("Personalize: render", "animate the photo with the person's LoRA", "render"),
}


def frame(path: Path, index: int) -> Image.Image:
    with av.open(str(path)) as clip:
        for i, picture in enumerate(clip.decode(video=0)):
            if i == index:
                return picture.to_image().convert("RGB")
    raise ValueError(f"{path} has no frame {index}")


def wrap(draw, text, font, width):
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width:
            line = trial
        else:
            lines.append(line)
            line = word
    return lines + [line]


def thumbnail(title: str, description: str, kind: str) -> Image.Image:
    card = Image.new("RGB", (SIZE, SIZE), (17, 24, 39))
    if kind == "train":
        pictures = [frame(INPUTS / "person.mp4", i) for i in (0, 40, 80)]
    else:
        pictures = [Image.open(INPUTS / "talkingpose_source.png").convert("RGB"), frame(POSES, 0),
                    frame(INPUTS / "talkingpose_driving.mp4", 0)]
    tile = SIZE // 3
    for i, picture in enumerate(pictures):
        card.paste(picture.resize((tile, tile), Image.LANCZOS), (i * tile + (SIZE - 3 * tile) // 2, SIZE - tile - 16))
    draw = ImageDraw.Draw(card)  # the top-left corner stays empty: the browser puts a badge there
    title_font = ImageFont.truetype(BOLD, 54)
    y = 70
    for line in wrap(draw, title, title_font, SIZE - 48):
        draw.text((24, y), line, font=title_font, fill="white")
        y += 62
    text_font = ImageFont.truetype(FONT, 30)
    for line in wrap(draw, description, text_font, SIZE - 48)[:4]:
        draw.text((24, y + 8), line, font=text_font, fill=(209, 213, 219))
        y += 38
    return card


def main() -> int:
    for name, (title, description, kind) in TEMPLATES.items():
        if not (WORKFLOWS / f"{name}.json").is_file():
            print(f"no template {name}.json", file=sys.stderr)
            return 1
        thumbnail(title, description, kind).save(WORKFLOWS / f"{name}.jpg", quality=85)
        print(f"{name}.jpg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
