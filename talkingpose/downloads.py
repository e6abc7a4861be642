"""Opt-in downloads of the released weights from Hugging Face (never called without the user asking).

huggingface_hub resumes interrupted downloads and verifies files against the hub's own hashes; after each
file we also record its SHA-256 in `checksums.json` next to it, so a later run can tell a damaged copy.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from . import durable
from .errors import TalkingPoseError
from .vae_clip import IMAGE_ENCODER_FILE, VAE_FILE, write_image_encoder_file

TALKINGPOSE_REPO = "arjavanmardi/TalkingPose"
TALKINGPOSE_FILES = ("weights/denoising_unet.pth", "weights/reference_unet.pth", "weights/pose_guider.pth")
# The image encoder and the VAE end up as single files (`vae_clip.IMAGE_ENCODER_FILE`, `vae_clip.VAE_FILE`).
IMAGE_ENCODER_REPO = "lambdalabs/sd-image-variations-diffusers"
IMAGE_ENCODER_FILES = ("image_encoder/config.json", "image_encoder/pytorch_model.bin")  # converted into IMAGE_ENCODER_FILE
VAE_REPO = "stabilityai/sd-vae-ft-mse-original"
VAE_FILES = (VAE_FILE,)
DWPOSE_REPO = "yzd-v/DWPose"
DWPOSE_FILES = ("yolox_l.onnx", "dw-ll_ucoco_384.onnx")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_record(dest: Path) -> dict[str, str]:
    """The checksums recorded in `dest` ({} when none were); a damaged record is refused with a sentence."""
    record_path = Path(dest) / "checksums.json"
    if not record_path.is_file():
        return {}
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        record = exc
    if not isinstance(record, dict) or not all(
        isinstance(k, str) and Path(k).name == k and isinstance(v, str) for k, v in record.items()
    ):
        raise TalkingPoseError(
            f"{record_path} is damaged (not the list of checksums the download writes). Delete it and run the "
            "download again: files already there are kept, and the checksums of newly downloaded ones recorded."
        )
    return record


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
    record = read_record(dest)
    out = []
    for name in files:
        target = dest / Path(name).name
        if not target.is_file():
            try:
                cached = Path(hf_hub_download(repo_id=repo, filename=name, local_dir=dest / ".download"))
            except Exception as exc:
                _remove_lock_files(dest / ".download")
                raise TalkingPoseError(
                    f"Could not download {name} from {repo} ({type(exc).__name__}: {exc}). Check the internet "
                    f"connection, or download it by hand into {dest}."
                ) from exc
            durable.commit(cached, target)  # the staging folder is inside dest: a rename, flushed first
            record[target.name] = sha256(target)
            durable.write_text(record_path, json.dumps(record, indent=1))
        out.append(target)
    shutil.rmtree(dest / ".download", ignore_errors=True)
    return out


def _remove_lock_files(staging: Path) -> None:
    """huggingface_hub leaves its lock files behind when a download fails (offline, say); the partial download
    next to them stays, so that the next run resumes it."""
    for lock in staging.rglob("*.lock"):
        lock.unlink(missing_ok=True)


def fetch_image_encoder(folder: Path) -> Path:
    """The sd-image-variations image encoder as one safetensors file in `folder` (models/clip_vision/): the
    released config and weights are fetched into a staging folder, converted (tensors only, the config kept in
    the file's metadata), checked by loading, and the staging folder removed."""
    folder = Path(folder)
    target = folder / IMAGE_ENCODER_FILE
    if target.is_file():
        return target
    staging = folder / ".sd-image-variations-download"
    config, weights = fetch(IMAGE_ENCODER_REPO, IMAGE_ENCODER_FILES, staging)
    write_image_encoder_file(config, weights, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def verify(dest: Path) -> list[str]:
    """Names of files in `dest` whose SHA-256 no longer matches the one recorded at download."""
    record = read_record(dest)
    return [name for name, digest in record.items() if not (Path(dest) / name).is_file() or sha256(Path(dest) / name) != digest]
