"""`convert`: the three released TalkingPose files as one .safetensors."""
from __future__ import annotations

from pathlib import Path

from .options import check_writable_file, output_file


def register(subparsers) -> None:
    cv = subparsers.add_parser("convert", help="convert the released .pth files to one .safetensors")
    cv.add_argument("source", type=Path, help="folder with denoising_unet.pth, reference_unet.pth, pose_guider.pth")
    cv.add_argument("out", type=output_file, help="output .safetensors")
    cv.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    cv.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    cv.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..checkpoints import convert_checkpoint
    from ..errors import TalkingPoseError

    if args.out.suffix != ".safetensors":
        raise TalkingPoseError(f"The output {args.out} must end in .safetensors: that is the file the model loader reads.")
    check_writable_file(args.out, "The output")
    if args.out.exists() and not args.overwrite:
        raise TalkingPoseError(f"{args.out} already exists; choose another name, or add --overwrite to replace it.")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    out = convert_checkpoint(args.source, args.out, dtype=dtype)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB)")
    return 0
