"""The GPU figures of docs/performance.md, one JSON file per run in benchmarks/results/.

    python -m benchmarks.gpu_figures --official .official            # on the GPU (benchmarks/gpu_figures.sh)
    python -m benchmarks.gpu_figures --dry-run --out /tmp/figures    # every stage, tiny, on the CPU
    python -m benchmarks.gpu_figures --part pack ...                 # all but the official comparison
    python -m benchmarks.gpu_figures --part official --official DIR  # the official comparison alone
    python -m benchmarks.gpu_figures --merge PACK.json OFFICIAL.json # the two parts -> one results file

Random weights of the real SD1.5 size are written once (`random_weights.write_random_weights`) with a source
picture and a DWPose-style render video; each stage is its own process (its peak memory its own) and runs the
pack as a user does: `animate.run` from the render video with decode and encode, `bench_sampler` for the
sampler alone and for K videos batched. The official TalkingPose inference (`benchmarks/official_speed.py`,
code and pinned wheels from `benchmarks/prepare_official.sh`) runs on the same weights and inputs.

A device call carries at most 64 MiB, less than the official code and every wheel together: `--part pack`
(every figure but the official comparison; the pack's wheels) and `--part official` (the official code, its
pinned wheels and the pack's diffusers, which writes the same random weights) run in two calls, each writing a
part file (`"part"`: pack or official, every key, null where the other part measures it), and `--merge` joins
them into the one results file (the speed-up only when both parts ran on the same GPU).

`--dry-run` runs every stage with the tiny preset at tiny sizes on the CPU and writes a file with the same
keys, marked `"dry_run": true`; its numbers say nothing about a GPU. Keys:
commit, gpu, torch, diffusers, animate_512_s_per_frame, animate_512x768_s_per_frame, sampler_512_s_per_frame,
batched8_frames_per_s, batched16_frames_per_s, peak_vram_512_gb, peak_vram_512x768_gb, cap8gb_512x768_ok,
cap6gb_512_ok, golden_fp32_max_abs, graph_equals_eager, memory_estimate (per size: measured peak allocated and
reserved, estimate, ratio to the allocated peak), official_512_s_per_frame, speedup_vs_official; and the opt-ins
that change frames (fp8 weight storage, fewer steps; see `benchmarks/bench_deviation.py`), measured against the
exact render on the same random weights: fp8_vs_exact_psnr_db, fp8_vs_exact_max_abs (8-bit frames),
steps20_vs_30_psnr_db, steps15_vs_30_psnr_db, steps10_vs_30_psnr_db, animate_512_fp8_s_per_frame,
peak_vram_512_fp8_gb.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30

# (width, height, frames) of each stage; the dry run shrinks them (`_plan`).
REAL = {"preset": "sd15", "device": "cuda", "steps": 30, "animate_512": (512, 512, 30), "animate_512x768": (512, 768, 20),
        "cap8gb": (512, 768, 100, 8), "cap6gb": (512, 512, 100, 6), "sampler_frames": 20, "batched": {8: 4, 16: 3},
        "estimate_sizes": [(512, 512), (512, 768), (768, 768)], "official": (512, 512, 6), "deviation": (512, 4)}
DRY = {"preset": "tiny", "device": "cpu", "steps": 2, "animate_512": (64, 64, 4), "animate_512x768": (64, 96, 3),
       "cap8gb": (64, 96, 4, 8), "cap6gb": (64, 64, 4, 6), "sampler_frames": 2, "batched": {8: 2, 16: 2},
       "estimate_sizes": [(64, 64), (64, 96), (96, 96)], "official": (64, 64, 3), "deviation": (64, 2)}
KEYS = ("commit", "gpu", "torch", "diffusers", "animate_512_s_per_frame", "animate_512x768_s_per_frame",
        "sampler_512_s_per_frame", "batched8_frames_per_s", "batched16_frames_per_s", "peak_vram_512_gb",
        "peak_vram_512x768_gb", "cap8gb_512x768_ok", "cap6gb_512_ok", "golden_fp32_max_abs", "graph_equals_eager",
        "memory_estimate", "official_512_s_per_frame", "speedup_vs_official", "fp8_vs_exact_psnr_db",
        "fp8_vs_exact_max_abs", "steps20_vs_30_psnr_db", "steps15_vs_30_psnr_db", "steps10_vs_30_psnr_db",
        "animate_512_fp8_s_per_frame", "peak_vram_512_fp8_gb")
OFFICIAL_KEYS = ("official_512_s_per_frame", "official_versions")  # what the official part measures
PARTS = ("all", "pack", "official")


# ------------------------------------------------------------------------------------------------ inputs
def prepare_inputs(work: Path, plan: dict, video: bool = True) -> dict:
    """Random weights, the UNet config, a source picture and a DWPose-style render video (and its frames as
    PNG for the official code), made once per run; the same in both parts (fixed seeds). `video`: False for
    the official part, whose call carries no PyAV."""
    import numpy as np
    from PIL import Image

    from benchmarks.bench_sampler import synthetic_pose
    from talkingpose.random_weights import PRESETS, write_random_weights

    weights = write_random_weights(work / "models", plan["preset"])
    config = work / "unet_config.json"
    config.write_text(json.dumps({**PRESETS[plan["preset"]]["unet"], "_class_name": "UNet2DConditionModel"}))
    width, height = max(s[0] for s in plan["estimate_sizes"]), max(s[1] for s in plan["estimate_sizes"])
    frames = max(plan["cap8gb"][2], plan["cap6gb"][2], plan["animate_512"][2])
    source = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(source).save(work / "source.png")
    video = work / "poses.mp4"
    poses = [synthetic_pose(i, max(width, height))[:height, :width] for i in range(frames)]
    for i, pose in enumerate(poses[:plan["official"][2]]):
        Image.fromarray(pose).resize(plan["official"][:2]).save(work / f"pose_{i:03d}.png")
    if video:
        from talkingpose.video_io import VideoWriter

        with VideoWriter(video, 25, (width, height)) as writer:
            for pose in poses:
                writer.write(pose)
    Image.fromarray(source).resize(plan["official"][:2]).save(work / "source_official.png")
    return {"models": str(work / "models"), "unet_config": str(config), "source": str(work / "source.png"),
            "poses": str(video), "weights": {k: str(v) for k, v in weights.items()}}


# ------------------------------------------------------------------------------------------------ stages
def _device_peak_gb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None


def stage_animate(args, inputs, plan) -> dict:
    """End to end: `animate.run` from the render video (pose read, sampled, decoded, encoded, frames and
    states kept); s/frame between the first and the last kept frame (the first holds the graph capture)."""
    import torch

    from talkingpose import animate
    from talkingpose.sampler import SamplerSettings

    width, height, frames = args.width, args.height, args.frames
    if args.cap_gb and plan["device"] == "cuda":
        torch.cuda.set_per_process_memory_fraction(args.cap_gb * GIB / torch.cuda.get_device_properties(0).total_memory)
    stamps = []
    out = Path(args.work) / f"animate-{width}x{height}-{frames}-{args.cap_gb}{'-fp8' if args.weights_fp8 else ''}.mp4"
    job = animate.AnimateJob(out=out, poses=Path(inputs["poses"]), source=Path(inputs["source"]), width=width,
                             height=height, frames=frames, models_root=Path(inputs["models"]), device=plan["device"],
                             settings=SamplerSettings(steps=plan["steps"]), overwrite=True, weights_fp8=args.weights_fp8)
    if plan["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        animate.run(job, lambda done, total: stamps.append(time.perf_counter()))
    except torch.OutOfMemoryError as exc:
        return {"ok": False, "error": str(exc)[:300]}
    return {"ok": True, "s_per_frame": (stamps[-1] - stamps[1]) / (len(stamps) - 2), "frames": len(stamps) - 1,
            "peak_gb": _device_peak_gb(plan["device"])}


def stage_estimate(args, inputs, plan) -> dict:
    """Measured peak of a 2-frame render at each size against `memory.estimate_bytes`."""
    import torch

    from talkingpose import animate, memory
    from talkingpose.sampler import SamplerSettings

    rows = []
    for width, height in plan["estimate_sizes"]:
        if plan["device"] == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        job = animate.AnimateJob(out=Path(args.work) / f"estimate-{width}x{height}.mp4", poses=Path(inputs["poses"]),
                                 source=Path(inputs["source"]), width=width, height=height, frames=2,
                                 models_root=Path(inputs["models"]), device=plan["device"],
                                 settings=SamplerSettings(steps=2), overwrite=True)
        animate.run(job)
        estimate = memory.estimate_bytes(width, height, 2 if plan["device"] == "cuda" else 4, plan["preset"],
                                         plan["device"])
        peak = _device_peak_gb(plan["device"])
        # reserved: what the allocator held, the CUDA graph's private pool included (the estimate counts it)
        reserved = torch.cuda.max_memory_reserved() / GIB if plan["device"] == "cuda" else None
        rows.append({"size": f"{width}x{height}", "measured_gb": peak, "measured_reserved_gb": reserved,
                     "estimate_gb": estimate / GIB, "ratio": None if peak is None else estimate / GIB / peak})
    return {"rows": rows}


def stage_graph(args, inputs, plan) -> dict:
    """One frame through the captured CUDA graph and through the eager step: bitwise equal? (On the CPU the
    graph's body on static buffers stands in for the graph.)"""
    import torch

    from benchmarks.bench_sampler import build, encode, synthetic_pose
    from talkingpose import images
    from talkingpose.sampler import initial_noise, make_scheduler, prepare_step

    device = torch.device(plan["device"])
    nets, vae, clip = build(plan["preset"], device, torch.float16 if device.type == "cuda" else torch.float32)
    size = plan["animate_512"][0]
    import numpy as np

    source = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    appearance = encode(nets, vae, clip, source, size, 1)
    pose = nets.pose_features(images.pose_pixels(synthetic_pose(3, size), size, size))
    start = initial_noise(0, nets.latent_channels, size, size)[None]
    out = {}
    for mode in ("graph" if device.type == "cuda" else "static", "eager"):
        scheduler = make_scheduler()
        scheduler.set_timesteps(plan["steps"])
        out[mode] = prepare_step(nets, scheduler, [appearance], 3.5, mode=mode).denoise(start, pose).cpu()
    first, second = out.values()
    return {"equal": bool(torch.equal(first, second)), "max_abs": float((first - second).abs().max())}


def stage_golden(args, inputs, plan) -> dict:
    """The float32 golden case on the device with every speed path on (CUDA graph, prepared step), TF32 off:
    largest difference from the official frames and latents."""
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    from talkingpose.pipeline import load_pipeline
    from talkingpose.sampler import SamplerSettings

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    case_dir = Path(args.golden)
    case = json.loads((case_dir / "case.json").read_text())
    expected = load_file(str(case_dir / "expected.safetensors"))
    pipe = load_pipeline(case_dir, case_dir / "vae", case_dir / "image_encoder", dtype=torch.float32,
                         device=plan["device"], attention_heads=case["unet_config"]["attention_head_dim"])
    pipe.latent_scale = case["latent_scale"]
    appearance = pipe.encode_appearance(Image.open(case_dir / "source.png"), case["width"], case["height"])
    sampler = pipe.sampler(appearance, SamplerSettings(steps=case["steps"], cfg=case["cfg"], beta=case["beta"],
                                                       seed=case["seed"]), scheduler_config=case["scheduler"])
    poses = (Image.open(case_dir / f"pose_{i:03d}.png") for i in range(case["frames"]))
    latents = torch.stack([latent for _, latent in sampler.frames(pipe.pose_pixels(p, appearance) for p in poses)])
    frames = pipe.decode(latents).cpu()
    return {"latent_max_abs": float((latents.cpu() - expected["latents"]).abs().max()),
            "frame_max_abs": float((frames - expected["frames"]).abs().max())}


def stage_deviation(args, inputs, plan) -> dict:
    """The opt-ins that change frames against the exact render (`bench_deviation`): fp8 weight storage and
    20/15/10 steps against 30, on the run's random weights and inputs, in the device's compute precision."""
    import torch
    from PIL import Image

    from benchmarks.bench_deviation import deviations
    from talkingpose.pipeline import load_pipeline
    from talkingpose.video_io import VideoReader

    size, frames = plan["deviation"]
    weights = inputs["weights"]
    dtype = torch.float16 if plan["device"] == "cuda" else torch.float32
    with VideoReader(Path(inputs["poses"]), max_frames=frames) as reader:
        poses = list(reader)

    def load(weights_fp8: bool):
        return load_pipeline(Path(weights["model"]), Path(weights["vae"]), Path(weights["image_encoder"]),
                             device=plan["device"], dtype=dtype, weights_fp8=weights_fp8)

    return deviations(load, Image.open(inputs["source"]).convert("RGB"), poses, size, size)


_DRY_RUN = False  # the driver's --dry-run, handed to every stage
STAGES = {"animate": stage_animate, "estimate": stage_estimate, "graph": stage_graph, "golden": stage_golden,
          "deviation": stage_deviation}


# ------------------------------------------------------------------------------------------------ driver
def _child(work: Path, name: str, timeout: int, *extra) -> dict | None:
    out = work / ("".join(c if c.isalnum() else "-" for c in f"{name}-{'-'.join(map(str, extra))}")[:120] + ".json")
    command = [sys.executable, "-m", "benchmarks.gpu_figures", "--stage", name, "--work", str(work), "--stage-out",
               str(out), *map(str, extra)] + (["--dry-run"] if _DRY_RUN else [])
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"[{name} {' '.join(map(str, extra))}] stopped after {timeout} s: its figures stay null", flush=True)
        return None
    print(f"[{name} {' '.join(map(str, extra))}] {time.perf_counter() - started:.0f} s, exit {done.returncode}", flush=True)
    return json.loads(out.read_text()) if done.returncode == 0 and out.is_file() else None


