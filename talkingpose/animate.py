"""The headless animate job: source image + driving video -> mp4, streamed one frame at a time.

Frames are decoded, posed, sampled, decoded and encoded one after another, so memory stays flat for any
length. Each finished frame is kept in `<out>.partial/` with the sampler state after it (see `render_output`);
after Ctrl-C, a kill, a crash or a full disk, `resume=True` continues from there and the output file is the
same, byte for byte, as an uninterrupted run's.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
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
    device: str = "auto"
    precision: str = "auto"
    fit: str = "stretch"
    channels_last: bool = False  # speed options of the denoising networks; results unchanged
    compile: bool = False
    weights_fp8: bool = False  # UNet weights stored in fp8: less memory, CHANGES the frames (opt-in)
    keypoints: Path | None = None  # POSE_KEYPOINT JSON track, used instead of a pose video or extraction
    alignment: str = "off"  # off, similarity (one scale + shift per video), retarget (every bone to the source's length)
    smooth: float = 0.0  # whole-track smoothing strength, 0 (off) to 1
    fps: float | None = None  # frame rate when no driving video gives one
    segment_frames: int = SEGMENT_FRAMES  # frames per encoded segment (every frame is kept at once anyway)
    lora: Path | None = None  # adapter file from `finetune`
    lora_strength: float = 1.0


# ------------------------------------------------------------------------------------------------ weights
def _first_folder_with(folder: Path, marker: str, prefer: str) -> Path | None:
    if not folder.is_dir():
        return None
    found = sorted(p.parent for p in folder.rglob(marker))
    preferred = [p for p in found if prefer in p.name]
    return (preferred or found or [None])[0]


def _file_or_none(path: Path) -> Path | None:
    return path if path.is_file() else None


def locate_weights(root: Path, model_name: str | None = None, need_dwpose: bool = False) -> dict:
    """TalkingPose model, VAE and image encoder folders under a ComfyUI-style models root (and the DWPose
    weights when poses are to be extracted); one error lists everything that is missing and where it goes."""
    from .checkpoints import list_models
    from .vae_clip import IMAGE_ENCODER_FILE, VAE_FILE

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
    # The single files ComfyUI's loaders and the workflows use (what `download` writes), else diffusers folders.
    vae = _file_or_none(root / "vae" / VAE_FILE) or _first_folder_with(root / "vae", "config.json", "sd-vae-ft-mse")
    if vae is None:
        missing.append(f"the VAE {VAE_FILE} (Hugging Face stabilityai/sd-vae-ft-mse-original) in {root / 'vae'}/")
    encoder = (_file_or_none(root / "clip_vision" / IMAGE_ENCODER_FILE)
               or _first_folder_with(root / "clip_vision", "config.json", "image"))
    if encoder is None:
        missing.append(f"the image encoder {IMAGE_ENCODER_FILE} (from Hugging Face lambdalabs/sd-image-variations-diffusers, "
                       f"image_encoder/; `download` converts it) in {root / 'clip_vision'}/")
    if need_dwpose:
        from .pose import find_dwpose_weights

        try:
            find_dwpose_weights([root / "dwpose"])
        except TalkingPoseError:
            missing.append(f"the DWPose weights yolox_l.onnx and dw-ll_ucoco_384.onnx (Hugging Face yzd-v/DWPose) in "
                           f"{root / 'dwpose'}/: `python cli.py download --what dwpose`")
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
            # 16-bit grey (older Pillow opens it as 32-bit mode "I"): Pillow's own RGB conversion would clip it to white
            if picture.mode == "I" or picture.mode.startswith("I;16"):
                grey = np.clip(np.asarray(picture, dtype=np.float32) / 257.0, 0, 255)
                picture = Image.fromarray(grey.round().astype(np.uint8), "L")
            return picture.copy()
    except UnidentifiedImageError:
        raise TalkingPoseError(f"The source {path} is not an image that can be read; use a {IMAGE_FORMATS} file.") from None
    except Image.DecompressionBombError:
        raise TalkingPoseError(f"The source {path} has too many pixels to decode safely; scale it down (a few "
                               "megapixels is plenty: it is resized to the output size).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise TalkingPoseError(f"The source {path} could not be decoded ({exc}); it may be damaged or cut short. "
                               f"Save it again as {IMAGE_FORMATS}.") from None


def _dwpose_root(job: AnimateJob, models_root: Path) -> Path:
    """The models root whose dwpose/ poses are extracted with: random models of the real files' signatures with
    --random-weights (a smoke run then covers extraction too), else the job's models root."""
    if job.random_weights:
        from .pose.random_models import random_models_root

        return random_models_root()
    return models_root


