"""`metrics`: TJE, PSNR and SSIM between real and generated videos (or folders of them)."""
from __future__ import annotations

import json
from pathlib import Path

from .options import check_writable_file, output_file
from .progress import Progress


def register(subparsers) -> None:
    me = subparsers.add_parser("metrics", help="TJE / PSNR / SSIM between real and generated videos")
    me.add_argument("--real", type=Path, required=True)
    me.add_argument("--generated", type=Path, required=True)
    me.add_argument("--delta", type=int, default=2, help="TJE frame distance delta >= 1 (default 2)")
    me.add_argument("--metrics", nargs="+", default=None, help="subset of: tje psnr_float psnr_8bit ssim (default all)")
    me.add_argument("--json", type=output_file)
    me.set_defaults(func=run)


def run(args) -> int:
    from .. import metrics
    from ..errors import TalkingPoseError

    chosen = tuple(args.metrics) if args.metrics else metrics.ALL_METRICS
    if args.json:  # before the videos are compared, not after
        check_writable_file(args.json, "--json")
    if args.real.is_dir() != args.generated.is_dir():
        raise TalkingPoseError("--real and --generated must both be videos or both be folders.")
    if args.real.is_dir():
        progress = Progress("metrics", unit="video")
        try:
            result = metrics.compare_dirs(args.real, args.generated, delta=args.delta, metrics=chosen,
                                          progress=lambda done, total, key: progress(done, total))
        finally:
            progress.close()
        print(f"{result['num_pairs']} pairs; TJE mean {result['overall_avg_tje']} (frame-weighted {result['overall_weighted_avg_tje']})")
    else:
        progress = Progress("metrics")
        try:
            result = metrics.compare_videos(args.real, args.generated, delta=args.delta, metrics=chosen,
                                            progress=progress).as_dict()
        finally:
            progress.close()
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items() if not isinstance(v, list)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0
