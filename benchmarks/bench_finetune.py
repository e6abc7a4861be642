"""Fine-tuning benchmark: clip encoding time, training steps per second and peak memory on random weights.

    python -m benchmarks.bench_finetune --preset tiny --size 64 --batch 2 --rank 4 --steps 10          # CPU
    python -m benchmarks.bench_finetune --device cuda --preset sd15 --size 512 --batch 4 --rank 16 \
        --steps 50 --frames 60 --json bench_finetune_cuda.json                                          # GPU

`--preset sd15` is the real SD1.5-size architecture (speed and memory do not depend on the weights' values).
The clip is synthetic (moving stick-figure renders, noise frames) but goes through the real VAE and CLIP image
encoder of the preset, the real crop bank and the real LoRA trainer: on CUDA with the base weights in bf16
(fp16 where bf16 is missing), float32 adapters, autocast and gradient checkpointing; on CPU float32.
Reported: encode seconds per frame, training steps/s after `--warmup` steps, the projected time of 1,000
steps, peak RSS and (CUDA) peak VRAM.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from benchmarks.bench_sampler import build, rss_mb, synthetic_pose
from talkingpose.finetune.data import PipelineEncoders, PoseInput, build_clip_cache
from talkingpose.finetune.trainer import FinetuneSettings, LoraTrainer


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=["tiny", "tiny-vitl", "sd15"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=64, help="training resolution (square)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="measured steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--frames", type=int, default=24, help="frames of the synthetic clip")
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0: torch's default)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    nets, vae, clip = build(args.preset, device, dtype)
    if cuda:  # the encoders run once per clip: float32, as the CPU path and the official VAE handling
        torch.nn.Module.to(vae, dtype=torch.float32)
        torch.nn.Module.to(clip, dtype=torch.float32)

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.frames)]
    poses = [PoseInput(synthetic_pose(i, args.size)) for i in range(args.frames)]
    sync(device)
    started = time.perf_counter()
    cache = build_clip_cache(frames, poses, PipelineEncoders(vae, clip), args.size, args.size, crops=args.crops)
    sync(device)
    encode_s = time.perf_counter() - started
    del vae, clip

    settings = FinetuneSettings(steps=args.warmup + args.steps, rank=args.rank, batch=args.batch, width=args.size,
                                height=args.size, crops=args.crops)
    trainer = LoraTrainer(nets, cache, settings)
    stamps = {}

    def on_step(step, steps, loss):
        sync(device)
        stamps[step] = time.perf_counter()

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    result = trainer.train(on_step=on_step)
    measured = stamps[args.warmup + args.steps] - stamps[args.warmup] if args.warmup else None
    if measured is None:
        raise SystemExit("--warmup must be at least 1 (the first step includes one-off costs)")
    steps_per_s = args.steps / measured
    figures = {
        "machine": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "preset": args.preset, "size": args.size, "batch": args.batch, "rank": args.rank, "crops": args.crops,
        "frames": args.frames, "dtype": str(dtype).removeprefix("torch."),
        "trainable_parameters": sum(p.numel() for p in trainer.params),
        "encode_s_per_frame": encode_s / args.frames,
        "steps_per_s": steps_per_s,
        "s_per_1000_steps": 1000 / steps_per_s,
        "peak_rss_mb": rss_mb()[1],
        "loss_first": result.losses[0], "loss_last": result.losses[-1],
    }
    if cuda:
        figures["peak_vram_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
