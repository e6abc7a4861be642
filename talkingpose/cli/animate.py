"""`animate`: source image + driving video -> animated mp4."""
from __future__ import annotations

import sys
from pathlib import Path

from .options import STEPS_HELP, WEIGHTS_FP8_HELP, add_alignment, output_file, size
from .pose import DEFAULT, resolve_strength, strength
from .progress import Progress


def register(subparsers) -> None:
    an = subparsers.add_parser("animate", help="animate a source image with a driving video")
    an.add_argument("--source", type=Path, help="source image (default: frame 0 of the driving video)")
    an.add_argument("--driving", type=Path, help="driving video (poses are extracted with DWPose; fps and audio are kept)")
    an.add_argument("--poses", type=Path, help="ready DWPose render video, used instead of extracting poses")
    an.add_argument("--keypoints", type=Path,
                    help="POSE_KEYPOINT JSON track (`pose extract`), used instead of --poses or extraction")
    add_alignment(an, ["off", "similarity", "retarget"], "off", legacy_flag="--retarget",
                  help="fit the driving poses to the source person: off (as they are), similarity (one scale and "
                       "shift per video), retarget (every bone to the source's length)")
    an.add_argument("--smooth", type=strength, nargs="?", const=DEFAULT, default=0.0, metavar="STRENGTH",
                    help="smooth the keypoints, 0 (off) to 1 (alone: the default strength, 0.5)")
    an.add_argument("--fps", type=float, help="frame rate with --keypoints and no --driving video (default 25)")
    an.add_argument("--out", type=output_file, required=True, help="output mp4")
    an.add_argument("--size", type=size, default=(512, 512), help="output WIDTHxHEIGHT, multiples of 8 (default 512x512)")
    an.add_argument("--frames", type=int, help="stop after this many frames")
    an.add_argument("--steps", type=int, default=30, help=STEPS_HELP)
    an.add_argument("--cfg", type=float, default=3.5)
    an.add_argument("--beta", type=float, default=0.05, help="closed-loop gain beta (0-1; the paper's 0.05)")
    an.add_argument("--seed", type=int, default=42)
    an.add_argument("--fit", choices=["stretch", "crop", "pad"], default="stretch", help="aspect-ratio handling")
    an.add_argument("--models", type=Path, help="models root with talkingpose/, vae/, clip_vision/, dwpose/ (default: $TALKINGPOSE_MODELS or ComfyUI's models/)")
    an.add_argument("--model", help="which model under talkingpose/ (default: the first found)")
    an.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    an.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"], default="auto",
                    help="auto: fp16 on a GPU (as the official inference), fp32 on the CPU")
    an.add_argument("--channels-last", action="store_true", help="NHWC convolutions: faster in half precision on GPUs")
    an.add_argument("--compile", action="store_true",
                    help="torch.compile the denoising UNet: faster after a slow first frame; falls back when it cannot compile")
    an.add_argument("--weights-fp8", action="store_true", help=WEIGHTS_FP8_HELP)
    an.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    an.add_argument("--lora", type=Path, help="LoRA adapter made by `finetune` for this model")
    an.add_argument("--lora-strength", type=float, default=1.0, help="0 = base model, 1 = as trained (default 1)")
    an.add_argument("--overwrite", action="store_true",
                    help="start over, deleting the kept frames of an interrupted run of the same --out")
    an.add_argument("--random-weights", nargs="?", const="tiny", choices=["tiny", "sd15"],
                    help="smoke run: the real pipeline on random weights (default preset tiny; random DWPose models too "
                         "when poses are extracted); output is labelled")
    an.set_defaults(func=run)


def run(args) -> int:
    from .. import animate
    from ..sampler import SamplerSettings

    width, height = args.size
    job = animate.AnimateJob(
        out=args.out, driving=args.driving, poses=args.poses, source=args.source, width=width, height=height,
        frames=args.frames, settings=SamplerSettings(steps=args.steps, cfg=args.cfg, beta=args.beta, seed=args.seed),
        models_root=args.models, model_name=args.model, random_weights=args.random_weights, resume=args.resume,
        overwrite=args.overwrite,
        device=args.device, precision=args.precision, fit=args.fit, channels_last=args.channels_last, compile=args.compile,
        weights_fp8=args.weights_fp8,
        keypoints=args.keypoints, alignment=args.alignment, smooth=resolve_strength(args.smooth), fps=args.fps,
        lora=args.lora, lora_strength=args.lora_strength,
    )
    progress = Progress("animate")
    try:
        out = animate.run(job, progress)
    except KeyboardInterrupt:
        progress.close()
        print("Stopped. Finished frames are kept; continue with the same command plus --resume.", file=sys.stderr)
        return 130
    finally:
        progress.close()
    print(f"wrote {out}" + (" (SMOKE RUN with random weights)" if args.random_weights else ""))
    return 0
