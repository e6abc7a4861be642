"""The batch driver: validates the job list, starts the Ray workers, hands out jobs and gathers the summary.

The driver holds job descriptions and counters only — frames are decoded, posed, sampled and encoded on the
workers — so its memory does not depend on how many jobs or frames there are. Ray does the rest: it places the
workers on this machine or a cluster, restarts a worker whose process died and repeats the call it was in
(`max_restarts`, `max_task_retries`); the job's saved state makes that repetition continue where the job was.
"""
from __future__ import annotations

import json
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import durable
from .. import file_names
from ..errors import TalkingPoseError
from .manifest import JobSpec, RenderOptions, load_manifest
from .worker import DONE_FOLDER, RenderWorker, done_marker, read_done_marker

INSTALL_HINT = ("pip install -c constraints.txt 'ray[default]' (or, in the pack's folder, "
                "pip install -c constraints.txt -e '.[batch]')")


def import_ray():
    try:
        import ray
    except ImportError:
        raise TalkingPoseError(f"The batch and evaluate commands run on Ray, which is not installed here. Install it with: "
                               f"{INSTALL_HINT}") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray itself keeps retrying an address that does not answer for minutes; a plain connection says it at once."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise TalkingPoseError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT or auto.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise TalkingPoseError(
            f"No Ray cluster answers at {address} ({exc.strerror or exc}). Start one with `ray start --head` on the head "
            f"machine (it prints the address to use, port 6379 by default), check the host and port, or leave "
            f"--ray-address out to run on this machine only."
        ) from None


def init_ray(address: str | None = None, **kwargs):
    """Start Ray in this process (address None: a local Ray on this machine) or join a running cluster, with the
    engine's own code shipped to the workers, so the cluster runs exactly this version of it."""
    ray = import_ray()
    if address:
        _check_reachable(address)
    package = Path(__file__).resolve().parent.parent
    runtime_env = {"py_modules": [str(package)], "env_vars": {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}}
    try:
        ray.init(address=address or None, runtime_env=runtime_env, include_dashboard=False if not address else None,
                 logging_level="WARNING", **kwargs)
    except ConnectionError as exc:
        raise TalkingPoseError(f"Could not join the Ray cluster at {address}: {exc} Start one with `ray start --head`, "
                               "or leave --ray-address out to run on this machine only.") from None
    return ray


@contextmanager
def ray_session(address: str | None = None):
    """Ray for one command: an already running Ray in this process is used as it is (and left running)."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    init_ray(address)
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass
class JobResult:
    job: str  # the `out` name
    line: int
    status: str  # done, skipped (finished by an earlier run), failed, unfinished (the run was stopped)
    frames: int = 0
    seconds: float | None = None
    message: str = ""
    resumed_at: list[int] = field(default_factory=list)  # frames a render continued from saved state
    worker: str = ""

    @property
    def seconds_per_frame(self) -> float | None:
        return self.seconds / self.frames if self.seconds and self.frames else None

    def as_dict(self) -> dict:
        return {**asdict(self), "s_per_frame": self.seconds_per_frame}


class Listener:
    """What the batch tells its caller while it runs (the command line draws a progress bar from it)."""

    def started(self, frames: int, jobs: int, workers: int) -> None: ...

    def advanced(self, frames: int) -> None: ...

    def resumed(self, frames: int) -> None:
        """`frames` of the total were already made by an earlier run."""

    def finished(self, result: JobResult) -> None: ...

    def event(self, event: dict, worker: dict) -> None:
        """Every event of a worker, as it arrives."""

    def checking(self, rows: int, total: int) -> None:
        """`rows` of the job list's `total` rows are checked (after each row; checking opens the row's files)."""

    def summary_written(self, path: Path) -> None:
        """The run's summary is at `path` (not called when the run stopped before it was written)."""


