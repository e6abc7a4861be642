"""The batch worker: a Ray actor that loads the networks once and renders jobs a frame at a time.

The driver calls `step(jobs)` again and again with the whole list of jobs it has given this worker (at most
K = videos per worker). Each call opens any job not open yet — continuing from its saved state when it has
one, exactly as `animate --resume` does — and makes one more frame of every open job: alone through the job's
own closed-loop sampler (bit-identical to `animate`), or together through one batched sampler when several are
open. A job whose last frame is made is finalized and leaves; the driver then gives its slot to the next job.

As in `animate` (`animate.render_frames`), the work around the denoising runs beside it: each job's poses are
made one frame ahead in a thread of its own (`overlap.Ahead`), and a call keeps (decodes, writes, saves the state
of) the frame each job got in the call before while it denoises the next one. So a call returns once the frames it
reports are on the disk, and holds the frame it just denoised until the next call: the frames, the files and the
states are those of the serial order, bit for bit.

Because the job list travels with every call, a worker holds nothing the driver cannot give again: when its
process dies, Ray starts a new one (`max_restarts`) and repeats the call (`max_task_retries`), which reopens the
jobs from their last kept frame and sampler state and makes the very frames the lost process would have (a frame
denoised but not yet kept is made again).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import durable
from ..errors import RunMismatch, TalkingPoseError
from ..overlap import Ahead
from .manifest import JobSpec, RenderOptions, animate_job

log = logging.getLogger("TalkingPose")

DONE_FOLDER = ".batch"  # inside the output folder: one record per finished job


def done_marker(out_dir: Path, out: str) -> Path:
    return Path(out_dir) / DONE_FOLDER / f"{out}.json"


def read_done_marker(out_dir: Path, spec: JobSpec) -> dict | None:
    path = done_marker(out_dir, spec.out)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_done_marker(out_dir: Path, spec: JobSpec, options: RenderOptions, model: str) -> None:
    path = done_marker(out_dir, spec.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    durable.write_text(path, json.dumps({"record": spec.record(options), "frames": spec.total, "model": model}, indent=1))


def _message(exc: BaseException) -> str:
    if isinstance(exc, TalkingPoseError):
        return str(exc)
    log.error("Unexpected error in a batch job", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _OpenJob:
    spec: JobSpec
    render: object  # animate.JobRender
    poses: Ahead  # the render's next poses, made ahead
    pending: tuple | None = None  # (latent, sampler state after it): denoised in the last call, kept in the next


class RenderWorker:
    """One worker (used as a Ray actor; see the module notes)."""

    def __init__(self, options: RenderOptions, out_dir: str):
        from ..animate import load_job_pipeline
        from ..console import make_streams_safe

        # Ray writes a worker's output to log files it opens as UTF-8, or, with RAY_LOG_TO_STDERR, to the raylet's
        # console in the machine's code page: nothing printed may end a job either way.
        make_streams_safe()
        self.options = options
        self.out_dir = Path(out_dir)
        with tempfile.TemporaryDirectory(prefix="talkingpose-random-") as scratch:
            self.pipe = load_job_pipeline(Path(scratch), models_root=options.models_root, model_name=options.model_name,
                                          random_weights=options.random_weights, device=options.device,
                                          precision=options.precision, weights_fp8=options.weights_fp8)
        self.identity = {"pid": os.getpid(), "host": socket.gethostname()}
        self._open: dict[str, _OpenJob] = {}  # out name -> the open job
        self._opened_at: dict = {}  # out name -> when this process opened it
        self._group: tuple = ()  # the renders sharing `_batched_sampler`
        self._batched_sampler = None
        # Keeps the frames one after another, beside the denoising; each job's result comes back on its own.
        self._keeper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="talkingpose-keep")

    def step(self, jobs: list[dict]) -> dict:
        """One more frame of each of `jobs` (JobSpec fields); returns this worker's identity and the events:
        `open` (start frame, total), `frame` (frames kept), `done` and `failed` (with its message). The frame
        denoised in this call is kept in the next (see the module notes); the frame denoised in the last call is
        kept during this one's denoising, and a job whose poses ended is finished once its last frame is kept."""
        events = []
        for job in jobs:
            if job["out"] not in self._open:
                self._start(JobSpec(**job), events)
        poses, pose_errors = {}, {}
        for out, job in self._open.items():
            try:
                poses[out] = job.poses.next()
            except Exception as exc:
                pose_errors[out] = exc
        # The frames of the last call are kept while this call's are denoised; an error in the denoising leaves
        # them kept all the same.
        keeping = {out: self._keeper.submit(job.render.commit, *job.pending)
                   for out, job in self._open.items() if job.pending is not None}
        ready = [(out, self._open[out].render, pose) for out, pose in poses.items() if pose is not None]
        made, error = {}, None
        try:
            if ready:
                made = self._denoise(ready)
        except Exception as exc:  # e.g. out of GPU memory: every job of this frame stops, each keeps its frames
            error = exc
        finally:
            kept = {out: future.exception() for out, future in keeping.items()}  # waits for every frame
        for out, error_keeping in kept.items():  # the frames kept first, then what ended
            if error_keeping is None:
                events.append({"out": out, "kind": "frame", "done": self._open[out].pending[1].next_frame})
                self._open[out].pending = None
        for out, job in list(self._open.items()):
            if kept.get(out) is not None:
                self._fail(out, kept[out], events)
                continue
            try:
                if out in pose_errors:
                    raise pose_errors[out]
                if out in made:
                    job.pending = made[out]
                elif poses[out] is not None:  # its frame was in the denoising that failed
                    raise error
                else:  # the poses ended and the last frame is kept
                    job.render.finish()
                    _write_done_marker(self.out_dir, job.spec, self.options, self.pipe.networks.fingerprint)
                    self._close(out)
                    events.append({"out": out, "kind": "done", "frames": job.render.done, "seconds": self._seconds(out)})
            except Exception as exc:
                self._fail(out, exc, events)
        return {"worker": self.identity, "events": events}

    def _start(self, spec: JobSpec, events: list) -> None:
        from ..animate import JobRender

        marker = read_done_marker(self.out_dir, spec)
        if marker is not None and marker.get("record") == spec.record(self.options) and (self.out_dir / spec.out).is_file():
            events.append({"out": spec.out, "kind": "done", "frames": marker.get("frames")})  # a repeated call after it ended
            return
        job = animate_job(spec, self.options, self.out_dir)
        try:
            job.out.parent.mkdir(parents=True, exist_ok=True)
            render = JobRender(job, self.pipe)
        except Exception as exc:
            partial = job.out.with_name(job.out.name + ".partial")
            message = _message(exc)
            if isinstance(exc, RunMismatch):
                message = (f"its unfinished render in {partial} was made with other inputs or settings ({message}). "
                           f"Delete that folder to render this job from the start, or run with the earlier settings.")
            events.append({"out": spec.out, "kind": "failed", "message": message})
            return
        self._open[spec.out] = _OpenJob(spec, render, Ahead(render.next_pose, name=f"talkingpose-pose-{spec.out}"))
        self._opened_at[spec.out] = time.monotonic()
        events.append({"out": spec.out, "kind": "open", "start": render.start, "total": render.total})

    def _fail(self, out: str, exc: BaseException, events: list) -> None:
        # Nothing to save here: every frame reported was committed to the disk with its sampler state
        # (`JobRender.commit`), so a rerun resumes after the last one.
        self._close(out)
        events.append({"out": out, "kind": "failed", "message": _message(exc), "seconds": self._seconds(out)})

    def _close(self, out: str) -> None:
        self._open.pop(out).poses.close()

    def _seconds(self, out: str) -> float | None:
        """Wall time from opening the job in this process to now (with K > 1, shared with the others)."""
        opened = self._opened_at.pop(out, None)
        return None if opened is None else time.monotonic() - opened

    def _denoise(self, ready: list) -> dict:
        """The next frame of each ready job (out, render, pose): {out: (latent, sampler state after it)}."""
        import torch

        renders = [render for _, render, _ in ready]
        if len(ready) == 1:
            latents = [renders[0].sampler.denoise(ready[0][2])]
        else:
            latents = self._batched(renders).denoise(torch.cat([pose for _, _, pose in ready]))
        return {out: (latent, render.sampler.state) for (out, render, _), latent in zip(ready, latents)}

    def _batched(self, renders: list):
        """The batched sampler of these renders; rebuilt (each video continuing from its own state) only when
        the group changes, e.g. when a finished video's slot goes to a new one."""
        from ..sampler import BatchedClosedLoopSampler

        if len(renders) != len(self._group) or any(a is not b for a, b in zip(renders, self._group)):
            batched = BatchedClosedLoopSampler(
                self.pipe.networks, [r.appearance for r in renders], [r.sampler.settings for r in renders],
                states=[r.sampler.state for r in renders])
            for render, sampler in zip(renders, batched.samplers):
                render.sampler = sampler
            self._group, self._batched_sampler = tuple(renders), batched
        return self._batched_sampler
