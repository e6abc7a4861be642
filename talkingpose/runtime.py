"""Where the engine runs when no host decides: the compute device, the precision policy and the models folder.

The command line, the Ray workers, the benchmarks and the standalone node host (`nodes/standalone.py`) use these;
inside ComfyUI the nodes take the device, the precision and the folders from ComfyUI (`nodes/host.py`).
"""
from __future__ import annotations

import os
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("auto", "fp16", "bf16", "fp32")


# ------------------------------------------------------------------------------------------------ precision
def explicit_dtype(precision: str):
    """The torch dtype of an explicit precision name (fp16, bf16, fp32); None for auto."""
    import torch

    if precision not in PRECISIONS:
        from .errors import TalkingPoseError

        raise TalkingPoseError(f"Unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}.")
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(precision)


def compute_dtype(precision: str, device=None, model_params: int = 0):
    """Standalone precision policy: an explicit name wins; auto is fp16 on a GPU (as the official inference
    runs, and ~7x closer to float32 than bf16 on the golden case) and float32 on the CPU."""
    import torch

    dtype = explicit_dtype(precision)
    if dtype is not None:
        return dtype
    device = torch.device(device) if device is not None else default_device()
    return torch.float32 if device.type == "cpu" else torch.float16


# ------------------------------------------------------------------------------------------------ devices
def default_device():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------------ folders
def models_root(chosen: str | Path | None = None) -> Path:
    """Where `talkingpose/`, `vae/`, `clip_vision/` and `dwpose/` weight folders live outside ComfyUI.

    The folder the user `chosen` (--models) wins, then `$TALKINGPOSE_MODELS`; a pack installed in
    `ComfyUI/custom_nodes/` uses ComfyUI's `models/`; otherwise a `models/` folder next to the pack's own folder.
    """
    if chosen:
        return Path(chosen)
    env = os.environ.get("TALKINGPOSE_MODELS")
    if env:
        return Path(env).expanduser()
    if PACK_ROOT.parent.name == "custom_nodes":
        return PACK_ROOT.parent.parent / "models"
    return PACK_ROOT.parent / "models"
