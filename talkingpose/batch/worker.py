"""The batch worker: a Ray actor that loads the networks once and renders jobs a frame at a time.

The driver calls `step(jobs)` again and again with the whole list of jobs it has given this worker (at most
K = videos per worker). Each call opens any job not open yet — continuing from its saved state when it has
one, exactly as `animate --resume` does — and makes one more frame of every open job: alone through the job's
own closed-loop sampler (bit-identical to `animate`), or together through one batched sampler when several are
open. A job whose last frame is made is finalized and leaves; the driver then gives its slot to the next job.

Because the job list travels with every call, a worker holds nothing the driver cannot give again: when its
process dies, Ray starts a new one (`max_restarts`) and repeats the call (`max_task_retries`), which reopens the
jobs from their last kept frame and sampler state and makes the very frames the lost process would have.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from .. import durable
from ..errors import RunMismatch, TalkingPoseError
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
        self._open: dict = {}  # out name -> (JobSpec, JobRender)
        self._opened_at: dict = {}  # out name -> when this process opened it
        self._group: tuple = ()  # the renders sharing `_batched_sampler`
        self._batched_sampler = None

    def step(self, jobs: list[dict]) -> dict:
        """One more frame of each of `jobs` (JobSpec fields); returns this worker's identity and the events:
        `open` (start frame, total), `frame` (frames done), `done` and `failed` (with its message)."""
        events = []
        for job in jobs:
            if job["out"] not in self._open:
                self._start(JobSpec(**job), events)
        ready = []
        for out, (spec, render) in list(self._open.items()):
            try:
                pose = render.next_pose()
                if pose is None:
                    render.finish()
                    _write_done_marker(self.out_dir, spec, self.options, self.pipe.networks.fingerprint)
                    del self._open[out]
                    events.append({"out": out, "kind": "done", "frames": render.done, "seconds": self._seconds(out)})
                else:
                    ready.append((out, render, pose))
            except Exception as exc:
                self._fail(out, exc, events)
        if ready:
            self._advance(ready, events)
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
        self._open[spec.out] = (spec, render)
        self._opened_at[spec.out] = time.monotonic()
        events.append({"out": spec.out, "kind": "open", "start": render.start, "total": render.total})

    def _fail(self, out: str, exc: BaseException, events: list) -> None:
        # Nothing to save here: every finished frame and its sampler state were committed to the disk as they
        # were made (`JobRender.commit`), so a rerun resumes after the last one.
        self._open.pop(out)
        events.append({"out": out, "kind": "failed", "message": _message(exc), "seconds": self._seconds(out)})

    def _seconds(self, out: str) -> float | None:
        """Wall time from opening the job in this process to now (with K > 1, shared with the others)."""
        opened = self._opened_at.pop(out, None)
        return None if opened is None else time.monotonic() - opened

    def _advance(self, ready: list, events: list) -> None:
        import torch

        renders = [render for _, render, _ in ready]
        try:
            if len(ready) == 1:
                latents = [renders[0].sampler.denoise(ready[0][2])]
            else:
                latents = self._batched(renders).denoise(torch.cat([pose for _, _, pose in ready]))
        except Exception as exc:  # e.g. out of GPU memory: every job of this frame stops, each keeps its frames
            for out, _, _ in ready:
                self._fail(out, exc, events)
            return
        for (out, render, _), latent in zip(ready, latents):
            try:
                render.commit(latent)
                events.append({"out": out, "kind": "frame", "done": render.done})
            except Exception as exc:
                self._fail(out, exc, events)

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
