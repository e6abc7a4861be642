"""`finetune`: a person's clip -> a LoRA adapter (a "character file" for `animate --lora`)."""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from .options import output_file, size


def register(subparsers) -> None:
    ft = subparsers.add_parser(
        "finetune", help="fine-tune a LoRA on about 30 seconds of one person's footage",
        description="Fine-tune LoRA adapters of the TalkingPose networks on one person's clip with the official "
                    "training recipe. Ctrl-C keeps a checkpoint; the same command plus --resume continues it.",
    )
    ft.add_argument("--video", type=Path, required=True, help="the person's clip (one person, about 30 s)")
    poses = ft.add_mutually_exclusive_group()
    poses.add_argument("--poses", type=Path, help="the clip's DWPose render video (default: extract with DWPose)")
    poses.add_argument("--keypoints", type=Path, help="the clip's POSE_KEYPOINT track (JSON, e.g. Save Pose Keypoints)")
    # beside: the checkpoint next to the adapter (finetune.job.checkpoint_path; not imported here: it brings torch)
    ft.add_argument("--out", type=partial(output_file, beside=".checkpoint.pt"), required=True,
                    help="adapter file to write (.safetensors)")
    ft.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    ft.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16; alpha = rank)")
    ft.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    ft.add_argument("--size", type=size, default=(512, 512), help="training WIDTHxHEIGHT, multiples of 8 (default 512x512)")
    ft.add_argument("--batch", type=int, default=4, help="frame pairs per step (default 4)")
    ft.add_argument("--frames", type=int, help="use the first N frames of the clip (default: all)")
    ft.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    ft.add_argument("--overwrite", action="store_true", help="replace the file at --out if there is one")
    ft.add_argument("--random-weights", nargs="?", const="tiny", choices=["tiny", "sd15"],
                    help="smoke run: fine-tune random weights of the real architecture (default preset tiny)")
    ft.add_argument("--train-pose-guider", action="store_true", help="also fine-tune the whole pose guider")
    ft.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--models", type=Path, help="models root with talkingpose/, vae/, clip_vision/, dwpose/ (default: $TALKINGPOSE_MODELS or ComfyUI's models/)")
    ft.add_argument("--model", help="which model under talkingpose/ (default: the first found)")
    ft.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    ft.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"], default="auto",
                    help="base weights' precision (auto: bf16/fp16 with autocast on GPU, fp32 on CPU)")
    ft.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..finetune.job import FinetuneJob, checkpoint_path, run as run_job
    from ..finetune.trainer import FinetuneSettings

    width, height = args.size
    settings = FinetuneSettings(
        steps=args.steps, rank=args.rank, lr=args.lr, batch=args.batch, width=width, height=height, frames=args.frames,
        seed=args.seed, checkpoint_every=args.checkpoint_every, train_pose_guider=args.train_pose_guider,
    )
    job = FinetuneJob(
        video=args.video, out=args.out, poses=args.poses, keypoints=args.keypoints, settings=settings, resume=args.resume,
        overwrite=args.overwrite, models_root=args.models, model_name=args.model, random_weights=args.random_weights, device=args.device,
        precision=args.precision,
    )
    bars = {}

    def progress(phase, done, total, loss):
        bar = bars.get(phase)
        if bar is None:
            for other in bars.values():
                other.close()
            unit = "frame" if phase == "encode" else "step"
            bar = bars[phase] = tqdm(total=total, initial=done - 1, unit=unit, desc=phase, dynamic_ncols=True)
        bar.update(done - bar.n)
        if loss is not None:
            bar.set_postfix(loss=f"{loss:.4f}")

    try:
        result = run_job(job, progress)
    except KeyboardInterrupt:
        checkpoint = checkpoint_path(args.out)
        kept = f"The checkpoint {checkpoint} is kept; " if checkpoint.is_file() else ""
        print(f"\nStopped. {kept}continue with the same command plus --resume.", file=sys.stderr)
        return 130
    finally:
        for bar in bars.values():
            bar.close()
    summary = result.adapter.info["loss"]
    print(f"wrote {args.out}: {result.adapter.info['steps']} steps, loss {summary['mean_first_tenth']:.4f} -> "
          f"{summary['mean_last_tenth']:.4f} (mean of first/last tenth); fixed batch {result.eval_before:.4f} -> "
          f"{result.eval_after:.4f}; {result.seconds:.0f} s" + (" (SMOKE RUN with random weights)" if args.random_weights else ""))
    return 0
