"""The one adapter between the pack and ComfyUI.

Every call into ComfyUI goes through here. Each function has a standalone path (plain torch device choice, a
tqdm progress bar, a models folder from `$TALKINGPOSE_MODELS`), the same one the headless command uses, so CI
runs the node classes end to end without ComfyUI.
"""
from __future__ import annotations

import logging
from pathlib import Path

from talkingpose import runtime

log = logging.getLogger("TalkingPose")

try:  # ComfyUI's modules exist only inside a running ComfyUI.
    import comfy.model_management as _mm
    import comfy.utils as _comfy_utils
    import folder_paths as _folder_paths

    IN_COMFYUI = True
except ImportError:
    _mm = _comfy_utils = _folder_paths = None
    IN_COMFYUI = False

# Weight folders under ComfyUI's models/ that this pack registers with folder_paths.
MODEL_KINDS = ("talkingpose", "dwpose")
_WEIGHT_EXTENSIONS = {".pth", ".safetensors", ".onnx"}


def register_model_folders() -> None:
    """Make `models/talkingpose` and `models/dwpose` known to ComfyUI; folders that extra_model_paths.yaml adds
    for the same names are searched too, after these defaults."""
    if not IN_COMFYUI:
        return
    for kind in MODEL_KINDS:
        default = str(Path(_folder_paths.models_dir) / kind)
        if kind in _folder_paths.folder_names_and_paths:
            if default not in _folder_paths.folder_names_and_paths[kind][0]:
                _folder_paths.folder_names_and_paths[kind][0].insert(0, default)
        else:
            _folder_paths.folder_names_and_paths[kind] = ([default], set())
        _folder_paths.folder_names_and_paths[kind][1].update(_WEIGHT_EXTENSIONS)


def model_folders(kind: str) -> list[Path]:
    """Every folder searched for one kind of weights, in priority order."""
    if IN_COMFYUI:
        return [Path(p) for p in _folder_paths.get_folder_paths(kind)]
    return runtime.model_folders(kind)


def torch_device():
    return _mm.get_torch_device() if IN_COMFYUI else runtime.default_device()


def offload_device():
    import torch

    return _mm.unet_offload_device() if IN_COMFYUI else torch.device("cpu")


def onnx_device_index() -> int:
    """The CUDA device index ComfyUI runs on, for onnxruntime's execution providers."""
    device = torch_device()
    return device.index or 0 if getattr(device, "type", "") == "cuda" else 0


def throw_if_cancelled() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel; nothing outside ComfyUI."""
    if IN_COMFYUI:
        _mm.throw_exception_if_processing_interrupted()


class Progress:
    """ComfyUI's progress bar (with optional preview images) or, standalone, a tqdm bar."""

    def __init__(self, total: int, desc: str = "", unit: str = "it"):
        self.total = total
        self._done = 0
        if IN_COMFYUI:
            self._bar = _comfy_utils.ProgressBar(total)
        else:
            self._bar = runtime.TqdmProgress(total, desc=desc, unit=unit)

    def update(self, n: int = 1, preview=None) -> None:
        self._done += n
        if IN_COMFYUI:
            self._bar.update_absolute(self._done, self.total, preview)
        else:
            self._bar.update(n)

    def close(self) -> None:
        if not IN_COMFYUI:
            self._bar.close()


def send_event(event: str, data: dict) -> None:
    """Send a message to the browser over ComfyUI's server event channel (no-op standalone)."""
    if not IN_COMFYUI:
        return
    try:
        from server import PromptServer
    except ImportError:
        return
    if PromptServer.instance is not None:
        PromptServer.instance.send_sync(event, data)


# ------------------------------------------------------------------------------------------------ memory manager
class ManagedModel:
    """A torch module that ComfyUI's memory manager can load to the GPU and offload, like its own models.

    Standalone it simply lives on `torch_device()`.
    """

    def __init__(self, module, dtype):
        self.module = module
        self.dtype = dtype
        if IN_COMFYUI:
            import comfy.model_patcher

            self.patcher = comfy.model_patcher.ModelPatcher(module, load_device=torch_device(), offload_device=offload_device())
        else:
            self.patcher = None

    def load(self, memory_required: int = 0):
        """Put the weights on the compute device, evicting other models if VRAM is short (also `memory_required`
        bytes for activations); returns the module. Call it before each use: other nodes may offload it."""
        if self.patcher is not None:
            # Fully: the networks are plain torch modules without ComfyUI's on-the-fly weight casting.
            _mm.load_models_gpu([self.patcher], memory_required=memory_required, force_full_load=True)
        else:
            self.module.to(torch_device())
        return self.module


