"""`evaluate`: the paper's self-identity protocol on a folder of videos, rendered on Ray."""
from __future__ import annotations

import sys
from pathlib import Path

from .batch import ProgressBar, add_render_options, batch_options, render_options
from .options import output_folder


def register(subparsers) -> None:
    ev = subparsers.add_parser(
        "evaluate", help="self-identity evaluation of a video folder: TJE, PSNR, SSIM against the real videos",
        description="For every video in --dataset: its first frame is the source, the whole video drives; the renders "
                    "(via batch, on Ray) are compared with the real videos. Writes OUT/metrics.json, OUT/metrics.csv "
                    "and the videos in OUT/videos/. Running it again reuses the finished renders.")
    ev.add_argument("--dataset", type=Path, required=True, help="folder of driving videos")
    ev.add_argument("--out-dir", type=output_folder, required=True)
    ev.add_argument("--poses-dir", type=Path, help="ready DWPose renders NAME.mp4 or keypoint tracks NAME.json "
                                                   "(default DATASET/dwpose; videos without one get poses extracted)")
    ev.add_argument("--frames", type=int, help="render at most this many frames per video (metrics cover those frames)")
    ev.add_argument("--delta", type=int, nargs="+", default=[2], help="TJE frame distances delta (2 is always included)")
    ev.add_argument("--overwrite", action="store_true",
                    help="replace OUT/metrics.json, OUT/metrics.csv and OUT/jobs.jsonl when they are already there "
                         "(finished renders are reused all the same)")
    add_render_options(ev)
    ev.set_defaults(func=run)


def run(args) -> int:
    from ..batch.evaluate import columns, evaluate, table_rows

    bar = ProgressBar()
    try:
        report = evaluate(args.dataset, args.out_dir, render_options(args), batch_options(args), args.ray_address,
                          args.poses_dir, args.frames, tuple(args.delta), bar, args.overwrite)
    except KeyboardInterrupt:
        bar.close()
        print("\nStopped. Finished renders are kept; run the same command again to continue.", file=sys.stderr)
        return 130
    bar.close()
    rows = [columns(report), *table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for failed in report["failed"]:
        print(f"{failed['video']}: {failed['status']}: {failed['message']}")
    print(f"metrics: {args.out_dir / 'metrics.json'}, {args.out_dir / 'metrics.csv'}"
          + (" (SMOKE RUN with random weights)" if args.random_weights else ""))
    return 1 if report["failed"] else 0
