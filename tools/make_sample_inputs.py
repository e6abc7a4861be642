"""Writes the templates' sample inputs (example_workflows/input/) from the official TalkingPose sample clips (MIT),
../shared/samples/driving/: the source photo is frame 0 of vid3 (the clips' natural source image), the driving
clip the first 3 s of vid1 (another person talking and gesturing), person.mp4 4 s of vid3 (the photo's person,
for the personalize templates). 512x512 H.264, kept small; the pack copies them into ComfyUI's input folder
(nodes/sample_inputs.py).

    python tools/make_sample_inputs.py
"""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "samples" / "driving"
OUT = ROOT / "example_workflows" / "input"
CRF = "30"


def frames(clip: Path, start_s: float, seconds: float) -> tuple[list, Fraction]:
    with av.open(str(clip)) as src:
        stream = src.streams.video[0]
        rate = stream.average_rate
        first, count = round(start_s * rate), round(seconds * rate)
        out = []
        for index, frame in enumerate(src.decode(stream)):
            if index >= first + count:
                break
            if index >= first:
                out.append(frame.to_image())
    return out, rate


def write_clip(path: Path, pictures: list, rate: Fraction) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"crf": CRF, "preset": "slow"})
        video.width, video.height = pictures[0].size
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(1, 1) / rate  # one tick per frame: readers that count by time see every frame
        for index, picture in enumerate(pictures):
            frame = av.VideoFrame.from_image(picture)
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))


def main() -> int:
    if not SAMPLES.is_dir():
        print(f"The sample clips are not at {SAMPLES}.", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    source, _ = frames(SAMPLES / "vid3.mp4", 0, 1)
    source[0].save(OUT / "talkingpose_source.png", optimize=True)
    driving, rate = frames(SAMPLES / "vid1.mp4", 0, 3)
    write_clip(OUT / "talkingpose_driving.mp4", driving, rate)
    person, rate = frames(SAMPLES / "vid3.mp4", 2, 4)
    write_clip(OUT / "person.mp4", person, rate)
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