def default_dtype(precision: str):
    """The compute dtype for a precision widget value: auto picks bf16 / fp16 / fp32 by device."""
    import torch

    if precision != "auto":
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    device = torch_device()
    if IN_COMFYUI:
        if _mm.should_use_bf16(device):
            return torch.bfloat16
        return torch.float16 if _mm.should_use_fp16(device) else torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ------------------------------------------------------------------------------------------------ CLIP and VAE
def clip_image_embeds(clip_vision, pixels_224):
    """Projected image embedding [1, C] of a 224×224 RGB batch [1, 224, 224, 3] in [0, 1].

    ComfyUI's CLIP_VISION crops and resizes only when the input is not 224×224, so the official stretch to
    224×224 done before this call is kept. Standalone, `clip_vision` is a transformers CLIPVisionModelWithProjection.
    """
    if IN_COMFYUI and hasattr(clip_vision, "encode_image"):
        return clip_vision.encode_image(pixels_224, crop=False)["image_embeds"]
    from talkingpose import images

    picture = images.to_pil_rgb(pixels_224[0])
    pixels = images.clip_pixels(picture).to(clip_vision.device, clip_vision.dtype)
    return clip_vision(pixels).image_embeds


def clip_projection_width(clip_vision) -> int | None:
    model = getattr(clip_vision, "model", clip_vision)
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        return config.get("projection_dim")
    return getattr(config, "projection_dim", None)


def vae_encode_mean(vae, pixels):
    """Raw (unscaled) posterior mean [1, 4, h, w] of pixels [1, H, W, 3] in [0, 1]."""
    if IN_COMFYUI and hasattr(vae, "first_stage_model"):
        return vae.encode(pixels[..., :3])  # ComfyUI's VAE returns the posterior mode, unscaled
    x = pixels.movedim(-1, 1).to(vae.device, vae.dtype) * 2 - 1
    return vae.encode(x).latent_dist.mean


def vae_decode(vae, raw_latents):
    """ComfyUI's VAE Decode for raw latents → IMAGE [n, H, W, 3] in [0, 1]."""
    if IN_COMFYUI and hasattr(vae, "first_stage_model"):
        return vae.decode(raw_latents)
    import torch

    out = []
    for latent in raw_latents:
        with torch.no_grad():
            x = vae.decode(latent[None].to(vae.device, vae.dtype)).sample
        out.append((x / 2 + 0.5).clamp(0, 1).movedim(1, -1).float().cpu())
    return torch.cat(out)


def latent_previewer():
    """A function turning a scaled SD1.5 latent [1, 4, h, w] into a progress-bar preview, or None."""
    if not IN_COMFYUI:
        return None
    import comfy.latent_formats
    import latent_preview

    previewer = latent_preview.get_previewer(torch_device(), comfy.latent_formats.SD15())
    if previewer is None:
        return None
    return lambda latent: previewer.decode_latent_to_preview_image("JPEG", latent)


# ------------------------------------------------------------------------------------------------ folders
def output_directory() -> Path:
    """ComfyUI's output folder; standalone, an `output/` folder beside the models root."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_output_directory())
    return runtime.models_root().parent / "output"


def input_directory() -> Path:
    """ComfyUI's input folder; standalone, an `input/` folder beside the models root."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_input_directory())
    return runtime.models_root().parent / "input"


def annotated_file(name: str, default_dir: Path) -> Path:
    """A file name read as ComfyUI reads a loader's value: `name [input]` / `name [output]` pick that folder,
    a plain name is in `default_dir`. Nothing is checked here (see nodes/paths.py)."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_annotated_filepath(name, str(default_dir)))
    for tag, folder in ((" [output]", output_directory()), (" [input]", input_directory())):
        if name.endswith(tag):
            return folder / name[: -len(tag)]
    return default_dir / name


def save_prefix(prefix: str) -> tuple[Path, str]:
    """The folder and file stem a save node's `filename_prefix` names in the output folder (inside ComfyUI with
    its %date%-style variables expanded). The prefix must have passed nodes/paths.py's checks."""
    import os

    if IN_COMFYUI:
        folder, stem, _counter, _subfolder, _prefix = _folder_paths.get_save_image_path(prefix, str(output_directory()))
        return Path(folder), stem
    normal = os.path.normpath(prefix)
    return output_directory() / os.path.dirname(normal), os.path.basename(normal)


def custom_nodes_dirs() -> list[Path]:
    """Where other node packs live (to find weights comfyui_controlnet_aux downloaded)."""
    if IN_COMFYUI:
        return [Path(p) for p in _folder_paths.get_folder_paths("custom_nodes")]
    return [runtime.PACK_ROOT.parent] if runtime.PACK_ROOT.parent.name == "custom_nodes" else []
