"""The headless animate job: source image + driving video → mp4, streamed one frame at a time.

Frames are decoded, posed, sampled, decoded and encoded one after another, so memory stays flat for any
length. Each finished frame is kept in `<out>.partial/` with the sampler state after it (see `render_output`);
after Ctrl-C, a kill, a crash or a full disk, `resume=True` continues from there and the output file is the
same, byte for byte, as an uninterrupted run's.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import images
from .errors import TalkingPoseError
from .sampler import SamplerSettings

log = logging.getLogger("TalkingPose")

SEGMENT_FRAMES = 16
SMOKE_LABEL = "RANDOM WEIGHTS - SMOKE RUN"


@dataclass
class AnimateJob:
    out: Path
    driving: Path | None = None
    poses: Path | None = None
    source: Path | None = None
    width: int = 512
    height: int = 512
    frames: int | None = None
    settings: SamplerSettings = field(default_factory=SamplerSettings)
    models_root: Path | None = None
    model_name: str | None = None
    random_weights: str | None = None  # preset name: the real pipeline on random weights, output labelled
    resume: bool = False
    overwrite: bool = False  # delete the kept frames of an interrupted render of the same output
    segment_frames: int = SEGMENT_FRAMES
    device: str = "auto"
    precision: str = "auto"
    fit: str = "stretch"


# ------------------------------------------------------------------------------------------------ weights
def _first_folder_with(folder: Path, marker: str, prefer: str) -> Path | None:
    if not folder.is_dir():
        return None
    found = sorted(p.parent for p in folder.rglob(marker))
    preferred = [p for p in found if prefer in p.name]
    return (preferred or found or [None])[0]


def locate_weights(root: Path, model_name: str | None = None, need_dwpose: bool = False) -> dict:
    """TalkingPose model, VAE and image encoder folders under a ComfyUI-style models root (and the DWPose
    weights when poses are to be extracted); one error lists everything that is missing and where it goes."""
    from .checkpoints import list_models

    root = Path(root)
    missing = []
    models = list_models([root / "talkingpose"])
    if model_name:
        model = models.get(model_name) or models.get(model_name.rstrip("/") + "/")
        if model is None:
            missing.append(f"TalkingPose model '{model_name}' under {root / 'talkingpose'} (installed: {', '.join(models) or 'none'})")
    else:
        model = next(iter(models.values()), None)
        if model is None:
            missing.append(f"denoising_unet.pth, reference_unet.pth, pose_guider.pth (Hugging Face arjavanmardi/TalkingPose, "
                           f"weights/) in {root / 'talkingpose' / 'TalkingPose'}/")
    vae = _first_folder_with(root / "vae", "config.json", "sd-vae-ft-mse")
    if vae is None:
        missing.append(f"the sd-vae-ft-mse VAE (Hugging Face stabilityai/sd-vae-ft-mse: config.json and "
                       f"diffusion_pytorch_model.safetensors) in {root / 'vae' / 'sd-vae-ft-mse'}/")
    encoder = _first_folder_with(root / "clip_vision", "config.json", "image")
    if encoder is None:
        missing.append(f"the image encoder (Hugging Face lambdalabs/sd-image-variations-diffusers, image_encoder/: "
                       f"config.json and its weights) in {root / 'clip_vision' / 'sd-image-variations-image-encoder'}/")
    dwpose = None
    if need_dwpose:
        from .pose import find_dwpose_weights

        try:
            dwpose = find_dwpose_weights([root / "dwpose"])
        except TalkingPoseError:
            missing.append(f"the DWPose weights yolox_l.onnx and dw-ll_ucoco_384.onnx (Hugging Face yzd-v/DWPose) in "
                           f"{root / 'dwpose'}/: `python cli.py download --what dwpose`")
    if missing:
        raise TalkingPoseError(
            "Missing weights:\n  - " + "\n  - ".join(missing)
            + "\nRun `python cli.py download` to fetch them, or add --random-weights for a smoke run without them."
        )
    return {"model": model, "vae": vae, "image_encoder": encoder, "dwpose": dwpose}


def _device(name: str):
    from .runtime import default_device

    return default_device() if name == "auto" else torch.device(name)


def _dtype(precision: str, device):
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


# ------------------------------------------------------------------------------------------------ frames
def _label(frame: np.ndarray) -> np.ndarray:
    import cv2

    scale = max(frame.shape[1] / 900, 0.35)
    cv2.putText(frame, SMOKE_LABEL, (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 0, 0), max(1, int(2 * scale)), cv2.LINE_AA)
    return frame


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    # The official script truncates ((x * 255).to(uint8)); so do we, for identical files.
    return np.ascontiguousarray((image.permute(1, 2, 0) * 255).to(torch.uint8).numpy())


def _pose_renders(job: AnimateJob, start: int, dwpose_weights):
    """Pose renders (RGB uint8) from the pose video, or DWPose on the driving video, from frame `start`."""
    from .video_io import VideoReader

    if job.poses is not None:
        reader = VideoReader(job.poses, start=start)
        yield from reader
        return
    from .pose import draw_pose
    from .pose.extractor import PoseExtractor

    extractor = PoseExtractor(dwpose_weights.detector, dwpose_weights.pose)
    for pose in extractor.iter_extract(VideoReader(job.driving, start=start), start_index=start):
        yield draw_pose(pose)


def _load_source(job: AnimateJob):
    """The source picture, read now so that an unreadable file is refused before any network is built."""
    from .video_io import VideoReader

    if job.source is None:
        with VideoReader(job.driving, max_frames=1) as first:
            return next(iter(first))
    from PIL import Image, UnidentifiedImageError

    try:
        source = Image.open(job.source)
        source.load()
    except (OSError, UnidentifiedImageError) as exc:
        raise TalkingPoseError(f"Cannot read the source image {job.source} ({exc}). Use a PNG or JPEG file.") from exc
    return source


def _timing(job: AnimateJob) -> tuple:
    """(fps, frames to make) of the job, from the driving (or pose) video."""
    from .video_io import VideoReader

    with VideoReader(job.driving or job.poses) as timing:
        fps, total = timing.fps, timing.frame_count
        irregular = timing.irregular_timing()
    if irregular:
        log.warning(irregular)
    if job.poses is not None and job.driving is not None:
        with VideoReader(job.poses) as poses:
            total = min(total, poses.frame_count)
    if job.frames is not None:
        total = min(total, job.frames)
    if total < 1:
        raise TalkingPoseError(f"{job.driving or job.poses} has no frames to animate.")
    return fps, total


def preflight(job: AnimateJob, root: Path, device, dtype):
    """Every check that needs no network, before any is built: inputs, output, weights (DWPose's too), memory.
    Returns (fps, total frames, source picture, weight paths or None for random weights, DWPose weights or
    None)."""
    from . import memory
    from .render_output import check_output

    if job.driving is None and job.poses is None:
        raise TalkingPoseError("Give a driving video (--driving) or a pose video (--poses).")
    for path in (job.driving, job.poses, job.source):
        if path is not None and not Path(path).is_file():
            raise TalkingPoseError(f"Input file {path} does not exist.")
    if job.source is None and job.driving is None:
        raise TalkingPoseError("Without a driving video, give the source image with --source.")
    images.check_output_size(job.width, job.height)
    check_output(job.out, job.resume, job.overwrite)
    fps, total = _timing(job)
    source = _load_source(job)
    weights, dwpose = None, None
    if not job.random_weights:
        weights = locate_weights(root, job.model_name, need_dwpose=job.poses is None)
        dwpose = weights["dwpose"]
    elif job.poses is None:
        from .pose import find_dwpose_weights

        dwpose = find_dwpose_weights([root / "dwpose"])
    memory.check_fits(job.width, job.height, device, dtype, "tiny" if job.random_weights == "tiny" else "sd15")
    return fps, total, source, weights, dwpose


def run(job: AnimateJob, progress=None) -> Path:
    """Render the whole job; returns the output path. `progress(done, total)` is called once before the first
    frame (done = frames already kept) and after each frame."""
    from .pipeline import load_pipeline
    from .render_output import commit_frame, resume_point
    from .runtime import models_root as default_root
    from .video_io import SegmentedVideoWriter

    root = Path(job.models_root) if job.models_root else default_root()
    device = _device(job.device)
    dtype = _dtype(job.precision, device)
    fps, total, source, weights, dwpose = preflight(job, root, device, dtype)
    with tempfile.TemporaryDirectory(prefix="talkingpose-random-") as scratch:
        if job.random_weights:
            from .random_weights import write_random_weights

            log.warning("SMOKE RUN: random %s weights; the video shows noise, labelled '%s'.", job.random_weights, SMOKE_LABEL)
            weights = write_random_weights(Path(scratch), job.random_weights)
        pipe = load_pipeline(weights["model"], weights["vae"], weights["image_encoder"], device=device, dtype=dtype)
        appearance = pipe.encode_appearance(source, job.width, job.height, job.fit)

        job_settings = {
            "driving": str(job.driving), "poses": str(job.poses), "source": str(job.source), "size": f"{job.width}x{job.height}",
            "steps": job.settings.steps, "cfg": job.settings.cfg, "beta": job.settings.beta, "seed": job.settings.seed,
            "model": pipe.networks.fingerprint, "random_weights": job.random_weights or "", "fit": job.fit,
        }
        writer = SegmentedVideoWriter(job.out, fps, (job.width, job.height), segment_frames=job.segment_frames,
                                      resume=job.resume)
        state = resume_point(writer, job_settings) if job.resume else None
        start = writer.frames_written
        if start:
            log.info("Resuming %s at frame %d of %d", job.out, start, total)
        sampler = pipe.sampler(appearance, job.settings, state)
        if progress is not None:
            progress(start, total)
        for index, render in zip(range(start, total), _pose_renders(job, start, dwpose)):
            latent = sampler.denoise(pipe.pose_pixels(render, appearance))
            frame = _to_uint8(pipe.decode(latent[None])[0])
            commit_frame(writer, _label(frame) if job.random_weights else frame, sampler.state, job_settings)
            if progress is not None:
                progress(index + 1, total)
        if writer.frames_written < total:
            raise TalkingPoseError(
                f"The pose source ended after {writer.frames_written} of {total} frames; "
                f"the frames made so far are kept in {writer.partial_dir}."
            )
        return writer.finalize(audio_from=job.driving)
