"""TalkingPose from the command line: `python cli.py <command> --help`.

    animate   source image + driving video → animated mp4 (streams; --resume after Ctrl-C or a crash)
    download  fetch the released weights from Hugging Face (asks nothing, downloads only when run)
    convert   write the three TalkingPose files as one fp16 .safetensors
    metrics   TJE, PSNR and SSIM between real and generated videos (or folders of them)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _engine():
    """The engine package (`models/`), imported without importing the ComfyUI entry point."""
    if "talkingpose_engine" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "talkingpose_engine", ROOT / "models" / "__init__.py", submodule_search_locations=[str(ROOT / "models")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["talkingpose_engine"] = module
        spec.loader.exec_module(module)
    return sys.modules["talkingpose_engine"]


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not WIDTHxHEIGHT, e.g. 512x512") from None
    return width, height


def cmd_animate(args) -> int:
    import importlib

    animate = importlib.import_module("talkingpose_engine.animate")
    sampler = importlib.import_module("talkingpose_engine.sampler")
    from tqdm import tqdm

    width, height = args.size
    job = animate.AnimateJob(
        out=args.out, driving=args.driving, poses=args.poses, source=args.source, width=width, height=height,
        frames=args.frames, settings=sampler.SamplerSettings(steps=args.steps, cfg=args.cfg, beta=args.beta, seed=args.seed),
        models_root=args.models, model_name=args.model, random_weights=args.random_weights, resume=args.resume,
        device=args.device, precision=args.precision, fit=args.fit,
    )
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done - 1, unit="frame", desc="animate", dynamic_ncols=True)
        bar.update(1)
        bar.set_postfix_str(f"{1 / bar.format_dict['rate']:.2f} s/frame" if bar.format_dict.get("rate") else "")

    try:
        out = animate.run(job, progress)
    except KeyboardInterrupt:
        print("\nStopped. Finished frames are kept; continue with the same command plus --resume.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {out}" + (" (SMOKE RUN with random weights)" if args.random_weights else ""))
    return 0


def cmd_download(args) -> int:
    import importlib

    downloads = importlib.import_module("talkingpose_engine.downloads")
    runtime = importlib.import_module("talkingpose_engine.runtime")
    root = Path(args.models) if args.models else runtime.models_root()
    targets = {
        "talkingpose": (downloads.TALKINGPOSE_REPO, downloads.TALKINGPOSE_FILES, root / "talkingpose" / "TalkingPose"),
        "vae": (downloads.VAE_REPO, downloads.VAE_FILES, root / "vae" / "sd-vae-ft-mse"),
        "image_encoder": (downloads.IMAGE_ENCODER_REPO, downloads.IMAGE_ENCODER_FILES, root / "clip_vision" / "sd-image-variations-image-encoder"),
        "dwpose": (downloads.DWPOSE_REPO, downloads.DWPOSE_FILES, root / "dwpose"),
    }
    for name in args.what:
        repo, files, dest = targets[name]
        print(f"{name}: {repo} → {dest}")
        for path in downloads.fetch(repo, files, dest):
            print(f"  {path.name}  sha256 {downloads.sha256(path)[:16]}…")
    return 0


def cmd_convert(args) -> int:
    import importlib

    checkpoints = importlib.import_module("talkingpose_engine.checkpoints")
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    out = checkpoints.convert_checkpoint(args.source, args.out, dtype=dtype)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB)")
    return 0


def cmd_metrics(args) -> int:
    import importlib

    metrics = importlib.import_module("talkingpose_engine.metrics")
    chosen = tuple(args.metrics) if args.metrics else metrics.ALL_METRICS
    if args.real.is_dir() != args.generated.is_dir():
        raise _engine().errors.TalkingPoseError("--real and --generated must both be videos or both be folders.")
    if args.real.is_dir():
        result = metrics.compare_dirs(args.real, args.generated, delta=args.delta, metrics=chosen)
        print(f"{result['num_pairs']} pairs; TJE mean {result['overall_avg_tje']} (frame-weighted {result['overall_weighted_avg_tje']})")
    else:
        result = metrics.compare_videos(args.real, args.generated, delta=args.delta, metrics=chosen).as_dict()
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items() if not isinstance(v, list)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cli.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    an = sub.add_parser("animate", help="animate a source image with a driving video")
    an.add_argument("--source", type=Path, help="source image (default: frame 0 of the driving video)")
    an.add_argument("--driving", type=Path, help="driving video (poses are extracted with DWPose; fps and audio are kept)")
    an.add_argument("--poses", type=Path, help="ready DWPose render video, used instead of extracting poses")
    an.add_argument("--out", type=Path, required=True, help="output mp4")
    an.add_argument("--size", type=_size, default=(512, 512), help="output WIDTHxHEIGHT, multiples of 8 (default 512x512)")
    an.add_argument("--frames", type=int, help="stop after this many frames")
    an.add_argument("--steps", type=int, default=30)
    an.add_argument("--cfg", type=float, default=3.5)
    an.add_argument("--beta", type=float, default=0.05, help="closed-loop gain β (0-1; the paper's 0.05)")
    an.add_argument("--seed", type=int, default=42)
    an.add_argument("--fit", choices=["stretch", "crop", "pad"], default="stretch", help="aspect-ratio handling")
    an.add_argument("--models", type=Path, help="models root with talkingpose/, vae/, clip_vision/, dwpose/ (default: $TALKINGPOSE_MODELS or ComfyUI's models/)")
    an.add_argument("--model", help="which model under talkingpose/ (default: the first found)")
    an.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    an.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"], default="auto")
    an.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    an.add_argument("--random-weights", nargs="?", const="tiny", choices=["tiny", "sd15"],
                    help="smoke run: the real pipeline on random weights (default preset tiny); output is labelled")
    an.set_defaults(func=cmd_animate)

    dl = sub.add_parser("download", help="download the released weights (resumable)")
    dl.add_argument("--models", type=Path)
    dl.add_argument("--what", nargs="+", choices=["talkingpose", "vae", "image_encoder", "dwpose"],
                    default=["talkingpose", "vae", "image_encoder", "dwpose"])
    dl.set_defaults(func=cmd_download)

    cv = sub.add_parser("convert", help="convert the released .pth files to one .safetensors")
    cv.add_argument("source", type=Path, help="folder with denoising_unet.pth, reference_unet.pth, pose_guider.pth")
    cv.add_argument("out", type=Path, help="output .safetensors")
    cv.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    cv.set_defaults(func=cmd_convert)

    me = sub.add_parser("metrics", help="TJE / PSNR / SSIM between real and generated videos")
    me.add_argument("--real", type=Path, required=True)
    me.add_argument("--generated", type=Path, required=True)
    me.add_argument("--delta", type=int, default=2, help="TJE frame distance δ ≥ 1 (default 2)")
    me.add_argument("--metrics", nargs="+", default=None, help="subset of: tje psnr_float psnr_8bit ssim (default all)")
    me.add_argument("--json", type=Path)
    me.set_defaults(func=cmd_metrics)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("diffusers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the loaders' own bars hide ours
    engine = _engine()
    try:
        return args.func(args)
    except engine.errors.TalkingPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
