"""Opt-in downloads of the released weights from Hugging Face (never called without the user asking).

huggingface_hub resumes interrupted downloads and verifies files against the hub's own hashes; after each
file we also record its SHA-256 in `checksums.json` next to it, so a later run can tell a damaged copy.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from .errors import TalkingPoseError

TALKINGPOSE_REPO = "arjavanmardi/TalkingPose"
TALKINGPOSE_FILES = ("weights/denoising_unet.pth", "weights/reference_unet.pth", "weights/pose_guider.pth")
IMAGE_ENCODER_REPO = "lambdalabs/sd-image-variations-diffusers"
IMAGE_ENCODER_FILES = ("image_encoder/config.json", "image_encoder/pytorch_model.bin")
VAE_REPO = "stabilityai/sd-vae-ft-mse"
VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
DWPOSE_REPO = "yzd-v/DWPose"
DWPOSE_FILES = ("yolox_l.onnx", "dw-ll_ucoco_384.onnx")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(repo: str, files: tuple[str, ...], dest: Path) -> list[Path]:
    """Download `files` of `repo` into `dest` (flattened), resuming partial downloads."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise TalkingPoseError("Downloading needs huggingface_hub: pip install huggingface_hub") from exc
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TalkingPoseError(f"Cannot make the folder {dest} for the download ({exc.strerror or exc}); choose a "
                               "models folder you can write to.") from None
    record_path = dest / "checksums.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    out = []
    for name in files:
        target = dest / Path(name).name
        if not target.is_file():
            try:
                cached = Path(hf_hub_download(repo_id=repo, filename=name, local_dir=dest / ".download"))
            except Exception as exc:
                raise TalkingPoseError(
                    f"Could not download {name} from {repo} ({type(exc).__name__}: {exc}). Check the internet "
                    f"connection, or download it by hand into {dest}."
                ) from exc
            shutil.move(str(cached), target)
            record[target.name] = sha256(target)
            record_path.write_text(json.dumps(record, indent=1))
        out.append(target)
    shutil.rmtree(dest / ".download", ignore_errors=True)
    return out


def verify(dest: Path) -> list[str]:
    """Names of files in `dest` whose SHA-256 no longer matches the one recorded at download."""
    record_path = Path(dest) / "checksums.json"
    if not record_path.is_file():
        return []
    record = json.loads(record_path.read_text())
    return [name for name, digest in record.items() if not (Path(dest) / name).is_file() or sha256(Path(dest) / name) != digest]
