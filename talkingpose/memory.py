"""How much memory a render needs: the fit check before a render starts, and what the ComfyUI nodes ask ComfyUI's
memory manager to keep free beyond the weights.

The estimate is a sum of named terms, each counted from what it is rather than fitted:

- weights: the parameter count of each network resident in a phase (built from its configuration in
  `random_weights.PRESETS` on the meta device: shapes, no data), times the compute dtype's size. The standalone
  pipeline (`pipeline.py`) holds the encode side (reference UNet, CLIP image encoder) and the VAE on the device
  while it encodes the source, the sampler side (denoising UNet, pose guider) and the VAE while it samples; the
  side that is not running waits on the CPU, unless the CPU is the compute device (then everything stays in RAM).
- the sampler's constants for a video (`guided_step.py`, `reference_attention.py`): the fused Q/K/V weight copy
  of every self-attention block, every cross-attention block's output (kept: it is the same at every step), the
  appearance's reference keys/values, projected once, and the key/value buffers that hold them next to each
  step's own, the time table and the CUDA graph's static inputs.
- activations, which grow with the output's pixel count: a UNet pass (`unet_pass_bytes`) and the VAE at full
  resolution (`VAE_BYTES_PER_PIXEL`, measured).

A render goes through phases with different resident sets (`estimate_phases`); the estimate is the largest.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import psutil

from .errors import TalkingPoseError

log = logging.getLogger("TalkingPose")

# Bytes of peak memory of the VAE per output pixel in float32 (half precision halves them): peak RSS of encoding
# and decoding one picture, measured with `python -m benchmarks.bench_size_memory` at 512² on a 2-core x86-64 CPU
# machine: SD1.5 VAE 4434 B/pixel, tiny 875-913 (smaller sizes give larger figures: the fixed part of the peak).
VAE_BYTES_PER_PIXEL = {"sd15": 4700, "tiny": 1000}
# Latent-size maps of the first block's width alive at the peak of an SD1.5-layout UNet pass, per row: the skip
# connections kept for the up blocks, q/k/v and the feed-forward's 8x wide intermediate of the highest-resolution
# transformer block, with the reference keys/values doubling k and v (about 24), doubled for allocator slack.
# Attention scores are not counted: PyTorch's flash and memory-efficient SDPA kernels never hold them.
UNET_PASS_MAPS = 48
GUIDED_ROWS = 2  # the default cfg guides: an unconditional and a conditional row per step
ESTIMATE_STEPS = 30  # the paper's step count, for the time table


@dataclass(frozen=True)
class Term:
    name: str
    bytes: int


def total(terms: list[Term]) -> int:
    return sum(term.bytes for term in terms)


# ------------------------------------------------------------------------------------------------ per side
def unet_pass_bytes(unet_width: int, rows: int, width: int, height: int, dtype_bytes: int) -> int:
    """Activations of one UNet pass over `rows` latents of a width × height output (see UNET_PASS_MAPS)."""
    return UNET_PASS_MAPS * rows * (height // 8) * (width // 8) * unet_width * dtype_bytes


def encoder_terms(networks, width: int, height: int, dtype_bytes: int) -> list[Term]:
    """What Appearance Encode needs beyond the reference UNet's weights."""
    tokens = sum(b.tokens * b.channels for b in networks.attention_blocks(width, height) if b.kind == "self")
    return [
        Term("reference UNet pass activations", unet_pass_bytes(networks.unet_width, 1, width, height, dtype_bytes)),
        # the appearance's product: every self-attention block's input tokens ([1, tokens, channels])
        Term("reference tokens", tokens * dtype_bytes),
    ]


