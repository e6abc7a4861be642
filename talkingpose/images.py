"""Image preprocessing exactly as the official TalkingPose pipeline does it.

- CLIP: the source resized to 224×224 with PIL bicubic, then transformers' `CLIPImageProcessor()` defaults.
- Reference: the source resized to the output size with diffusers' `VaeImageProcessor` (Lanczos), in [-1, 1].
- Pose: each render resized the same way, kept in [0, 1].

Inputs may be PIL images, uint8 or float arrays (H×W×C) or torch tensors (H×W×C in [0, 1], ComfyUI's layout).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from .errors import TalkingPoseError

FIT_MODES = ("stretch", "crop", "pad")


def check_output_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value < 64 or value % 8:
            raise TalkingPoseError(
                f"Output {name} {value} is not a multiple of 8 of at least 64: the VAE works on 8×8 pixel blocks. "
                f"Use e.g. {max(64, value - value % 8)}."
            )


def to_pil_rgb(image, what: str = "image") -> Image.Image:
    """An RGB PIL image from any supported input; refuses NaNs and alpha channels (a source picture goes
    through `flatten_onto_white` first) with a clear message."""
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            raise TalkingPoseError(
                f"The {what} has an alpha channel. Flatten it onto a background first (ComfyUI's Load Image "
                "already does; in an image editor, export without transparency)."
            )
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise TalkingPoseError(f"The {what} has shape {array.shape}; expected height × width × channels.")
    if array.shape[-1] == 4:
        raise TalkingPoseError(f"The {what} has an alpha channel (4 channels). Flatten it onto a background first.")
    if array.shape[-1] not in (1, 3):
        raise TalkingPoseError(f"The {what} has {array.shape[-1]} channels; expected 1 (grey) or 3 (RGB).")
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise TalkingPoseError(f"The {what} contains NaN or infinite values; check the node or file that made it.")
        # Float images are in [0, 1] (ComfyUI's convention); renders are 8-bit, so this round trip is exact.
        array = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return Image.fromarray(array, "RGB")


def flatten_onto_white(image):
    """A source picture with an alpha channel composited onto white, the same way on every path.

    Takes a PIL image (RGBA, LA, PA, or a palette with transparency) or an H×W×4 array/tensor (uint8, or floats in
    [0, 1] as ComfyUI's IMAGE); anything without alpha is returned unchanged. The blend is computed in float32
    on [0, 1] values (`rgb·a + (1 - a)`), so a file read here and the same file given to the ComfyUI node as an
    RGBA IMAGE give the same pixels.
    """
    if isinstance(image, Image.Image):
        if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and not (image.mode == "P" and "transparency" in image.info):
            return image
        image = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    elif isinstance(image, torch.Tensor):
        if image.shape[-1] != 4:
            return image
        image = image.detach().cpu().float()
        return image[..., :3] * image[..., 3:] + (1 - image[..., 3:])
    else:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[-1] != 4:
            return image
        image = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
    return image[..., :3] * image[..., 3:] + (1 - image[..., 3:])


def fit_image(image: Image.Image, width: int, height: int, mode: str = "stretch", fill=(0, 0, 0)) -> Image.Image:
    """Bring an image to the output's aspect ratio before resizing.

    `stretch` leaves it as is (the official pipeline stretches); `crop` cuts the centre; `pad` adds borders.
    """
    if mode not in FIT_MODES:
        raise TalkingPoseError(f"Unknown fit mode '{mode}'; choose one of {', '.join(FIT_MODES)}.")
    w, h = image.size
    if mode == "stretch" or w * height == h * width:
        return image
    if mode == "crop":
        if w * height > h * width:  # too wide
            new_w = round(h * width / height)
            left = (w - new_w) // 2
            return image.crop((left, 0, left + new_w, h))
        new_h = round(w * height / width)
        top = (h - new_h) // 2
        return image.crop((0, top, w, top + new_h))
    if w * height > h * width:
        canvas = Image.new("RGB", (w, round(w * height / width)), fill)
    else:
        canvas = Image.new("RGB", (round(h * width / height), h), fill)
    canvas.paste(image, ((canvas.width - w) // 2, (canvas.height - h) // 2))
    return canvas


@lru_cache(maxsize=None)
def _vae_processor(normalize: bool):
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True, do_normalize=normalize)


@lru_cache(maxsize=None)
def _clip_processor():
    # The PIL implementation is the one the official pipeline ran; newer transformers default to a torchvision
    # backend when torchvision is installed, whose resampling differs slightly.
    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:
        from transformers import CLIPImageProcessor as Processor
    return Processor()


CLIP_SIZE = 224


@dataclass
class PreparedSource:
    """The source photo as both encoders take it, made once for the ComfyUI and the standalone path alike."""

    clip_image: Image.Image  # stretched to 224×224 with PIL bicubic, as the official pipeline does before CLIP
    reference: torch.Tensor  # [1, 3, H, W] in [-1, 1] for the VAE (diffusers' Lanczos resize)

    def clip_tensor(self) -> torch.Tensor:
        """The CLIP image as ComfyUI's IMAGE: [1, 224, 224, 3] float in [0, 1]."""
        return torch.from_numpy(np.asarray(self.clip_image, dtype=np.float32) / 255.0)[None]

    def reference_image(self) -> torch.Tensor:
        """The VAE input as ComfyUI's IMAGE: [1, H, W, 3] float in [0, 1]."""
        return ((self.reference + 1) / 2).movedim(1, -1)


def prepare_source(picture, width: int, height: int, fit: str = "stretch") -> PreparedSource:
    """Bring a source photo to the output's aspect ratio (`fit`; an alpha channel flattened onto white first),
    then make the CLIP and the VAE inputs."""
    check_output_size(width, height)
    fitted = fit_image(to_pil_rgb(flatten_onto_white(picture), "source image"), width, height, fit)
    return PreparedSource(fitted.resize((CLIP_SIZE, CLIP_SIZE), Image.BICUBIC), reference_pixels(fitted, width, height))


def clip_processor_pixels(clip_image: Image.Image) -> torch.Tensor:
    """[1, 3, 224, 224] normalised CLIP input of an image already stretched to 224×224 (the processor's own
    resize and centre crop are then identities)."""
    return _clip_processor()(images=clip_image, return_tensors="pt").pixel_values


def reference_pixels(source: Image.Image, width: int, height: int) -> torch.Tensor:
    """[1, 3, H, W] in [-1, 1] for the VAE."""
    return _vae_processor(True).preprocess(source, height=height, width=width)


def pose_pixels(pose, width: int, height: int, fit: str = "stretch") -> torch.Tensor:
    """[1, 3, H, W] in [0, 1] for the pose guider; the render is resized as the official pipeline does."""
    image = fit_image(to_pil_rgb(pose, "pose image"), width, height, fit)
    return _vae_processor(False).preprocess(image, height=height, width=width)