def _sampler(work: Path, plan: dict, videos: int, frames: int, timeout: int) -> dict | None:
    out = work / f"sampler-{videos}.json"
    command = [sys.executable, "-m", "benchmarks.bench_sampler", "--preset", plan["preset"], "--device", plan["device"],
               "--size", str(plan["animate_512"][0]), "--steps", str(plan["steps"]), "--frames", str(frames),
               "--videos", str(videos), "--dtype", "fp16" if plan["device"] == "cuda" else "fp32", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, timeout=timeout)
    return json.loads(out.read_text()) if done.returncode == 0 and out.is_file() else None


def _official(args, work: Path, inputs: dict, plan: dict) -> dict | None:
    """The official inference in its own process, its pinned wheels first on the path."""
    if args.official is None:
        return None
    official = Path(args.official).resolve()
    site = work / "official-site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), *map(str, sorted((official / "wheels").glob("*.whl")))], check=True)
    official_inputs = work / "official-inputs"
    official_inputs.mkdir(exist_ok=True)
    (official_inputs / "source.png").write_bytes((work / "source_official.png").read_bytes())
    width, height, frames = plan["official"]
    for i in range(frames):
        (official_inputs / f"pose_{i:03d}.png").write_bytes((work / f"pose_{i:03d}.png").read_bytes())
    out = work / "official.json"
    env = {**os.environ, "PYTHONPATH": str(site)}
    command = [sys.executable, str(ROOT / "benchmarks" / "official_speed.py"), str(official / "TalkingPose"),
               inputs["models"], inputs["unet_config"], str(official_inputs), str(width), str(height), str(frames),
               str(plan["steps"]), plan["device"], "fp16", str(out)]  # the official pipeline casts its CLIP input
    # to fp16 (pipeline_pose2vid_long.py): it runs in fp16 only, also in the CPU dry run
    done = subprocess.run(command, env=env, cwd=work, timeout=args.timeout)
    return json.loads(out.read_text()) if done.returncode == 0 and out.is_file() else None


