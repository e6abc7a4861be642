"""Sampler state files: safetensors (z_T and the last latent) with the settings as JSON metadata.

Reading takes the whole file in one read, so a save that replaces the file meanwhile cannot mix one save's
settings with another's tensors; the metadata carries a SHA-256 of the tensors, so a file that was changed
(a flipped bit, an edit, a copy cut short) is refused rather than resumed into wrong frames. Every field is
checked on load: types, ranges, shapes against the size, finite values.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import struct
from pathlib import Path

import torch

from . import durable
from .errors import TalkingPoseError

FORMAT = "talkingpose-state/2"
# Version 1 (before the checksum) is still read; every other check applies to it too.
READABLE_FORMATS = ("talkingpose-state/1", FORMAT)
METADATA_KEY = "talkingpose"
FIELDS = {"format", "next_frame", "settings", "width", "height", "model_fingerprint", "appearance_fingerprint",
          "extra", "tensors_sha256"}
SETTINGS_FIELDS = {"steps", "cfg", "beta", "seed"}
TENSORS = ("noise", "last_latent")
MAX_STATE_HEADER = 1 << 16  # a state's safetensors header is a few KB at most; checkpoints have large ones
MAX_FILE_BYTES = 1 << 30  # a state at 8192×8192 is 64 MB; anything far larger is not a state
MAX_NEXT_FRAME = 10**9  # 11 hours at 25 fps; a larger index is damage, not a video
MAX_SIDE = 16384
# Latents of SD1.5's VAE (scaled space) and unit Gaussian noise stay within a few tens; a value this large
# means a damaged file (a flipped exponent bit), and it would overflow fp16 inference anyway.
MAX_ABS_VALUE = 1e4


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save(state, path: Path) -> Path:
    """Writes `state` to `path` atomically (see `durable`); a full disk or a kill leaves the old file."""
    from dataclasses import asdict

    from safetensors.torch import save as to_bytes

    path = Path(path)
    tensors = {"noise": state.noise.detach().to("cpu", torch.float32).contiguous()}
    if state.last_latent is not None:
        tensors["last_latent"] = state.last_latent.detach().to("cpu", torch.float32).contiguous()
    meta = {
        "format": FORMAT,
        "next_frame": state.next_frame,
        "settings": asdict(state.settings),
        "width": state.width,
        "height": state.height,
        "model_fingerprint": state.model_fingerprint,
        "appearance_fingerprint": state.appearance_fingerprint,
        "extra": state.extra,
        "tensors_sha256": tensors_checksum(tensors),
    }
    data = to_bytes(tensors, metadata={METADATA_KEY: json.dumps(meta)})
    try:
        return durable.write_bytes(path, data)
    except OSError as exc:
        raise TalkingPoseError(
            f"Could not write the state file {path} ({exc.strerror or exc}). Free some disk space or choose a "
            "writable folder, then save again; the previous state file, if any, is unchanged."
        ) from exc


def is_state_file(path: Path) -> bool:
    """Whether `path` is a safetensors file written for a sampler state, from its header alone (cheap, and true
    for a state whose tensor data was cut short, so that it can still be replaced)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_STATE_HEADER:
                return False
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError):
        return False
    return isinstance(header, dict) and METADATA_KEY in (header.get("__metadata__") or {})


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load as from_bytes

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise TalkingPoseError(f"State file {path} cannot be read ({exc.strerror or exc}).") from exc
    if size > MAX_FILE_BYTES:
        raise TalkingPoseError(f"{path} is {size / 2**20:.0f} MB, far larger than a TalkingPose state; "
                               "it is not a state file.")
    try:
        data = path.read_bytes()  # one read: a concurrent save cannot swap the file between header and data
        header_length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_length])
        meta = json.loads(header["__metadata__"][METADATA_KEY])
        tensors = from_bytes(data)
    except Exception as exc:  # truncation, garbage, a safetensors file of something else
        raise TalkingPoseError(
            f"State file {path} is damaged or not a TalkingPose state ({type(exc).__name__}). It cannot be resumed; "
            "start the render again (frames already written are kept)."
        ) from exc
    return meta, tensors


