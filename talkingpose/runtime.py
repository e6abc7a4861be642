"""Standalone stand-ins for what ComfyUI provides: device choice, the models folder, a progress bar.

The headless command and CI use these directly; inside ComfyUI `nodes/host.py` uses ComfyUI's own instead.
"""
from __future__ import annotations

import os
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent


def default_device():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def models_root() -> Path:
    """Where `talkingpose/` and `dwpose/` weight folders live outside ComfyUI.

    `$TALKINGPOSE_MODELS` wins; a pack installed in `ComfyUI/custom_nodes/` uses ComfyUI's `models/`;
    otherwise a `models/` folder next to the pack's own folder.
    """
    env = os.environ.get("TALKINGPOSE_MODELS")
    if env:
        return Path(env).expanduser()
    if PACK_ROOT.parent.name == "custom_nodes":
        return PACK_ROOT.parent.parent / "models"
    return PACK_ROOT.parent / "models"


def model_folders(kind: str) -> list[Path]:
    """Folders searched for one kind of weights (`talkingpose`, `dwpose`)."""
    return [models_root() / kind]


class TqdmProgress:
    """Progress reporter with the same interface as the ComfyUI one in nodes/host.py."""

    def __init__(self, total: int, desc: str = "", unit: str = "it"):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, n: int = 1, preview=None) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()
