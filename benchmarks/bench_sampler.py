"""Sampler benchmark: seconds per frame and peak memory of the closed-loop sampler on random weights.

    python -m benchmarks.bench_sampler --preset tiny --size 512 --frames 10 --steps 30 --mode ours --device cpu --json out.json

`--preset sd15` is the real SD1.5-size architecture (speed does not depend on the weights' values).
`--mode naive` re-encodes the appearance and reruns the reference UNet at batch 2 for every frame, as the
official script does. Frames stream through: pose frames are made one at a time, each latent is decoded and
dropped, so memory must stay flat whatever `--frames` is.

`--videos K` renders K independent videos together (each with its own appearance and closed loop, batched
through the UNet); `--frames` is then per video and frames/s counts all of them. FLOPs of one frame are
counted with torch.utils.flop_counter; with `--peak-tflops` the JSON also has the model FLOP utilisation.

`--count-ops` prints how many aten operations one guided step dispatches (`aten ops per guided step: N`, views
not counted: they launch no kernel), without weights or a GPU: the networks are fake tensors (PyTorch's
FakeTensorMode), so SD1.5 size takes seconds on a CPU. A fake tensor has no values, so the count also proves
that nothing in the step reads a value back to the host (that would raise). On a GPU each of those operations
is a kernel launch that the host must issue, which is what a single video waits for; the CUDA graph replays
them as one.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from talkingpose import images, vae_clip
from talkingpose.appearance import SD_LATENT_SCALE, encode_appearance
from talkingpose.random_weights import PRESETS, random_networks
from talkingpose.sampler import SamplerSettings, denoise_batch, initial_noise, make_scheduler, prepare_step

H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA's datasheet figure, for --peak-tflops

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def synthetic_pose(i: int, size: int) -> np.ndarray:
    """A moving stick figure: cheap to make, different every frame."""
    import cv2

    canvas = np.zeros((size, size, 3), np.uint8)
    x = int(size * (0.4 + 0.2 * np.sin(i / 7)))
    cv2.line(canvas, (x, size // 4), (x, size // 2), (255, 0, 0), max(2, size // 64))
    cv2.circle(canvas, (x, size // 5), max(3, size // 20), (0, 255, 0), -1)
    return canvas


def build(preset, device, dtype):
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    nets = random_networks(preset, device=device, dtype=dtype)
    with torch.device(device):
        vae = AutoencoderKL(**PRESETS[preset]["vae"])
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**PRESETS[preset]["clip"]))
    return nets, vae.to(dtype=dtype).eval(), clip.to(dtype=dtype).eval()


@torch.no_grad()
def encode(nets, vae, clip, source, size, cfg_rows):
    prepared = images.prepare_source(source, size, size)
    embeds = vae_clip.clip_image_embeds(clip, prepared)
    latent = vae_clip.vae_encode_mean(vae, prepared.reference_image()) * SD_LATENT_SCALE
    if cfg_rows == 2:  # the official script runs the reference UNet on [uncond, cond] and keeps both rows
        nets.reference_keys_values(latent.repeat(2, 1, 1, 1), torch.cat([torch.zeros_like(embeds), embeds])[:, None])
    return encode_appearance(nets, embeds, latent, size, size)


def count_step_ops(preset: str = "sd15", size: int = 512, cfg: float = 3.5, steps: int = 30, dtype=torch.float16) -> tuple[int, int]:
    """(aten operations, views among them) dispatched by one guided step of the sampler (the second: the first
    also fills the video's buffers) at `size`², on fake tensors."""
    from collections import Counter

    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "aten":
                self.ops["view" if func.is_view else "op"] += 1
            return func(*args, **(kwargs or {}))

    nets = random_networks(preset, device="meta", dtype=dtype)
    scheduler = make_scheduler()
    scheduler.set_timesteps(steps)
    with FakeTensorMode(allow_non_fake_inputs=True) as fake:
        for module in nets.modules():
            for name, param in module._parameters.items():
                if param is not None:
                    module._parameters[name] = torch.nn.Parameter(torch.empty_like(param, device="cpu"), requires_grad=False)
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    module._buffers[name] = torch.empty_like(buffer, device="cpu")
        latent = torch.randn(1, nets.latent_channels, size // 8, size // 8)
        context = torch.randn(1, 1, nets.cross_attention_dim, dtype=dtype)
        reference = nets.reference_keys_values(latent, context)
        pose = nets.pose_features(torch.rand(1, 3, size, size, dtype=dtype))
    appearance = SimpleNamespace(image_context=context, width=size, height=size)
    step = prepare_step(nets, scheduler, [appearance], cfg, reference)  # its DDIM table is read from the real scheduler
    with fake:
        pose = torch.cat([pose, pose]) if cfg > 1 else pose
        latent = step._eager(latent, pose, 0)
        with CountOps() as counted:
            step._eager(latent, pose, 1)
    return counted.ops["op"], counted.ops["view"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=3.5)
    ap.add_argument("--mode", choices=["ours", "naive"], default="ours")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--warmup", type=int, default=1, help="frames run before timing starts")
    ap.add_argument("--videos", type=int, default=1, help="independent videos rendered together")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the denoising UNet (falls back if unavailable)")
    ap.add_argument("--peak-tflops", type=float, help=f"device peak for MFU (H200 bf16 dense: {H200_BF16_DENSE_TFLOPS})")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--count-ops", action="store_true", help="print the aten operations of one guided step (fake tensors, no weights) and stop")
    args = ap.parse_args(argv)
    if args.count_ops:
        ops, views = count_step_ops(args.preset, args.size, args.cfg, args.steps, DTYPES[args.dtype])
        print(f"aten ops per guided step: {ops}")
        print(f"(plus {views} views; {args.preset} at {args.size}x{args.size}, {args.dtype}, cfg {args.cfg}, fake tensors)")
        return {"aten_ops_per_guided_step": ops, "views": views}

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    nets, vae, clip = build(args.preset, device, dtype)
    source = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    settings = SamplerSettings(steps=args.steps, cfg=args.cfg)
    scheduler = make_scheduler()
    scheduler.set_timesteps(settings.steps)
    noise = initial_noise(0, nets.latent_channels, args.size, args.size)
    rows = 2 if args.cfg > 1 else 1

    if args.channels_last:
        nets.use_channels_last()
    if args.compile:
        nets.compile_denoiser()
    k = args.videos
    t_load = time.perf_counter()
    appearances = [encode(nets, vae, clip, np.roll(source, 17 * v, axis=1), args.size, 1) for v in range(k)]
    sync(device)
    encode_s = (time.perf_counter() - t_load) / k

    step = prepare_step(nets, scheduler, appearances, settings.cfg)  # once per video, as the samplers do

    def one_frame(i, last):
        nonlocal step
        if args.mode == "naive":
            appearances[:] = [encode(nets, vae, clip, np.roll(source, 17 * v, axis=1), args.size, rows) for v in range(k)]
            step = prepare_step(nets, scheduler, appearances, settings.cfg)
        pose = torch.cat([images.pose_pixels(synthetic_pose(i + 3 * v, args.size), args.size, args.size) for v in range(k)])
        start = noise.expand(k, -1, -1, -1) if last is None else noise + settings.beta * (last - noise)
        return denoise_batch(nets, scheduler, appearances, settings.cfg, start, pose, step=step)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        one_frame(0, None)
    flops_per_frame = counter.get_total_flops() / k

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    last, decode_s, timed = None, 0.0, 0.0
    rss_after_warmup = None
    for i in range(args.warmup + args.frames):
        t0 = time.perf_counter()
        last = one_frame(i, last)
        t1 = time.perf_counter()
        vae_clip.decode_latents(vae, last / SD_LATENT_SCALE)
        sync(device)
        t2 = time.perf_counter()
        if i >= args.warmup:
            timed += t2 - t0
            decode_s += t2 - t1
        elif i == args.warmup - 1:
            rss_after_warmup = rss_mb()[0]
        last = last.cpu()

    rss_now, rss_peak = rss_mb()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else rss_peak
    result = {
        "preset": args.preset, "size": args.size, "frames": args.frames, "steps": args.steps, "cfg": args.cfg,
        "mode": args.mode, "device": args.device, "dtype": args.dtype,
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "videos": k, "channels_last": args.channels_last, "compile": args.compile and nets._compiled,
        "s_per_frame": timed / (args.frames * k),
        "frames_per_s": args.frames * k / timed,
        "decode_s_per_frame": decode_s / (args.frames * k),
        "sampler_s_per_frame": (timed - decode_s) / (args.frames * k),  # pose guider and denoising only
        "tflop_per_frame": flops_per_frame / 1e12,
        "achieved_tflops": flops_per_frame * args.frames * k / timed / 1e12,
        "mfu": (flops_per_frame * args.frames * k / timed / 1e12 / args.peak_tflops) if args.peak_tflops else None,
        "appearance_encode_s": encode_s,
        "peak_mem_mb": peak,
        "rss_mb_after_warmup": rss_after_warmup,
        "rss_mb_end": rss_now,
        "torch": torch.__version__,
    }
    print(f"{'preset':>7} {'size':>5} {'mode':>6} {'dev':>5} {'dtype':>5} {'videos':>6} {'frames':>6} {'s/frame':>9} "
          f"{'frames/s':>9} {'TFLOP/fr':>9} {'peak MB':>9}")
    print(f"{args.preset:>7} {args.size:>5} {args.mode:>6} {args.device:>5} {args.dtype:>5} {k:>6} {args.frames:>6} "
          f"{result['s_per_frame']:>9.3f} {result['frames_per_s']:>9.3f} {result['tflop_per_frame']:>9.3f} {peak:>9.0f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
