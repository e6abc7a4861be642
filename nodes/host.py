"""The one adapter between the pack and ComfyUI.

Every call into ComfyUI goes through here. Each function has a standalone path (plain torch device choice, a
tqdm progress bar, a models folder from `$TALKINGPOSE_MODELS`), the same one the headless command uses, so CI
runs the node classes end to end without ComfyUI.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..models import runtime

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
    """Make `models/talkingpose` and `models/dwpose` known to ComfyUI (so extra_model_paths.yaml works)."""
    if not IN_COMFYUI:
        return
    for kind in MODEL_KINDS:
        if kind not in _folder_paths.folder_names_and_paths:
            _folder_paths.folder_names_and_paths[kind] = (
                [str(Path(_folder_paths.models_dir) / kind)],
                set(_WEIGHT_EXTENSIONS),
            )
        else:
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


def cancel_requested() -> bool:
    return bool(IN_COMFYUI and _mm.processing_interrupted())


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