def _identity(plan: dict) -> dict:
    import diffusers
    import torch

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    gpu = torch.cuda.get_device_name() if plan["device"] == "cuda" else "CPU (dry run)"
    return {"commit": commit + ("+dirty" if dirty else ""), "gpu": gpu, "torch": torch.__version__,
            "diffusers": diffusers.__version__}


def run_all(args) -> Path:
    global _DRY_RUN
    _DRY_RUN = args.dry_run
    plan = DRY if args.dry_run else REAL
    if args.part == "official" and args.official is None:
        raise SystemExit("--part official measures the official code: give --official CARRY_DIR "
                         "(benchmarks/prepare_official.sh makes it).")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    inputs = prepare_inputs(work, plan, video=args.part != "official")
    (work / "inputs.json").write_text(json.dumps(inputs))
    print(f"[inputs] {time.perf_counter() - started:.0f} s", flush=True)
    figures = dict.fromkeys(KEYS)
    figures.update(_identity(plan))
    if args.part != "official":
        _pack_figures(args, work, plan, figures)
    official = _official(args, work, inputs, plan) if args.part != "pack" else None
    if official:
        figures["official_512_s_per_frame"] = official["official_s_per_frame"]
        figures["official_versions"] = {k: official[k] for k in ("official_diffusers", "official_transformers")}
        if figures["animate_512_s_per_frame"]:
            figures["speedup_vs_official"] = official["official_s_per_frame"] / figures["animate_512_s_per_frame"]
    figures["dry_run"] = bool(args.dry_run)
    if args.part != "all":
        figures["part"] = args.part
    figures["wall_s"] = time.perf_counter() - started
    return _write(figures, Path(args.out))


