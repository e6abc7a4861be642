"""`convert`: the three released TalkingPose files as one .safetensors."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    cv = subparsers.add_parser("convert", help="convert the released .pth files to one .safetensors")
    cv.add_argument("source", type=Path, help="folder with denoising_unet.pth, reference_unet.pth, pose_guider.pth")
    cv.add_argument("out", type=Path, help="output .safetensors")
    cv.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    cv.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..checkpoints import convert_checkpoint

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    out = convert_checkpoint(args.source, args.out, dtype=dtype)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB)")
    return 0