# ------------------------------------------------------------------------------------------------ frames
def _label(frame: np.ndarray) -> np.ndarray:
    import cv2

    scale = max(frame.shape[1] / 900, 0.35)
    cv2.putText(frame, SMOKE_LABEL, (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 0, 0), max(1, int(2 * scale)), cv2.LINE_AA)
    return frame


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    # The official script truncates ((x * 255).to(uint8)); so do we, for identical files.
    return np.ascontiguousarray((image.permute(1, 2, 0) * 255).to(torch.uint8).numpy())


def _uses_keypoints(job: AnimateJob) -> bool:
    return job.keypoints is not None or job.alignment != "off" or job.smooth != 0


def _keypoint_track(job: AnimateJob, models_root: Path) -> list:
    """The whole driving track as keypoints (the --keypoints file, or DWPose on the driving video: a few KB per
    frame), fitted to the source person and smoothed. Measured on the whole track before rendering starts, so a
    resumed run gets the same poses."""
    from .pose import from_pose_keypoints, load_pose_keypoints
    from .pose import PoseExtractor
    from .pose.track import extract_video_track, load_source_pose, process_track
    from .video_io import VideoReader

    extractor = None

    def get_extractor():
        nonlocal extractor
        extractor = extractor or PoseExtractor.from_folders([models_root / "dwpose"])
        return extractor

    if job.keypoints is not None:
        track = from_pose_keypoints(load_pose_keypoints(job.keypoints))
    else:
        track = extract_video_track(job.driving, get_extractor(), max_frames=job.frames)
    source = None
    if job.alignment != "off":
        if job.source is not None:
            source = load_source_pose(job.source, get_extractor)
        else:
            source = get_extractor()(next(iter(VideoReader(job.driving, max_frames=1))))
    poses, state = process_track(track, source=source, mode=job.alignment, strength=job.smooth,
                                 space=(job.width, job.height))
    if state.retarget is not None:
        log.info("Retargeted to the source: body size ratio %.3f%s", state.retarget.body_ratio,
                 "".join(f"; {note}" for note in state.retarget.notes))
    return poses


def _pose_renders(job: AnimateJob, start: int, models_root: Path, track=None):
    """Pose renders (RGB uint8) from the keypoint track, the pose video, or DWPose on the driving video, from
    frame `start`."""
    from .video_io import VideoReader

    if track is not None:
        from .pose import draw_pose

        for pose in track[start:]:
            yield draw_pose(pose)
        return
    if job.poses is not None:
        reader = VideoReader(job.poses, start=start)
        yield from reader
        return
    from .pose import PoseExtractor, draw_pose

    extractor = PoseExtractor.from_folders([models_root / "dwpose"])
    for pose in extractor.iter_extract(VideoReader(job.driving, start=start), start_index=start):
        yield draw_pose(pose)


def _load_source(job: AnimateJob):
    """The source picture (frame 0 of the driving video without one); an unreadable file gets a sentence."""
    from .video_io import VideoReader

    if job.source is None:
        with VideoReader(job.driving, max_frames=1) as first:
            return next(iter(first))
    return read_source(job.source)


def preflight(job: AnimateJob) -> None:
    """The checks of the headless command that need no network, before any is built or a pose extracted: the
    input files, the output (see `render_output.check_output`), the source picture, every weight file (DWPose's
    too), memory."""
    from . import memory, runtime
    from .render_output import check_output
    from .runtime import compute_dtype

    check_input_paths(job)
    check_frames(job.frames)
    images.check_output_size(job.width, job.height)
    check_output(job.out, job.resume, job.overwrite)
    if job.lora is not None:
        from .lora import FP8_REFUSAL, check_strength

        check_strength(job.lora_strength)
        if job.weights_fp8:
            raise TalkingPoseError(FP8_REFUSAL)
    if job.source is not None:
        _load_source(job)
    check_models_root(job.models_root)
    root = runtime.models_root(job.models_root)
    need_dwpose = job.poses is None and (job.keypoints is None or job.alignment != "off")
    if not job.random_weights:  # random weights bring random DWPose models (`_dwpose_root`)
        locate_weights(root, job.model_name, need_dwpose=need_dwpose)
    device = _device(job.device)
    memory.check_fits(job.width, job.height, device, compute_dtype(job.precision, device),
                      "tiny" if job.random_weights == "tiny" else "sd15")


