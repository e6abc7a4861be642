"""The Python packages the pack needs on top of torch, checked without importing them.

ComfyUI installs nothing when it loads a pack, and the Manager's `pip install -r requirements.txt` can fail
half-way, so a package may be missing. Then the pack says so once when ComfyUI loads it and again, as a node's
error, instead of the bare `ModuleNotFoundError` of whichever module happened to import it first.
onnxruntime and OpenCV are not here: install.py picks one of their variants, and the pose code explains those.
"""
from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import TalkingPoseError

# requirements.txt's distributions by the top-level module they install (the same set, checked by the tests).
REQUIRED_MODULES = {
    "diffusers": "diffusers",
    "peft": "peft",
    "transformers": "transformers",
    "safetensors": "safetensors",
    "huggingface_hub": "huggingface_hub",
    "numpy": "numpy",
    "PIL": "pillow",
    "av": "av",
    "tqdm": "tqdm",
    "psutil": "psutil",
}
REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "requirements.txt"


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked (None in sys.modules) or half-imported
        return False


def missing_requirements() -> list[str]:
    """The distributions of requirements.txt whose module this Python cannot find."""
    return [dist for module, dist in REQUIRED_MODULES.items() if not _findable(module)]


def install_sentence(missing: list[str], python: str | None = None) -> str:
    """One sentence naming the missing packages and the command that installs them into this Python."""
    python = python or sys.executable
    names = ", ".join(missing)
    return (f"TalkingPose needs {names}, which {'is' if len(missing) == 1 else 'are'} not installed in the Python "
            f"that runs ComfyUI ({python}): install the pack's requirements with "
            f"\"{python}\" -m pip install -r \"{REQUIREMENTS_FILE}\" and restart ComfyUI.")


@contextmanager
def explain_missing_modules():
    """Turn a ModuleNotFoundError of a required package into a TalkingPoseError with the install command."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in REQUIRED_MODULES:
            raise
        raise TalkingPoseError(install_sentence(missing_requirements() or [REQUIRED_MODULES[top]])) from exc