@dataclass
class BatchOptions:
    workers: int | None = None  # default: one per GPU of the cluster, else one
    gpus_per_worker: float | None = None  # default: 1 when the cluster has GPUs, else 0
    cpus_per_worker: float | None = None  # default: all of this machine's cores for a CPU worker, else 1
    videos_per_worker: int = 1
    retries: int = 3  # worker restarts and repeated calls after a worker process died


def _prepare_output(out_dir: Path) -> None:
    if (out_dir / DONE_FOLDER).is_symlink():
        raise TalkingPoseError(f"{out_dir / DONE_FOLDER} is a link; the batch keeps its records inside the output "
                               "folder only. Remove the link, or choose another --out-dir.")
    try:
        (out_dir / DONE_FOLDER).mkdir(parents=True, exist_ok=True)
        durable.temporary_sibling(out_dir / DONE_FOLDER / "write-test").unlink()  # created exclusively: no link followed
    except OSError as exc:
        raise TalkingPoseError(f"Cannot write to the output folder {out_dir} ({exc.strerror or exc}). "
                               "Choose a folder you can write to with --out-dir.") from None


def _earlier_output(out_dir: Path, spec: JobSpec, options: RenderOptions) -> JobResult | None:
    """A job finished by an earlier run is skipped; an output it would overwrite is never touched."""
    out = out_dir / spec.out
    blocked = _blocked_folder(out_dir, spec.out) or _blocked_folder(out_dir / DONE_FOLDER, spec.out)
    if blocked is not None:
        return JobResult(spec.out, spec.line, "failed", message=blocked)
    marker = read_done_marker(out_dir, spec)
    if marker is not None and out.is_file():
        if marker.get("record") == spec.record(options):
            return JobResult(spec.out, spec.line, "skipped", frames=int(marker.get("frames") or 0),
                             message="finished by an earlier run")
        before = marker.get("record") or {}
        differs = ", ".join(f"{k} {before.get(k)!r} then, {v!r} now" for k, v in spec.record(options).items() if before.get(k) != v)
        return JobResult(spec.out, spec.line, "failed", message=(
            f"{out} was rendered earlier with other inputs or settings ({differs}). Delete it and "
            f"{done_marker(out_dir, spec.out)} to render it again, or give this job another out name."))
    if out.exists():
        return JobResult(spec.out, spec.line, "failed", message=(
            f"{out} already exists and was not made by a batch run; it is left as it is. Move it away or give this "
            "job another out name."))
    return None


def _blocked_folder(out_dir: Path, out: str) -> str | None:
    """Why the folders of `out` inside `out_dir` cannot hold it (a link leading elsewhere, a file in the way), or
    None. Checked before any frame is made: a job whose folder is another file would otherwise render every frame
    and fail only when it saves them."""
    folder = out_dir
    for part in Path(out).parent.parts:
        folder = folder / part
        if folder.is_symlink():
            return (f"{folder} is a link; outputs stay inside the output folder. Remove the link, or give this job "
                    "another out name.")
        if folder.exists() and not folder.is_dir():
            return (f"{folder} is a file, so it cannot be the folder of {out}. Give this job another out name.")
    return None