def _pack_figures(args, work: Path, plan: dict, figures: dict) -> None:
    """Every figure of the pack's own code (all but the official comparison), into `figures`."""
    t = args.timeout
    a512 = _child(work, "animate", t, "--width", plan["animate_512"][0], "--height", plan["animate_512"][1],
                  "--frames", plan["animate_512"][2])
    a768 = _child(work, "animate", t, "--width", plan["animate_512x768"][0], "--height", plan["animate_512x768"][1],
                  "--frames", plan["animate_512x768"][2])
    fp8 = _child(work, "animate", t, "--width", plan["animate_512"][0], "--height", plan["animate_512"][1],
                 "--frames", plan["animate_512"][2], "--weights-fp8")
    for key, run in (("512", a512), ("512x768", a768), ("512_fp8", fp8)):
        if run and run["ok"]:
            figures[f"animate_{key}_s_per_frame"] = run["s_per_frame"]
            figures[f"peak_vram_{key}_gb"] = run["peak_gb"]
    for key, (width, height, frames, cap) in (("cap8gb_512x768_ok", plan["cap8gb"]), ("cap6gb_512_ok", plan["cap6gb"])):
        run = _child(work, "animate", t, "--width", width, "--height", height, "--frames", frames, "--cap-gb", cap)
        figures[key] = bool(run and run["ok"] and run["frames"] == frames)
    sampler = _sampler(work, plan, 1, plan["sampler_frames"], t)
    if sampler:
        figures["sampler_512_s_per_frame"] = sampler["sampler_s_per_frame"]
    for videos, frames in plan["batched"].items():
        batched = _sampler(work, plan, videos, frames, t)
        figures[f"batched{videos}_frames_per_s"] = batched and batched["frames_per_s"]
    graph = _child(work, "graph", t)
    figures["graph_equals_eager"] = graph and graph["equal"]
    golden = args.golden and _child(work, "golden", t, "--golden", args.golden)
    figures["golden_fp32_max_abs"] = golden and max(golden["latent_max_abs"], golden["frame_max_abs"])
    estimate = _child(work, "estimate", t)
    figures["memory_estimate"] = estimate and estimate["rows"]
    deviation = _child(work, "deviation", t)
    if deviation:
        figures["fp8_vs_exact_psnr_db"] = deviation["fp8 weight storage"]["psnr_db"]
        figures["fp8_vs_exact_max_abs"] = deviation["fp8 weight storage"]["max_abs"]
        for steps in (20, 15, 10):
            figures[f"steps{steps}_vs_30_psnr_db"] = deviation[f"{steps} steps"]["psnr_db"]


