"""The standalone host: what ComfyUI provides to the nodes, for the tests, CI and benchmarks that drive the node
classes without ComfyUI.

It has the same interface as the ComfyUI adapter `nodes/host.py` (device choice, model folders, progress bar,
cancel check, browser events, a managed model, CLIP/VAE calls, output folder); `nodes/backend.py` picks one of
the two. Here the CLIP image encoder is a transformers `CLIPVisionModelWithProjection` and the VAE a diffusers
`AutoencoderKL` (`talkingpose.vae_clip`, imported when first used, so importing the nodes stays quick); nothing
is shared with other models, so a "managed" model simply lives on the device. The device, precision and folder
policies are the engine's own (`talkingpose.runtime`).
"""
from __future__ import annotations

import os
from pathlib import Path

from talkingpose.runtime import PACK_ROOT, default_device, models_root
from talkingpose.runtime import compute_dtype  # noqa: F401  (the engine's precision policy is this host's)


# ------------------------------------------------------------------------------------------------ devices
def torch_device():
    return default_device()


def offload_device():
    import torch

    return torch.device("cpu")


def onnx_device_index() -> int:
    """The CUDA device index for onnxruntime's execution providers."""
    device = torch_device()
    return (device.index or 0) if device.type == "cuda" else 0


# ------------------------------------------------------------------------------------------------ folders
def register_model_folders() -> None:
    """Nothing to register: standalone, every kind of weights lives in its folder under `models_root()`."""


def serve_json(path: str, produce) -> None:
    """Nothing to serve: standalone, there is no browser (nodes/host.py answers it inside ComfyUI)."""


def model_folders(kind: str) -> list[Path]:
    """Folders searched for one kind of weights (`talkingpose`, `dwpose`, `vae`, `clip_vision`, `talkingpose_lora`)."""
    return [models_root() / kind]


def output_directory() -> Path:
    """An `output/` folder beside the models root (ComfyUI's layout)."""
    return models_root().parent / "output"


def input_directory() -> Path:
    """An `input/` folder beside the models root (ComfyUI's layout)."""
    return models_root().parent / "input"


def annotated_file(name: str, default_dir: Path) -> Path:
    """A loader's value as ComfyUI reads it: `name [input]` / `name [output]` pick that folder, a plain name is in
    `default_dir`. Nothing is checked here (the node layer does)."""
    for tag, folder in ((" [output]", output_directory()), (" [input]", input_directory())):
        if name.endswith(tag):
            return folder / name[: -len(tag)]
    return default_dir / name


def save_prefix(prefix: str) -> tuple[Path, str]:
    """The folder and file stem that a save node's prefix names in the output folder (ComfyUI also expands
    %date%-style variables, which standalone runs leave as they are)."""
    normal = os.path.normpath(prefix)
    return output_directory() / os.path.dirname(normal), os.path.basename(normal)


def custom_nodes_dirs() -> list[Path]:
    """Where other node packs live (to find weights comfyui_controlnet_aux downloaded)."""
    return [PACK_ROOT.parent] if PACK_ROOT.parent.name == "custom_nodes" else []


# ------------------------------------------------------------------------------------------------ progress
def throw_if_cancelled() -> None:
    """Nothing to check: standalone runs stop with Ctrl-C."""


class Progress:
    """A tqdm bar with the interface of ComfyUI's progress bar in nodes/host.py (previews are ignored)."""

    def __init__(self, total: int, desc: str = "", unit: str = "it"):
        from tqdm.auto import tqdm

        self.total = total
        self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, n: int = 1, preview=None) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def send_event(event: str, data: dict) -> None:
    """No browser to tell standalone."""


def latent_previewer():
    """No progress previews standalone."""
    return None


# ------------------------------------------------------------------------------------------------ models
class ManagedModel:
    """Stand-in for a model under ComfyUI's memory manager: the module simply lives on `torch_device()`."""

    def __init__(self, module, dtype):
        self.module = module
        self.dtype = dtype

    def load(self, memory_required: int = 0):
        """Put the weights on the compute device; returns the module. `memory_required` (bytes of activations)
        only matters where other models compete for the memory."""
        load_together([self], memory_required)
        return self.module


def load_together(models: list[ManagedModel], memory_required: int = 0) -> None:
    """Put several managed models on the compute device."""
    device = torch_device()
    for model in models:
        if model.module.weights_device != device:
            model.module.to(device)


def clip_projection_width(clip_vision) -> int | None:
    """Width of the image embedding a CLIP vision model gives, read off its weights before running it."""
    from talkingpose import vae_clip

    return vae_clip.clip_projection_width(clip_vision)


def clip_image_embeds(clip_vision, source):
    """Projected image embedding [1, C] of a prepared source (`images.PreparedSource`)."""
    from talkingpose import vae_clip

    return vae_clip.clip_image_embeds(clip_vision, source)


def vae_encode_mean(vae, pixels):
    """Raw (unscaled) posterior mean [1, 4, h, w] of pixels [1, H, W, 3] in [0, 1]."""
    from talkingpose import vae_clip

    return vae_clip.vae_encode_mean(vae, pixels)


def clip_crop_embeds(clip_vision, crops):
    """Projected image embeddings [n, C] of 224×224 PIL crops (fine-tuning's CLIP inputs), float32 on the CPU."""
    from talkingpose import vae_clip

    return vae_clip.clip_embeds(clip_vision, crops).float().cpu()


def clip_zeroed_embeds(clip_vision):
    """The projected embedding [1, C] of all-zero normalised CLIP pixels (fine-tuning's unconditional context),
    float32 on the CPU."""
    from talkingpose import vae_clip

    return vae_clip.clip_zeroed_embeds(clip_vision).float().cpu()


def vae_encode_posterior(vae, pixels):
    """VAE posterior mean and standard deviation (unscaled) of pixels [n, 3, H, W] in [-1, 1], float32 on the CPU."""
    from talkingpose import vae_clip

    mean, std = vae_clip.vae_posterior(vae, pixels)
    return mean.float().cpu(), std.float().cpu()


def vae_decode(vae, raw_latents):
    """VAE Decode of raw latents [n, 4, h, w] -> IMAGE [n, H, W, 3] in [0, 1] (float32, CPU)."""
    from talkingpose import vae_clip

    return vae_clip.decode_latents(vae, raw_latents).movedim(1, -1)


def v3_node(v1_class, node_id: str, display_name: str):
    """No ComfyUI, no V3 schema: the tests drive the V1 classes themselves."""
    return None
