"""The activation memory the nodes announce to ComfyUI (`memory_required`) against what a pass really takes.

    python -m benchmarks.bench_forward_memory --device cuda --preset sd15 --dtype fp16 --sizes 512 768 1024

For each output size: the peak CUDA memory of one reference pass (Appearance Encode) and of one guided
frame of the sampler (2 rows; its prepared step with the video's constants, two steps), above the memory held
before, next to `memory.appearance_encode_bytes` / `memory.denoise_step_bytes` (at the default cfg, guided). The estimate should be at or
above the measurement (it is what ComfyUI frees room for) without being far above it. On the CPU only the
estimates are printed.
"""
from __future__ import annotations

import argparse
import json

import torch

from talkingpose.appearance import encode_appearance
from talkingpose.memory import appearance_encode_bytes, denoise_step_bytes
from talkingpose.random_weights import PRESETS, random_networks
from talkingpose.sampler import DEFAULT_CFG, make_scheduler, prepare_step

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
STEPS = 2


def peak_above_baseline(device, run) -> int | None:
    if device.type != "cuda":
        run()
        return None
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - baseline


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    args = ap.parse_args(argv)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    nets = random_networks(args.preset, device=device, dtype=dtype)
    width = nets.cross_attention_dim
    rows = []
    for size in args.sizes:
        latent = torch.randn(1, nets.latent_channels, size // 8, size // 8, device=device)
        embeds = torch.randn(1, width, device=device)
        holder = {}
        encode_peak = peak_above_baseline(device, lambda: holder.update(a=encode_appearance(nets, embeds, latent, size, size)))
        appearance = holder["a"]
        pose = nets.pose_features(torch.rand(1, 3, size, size, device=device))
        scheduler = make_scheduler()
        scheduler.set_timesteps(STEPS)
        step_peak = peak_above_baseline(device, lambda: prepare_step(nets, scheduler, [appearance], DEFAULT_CFG).denoise(latent, pose))
        row = {
            "size": size,
            "encode_estimate_mb": appearance_encode_bytes(nets, size, size) / 2**20,
            "encode_measured_mb": None if encode_peak is None else encode_peak / 2**20,
            "step_estimate_mb": denoise_step_bytes(nets, appearance, DEFAULT_CFG, STEPS) / 2**20,
            "step_measured_mb": None if step_peak is None else step_peak / 2**20,
        }
        rows.append(row)
        print(json.dumps(row))
        del appearance, pose, holder
    return rows


if __name__ == "__main__":
    main()