def _write(figures: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "".join(c if c.isalnum() else "-" for c in figures["gpu"]).strip("-")
    suffix = ("-dry-run" if figures["dry_run"] else "") + (f"-{figures['part']}" if figures.get("part") else "")
    path = out_dir / f"{stamp}-{name}{suffix}.json"
    path.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    print(f"written: {path}")
    return path


def merge(paths: list[Path], out_dir: Path) -> Path:
    """The pack part and the official part (`--part`) as one results file: the pack part's figures, the
    official part's measurement, and the speed-up when both ran on the same GPU (timings of two cards are not
    compared: then it stays null and `official_gpu` says where the official code ran)."""
    parts = {}
    for path in paths:
        figures = json.loads(Path(path).read_text())
        part = figures.get("part")
        if part not in ("pack", "official") or part in parts:
            raise SystemExit(f"{path} is not the {'other ' if part in parts else ''}part of a two-part run "
                             f"(its \"part\" is {part!r}); give one pack part and one official part.")
        parts[part] = figures
    if len(parts) != 2:
        raise SystemExit("give two files: the pack part and the official part (gpu_figures.sh --part ...)")
    pack, official = parts["pack"], parts["official"]
    if pack["dry_run"] != official["dry_run"]:
        raise SystemExit("one part is a CPU dry run and the other is not: merge parts of the same kind of run.")
    merged = {key: value for key, value in pack.items() if key != "part"}
    for key in OFFICIAL_KEYS:
        merged[key] = official.get(key)
    if official["commit"] != pack["commit"]:
        merged["official_commit"] = official["commit"]
    same_gpu = official["gpu"] == pack["gpu"]
    if not same_gpu:
        merged["official_gpu"] = official["gpu"]
    if same_gpu and merged["official_512_s_per_frame"] and merged["animate_512_s_per_frame"]:
        merged["speedup_vs_official"] = merged["official_512_s_per_frame"] / merged["animate_512_s_per_frame"]
    else:
        merged["speedup_vs_official"] = None
    merged["wall_s"] = pack["wall_s"] + official["wall_s"]
    merged["merged_from"] = [Path(p).name for p in paths]
    return _write(merged, out_dir)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny preset, tiny sizes, on the CPU (same keys)")
    ap.add_argument("--official", help="folder made by benchmarks/prepare_official.sh (official code + wheels)")
    ap.add_argument("--golden", help="a golden case folder (e.g. ../shared/golden/sampler-a); without it golden_fp32_max_abs is null")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work", default="/tmp/talkingpose-gpu-figures")
    ap.add_argument("--timeout", type=int, default=300, help="seconds allowed to each stage")
    ap.add_argument("--stage", choices=sorted(STAGES))
    ap.add_argument("--stage-out")
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--cap-gb", type=float, default=0)
    ap.add_argument("--weights-fp8", action="store_true", help="(animate stage) fp8 weight storage")
    ap.add_argument("--part", choices=PARTS, default="all",
                    help="pack: all but the official comparison; official: that alone (two device calls, see "
                         "gpu_figures.sh); all (default): both")
    ap.add_argument("--merge", nargs=2, type=Path, metavar=("PART", "PART"),
                    help="join a pack part and an official part into one results file in --out")
    args = ap.parse_args(argv)
    if args.merge:
        merge(args.merge, Path(args.out))
        return
    if args.stage is None:
        run_all(args)
        return
    inputs = json.loads((Path(args.work) / "inputs.json").read_text())
    plan = DRY if args.dry_run else REAL
    Path(args.stage_out).write_text(json.dumps(STAGES[args.stage](args, inputs, plan)))


if __name__ == "__main__":
    main()
