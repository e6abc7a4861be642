"""The headless fine-tuning job: a person's clip (+ poses) -> LoRA adapter file, resumable."""
from __future__ import annotations

import errno
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..errors import TalkingPoseError
from .data import PipelineEncoders, PoseInput, build_clip_cache
from .trainer import FinetuneResult, FinetuneSettings, LoraTrainer

log = logging.getLogger("TalkingPose")

PEOPLE_CHECK_EVERY = 10  # with DWPose extraction, count the detector's people on every 10th frame

# progress(phase, done, total, loss): phase "encode" (frames) or "train" (steps; loss of the step)
Progress = Callable[[str, int, int, "float | None"], None]


@dataclass
class FinetuneJob:
    video: Path
    out: Path
    poses: Path | None = None  # a DWPose render video of the clip
    keypoints: Path | None = None  # a POSE_KEYPOINT JSON track of the clip
    settings: FinetuneSettings = field(default_factory=FinetuneSettings)
    resume: bool = False
    overwrite: bool = False  # replace an existing file at `out`
    models_root: Path | None = None
    model_name: str | None = None
    random_weights: str | None = None  # preset: fine-tune random weights of the real architecture (smoke run)
    device: str = "auto"
    precision: str = "auto"


def checkpoint_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".checkpoint.pt")


@dataclass(frozen=True)
class Controls:
    """How the user asks for each thing, in the words of the caller (the command's options, a node's widgets)."""

    out: str = "--out"
    overwrite: str = "add --overwrite"
    resume: str = "continue with the same command plus --resume"


COMMAND_LINE = Controls()