def _whole(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}")
    return int(value)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    return float(value)


def _check_tensor(tensors: dict, name: str, shape: tuple[int, int]) -> torch.Tensor:
    tensor = tensors[name]
    if tensor.dtype != torch.float32 or tensor.ndim != 3 or tuple(tensor.shape[1:]) != shape or not 1 <= tensor.shape[0] <= 64:
        raise ValueError(f"tensor '{name}' is {tensor.dtype} {tuple(tensor.shape)}; a state of this size holds "
                         f"float32 [channels, {shape[0]}, {shape[1]}]")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"tensor '{name}' holds NaN or infinite values")
    if tensor.numel() and tensor.abs().max() > MAX_ABS_VALUE:
        raise ValueError(f"tensor '{name}' holds values beyond ±{MAX_ABS_VALUE:g}, far outside any latent")
    return tensor


def load(path: Path, state_type, settings_type):
    """Reads and fully validates a state file into a `state_type` (the sampler's `SamplerState`) holding a
    `settings_type` (`SamplerSettings`, whose own checks count as the file's); any problem is a
    `TalkingPoseError` that names the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise TalkingPoseError(f"State file {path} does not exist.")
    meta, tensors = _read(path)
    try:
        if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
            raise ValueError("it is not a TalkingPose sampler state (no known 'format')")
        unknown = set(meta) - FIELDS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        missing = {"next_frame", "settings", "width", "height"} - set(meta)
        if missing:
            raise ValueError(f"fields {sorted(missing)} are missing")
        next_frame = _whole(meta["next_frame"], "next_frame", 0, MAX_NEXT_FRAME)
        width = _whole(meta["width"], "width", 64, MAX_SIDE)
        height = _whole(meta["height"], "height", 64, MAX_SIDE)
        if width % 8 or height % 8:
            raise ValueError(f"the size {width}×{height} is not a multiple of 8")
        settings = meta["settings"]
        if not isinstance(settings, dict) or set(settings) != SETTINGS_FIELDS:
            raise ValueError(f"'settings' must have exactly the fields {sorted(SETTINGS_FIELDS)}")
        steps = _whole(settings["steps"], "steps", 1, 10_000)
        seed = _whole(settings["seed"], "seed", 0, 2**64 - 1)
        cfg, beta = _number(settings["cfg"], "cfg"), _number(settings["beta"], "beta")
        texts = {k: meta.get(k, "") for k in ("model_fingerprint", "appearance_fingerprint")}
        if not all(isinstance(v, str) for v in texts.values()):
            raise ValueError("the fingerprints must be text")
        extra = meta.get("extra", {})
        if not isinstance(extra, dict):
            raise ValueError("'extra' must be a JSON object")
        if set(tensors) - set(TENSORS) or "noise" not in tensors:
            raise ValueError(f"it holds the tensors {sorted(tensors)}; a state holds 'noise' and, after the first "
                             "frame, 'last_latent'")
        if ("last_latent" in tensors) != (next_frame > 0):
            raise ValueError(f"next_frame is {next_frame} but the last latent is "
                             f"{'present' if 'last_latent' in tensors else 'missing'}")
        latent_shape = (height // 8, width // 8)
        noise = _check_tensor(tensors, "noise", latent_shape)
        last = _check_tensor(tensors, "last_latent", latent_shape) if "last_latent" in tensors else None
        if last is not None and last.shape != noise.shape:
            raise ValueError("'noise' and 'last_latent' differ in shape")
        recorded = meta.get("tensors_sha256")
        if meta["format"] == FORMAT and recorded != tensors_checksum(tensors):
            raise ValueError("its tensors do not match the checksum saved with them (the file was changed, damaged, "
                             "or mixed with another save)")
        settings = settings_type(steps=steps, cfg=cfg, beta=beta, seed=seed)
    except (ValueError, KeyError, TypeError) as exc:
        raise TalkingPoseError(
            f"State file {path} cannot be used: {exc}. It cannot be resumed; start the render again without it "
            "(frames already written are kept)."
        ) from exc
    return state_type(noise=noise, last_latent=last, next_frame=next_frame, settings=settings, width=width,
                      height=height, extra=extra, **texts)