def check_input_paths(job: AnimateJob) -> None:
    """The job names a pose input and every file it names exists: a mistyped path is the likeliest mistake, so
    it is reported before the weights or the memory are looked at."""
    if job.driving is None and job.poses is None and job.keypoints is None:
        raise TalkingPoseError("Give a driving video (--driving), a pose video (--poses) or a keypoint track "
                               "(--keypoints).")
    if job.poses is not None and _uses_keypoints(job):
        raise TalkingPoseError("--poses gives finished renders, which cannot be retargeted or smoothed: use "
                               "--keypoints, or let the poses be extracted from --driving.")
    for path, what in ((job.driving, "driving video"), (job.poses, "pose video"), (job.source, "source image"),
                       (job.keypoints, "keypoint track"), (job.lora, "LoRA file")):
        check_input_file(path, what)
    if job.source is None and job.driving is None:
        raise TalkingPoseError("Without a driving video, give the source image with --source.")


def check_inputs(job: AnimateJob) -> tuple[Fraction | float, int, list | None]:
    """Checks the job's inputs before any network is loaded: (fps, frames to render, keypoint track or None)."""
    from . import runtime
    from .video_io import VideoReader

    check_input_paths(job)
    check_frames(job.frames)
    images.check_output_size(job.width, job.height)
    root = runtime.models_root(job.models_root)
    track = _keypoint_track(job, _dwpose_root(job, root)) if _uses_keypoints(job) else None
    if job.driving is None and job.poses is None:
        fps, total = job.fps or 25, len(track)
    else:
        with VideoReader(job.driving or job.poses) as timing:
            fps, total = timing.fps, timing.frame_count
            irregular = timing.irregular_timing()
        if irregular:
            log.warning(irregular)
    if track is not None:
        total = min(total, len(track))
    if job.poses is not None and job.driving is not None:
        with VideoReader(job.poses) as poses:
            total = min(total, poses.frame_count)
    if job.frames is not None:
        total = min(total, job.frames)
    if total < 1:
        raise TalkingPoseError(f"{job.driving or job.poses} has no frames to animate.")
    return fps, total, track


def load_job_pipeline(scratch: Path, *, models_root=None, model_name=None, random_weights=None, device="auto",
                      precision="auto", channels_last=False, compile=False, weights_fp8=False):
    """The pipeline an animate job runs on (the arguments as in `AnimateJob`); random weights are written into
    `scratch`, which may be deleted once this returns."""
    from . import runtime
    from .pipeline import load_pipeline
    from .runtime import compute_dtype

    device = _device(device)
    dtype = compute_dtype(precision, device)
    if random_weights:
        from .random_weights import write_random_weights

        log.warning("SMOKE RUN: random %s weights; the video shows noise, labelled '%s'.", random_weights, SMOKE_LABEL)
        weights = write_random_weights(Path(scratch), random_weights)
    else:
        weights = locate_weights(runtime.models_root(models_root), model_name)
    return load_pipeline(weights["model"], weights["vae"], weights["image_encoder"], device=device, dtype=dtype,
                         channels_last=channels_last, compile=compile, weights_fp8=weights_fp8)