def _plan_workers(ray, options: BatchOptions, jobs: int) -> tuple[int, float, float]:
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    node_cpus = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=cpus)
    gpus_per = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus else 0.0)
    if gpus_per < 0 or gpus_per > gpus:
        raise TalkingPoseError(f"--gpus-per-worker {gpus_per:g}: the Ray cluster has {gpus:g} GPUs. Use a value up to "
                               f"{gpus:g} (fractions share a GPU), or 0 to render on CPUs.")
    if options.workers is not None and options.workers < 1:
        raise TalkingPoseError(f"--workers {options.workers}: give at least 1.")
    if options.cpus_per_worker is not None:
        cpus_per = options.cpus_per_worker
    elif gpus_per:
        cpus_per = 1.0
    else:  # a CPU render uses every core it is given (torch threads): share a machine's cores among its workers
        cpus_per = max(1.0, node_cpus // (options.workers or 1))
    if cpus_per <= 0 or cpus_per > node_cpus:
        raise TalkingPoseError(f"--cpus-per-worker {cpus_per:g}: the largest machine of the Ray cluster has {node_cpus:g} CPUs.")
    fits = int(min(cpus // cpus_per, gpus // gpus_per if gpus_per else float("inf")))
    workers = options.workers if options.workers is not None else (max(1, fits) if gpus_per else 1)
    if workers > fits:
        raise TalkingPoseError(
            f"{workers} workers of {cpus_per:g} CPUs and {gpus_per:g} GPUs do not fit in the Ray cluster "
            f"({cpus:g} CPUs, {gpus:g} GPUs): at most {fits}. Lower --workers, --cpus-per-worker or --gpus-per-worker.")
    return min(workers, jobs), cpus_per, gpus_per


def write_summary(out_dir: Path, results: list[JobResult], info: dict) -> Path:
    done = [r for r in results if r.status == "done"]
    seconds = info.get("seconds") or 0.0
    frames = sum(r.frames for r in done)
    info = {**info, "jobs": len(results), "frames_rendered": frames,
            "frames_per_second": frames / seconds if seconds else None,
            **{status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed", "unfinished")}}
    path = Path(out_dir) / "summary.json"
    return durable.write_text(path, json.dumps({"summary": info, "jobs": [r.as_dict() for r in results]}, indent=1))


def run_batch(manifest: Path, out_dir: Path, options: RenderOptions, batch: BatchOptions | None = None,
              ray_address: str | None = None, listener: Listener | None = None) -> list[JobResult]:
    """Render every job of `manifest` into `out_dir`; returns one result per row (manifest order) and writes
    `out_dir/summary.json`. Jobs finished by an earlier run are skipped, unfinished ones continue."""
    import_ray()  # before anything else: without Ray the command can do nothing
    batch = batch or BatchOptions()
    listener = listener or Listener()
    if batch.videos_per_worker < 1 or batch.retries < 0:
        raise TalkingPoseError("--videos-per-worker must be at least 1 and --retries at least 0.")
    out_dir = Path(out_dir).resolve()
    specs, errors = load_manifest(Path(manifest), options, listener.checking)
    _prepare_output(out_dir)
    results: dict[int, JobResult] = {e.line: JobResult(e.out, e.line, "failed", message=e.message) for e in errors}
    todo = []
    for spec in specs:
        try:
            file_names.check_length(out_dir / spec.out, file_names.RENDER_EXTRA, "output", "--out-dir or the row's `out`")
        except TalkingPoseError as exc:
            results[spec.line] = JobResult(spec.out, spec.line, "failed", message=f"line {spec.line}: {exc}")
            continue
        earlier = _earlier_output(out_dir, spec, options)
        if earlier is None:
            todo.append(spec)
        else:
            results[spec.line] = earlier
    started = time.monotonic()
    info = {"manifest": str(Path(manifest).resolve()), "out_dir": str(out_dir), "options": asdict(options)}
    try:
        if todo:
            with ray_session(ray_address) as ray:
                info.update(_render(ray, todo, out_dir, options, batch, listener, results))
        for spec in todo:
            results.setdefault(spec.line, JobResult(spec.out, spec.line, "unfinished"))
    finally:
        for spec in todo:  # Ctrl-C: what was not finished is listed as such; its frames stay for a rerun
            results.setdefault(spec.line, JobResult(spec.out, spec.line, "unfinished",
                                                    message="the run was stopped; run the same command again to continue"))
        ordered = [results[line] for line in sorted(results)]
        listener.summary_written(write_summary(out_dir, ordered, {**info, "seconds": time.monotonic() - started}))
    return ordered


def _render(ray, todo: list[JobSpec], out_dir: Path, options: RenderOptions, batch: BatchOptions,
            listener: Listener, results: dict) -> dict:
    count, cpus_per, gpus_per = _plan_workers(ray, batch, len(todo))
    actor = ray.remote(RenderWorker).options(num_cpus=cpus_per, num_gpus=gpus_per, max_restarts=batch.retries,
                                             max_task_retries=batch.retries)
    workers = [actor.remote(options, str(out_dir)) for _ in range(count)]
    try:
        _hand_out(ray, workers, todo, batch, listener, results)
    finally:
        for handle in workers:
            ray.kill(handle)
    return {"workers": count, "cpus_per_worker": cpus_per, "gpus_per_worker": gpus_per,
            "videos_per_worker": batch.videos_per_worker}


def _hand_out(ray, workers: list, todo: list[JobSpec], batch: BatchOptions, listener: Listener, results: dict) -> None:
    """Keeps every worker busy with up to K jobs, one `step` call in flight per worker, until all jobs ended."""
    from ray.exceptions import RayActorError, RayTaskError

    count = len(workers)
    listener.started(sum(s.total for s in todo), len(todo), count)
    queue = list(reversed(todo))
    assigned: dict[int, list[JobSpec]] = {w: [] for w in range(count)}
    calls: dict = {}
    made: dict[str, int] = {}  # frames of each job counted on the progress bar so far
    resumed: dict[str, list[int]] = {}

    def finish(spec: JobSpec, result: JobResult) -> None:
        results[spec.line] = result
        listener.finished(result)

    while queue or any(assigned.values()):
        for w in list(assigned):
            if w in calls.values():
                continue
            while queue and len(assigned[w]) < batch.videos_per_worker:
                spec = queue.pop()
                assigned[w].append(spec)
            if assigned[w]:
                calls[workers[w].step.remote([asdict(s) for s in assigned[w]])] = w
        if not calls:
            for spec in reversed(queue):
                finish(spec, JobResult(spec.out, spec.line, "failed", message="every worker died; see the messages above"))
            break
        (ready,), _ = ray.wait(list(calls), num_returns=1)
        w = calls.pop(ready)
        try:
            reply = ray.get(ready)
        except (RayActorError, RayTaskError) as exc:
            # the worker died more often than --retries allows, or step() itself failed: its jobs fail, others go on
            if isinstance(exc, RayActorError):
                reason = (f"its worker died {batch.retries + 1} times (last: {type(exc).__name__}); frames made so far "
                          "are kept, run the same command again to continue")
            else:
                cause = getattr(exc, "cause", None) or exc
                reason = f"the worker failed: {type(cause).__name__}: {cause}"
            for spec in assigned.pop(w):
                finish(spec, JobResult(spec.out, spec.line, "failed", frames=made.get(spec.out, 0), message=reason))
            continue
        worker_name = f"pid {reply['worker']['pid']} on {reply['worker']['host']}"
        specs = {s.out: s for s in assigned[w]}
        for event in reply["events"]:
            listener.event(event, reply["worker"])
            out, kind = event["out"], event["kind"]
            spec = specs[out]
            if kind == "open":
                if event["start"]:
                    resumed.setdefault(out, []).append(event["start"])
                if out not in made:
                    made[out] = event["start"]
                    listener.resumed(event["start"])
            elif kind == "frame":
                if event["done"] > made.get(out, 0):
                    listener.advanced(event["done"] - made.get(out, 0))
                    made[out] = event["done"]
            else:
                assigned[w].remove(spec)
                seconds = event.get("seconds")
                if kind == "done":
                    finish(spec, JobResult(out, spec.line, "done", frames=spec.total, seconds=seconds,
                                           resumed_at=resumed.get(out, []), worker=worker_name))
                else:
                    finish(spec, JobResult(out, spec.line, "failed", frames=made.get(out, 0), seconds=seconds,
                                           message=event["message"], resumed_at=resumed.get(out, []), worker=worker_name))
