"""How far the opt-ins that change frames move them from the exact render: fp8 weight storage and fewer steps.

    python -m benchmarks.bench_deviation                        # tiny random weights, CPU, real sample clip
    python -m benchmarks.bench_deviation --json out.json        # the same, and the figures as JSON

The exact render is the default one (30 steps, weights in the compute precision). Each opt-in renders the same
frames (same source, poses, seed) and its decoded 8-bit frames are compared with the exact ones: mean and largest
absolute pixel difference (0-255) and PSNR (dB, over all frames). On the CPU this runs the project's random
weights, which are far more sensitive to rounding than trained ones and draw noise, not people: the table says
how the code behaves, not how a real render looks. `benchmarks/gpu_figures.py` measures the same on the GPU in
fp16 (its `deviation` stage; random SD1.5-size weights there too: no trained weights reach that machine).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TALKINGPOSE_SHARED", ROOT.parent / "shared"))
OPT_INS = (("fp8 weight storage", {"weights_fp8": True}), ("20 steps", {"steps": 20}), ("15 steps", {"steps": 15}),
           ("10 steps", {"steps": 10}))


def render(pipe, source, poses, width: int, height: int, steps: int, seed: int) -> np.ndarray:
    """Decoded frames [frames, H, W, 3] uint8 of one closed-loop render (truncated to 8 bits as `animate` is)."""
    import torch

    from talkingpose.sampler import SamplerSettings

    appearance = pipe.encode_appearance(source, width, height)
    sampler = pipe.sampler(appearance, SamplerSettings(steps=steps, seed=seed))
    latents = [sampler.denoise(pipe.pose_pixels(pose, appearance)) for pose in poses]
    frames = pipe.decode(torch.stack(latents)).float().cpu()
    return (frames.permute(0, 2, 3, 1) * 255).to(torch.uint8).numpy()


def compare(exact: np.ndarray, other: np.ndarray) -> dict:
    """Mean and largest |difference| (0-255) and PSNR in dB over all frames (inf when identical)."""
    diff = exact.astype(np.int32) - other.astype(np.int32)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return {"mean_abs": float(np.abs(diff).mean()), "max_abs": int(np.abs(diff).max()),
            "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))}


def deviations(load, source, poses, width: int, height: int, seed: int = 42) -> dict:
    """{opt-in: compare(exact, opt-in)}; `load(weights_fp8)` gives a pipeline."""
    exact_pipe = load(False)
    exact = render(exact_pipe, source, poses, width, height, 30, seed)
    rows = {}
    for name, change in OPT_INS:
        pipe = load(True) if change.get("weights_fp8") else exact_pipe
        rows[name] = compare(exact, render(pipe, source, poses, width, height, change.get("steps", 30), seed))
    return rows


def sample_inputs(clip: str, frames: int):
    """Frame 0 of a sample driving clip (the source) and the first `frames` DWPose renders of it."""
    from talkingpose.video_io import VideoReader

    with VideoReader(SHARED / "samples" / "driving" / f"{clip}.mp4", max_frames=1) as reader:
        source = next(iter(reader))
    with VideoReader(SHARED / "samples" / "dwpose" / f"{clip}.mp4", max_frames=frames) as reader:
        poses = list(reader)
    return source, poses


def table(rows: dict) -> str:
    lines = ["| opt-in | mean abs pixel difference (0-255) | largest abs difference | PSNR vs exact (dB) |",
             "| --- | --- | --- | --- |"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['mean_abs']:.2f} | {row['max_abs']} | {row['psnr_db']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="vid1", help="sample clip under ../shared/samples (default vid1)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="square output size (default 128)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    import torch

    from talkingpose.pipeline import load_pipeline
    from talkingpose.random_weights import write_random_weights

    source, poses = sample_inputs(args.clip, args.frames)
    with tempfile.TemporaryDirectory(prefix="talkingpose-deviation-") as scratch:
        weights = write_random_weights(Path(scratch), "tiny")

        def load(weights_fp8: bool):
            return load_pipeline(weights["model"], weights["vae"], weights["image_encoder"], device="cpu",
                                 dtype=torch.float32, weights_fp8=weights_fp8)

        rows = deviations(load, source, poses, args.size, args.size)
    print(f"RANDOM tiny weights on the CPU (float32), {args.clip} frame 0 as source and its first {args.frames} "
          f"DWPose renders, {args.size}x{args.size}, seed 42, cfg 3.5; exact = 30 steps, weights as computed. "
          "Random weights are far more sensitive to rounding than trained ones: the GPU run measures SD1.5 size.")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": "CPU", "weights": "random tiny", "clip": args.clip,
                                         "frames": args.frames, "size": args.size, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
