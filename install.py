"""Post-install step (ComfyUI Manager runs it after requirements.txt; CI runs `python install.py`).

Installs `onnxruntime` (CPU build) for DWPose pose extraction, but only when no onnxruntime variant is installed
yet: onnxruntime, onnxruntime-gpu, onnxruntime-directml, onnxruntime-openvino, onnxruntime-rocm, ... all provide
the same `onnxruntime` module, so a second one overwrites files of the first and breaks both. Users with a GPU
variant keep it. Uses the Python that runs this script (`sys.executable -m pip`), i.e. ComfyUI's own.

Set TALKINGPOSE_SKIP_ONNXRUNTIME=1 to skip the step.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

DEFAULT_PACKAGE = "onnxruntime"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Distributions named like a variant that do not ship the `onnxruntime` module themselves.
_NOT_RUNTIMES = ("onnxruntime-extensions", "onnxruntime-tools", "onnxruntime-genai")


def is_onnxruntime_variant(name: str) -> bool:
    """True for any distribution that ships the `onnxruntime` module (official variants and nightlies)."""
    norm = _normalise(name)
    if any(norm == n or norm.startswith(n + "-") for n in _NOT_RUNTIMES):
        return False
    return norm == "onnxruntime" or norm.startswith("onnxruntime-") or norm.startswith("ort-nightly")


def installed_onnxruntime_variants() -> list[str]:
    """Names (with versions) of the installed onnxruntime distributions of this Python."""
    from importlib import metadata

    found = set()
    for dist in metadata.distributions():
        name = dist.metadata.get("Name") if dist.metadata is not None else None
        if name and is_onnxruntime_variant(name):
            found.add(f"{name}=={dist.version}")
    return sorted(found)


def pip_install_command(package: str = DEFAULT_PACKAGE) -> list[str]:
    return [sys.executable, "-m", "pip", "install", package]


def main() -> int:
    if os.environ.get("TALKINGPOSE_SKIP_ONNXRUNTIME", "").strip() not in ("", "0"):
        print("[TalkingPose] TALKINGPOSE_SKIP_ONNXRUNTIME is set; not installing onnxruntime.")
        return 0
    variants = installed_onnxruntime_variants()
    if variants:
        print(f"[TalkingPose] onnxruntime already present ({', '.join(variants)}); leaving it as it is.")
        if len(variants) > 1:
            print("[TalkingPose] Warning: several onnxruntime variants are installed; they overwrite each other's "
                  "files. Uninstall all of them and install exactly one (e.g. onnxruntime-gpu).")
        return 0
    command = pip_install_command()
    print(f"[TalkingPose] No onnxruntime found; running: {' '.join(command)}")
    try:
        subprocess.check_call(command)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"[TalkingPose] Installing onnxruntime failed ({exc}). Pose Extract needs it: install one variant "
              "yourself, e.g. 'python -m pip install onnxruntime-gpu' (NVIDIA) or 'onnxruntime'.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
