"""The headless animate job: source image + driving video → mp4, streamed one frame at a time.

Frames are decoded, posed, sampled, decoded and encoded one after another, so memory stays flat for any
length. Finished frames go into closed segments in `<out>.partial/` together with the sampler state at each
segment boundary; after Ctrl-C or a crash, `resume=True` continues from there and makes the same frames an
uninterrupted run would have made.
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
from .sampler import SamplerSettings, SamplerState

log = logging.getLogger("TalkingPose")

SEGMENT_FRAMES = 16
STATE_PREFIX = "state-"
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


def locate_weights(root: Path, model_name: str | None = None) -> dict[str, Path]:
    """TalkingPose model, VAE and image encoder folders under a ComfyUI-style models root; one error lists
    everything that is missing and where it goes."""
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
    if missing:
        raise TalkingPoseError(
            "Missing weights:\n  - " + "\n  - ".join(missing)
            + "\nRun `python cli.py download` to fetch them, or add --random-weights for a smoke run without them."
        )
    return {"model": model, "vae": vae, "image_encoder": encoder}


def _device(name: str):
    from .runtime import default_device

    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TalkingPoseError(f"--device {name!r} is not a device PyTorch knows; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        found = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA (a CPU build, or no driver)"
        raise TalkingPoseError(f"--device {name}: this PyTorch sees {found}. Use --device cpu, or auto to pick what is there.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TalkingPoseError(f"--device {name}: Apple's MPS is not available here. Use --device cpu, or auto.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise TalkingPoseError(f"--device {name}: only cpu, cuda and mps are supported.")
    return device


def _dtype(precision: str, device):
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


# ------------------------------------------------------------------------------------------------ inputs
# One check per kind of input, all run before any network is built, so a mistake costs seconds, not a model load.
def check_input_file(path: Path | None, what: str) -> None:
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise TalkingPoseError(f"The {what} {path} is a folder; give a file.")
    if not path.is_file():
        raise TalkingPoseError(f"Input file {path} does not exist (the {what}).")


def check_frames(frames: int | None) -> None:
    if frames is not None and frames < 1:
        raise TalkingPoseError(f"--frames must be at least 1 (got {frames}); leave it out to animate the whole video.")


def check_models_root(root: Path | None) -> None:
    """A models root that is a file is a mistake; one that does not exist yet gets the list of missing weights."""
    if root is not None and Path(root).exists() and not Path(root).is_dir():
        raise TalkingPoseError(f"The models folder {root} (--models) is a file; give the folder that holds (or will "
                               "hold) talkingpose/, vae/, clip_vision/ and dwpose/.")


IMAGE_FORMATS = "PNG, JPEG, WebP, BMP, TIFF or GIF"


def read_source(path: Path):
    """The source picture, decoded now (not after the networks are loaded); alpha is flattened later by
    `images.flatten_onto_white`, the same step the ComfyUI node takes."""
    from PIL import Image, UnidentifiedImageError

    check_input_file(path, "source image")
    try:
        with Image.open(path) as picture:
            picture.load()
            if picture.mode.startswith("I;16"):  # 16-bit grey: Pillow's own RGB conversion would clip it to white
                picture = Image.fromarray((np.asarray(picture, dtype=np.float32) / 257.0).round().astype(np.uint8), "L")
            return picture.copy()
    except UnidentifiedImageError:
        raise TalkingPoseError(f"The source {path} is not an image that can be read; use a {IMAGE_FORMATS} file.") from None
    except Image.DecompressionBombError:
        raise TalkingPoseError(f"The source {path} has too many pixels to decode safely; scale it down (a few "
                               "megapixels is plenty: it is resized to the output size).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise TalkingPoseError(f"The source {path} could not be decoded ({exc}); it may be damaged or cut short. "
                               f"Save it again as {IMAGE_FORMATS}.") from None


def _dwpose_weights(job: AnimateJob, models_root: Path, scratch: Path):
    """The DWPose models to extract poses with: none with --poses, random ones with --random-weights."""
    if job.poses is not None:
        return None
    if job.random_weights:
        from .pose.random_models import write_random_dwpose

        return write_random_dwpose(scratch / "dwpose")
    from .pose import find_dwpose_weights

    return find_dwpose_weights([models_root / "dwpose"])


# ------------------------------------------------------------------------------------------------ state files
def _state_path(partial: Path, frames: int) -> Path:
    return partial / f"{STATE_PREFIX}{frames:07d}.safetensors"


def _save_state(partial: Path, state: SamplerState, job_settings: dict) -> None:
    state.extra = dict(job_settings)
    state.save(_state_path(partial, state.next_frame))
    # Keep the newest two: the newest may belong to a segment that a crash left unfinished.
    for old in sorted(partial.glob(f"{STATE_PREFIX}*.safetensors"))[:-2]:
        old.unlink()


def _resume_state(partial: Path, frames_committed: int, job_settings: dict) -> SamplerState | None:
    if frames_committed == 0:
        return None
    path = _state_path(partial, frames_committed)
    if not path.is_file():
        raise TalkingPoseError(
            f"{partial} holds {frames_committed} finished frames but no sampler state for that frame; "
            "it cannot be resumed exactly. Run again without --resume."
        )
    state = SamplerState.load(path)
    differs = [f"{k}: {state.extra.get(k)!r} before, {v!r} now" for k, v in job_settings.items() if state.extra.get(k) != v]
    if differs:
        raise TalkingPoseError("Cannot resume: the run differs from the interrupted one (" + "; ".join(differs)
                               + "). Use the same options, or run without --resume.")
    return state


# ------------------------------------------------------------------------------------------------ frames
def _label(frame: np.ndarray) -> np.ndarray:
    import cv2

    scale = max(frame.shape[1] / 900, 0.35)
    cv2.putText(frame, SMOKE_LABEL, (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 0, 0), max(1, int(2 * scale)), cv2.LINE_AA)
    return frame


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    # The official script truncates ((x * 255).to(uint8)); so do we, for identical files.
    return np.ascontiguousarray((image.permute(1, 2, 0) * 255).to(torch.uint8).numpy())


def _pose_renders(job: AnimateJob, start: int, dwpose):
    """Pose renders (RGB uint8) from the pose video, or DWPose on the driving video, from frame `start`."""
    from .video_io import VideoReader

    if job.poses is not None:
        reader = VideoReader(job.poses, start=start)
        yield from reader
        return
    from .pose import draw_pose
    from .pose.extractor import PoseExtractor

    extractor = PoseExtractor(dwpose.detector, dwpose.pose)
    for pose in extractor.iter_extract(VideoReader(job.driving, start=start), start_index=start):
        yield draw_pose(pose)


def run(job: AnimateJob, progress=None) -> Path:
    """Render the whole job; returns the output path. `progress(done, total)` is called after each frame."""
    from .pipeline import load_pipeline
    from .runtime import models_root as default_root
    from .video_io import SegmentedVideoWriter, VideoReader

    if job.driving is None and job.poses is None:
        raise TalkingPoseError("Give a driving video (--driving) or a pose video (--poses).")
    check_input_file(job.driving, "driving video")
    check_input_file(job.poses, "pose video")
    if job.source is None and job.driving is None:
        raise TalkingPoseError("Without a driving video, give the source image with --source.")
    check_frames(job.frames)
    images.check_output_size(job.width, job.height)
    check_models_root(job.models_root)
    root = Path(job.models_root) if job.models_root else default_root()
    device = _device(job.device)
    source = read_source(job.source) if job.source is not None else None
    with VideoReader(job.driving or job.poses) as timing:
        fps, total = timing.fps, timing.frame_count
    if job.poses is not None and job.driving is not None:
        with VideoReader(job.poses) as poses:
            total = min(total, poses.frame_count)
    if job.frames is not None:
        total = min(total, job.frames)
    if total < 1:
        raise TalkingPoseError(f"{job.driving or job.poses} has no frames to animate.")

    dtype = _dtype(job.precision, device)
    with tempfile.TemporaryDirectory(prefix="talkingpose-random-") as scratch:
        if job.random_weights:
            from .random_weights import write_random_weights

            log.warning("SMOKE RUN: random %s weights%s; the video shows noise, labelled '%s'.", job.random_weights,
                        "" if job.poses else " (random DWPose models too)", SMOKE_LABEL)
            dwpose = _dwpose_weights(job, root, Path(scratch))
            weights = write_random_weights(Path(scratch), job.random_weights)
        else:
            missing = []  # every missing file in one message
            try:
                weights = locate_weights(root, job.model_name)
            except TalkingPoseError as exc:
                missing.append(str(exc))
            try:
                dwpose = _dwpose_weights(job, root, Path(scratch))
            except TalkingPoseError as exc:
                missing.append(str(exc))
            if missing:
                raise TalkingPoseError("\n".join(missing))
        pipe = load_pipeline(weights["model"], weights["vae"], weights["image_encoder"], device=device, dtype=dtype)

        if source is None:
            source = next(iter(VideoReader(job.driving, max_frames=1)))
        appearance = pipe.encode_appearance(source, job.width, job.height, job.fit)

        job_settings = {
            "driving": str(job.driving), "poses": str(job.poses), "source": str(job.source), "size": f"{job.width}x{job.height}",
            "steps": job.settings.steps, "cfg": job.settings.cfg, "beta": job.settings.beta, "seed": job.settings.seed,
            "model": pipe.networks.fingerprint, "random_weights": job.random_weights or "", "fit": job.fit,
        }
        writer = SegmentedVideoWriter(job.out, fps, (job.width, job.height), segment_frames=SEGMENT_FRAMES, resume=job.resume)
        start = writer.frames_committed
        state = _resume_state(writer.partial_dir, start, job_settings) if job.resume else None
        if start:
            log.info("Resuming %s at frame %d of %d", job.out, start, total)
        sampler = pipe.sampler(appearance, job.settings, state)
        committed = start
        try:
            for index, render in zip(range(start, total), _pose_renders(job, start, dwpose)):
                latent = sampler.denoise(pipe.pose_pixels(render, appearance))
                frame = _to_uint8(pipe.decode(latent[None])[0])
                writer.write(_label(frame) if job.random_weights else frame)
                if writer.frames_committed != committed:
                    committed = writer.frames_committed
                    _save_state(writer.partial_dir, sampler.state, job_settings)
                if progress is not None:
                    progress(index + 1, total)
        except BaseException:
            # Ctrl-C or any error: keep every finished frame and the matching state for --resume.
            writer.close_segment()
            if writer.frames_committed and writer.frames_committed == sampler.state.next_frame:
                _save_state(writer.partial_dir, sampler.state, job_settings)
            raise
        if sampler.state.next_frame < total:
            writer.close_segment()
            _save_state(writer.partial_dir, sampler.state, job_settings)
            raise TalkingPoseError(
                f"The pose source ended after {sampler.state.next_frame} of {total} frames; "
                f"the frames made so far are kept in {writer.partial_dir}."
            )
        return writer.finalize(audio_from=job.driving)
