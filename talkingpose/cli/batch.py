"""`batch`: render many jobs (a CSV or JSON Lines list) on Ray — this machine by default, or a cluster."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .options import STEPS_HELP, WEIGHTS_FP8_HELP, output_folder, size


def add_render_options(parser) -> None:
    """The options every job of a batch shares (as in `animate`)."""
    parser.add_argument("--size", type=size, default=(512, 512), help="output WIDTHxHEIGHT, multiples of 8 (default 512x512)")
    parser.add_argument("--steps", type=int, default=30, help=STEPS_HELP)
    parser.add_argument("--cfg", type=float, default=3.5)
    parser.add_argument("--seed", type=int, default=42, help="seed of jobs without their own")
    parser.add_argument("--beta", type=float, default=0.05, help="closed-loop gain beta of jobs without their own (0-1)")
    parser.add_argument("--fit", choices=["stretch", "crop", "pad"], default="stretch", help="aspect-ratio handling")
    parser.add_argument("--models", type=Path, help="models root with talkingpose/, vae/, clip_vision/, dwpose/ (default: $TALKINGPOSE_MODELS or ComfyUI's models/), as seen by the workers")
    parser.add_argument("--model", help="which model under talkingpose/ (default: the first found)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (on each worker)")
    parser.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"], default="auto")
    parser.add_argument("--weights-fp8", action="store_true", help=WEIGHTS_FP8_HELP)
    parser.add_argument("--random-weights", nargs="?", const="tiny", choices=["tiny", "sd15"],
                        help="smoke run: the real pipeline on random weights (default preset tiny); output is labelled")
    parser.add_argument("--segment-frames", type=int, default=16,
                        help="frames per encoded segment of the output (default 16; every frame and its state are kept at once)")
    ray = parser.add_argument_group("Ray")
    ray.add_argument("--ray-address", help="join a running Ray cluster: auto (this machine's), HOST:PORT or ray://HOST:PORT "
                                           "(default: start Ray in this process, on this machine only)")
    ray.add_argument("--workers", type=int, help="render workers (default: one per GPU of the cluster; one on CPUs)")
    ray.add_argument("--gpus-per-worker", type=float, help="GPUs per worker, fractions share a GPU (default 1 with GPUs, else 0)")
    ray.add_argument("--cpus-per-worker", type=float, help="CPU cores per worker (default 1 with GPUs, else the machine's cores shared among the workers)")
    ray.add_argument("--videos-per-worker", type=int, default=1, help="K videos rendered together by each worker through the batched sampler (default 1)")
    ray.add_argument("--retries", type=int, default=3, help="restarts of a worker whose process died, each continuing its jobs (default 3)")


def register(subparsers) -> None:
    ba = subparsers.add_parser("batch", help="render a list of jobs on Ray (this machine or a cluster)",
                               description="Render every job of JOBS (CSV with a header, or JSON Lines) into --out-dir. "
                                           "Columns: out, driving and/or poses (or keypoints with driving), source "
                                           "(default: frame 0 of the driving video), seed, beta, frames. Running the "
                                           "same command again skips finished jobs and continues unfinished ones.")
    ba.add_argument("jobs", type=Path, help="CSV or JSON Lines file, one job a row; relative paths are relative to it")
    ba.add_argument("--out-dir", type=output_folder, required=True, help="where the videos and summary.json go")
    add_render_options(ba)
    ba.set_defaults(func=run)


def render_options(args):
    from ..batch.manifest import RenderOptions

    width, height = args.size
    return RenderOptions(
        width=width, height=height, steps=args.steps, cfg=args.cfg, seed=args.seed, beta=args.beta, fit=args.fit,
        models_root=str(args.models.resolve()) if args.models else None, model_name=args.model,
        random_weights=args.random_weights, device=args.device, precision=args.precision, segment_frames=args.segment_frames,
        weights_fp8=args.weights_fp8,
    )


def batch_options(args):
    from ..batch.driver import BatchOptions

    return BatchOptions(workers=args.workers, gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                        videos_per_worker=args.videos_per_worker, retries=args.retries)


CHECK_REPORT_SECONDS = 3.0  # a line about the job list's check at most this often (a long list takes minutes)


class ProgressBar:
    """One bar over all frames of all jobs (frames/s, ETA) and a line per finished job. The bar starts with the
    first frame, so the workers' start-up (loading the networks) does not count in its rate. Before it, while the
    job list is checked, a line every few seconds says how far the check is."""

    def __init__(self):
        self.bar = None
        self.total = 0
        self.summary = None  # where this run's summary.json was written, once it was
        self._check_reported = time.monotonic()

    def checking(self, rows, total):
        now = time.monotonic()
        if now - self._check_reported >= CHECK_REPORT_SECONDS and rows < total:
            print(f"checking the job list: {rows} of {total} rows", file=sys.stderr, flush=True)
            self._check_reported = now

    def summary_written(self, path):
        self.summary = path

    def started(self, frames, jobs, workers):
        self.total, self.label = frames, f"batch ({jobs} jobs, {workers} workers)"
        print(f"{self.label}: starting the workers (each loads the networks once)…", file=sys.stderr)

    def _bar(self):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="frame", desc=self.label, dynamic_ncols=True)
        return self.bar

    def advanced(self, frames):
        self._bar().update(frames)

    def resumed(self, frames):
        self.total -= frames  # made by an earlier run
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def finished(self, result):
        timing = f" in {result.seconds:.1f} s ({result.seconds_per_frame:.2f} s/frame)" if result.seconds_per_frame else ""
        text = f"{result.status} {result.job}: {result.frames} frames{timing}" + (f" — {result.message}" if result.message else "")
        self._bar().write(text)

    def event(self, event, worker):
        pass

    def close(self):
        if self.bar is not None:
            self.bar.close()


def print_table(results, out=sys.stdout) -> None:
    rows = [("job", "frames", "seconds", "s/frame", "status")]
    for r in results:
        rows.append((r.job or f"line {r.line}", str(r.frames), f"{r.seconds:.1f}" if r.seconds else "-",
                     f"{r.seconds_per_frame:.3f}" if r.seconds_per_frame else "-", r.status))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if c in (0, 4) else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    for r in results:
        if r.status == "failed":
            print(f"{r.job or f'line {r.line}'}: {r.message}", file=out)


def run(args) -> int:
    from ..batch.driver import run_batch

    bar = ProgressBar()
    try:
        results = run_batch(args.jobs, args.out_dir, render_options(args), batch_options(args), args.ray_address, bar)
    except KeyboardInterrupt:
        bar.close()
        where = f" (the state so far is in {bar.summary})" if bar.summary else ""
        print(f"\nStopped. Finished jobs and frames are kept; run the same command again to continue{where}.",
              file=sys.stderr)
        return 130
    bar.close()
    print_table(results)
    print(f"summary: {args.out_dir / 'summary.json'}" + (" (SMOKE RUN with random weights)" if args.random_weights else ""))
    return 1 if any(r.status in ("failed", "unfinished") for r in results) else 0