def check_output(out: Path, resume: bool, overwrite: bool, start_over: bool = False,
                 controls: Controls = COMMAND_LINE) -> None:
    """Before any work: the adapter file must end in .safetensors and replaces an existing file (or link) only
    with `overwrite`; a checkpoint of an interrupted run is continued with `resume`, deleted with `start_over`
    (the node's resume off), and otherwise refused, so a run never discards finished steps unasked."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise TalkingPoseError(f"The adapter file {out} must end in .safetensors.")
    if out.is_dir():
        raise TalkingPoseError(f"{out} is a folder; give the adapter's file name, e.g. {out / 'person.safetensors'}.")
    if os.path.lexists(out) and not overwrite:
        raise TalkingPoseError(f"{out} already exists; choose another {controls.out}, or {controls.overwrite} to "
                               "replace it.")
    checkpoint = checkpoint_path(out)
    if checkpoint.is_file() and not resume:
        if not start_over:
            raise TalkingPoseError(
                f"A checkpoint of an interrupted run is at {checkpoint}. Add --resume to continue it, or delete it to start over."
            )
        checkpoint.unlink()


def train_to_file(trainer: LoraTrainer, out: Path, resume: bool, overwrite: bool,
                  on_step: Callable[[int, int, float], None] | None = None,
                  on_resumed: Callable[[int], None] | None = None, controls: Controls = COMMAND_LINE) -> FinetuneResult:
    """The resume/save sequence of every caller (`finetune`, Train TalkingPose LoRA): continue the checkpoint
    next to `out` when resuming, train (checkpoints on the way), write the adapter, then drop the checkpoint. When
    the adapter cannot be written (a full disk, say), the finished training goes into the checkpoint instead, so
    that resuming only writes the file; the sentence says what was kept."""
    out = Path(out)
    checkpoint = checkpoint_path(out)
    if resume and checkpoint.is_file():
        trainer.load_checkpoint(checkpoint)
        log.info("Resuming %s at step %d of %d.", out, trainer.step, trainer.settings.steps)
        if on_resumed is not None:
            on_resumed(trainer.step)
    result = trainer.train(checkpoint, on_step)
    try:
        result.adapter.save(out, replace=overwrite)
    except OSError as exc:
        reason = f"{out} appeared meanwhile" if isinstance(exc, FileExistsError) else (exc.strerror or str(exc))
        try:
            trainer.save_checkpoint(checkpoint, trainer.generator.get_state())
        except TalkingPoseError as second:
            raise TalkingPoseError(f"Could not write the adapter {out} ({reason}), nor a checkpoint of the finished "
                                   f"training: {second}") from exc
        fix = "free some disk space" if exc.errno == errno.ENOSPC else (
            f"move it away (or {controls.overwrite})" if isinstance(exc, FileExistsError) else "fix that")
        raise TalkingPoseError(
            f"Could not write the adapter {out} ({reason}); nothing of it is left on the disk. The finished training "
            f"(step {trainer.step}) is kept in {checkpoint}: {fix} and {controls.resume}, which only writes the file."
        ) from exc
    checkpoint.unlink(missing_ok=True)
    return result


def _pose_inputs(job: FinetuneJob, models_root: Path) -> Iterator[PoseInput]:
    from ..video_io import VideoReader

    if job.poses is not None:
        for render in VideoReader(job.poses):
            yield PoseInput(render)
        return
    from ..pose import draw_pose, from_pose_keypoint

    if job.keypoints is not None:
        from ..pose import load_pose_keypoints

        for i, frame in enumerate(load_pose_keypoints(job.keypoints)):
            pose = from_pose_keypoint(frame, f"{job.keypoints.name}, frame {i}")
            yield PoseInput(None if pose.is_empty else draw_pose(pose), len(frame.get("people") or []))
        return
    from ..pose import PoseExtractor

    if job.random_weights:  # a smoke run extracts with random DWPose models of the real files' signatures
        from ..pose.random_models import random_models_root

        models_root = random_models_root()
    try:
        extractor = PoseExtractor.from_folders([models_root / "dwpose"])
    except TalkingPoseError as exc:
        raise TalkingPoseError(f"{exc} Or give the clip's poses with --poses (a DWPose render video) or --keypoints.") from None
    for i, frame in enumerate(VideoReader(job.video, max_frames=job.settings.frames)):
        pose = extractor(frame)
        people = len(extractor.detect(extractor.prepare(frame))) if i % PEOPLE_CHECK_EVERY == 0 else None
        yield PoseInput(None if pose.is_empty else draw_pose(pose), people)


def run(job: FinetuneJob, progress: Progress | None = None) -> FinetuneResult:
    """Fine-tune and write the adapter to `job.out`; returns the result (losses, fixed-batch loss before/after)."""
    from ..animate import _device, locate_weights
    from ..pipeline import load_pipeline
    from ..runtime import compute_dtype, models_root
    from ..video_io import VideoReader

    settings = job.settings
    for path, what in ((job.video, "video"), (job.poses, "pose video"), (job.keypoints, "keypoint file")):
        if path is not None and not Path(path).is_file():
            raise TalkingPoseError(f"The {what} {path} does not exist.")
    if job.poses is not None and job.keypoints is not None:
        raise TalkingPoseError("Give the poses either as a render video (--poses) or as keypoints (--keypoints), not both.")
    check_output(job.out, job.resume, job.overwrite)
    root = models_root(job.models_root)
    with VideoReader(job.video) as reader:
        fps, frame_count = reader.fps, reader.frame_count
    device = _device(job.device)
    dtype = compute_dtype(job.precision, device)

    with tempfile.TemporaryDirectory(prefix="talkingpose-random-") as scratch:
        if job.random_weights:
            from ..random_weights import write_random_weights

            log.warning("SMOKE RUN: fine-tuning random %s weights; the adapter only fits those.", job.random_weights)
            weights = write_random_weights(Path(scratch), job.random_weights)
        else:
            weights = locate_weights(root, job.model_name)
        pipe = load_pipeline(weights["model"], weights["vae"], weights["image_encoder"], device=device, dtype=dtype)
        networks = pipe.networks

        frames_total = min(frame_count, settings.frames or frame_count)
        encoded = build_clip_cache(
            VideoReader(job.video), _pose_inputs(job, root), PipelineEncoders(pipe.vae, pipe.image_encoder),
            settings.width, settings.height, crops=settings.crops, seed=settings.seed, max_frames=settings.frames,
            progress=None if progress is None else (lambda done: progress("encode", done, frames_total, None)),
        )
        if encoded.skipped_nobody:
            log.warning("Skipped %d of %d frames where nobody was detected.", encoded.skipped_nobody, encoded.frames_read)
        del pipe  # the VAE and image encoder are done; free their memory for training
        clip_info = {"video": Path(job.video).name, "fps": float(fps), "seconds": encoded.frames_read / float(fps),
                     "random_weights": job.random_weights or ""}
        trainer = LoraTrainer(networks, encoded, settings, clip_info=clip_info)
        return train_to_file(
            trainer, job.out, job.resume, job.overwrite,
            None if progress is None else (lambda step, steps, loss: progress("train", step, steps, loss)),
        )