class JobRender:
    """One job opened on a loaded pipeline: its appearance, closed-loop sampler, pose source and segmented
    output. `run` drives one at a time; batch workers drive several through one batched sampler, giving each
    its row's sampler in `sampler` (the state stays the job's own).

    `next_pose()` -> the next frame's pose pixels, or None when every frame is made; `commit(latent)` decodes and
    writes that frame and saves the sampler state with it, so that after Ctrl-C or an error `resume` continues
    from the last frame made; `finish()` writes the final video. `inputs` is `check_inputs(job)` when the
    caller has it already.
    """

    def __init__(self, job: AnimateJob, pipe, inputs: tuple | None = None):
        from . import runtime
        from .render_output import resume_point
        from .segmented_writer import SegmentedVideoWriter

        self.job, self.pipe = job, pipe
        fps, self.total, track = inputs if inputs is not None else check_inputs(job)
        source = _load_source(job)
        self.appearance = pipe.encode_appearance(source, job.width, job.height, job.fit)
        self.settings_record = {
            "driving": str(job.driving), "poses": str(job.poses), "source": str(job.source), "size": f"{job.width}x{job.height}",
            "steps": job.settings.steps, "cfg": job.settings.cfg, "beta": job.settings.beta, "seed": job.settings.seed,
            "model": pipe.networks.fingerprint, "random_weights": job.random_weights or "", "fit": job.fit,
        }
        if track is not None:
            self.settings_record.update(keypoints=str(job.keypoints), alignment=job.alignment, smooth=job.smooth)
        self.writer = SegmentedVideoWriter(job.out, fps, (job.width, job.height), segment_frames=job.segment_frames,
                                           resume=job.resume)
        state = resume_point(self.writer, self.settings_record) if job.resume else None
        self.start = self.writer.frames_written
        if self.start:
            log.info("Resuming %s at frame %d of %d", job.out, self.start, self.total)
        self.sampler = pipe.sampler(self.appearance, job.settings, state)
        root = runtime.models_root(job.models_root)
        self._renders = zip(range(self.start, self.total), _pose_renders(job, self.start, _dwpose_root(job, root), track))

    @property
    def done(self) -> int:
        """Frames made so far (including those of an earlier, resumed run)."""
        return self.sampler.state.next_frame

    def next_pose(self) -> torch.Tensor | None:
        item = next(self._renders, None)
        return None if item is None else self.pipe.pose_pixels(item[1], self.appearance)

    def commit(self, latent: torch.Tensor, state=None) -> None:
        """Decodes the frame and keeps it, then the sampler state after it (`state`: the one the sampler had
        right after making this frame, when it has gone on since), both on the disk when this returns."""
        from .render_output import commit_frame

        frame = _to_uint8(self.pipe.decode(latent[None])[0])
        commit_frame(self.writer, _label(frame) if self.job.random_weights else frame,
                     self.sampler.state if state is None else state, self.settings_record)

    def finish(self) -> Path:
        if self.writer.frames_written < self.total:
            raise TalkingPoseError(
                f"The pose source ended after {self.sampler.state.next_frame} of {self.total} frames; "
                f"the frames made so far are kept in {self.writer.partial_dir}."
            )
        return self.writer.finalize(audio_from=self.job.driving)


def run(job: AnimateJob, progress=None, overlap: bool = True) -> Path:
    """Render the whole job; returns the output path. `progress(done, total)` is called once before the first
    frame (done = frames already kept) and after each frame is kept. `overlap`: make the next pose and keep the
    last frame beside the denoising (`render_frames`); False runs the same steps one after another."""
    preflight(job)
    inputs = check_inputs(job)
    with tempfile.TemporaryDirectory(prefix="talkingpose-random-") as scratch:
        pipe = load_job_pipeline(Path(scratch), models_root=job.models_root, model_name=job.model_name,
                                 random_weights=job.random_weights, device=job.device, precision=job.precision,
                                 channels_last=job.channels_last, compile=job.compile, weights_fp8=job.weights_fp8)
        if job.lora is not None:
            from .lora import apply_lora

            apply_lora(pipe.networks, job.lora, job.lora_strength)  # before the appearance: it runs the reference UNet
        render = JobRender(job, pipe, inputs)
        if progress is not None:
            progress(render.start, render.total)
        render_frames(render, progress, overlap)
        return render.finish()


def render_frames(render: JobRender, progress=None, overlap: bool = True) -> None:
    """Every remaining frame of `render`: pose, denoise, then decode, write and state. With `overlap` the pose
    of frame k+1 is made (one thread) and frame k-1 decoded and kept (another) while frame k is denoised; each
    thread keeps the serial order, so the frames and files are the serial loop's, bit for bit. After Ctrl-C or
    an error in the denoising, the frames already denoised are still kept; after an error in keeping a frame
    (a full disk, or `progress` raising), nothing after it is."""
    from .overlap import Ahead, InOrder

    def keep(latent, state):
        render.commit(latent, state)
        if progress is not None:
            progress(state.next_frame, render.total)

    if not overlap:
        while (pose := render.next_pose()) is not None:
            keep(render.sampler.denoise(pose), render.sampler.state)
        return
    poses, kept = Ahead(render.next_pose, name="talkingpose-pose"), InOrder(keep, name="talkingpose-keep")
    try:
        while (pose := poses.next()) is not None:
            latent = render.sampler.denoise(pose)
            kept.submit(latent, render.sampler.state)
    except BaseException:
        kept.close(raise_error=False)
        raise
    finally:
        poses.close()
    kept.close()