def sampler_terms(networks, width: int, height: int, rows: int, steps: int, dtype_bytes: int) -> list[Term]:
    """What sampling one video needs beyond the denoising UNet's and pose guider's weights: the constants the
    prepared step keeps for the whole video (`guided_step.GuidedStep`), then one pass's activations."""
    blocks = networks.attention_blocks(width, height)
    self_blocks = [b for b in blocks if b.kind == "self"]
    cross_blocks = [b for b in blocks if b.kind == "cross"]
    unet = networks.denoising_unet
    latent_pixels = (height // 8) * (width // 8)
    time_width = unet.time_embedding.linear_2.out_features + sum(
        m.time_emb_proj.out_features for m in unet.modules() if getattr(m, "time_emb_proj", None) is not None)
    return [
        # the appearance on the device: the CLIP context token and the reference tokens
        Term("appearance", (networks.cross_attention_dim + sum(b.tokens * b.channels for b in self_blocks)) * dtype_bytes),
        # to_q, to_k and to_v of each self-attention block concatenated into one [3·inner, channels] weight
        Term("fused Q/K/V weights", sum(3 * b.inner * b.channels for b in self_blocks) * dtype_bytes),
        # each cross-attention block's output for all rows: one context token, so the same at every step
        Term("kept cross-attention outputs", sum(rows * b.tokens * b.channels for b in cross_blocks) * dtype_bytes),
        # the appearance's tokens projected to keys and values, once per video
        Term("reference keys/values", sum(2 * b.tokens * b.inner for b in self_blocks) * dtype_bytes),
        # per self-attention block, keys and values of the conditional row: this step's tokens, then the reference's
        Term("key/value buffers", sum(2 * 2 * b.tokens * b.inner for b in self_blocks) * dtype_bytes),
        # time embedding and every resnet's time projection of each step; the graph's static inputs (pose features
        # of all rows in the compute dtype, float32 latents in and out)
        Term("time table and static buffers", (steps + 1) * time_width * dtype_bytes
             + rows * networks.unet_width * latent_pixels * dtype_bytes + 2 * networks.latent_channels * latent_pixels * 4),
        Term("UNet pass activations", unet_pass_bytes(networks.unet_width, rows, width, height, dtype_bytes)),
    ]


def appearance_encode_bytes(networks, width: int, height: int) -> int:
    """Memory Appearance Encode needs beyond the reference UNet's weights (a memory manager's `memory_required`)."""
    return total(encoder_terms(networks, width, height, networks.weights_dtype.itemsize))


def denoise_step_bytes(networks, appearance, cfg: float, steps: int) -> int:
    """Memory sampling needs beyond the denoising UNet's and pose guider's weights: the video's constants and a
    UNet pass over one row, two under guidance (a memory manager's `memory_required`)."""
    from .guided_step import is_guided

    rows = 2 if is_guided(cfg) else 1
    return total(sampler_terms(networks, appearance.width, appearance.height, rows, steps,
                               networks.weights_dtype.itemsize))


# ------------------------------------------------------------------------------------------------ a whole render
@functools.lru_cache(maxsize=None)
def _preset(architecture: str):
    """The preset's TalkingPose networks built on the meta device (shapes, no data) and each network's parameter
    count, the VAE's and CLIP image encoder's included."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .random_weights import PRESETS, random_networks

    with torch.random.fork_rng(devices=[]):  # random_networks seeds; the caller's random state stays as it was
        networks = random_networks(architecture, device="meta")
    with torch.device("meta"):
        vae = AutoencoderKL(**PRESETS[architecture]["vae"])
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**PRESETS[architecture]["clip"]))
    modules = {"denoising UNet": networks.denoising_unet, "reference UNet": networks.reference_unet,
               "pose guider": networks.pose_guider, "VAE": vae, "CLIP image encoder": image_encoder}
    return networks, {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}


def resident_parameters(architecture: str, phase: str, device_type: str = "cuda") -> dict[str, int]:
    """Parameter count of each network on the compute device during `phase` ("encode" or "sample")."""
    _, counts = _preset(architecture)
    if device_type == "cpu":  # the CPU is also where the side that is not running waits: everything stays
        return dict(counts)
    waiting = ("denoising UNet", "pose guider") if phase == "encode" else ("reference UNet", "CLIP image encoder")
    return {name: n for name, n in counts.items() if name not in waiting}


def estimate_phases(width: int, height: int, dtype_bytes: int = 4, architecture: str = "sd15",
                    device_type: str = "cuda") -> dict[str, list[Term]]:
    """The terms of each phase of a standalone render at `width`×`height` (one video, guided), by phase."""
    networks, _ = _preset(architecture)

    def weights(phase):
        return [Term(f"{name} weights", n * dtype_bytes)
                for name, n in resident_parameters(architecture, phase, device_type).items()]

    vae = Term("VAE activations", VAE_BYTES_PER_PIXEL[architecture] * width * height * dtype_bytes // 4)
    sampling = sampler_terms(networks, width, height, GUIDED_ROWS, ESTIMATE_STEPS, dtype_bytes)
    constants = [t for t in sampling if t.name != "UNet pass activations"]
    # On CUDA the step is a captured graph: its pass's working memory stays reserved in the graph's private pool
    # for the whole video, so the decoder's activations come on top of it instead of reusing it.
    kept_pass = [Term("CUDA graph pool", sampling[-1].bytes)] if device_type == "cuda" else []
    return {
        "source VAE encode": weights("encode") + [vae],
        "reference pass": weights("encode") + encoder_terms(networks, width, height, dtype_bytes),
        "sampling step": weights("sample") + sampling,
        "frame decode": weights("sample") + constants + kept_pass + [vae],
    }


def estimate_bytes(width: int, height: int, dtype_bytes: int = 4, architecture: str = "sd15",
                   device_type: str = "cuda") -> int:
    """Peak memory of a standalone render at `width`×`height` (one frame at a time): its largest phase."""
    return max(total(terms) for terms in estimate_phases(width, height, dtype_bytes, architecture, device_type).values())


def _system_memory() -> tuple[int | None, int | None]:
    """(total, available) RAM in bytes, or None where this system does not say. psutil reads them on every OS
    (the kernel's MemAvailable on Linux, GlobalMemoryStatusEx on Windows)."""
    try:
        memory = psutil.virtual_memory()
    except (OSError, RuntimeError, AttributeError):
        return None, None
    return memory.total, memory.available


def device_memory(device) -> tuple[int | None, int | None, str]:
    """(total, available, what) for the memory a render on `device` uses."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return total, free, f"GPU memory of {torch.cuda.get_device_name(device)}"
    total, available = _system_memory()
    return total, available, "RAM"


def largest_square(memory: int, dtype_bytes: int, architecture: str, device_type: str) -> int:
    """The largest side (a multiple of 8, 0 if none from 64 up) of a square output whose estimate fits `memory`."""
    low, high = 0, 8192 // 8
    while low < high:  # every term grows with the size: bisect on the side in steps of 8
        middle = (low + high + 1) // 2
        if estimate_bytes(8 * middle, 8 * middle, dtype_bytes, architecture, device_type) <= memory:
            low = middle
        else:
            high = middle - 1
    return 8 * low if 8 * low >= 64 else 0


def check_fits(width: int, height: int, device, dtype, architecture: str = "sd15") -> int:
    """Refuses a size that needs more memory than the device has at all; warns when it needs more than is free
    now. Returns the estimate in bytes."""
    import torch

    dtype_bytes = torch.tensor([], dtype=dtype).element_size()
    device_type = getattr(device, "type", str(device))
    need = estimate_bytes(width, height, dtype_bytes, architecture, device_type)
    total_memory, available, what = device_memory(device)
    gib = 2**30
    if total_memory is not None and need > total_memory:
        largest = largest_square(total_memory, dtype_bytes, architecture, device_type)
        weights = max(sum(resident_parameters(architecture, phase, device_type).values())
                      for phase in ("encode", "sample")) * dtype_bytes
        advice = (f"Use a smaller size (up to about {largest}x{largest} fits)." if largest else
                  f"No size fits: the weights alone need about {weights / gib:.1f} GiB; use a machine with more memory.")
        raise TalkingPoseError(
            f"--size {width}x{height} needs about {need / gib:.1f} GiB of memory, more than the {total_memory / gib:.1f} GiB "
            f"{what} of this machine. {advice}"
        )
    if available is not None and need > available:
        log.warning("--size %dx%d needs about %.1f GiB; only %.1f GiB of %s is free now.", width, height,
                    need / gib, available / gib, what)
    return need
