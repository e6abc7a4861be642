"""The person's clip, encoded once for fine-tuning: VAE posteriors of a few crops of every frame, CLIP embeddings
and pose renders; and the training batches drawn from it.

The official data pipeline (see `recipe.py`) crops the target frame, its pose render and the reference frame with
one random resized crop per sample, before the VAE. Encoding every frame anew at every step would cost more than
the UNets, so the crop distribution is sampled once per clip: `crops` boxes drawn exactly as torchvision's
`RandomResizedCrop` draws them, and every frame encoded under each box. A sample then picks a box index, as the
official code shares one crop between its three images. The VAE posterior's mean and standard deviation are kept,
so each step still draws a fresh posterior sample as the official code does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import numpy as np
import torch
from PIL import Image

from .. import vae_clip
from ..errors import TalkingPoseError
from .recipe import OFFICIAL, Recipe, StepDraws, TrainingBatch

CLIP_SIZE = 224
# transformers' CLIPImageProcessor normalisation; an image of this colour is "all-zero normalised pixels".
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
SEVERAL_PEOPLE_SHARE = 0.25  # more checked frames than this with two or more people: not one person's footage
EMPTY_RENDER_LEVEL = 48  # a pose render whose every pixel is darker than this shows nobody


@dataclass(frozen=True)
class CropBox:
    top: int
    left: int
    height: int
    width: int


def random_resized_crop_box(generator: torch.Generator, height: int, width: int, scale=(0.9, 1.0), ratio=(0.9, 1.0)) -> CropBox:
    """One crop box as torchvision's `RandomResizedCrop.get_params` draws it: up to ten tries of an area fraction
    in `scale` and a log-uniform aspect ratio in `ratio`; if none fits, the largest centred box whose aspect ratio
    is within `ratio`."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(log_lo, log_hi, generator=generator).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return CropBox(top, left, h, w)
    frame_ratio = width / height
    if frame_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif frame_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return CropBox((height - h) // 2, (width - w) // 2, h, w)


def crop_resize(image: Image.Image, box: CropBox, width: int, height: int) -> Image.Image:
    """torchvision's resized crop on a PIL image: crop, then PIL bilinear resize."""
    return image.crop((box.left, box.top, box.left + box.width, box.top + box.height)).resize((width, height), Image.BILINEAR)


def clip_crop(image: Image.Image) -> Image.Image:
    """What `CLIPImageProcessor()` feeds the encoder, before normalising: the shortest side resized to 224
    (PIL bicubic, the long side truncated), then the centre 224×224."""
    w, h = image.size
    if w <= h:
        size = (CLIP_SIZE, int(CLIP_SIZE * h / w))
    else:
        size = (int(CLIP_SIZE * w / h), CLIP_SIZE)
    resized = image.resize(size, Image.BICUBIC)
    top, left = (size[1] - CLIP_SIZE) // 2, (size[0] - CLIP_SIZE) // 2
    return resized.crop((left, top, left + CLIP_SIZE, top + CLIP_SIZE))


def vae_pixels(image: Image.Image) -> torch.Tensor:
    """[3, H, W] in [-1, 1] (ToTensor, then Normalize(0.5, 0.5))."""
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return (array - 0.5) / 0.5


def pose_tensor(image: Image.Image) -> torch.Tensor:
    """[3, H, W] in [0, 1] (ToTensor)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


class Encoders(Protocol):
    """The frozen encoders, standalone (diffusers/transformers) or ComfyUI's own VAE and CLIP Vision."""

    def posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE posterior mean and standard deviation (unscaled) of pixels [n, 3, H, W] in [-1, 1]."""

    def clip(self, crops: list[Image.Image]) -> torch.Tensor:
        """Projected image embeddings [n, C] of 224×224 crops (normalised as CLIPImageProcessor does)."""

    def clip_zeroed(self) -> torch.Tensor:
        """The embedding [C] of all-zero normalised pixels: the official unconditional context."""


class PipelineEncoders:
    """A diffusers AutoencoderKL and a transformers CLIPVisionModelWithProjection (see `vae_clip`)."""

    def __init__(self, vae, image_encoder):
        self.vae = vae
        self.image_encoder = image_encoder

    def posterior(self, pixels):
        mean, std = vae_clip.vae_posterior(self.vae, pixels)
        return mean.float().cpu(), std.float().cpu()

    def clip(self, crops):
        return vae_clip.clip_embeds(self.image_encoder, crops).float().cpu()

    def clip_zeroed(self):
        return vae_clip.clip_zeroed_embeds(self.image_encoder).float().cpu()[0]


@dataclass
class PoseInput:
    """One frame's pose: its render (RGB, anything `images.to_pil_rgb` reads; None when nobody was detected) and,
    when known, how many people the detector found."""

    render: np.ndarray | None
    people: int | None = None


def render_shows_nobody(render: np.ndarray) -> bool:
    """An 8-bit render with nothing drawn on it (video compression leaves the black background slightly above 0)."""
    return int(render.max()) < EMPTY_RENDER_LEVEL


@dataclass
class ClipCache:
    """A clip ready for training. Frames that show nobody are left out; `frame_indices` are the kept frames'
    indices in the video. latent_mean / latent_std: [N, K, 4, h, w] (unscaled posterior, float32);
    clip_embeds: [N, C]; clip_zeroed: [C]; poses: [N, H, W, 3] uint8 at the frames' size."""

    frame_indices: list[int]
    crops: list[CropBox]
    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    clip_embeds: torch.Tensor
    clip_zeroed: torch.Tensor
    poses: np.ndarray
    width: int
    height: int
    frames_read: int
    skipped_nobody: int

    def __len__(self) -> int:
        return len(self.frame_indices)

    def key(self) -> str:
        """Identifies the encoded clip: a resumed run must train on the same data."""
        import hashlib

        digest = hashlib.sha256(repr((self.frame_indices, self.crops, self.width, self.height)).encode())
        for tensor in (self.latent_mean, self.latent_std, self.clip_embeds):
            digest.update(tensor.numpy().tobytes())
        digest.update(self.poses[:, ::7, ::7].tobytes())
        return digest.hexdigest()[:16]

    def summary(self) -> dict:
        return {"frames_read": self.frames_read, "frames_used": len(self), "skipped_nobody": self.skipped_nobody,
                "crops": len(self.crops), "width": self.width, "height": self.height}

    # -------------------------------------------------------------------------------------------- sampling
    def pair(self, generator: torch.Generator, margin: int) -> tuple[int, int]:
        """(reference, target) positions by the official rule (see recipe.py)."""
        n = len(self)
        margin = min(margin, n)

        def uniform(lo: int, hi: int) -> int:  # inclusive bounds
            return int(torch.randint(lo, hi + 1, (1,), generator=generator).item())

        ref = uniform(0, n - 1)
        if ref + margin < n:
            return ref, uniform(ref + margin, n - 1)
        if ref - margin > 0:
            return ref, uniform(0, ref - margin)
        return ref, uniform(0, n - 1)

    def _pose_pixels(self, position: int, crop: int) -> torch.Tensor:
        render = Image.fromarray(self.poses[position])
        return pose_tensor(crop_resize(render, self.crops[crop], self.width, self.height))

    def draw(self, generator: torch.Generator, batch_size: int, recipe: Recipe = OFFICIAL,
             unconditional: bool | None = None) -> tuple[TrainingBatch, StepDraws]:
        """One step's batch and random draws, all from `generator` (so a saved generator state replays it)."""
        rows = []
        for _ in range(batch_size):
            ref, tgt = self.pair(generator, recipe.sample_margin)
            crop = int(torch.randint(0, len(self.crops), (1,), generator=generator).item())
            rows.append((ref, tgt, crop))
        refs = torch.tensor([r for r, _, _ in rows])
        tgts = torch.tensor([t for _, t, _ in rows])
        crops = torch.tensor([c for _, _, c in rows])
        shape = (batch_size, *self.latent_mean.shape[2:])
        target_eps = torch.randn(shape, generator=generator)
        ref_eps = torch.randn(shape, generator=generator)
        noise = torch.randn(shape, generator=generator)
        offset = torch.randn(shape[:2], generator=generator)
        timesteps = torch.randint(0, 1000, (batch_size,), generator=generator)
        draw_uncond = bool(torch.rand((), generator=generator).item() < recipe.uncond_ratio)
        uncond = draw_uncond if unconditional is None else unconditional
        latents = (self.latent_mean[tgts, crops] + self.latent_std[tgts, crops] * target_eps) * recipe.latent_scale
        ref_latents = (self.latent_mean[refs, crops] + self.latent_std[refs, crops] * ref_eps) * recipe.latent_scale
        if uncond:
            context = self.clip_zeroed.expand(batch_size, 1, -1)
        else:
            context = self.clip_embeds[refs][:, None]
        pose = torch.stack([self._pose_pixels(t, c) for _, t, c in rows])
        return TrainingBatch(latents, ref_latents, context, pose), StepDraws(noise, offset, timesteps, uncond)


def build_clip_cache(frames: Iterable, poses: Iterable[PoseInput], encoders: Encoders, width: int, height: int,
                     crops: int = 4, seed: int = 0, recipe: Recipe = OFFICIAL, max_frames: int | None = None,
                     progress: Callable[[int], None] | None = None, check: Callable[[], None] | None = None) -> ClipCache:
    """Encode a clip once. `frames`: RGB uint8 arrays (or anything `images.to_pil_rgb` reads); `poses`: one
    `PoseInput` per frame. `progress(frames done)` after each frame; `check()` may raise to cancel."""
    from .. import images

    generator = torch.Generator().manual_seed(int(seed))
    boxes: list[CropBox] = []
    means, stds, embeds, renders, indices = [], [], [], [], []
    frame_size = None
    read = nobody = checked = several = 0
    for index, (frame, pose) in enumerate(zip(frames, poses)):
        if max_frames is not None and index >= max_frames:
            break
        if check is not None:
            check()
        read += 1
        picture = images.to_pil_rgb(frame, f"frame {index}")
        if frame_size is None:
            frame_size = picture.size
            boxes = [random_resized_crop_box(generator, picture.height, picture.width, recipe.crop_scale, recipe.crop_ratio)
                     for _ in range(crops)]
        elif picture.size != frame_size:
            raise TalkingPoseError(f"Frame {index} is {picture.size[0]}×{picture.size[1]}, the first frame was "
                                   f"{frame_size[0]}×{frame_size[1]}; all frames of the clip must have one size.")
        if pose.people is not None:
            checked += 1
            several += pose.people > 1
        render = None if pose.render is None else images.to_pil_rgb(pose.render, f"pose render {index}")
        if render is None or render_shows_nobody(np.asarray(render)):
            nobody += 1
            if progress is not None:
                progress(read)
            continue
        if render.size != frame_size:
            render = render.resize(frame_size, Image.BILINEAR)
        pixels = torch.stack([vae_pixels(crop_resize(picture, box, width, height)) for box in boxes])
        mean, std = encoders.posterior(pixels)
        means.append(mean)
        stds.append(std)
        embeds.append(encoders.clip([clip_crop(picture)])[0])
        renders.append(np.asarray(render, dtype=np.uint8))
        indices.append(index)
        if progress is not None:
            progress(read)
    if read == 0:
        raise TalkingPoseError("The clip has no frames.")
    if checked and several > SEVERAL_PEOPLE_SHARE * checked:
        raise TalkingPoseError(
            f"{several} of {checked} checked frames show more than one person. Fine-tuning learns one person: crop "
            "the video to that person (e.g. ffmpeg -vf crop=...), or give a keypoint track with that person only."
        )
    needed = recipe.sample_margin + 1
    if len(indices) < needed:
        detail = f" ({nobody} of {read} frames show nobody and were skipped)" if nobody else ""
        raise TalkingPoseError(
            f"The clip has {len(indices)} usable frames{detail}; training pairs frames at least "
            f"{recipe.sample_margin} apart, so it needs at least {needed}. Give a longer clip (about 30 seconds works well)."
        )
    return ClipCache(indices, boxes, torch.stack(means), torch.stack(stds), torch.stack(embeds),
                     encoders.clip_zeroed(), np.stack(renders), width, height, read, nobody)
