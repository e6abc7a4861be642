"""Post-install step (ComfyUI Manager runs it after requirements.txt; CI runs `python install.py`).

Two dependencies come in several interchangeable distributions that install the same module, so a second one
overwrites files of the first and breaks both. This script installs one only when none is present:

- `onnxruntime` (DWPose pose extraction): onnxruntime, onnxruntime-gpu, onnxruntime-directml,
  onnxruntime-openvino, onnxruntime-rocm, ... all provide the `onnxruntime` module. Default: `onnxruntime`.
- `cv2` (OpenCV): opencv-python (what VideoHelperSuite and comfyui_controlnet_aux require),
  opencv-python-headless, opencv-contrib-python, opencv-contrib-python-headless. Default: the headless build.

Users keep the variant they have (a GPU onnxruntime, another pack's OpenCV). Uses the Python that runs this
script (`sys.executable -m pip`), i.e. ComfyUI's own.

Set TALKINGPOSE_SKIP_ONNXRUNTIME=1 or TALKINGPOSE_SKIP_OPENCV=1 to skip a step.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Callable, NamedTuple

DEFAULT_PACKAGE = "onnxruntime"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Distributions named like a variant that do not ship the `onnxruntime` module themselves.
_NOT_RUNTIMES = ("onnxruntime-extensions", "onnxruntime-tools", "onnxruntime-genai")
OPENCV_VARIANTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def is_onnxruntime_variant(name: str) -> bool:
    """True for any distribution that ships the `onnxruntime` module (official variants and nightlies)."""
    norm = _normalise(name)
    if any(norm == n or norm.startswith(n + "-") for n in _NOT_RUNTIMES):
        return False
    return norm == "onnxruntime" or norm.startswith("onnxruntime-") or norm.startswith("ort-nightly")


def is_opencv_variant(name: str) -> bool:
    """True for the distributions that ship the `cv2` module."""
    return _normalise(name) in OPENCV_VARIANTS


def _installed(matches) -> list[str]:
    from importlib import metadata

    found = set()
    for dist in metadata.distributions():
        name = dist.metadata.get("Name") if dist.metadata is not None else None
        if name and matches(name):
            found.add(f"{name}=={dist.version}")
    return sorted(found)


def installed_onnxruntime_variants() -> list[str]:
    """Names (with versions) of the installed onnxruntime distributions of this Python."""
    return _installed(is_onnxruntime_variant)


def installed_opencv_variants() -> list[str]:
    """Names (with versions) of the installed OpenCV distributions of this Python."""
    return _installed(is_opencv_variant)


def pip_install_command(package: str = DEFAULT_PACKAGE) -> list[str]:
    return [sys.executable, "-m", "pip", "install", package]


class Family(NamedTuple):
    module: str  # what the variants provide
    default: str  # the requirement installed when none is present
    skip_variable: str
    installed: Callable[[], list[str]]
    advice: str  # what to do when installing fails or several are present


FAMILIES = (
    Family("onnxruntime", DEFAULT_PACKAGE, "TALKINGPOSE_SKIP_ONNXRUNTIME", installed_onnxruntime_variants,
           "Pose Extract needs it: install one variant yourself, e.g. 'python -m pip install onnxruntime-gpu' "
           "(NVIDIA) or 'onnxruntime'."),
    Family("cv2", "opencv-python-headless>=4.8", "TALKINGPOSE_SKIP_OPENCV", installed_opencv_variants,
           "The pack needs OpenCV: install exactly one of opencv-python, opencv-python-headless, "
           "opencv-contrib-python, opencv-contrib-python-headless."),
)


def ensure(family: Family) -> int:
    if os.environ.get(family.skip_variable, "").strip() not in ("", "0"):
        print(f"[TalkingPose] {family.skip_variable} is set; not installing {family.module}.")
        return 0
    variants = family.installed()
    if variants:
        print(f"[TalkingPose] {family.module} already present ({', '.join(variants)}); leaving it as it is.")
        if len(variants) > 1:
            print(f"[TalkingPose] Warning: several distributions of {family.module} are installed; they overwrite "
                  f"each other's files. Uninstall all of them and install exactly one. {family.advice}")
        return 0
    command = pip_install_command(family.default)
    print(f"[TalkingPose] No {family.module} found; running: {' '.join(command)}")
    try:
        subprocess.check_call(command)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"[TalkingPose] Installing {family.default} failed ({exc}). {family.advice}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    failures = [ensure(family) for family in FAMILIES]
    return 1 if any(failures) else 0


if __name__ == "__main__":
    sys.exit(main())
