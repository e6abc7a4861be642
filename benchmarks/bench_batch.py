"""`batch` on a local Ray: the driver's peak memory against the number of jobs and frames, the workers' memory,
and frames per second.

    python -m benchmarks.bench_batch --runs 2x4 12x4 2x24 --workers 2
    python -m benchmarks.bench_batch --runs 6x8 --workers 1 --videos-per-worker 1 2
    python -m benchmarks.bench_batch --runs 8x16 --workers 2 --gpus-per-worker 0.5 --preset sd15 --size 512 --steps 30 --videos-per-worker 1 4

Each run `JOBSxFRAMES` renders that many jobs of that many frames (the shared sample clips in turn, with their
DWPose renders; tiny random weights, 64×64, 1 step unless told) through `run_batch` on one Ray started once. The
driver's peak resident set (VmHWM) is reset before each run (`/proc/self/clear_refs`), so each figure is that
run's own peak; the workers' VmHWM is read from /proc while they render. frames/s counts from the first finished
frame to the last (the workers' start-up, which loads the networks, is reported apart).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TALKINGPOSE_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))

import talkingpose.animate  # noqa: E402,F401  (torch and the engine: imported before the first measurement)
from talkingpose.batch.driver import BatchOptions, Listener, init_ray, run_batch  # noqa: E402
from talkingpose.batch.manifest import RenderOptions  # noqa: E402


def _status_mb(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class Meter(Listener):
    def __init__(self):
        self.start = time.monotonic()
        self.first_frame = self.last_frame = None
        self.frames = 0
        self.worker_peak: dict[int, float] = {}

    def event(self, event, worker):
        now = time.monotonic()
        if event["kind"] == "frame":
            self.first_frame = self.first_frame or now
            self.last_frame, self.frames = now, self.frames + 1
        try:
            self.worker_peak[worker["pid"]] = _status_mb(worker["pid"], "VmHWM")
        except OSError:  # the worker ended (or runs on another machine)
            pass


def run(jobs: int, frames: int, out: Path, options: RenderOptions, batch: BatchOptions) -> dict:
    clips = [(SHARED / "samples" / "driving" / f"vid{i}.mp4", SHARED / "samples" / "dwpose" / f"vid{i}.mp4") for i in (1, 2, 3)]
    manifest = out / "jobs.jsonl"
    manifest.write_text("".join(
        json.dumps({"out": f"job{n:04d}.mp4", "driving": str(clips[n % 3][0]), "poses": str(clips[n % 3][1]),
                    "frames": frames, "seed": n}) + "\n" for n in range(jobs)))
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
    meter = Meter()
    results = run_batch(manifest, out / "videos", options, batch, listener=meter)
    failed = [r for r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs did not finish: {failed[0].message}")
    rendering = (meter.last_frame - meter.first_frame) if meter.frames > 1 else None
    return {
        "jobs": jobs, "frames_per_job": frames, "frames": meter.frames, "workers": batch.workers,
        "videos_per_worker": batch.videos_per_worker,
        "driver_peak_rss_mb": round(_status_mb("self", "VmHWM"), 1),
        "worker_peak_rss_mb": round(max(meter.worker_peak.values(), default=0.0), 1),
        "startup_s": round(meter.first_frame - meter.start, 1) if meter.first_frame else None,
        # frames after the first one, over the time since it: the steady rate of all workers together
        "frames_per_s": round((meter.frames - 1) / rendering, 2) if rendering else None,
        "wall_s": round(time.monotonic() - meter.start, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["2x4", "12x4", "2x24"], help="JOBSxFRAMES per run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--videos-per-worker", type=int, nargs="+", default=[1])
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    ap.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (Ray finds this machine's GPUs)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (SHARED / "samples" / "driving" / "vid1.mp4").is_file():
        raise SystemExit(f"the shared sample clips are not in {SHARED}/samples (set TALKINGPOSE_SHARED)")
    options = RenderOptions(width=args.size, height=args.size, steps=args.steps, random_weights=args.preset)
    # an ephemeral token keeps Ray's token authentication on without writing one into the home folder
    os.environ.setdefault("RAY_AUTH_TOKEN", uuid.uuid4().hex + uuid.uuid4().hex)
    temp = Path(tempfile.mkdtemp(prefix="tpbench", dir="/tmp"))  # short: Ray's socket paths are limited
    import ray

    init_ray(num_cpus=args.cpus, _temp_dir=str(temp / "ray"))
    rows = []
    try:
        for k in args.videos_per_worker:
            for spec in args.runs:
                jobs, frames = (int(v) for v in spec.lower().split("x"))
                out = temp / f"run-{spec}-k{k}"
                out.mkdir()
                batch = BatchOptions(workers=args.workers, cpus_per_worker=max(1, args.cpus // args.workers),
                                     gpus_per_worker=args.gpus_per_worker, videos_per_worker=k)
                rows.append(run(jobs, frames, out, options, batch))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    keys = ["jobs", "frames_per_job", "frames", "videos_per_worker", "driver_peak_rss_mb", "worker_peak_rss_mb",
            "startup_s", "frames_per_s"]
    print("  ".join(keys))
    for row in rows:
        print("  ".join(str(row[k]).rjust(len(k)) for k in keys))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
