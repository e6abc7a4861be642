"""How much memory an output size needs, checked before a render starts.

The peak comes from the VAE at full resolution (encoding the source, decoding each frame): its activations grow
with the pixel count, while the UNet works on latents 64 times smaller. The figures per pixel are measured
(`python -m benchmarks.bench_size_memory`, float32 on the CPU: peak RSS of the VAE encoding and decoding one
picture); half precision halves them.
"""
from __future__ import annotations

import logging

import psutil

from .errors import TalkingPoseError

log = logging.getLogger("TalkingPose")

# Bytes of peak memory per output pixel in float32, and the weights. Measured at 512² on a 2-core x86-64 CPU
# machine: SD1.5 VAE 4434 B/pixel, tiny 875-913 (smaller sizes give larger figures: the fixed part of the peak).
BYTES_PER_PIXEL = {"sd15": 4700, "tiny": 1000}
WEIGHT_BYTES = {"sd15": 4_500_000_000, "tiny": 50_000_000}


def estimate_bytes(width: int, height: int, dtype_bytes: int = 4, architecture: str = "sd15") -> int:
    """Peak memory of a render at `width`×`height` (one frame at a time)."""
    scale = dtype_bytes / 4
    return int(WEIGHT_BYTES[architecture] * scale + BYTES_PER_PIXEL[architecture] * width * height * scale)


def appearance_encode_bytes(networks, width: int, height: int) -> int:
    """Activations of encoding an appearance beyond the weights (for a memory manager's `memory_required`): one
    reference UNet pass and the keys/values it records (`TalkingPoseNetworks.forward_memory`/`reference_memory`)."""
    return networks.forward_memory(1, width, height) + networks.reference_memory(width, height)


def denoise_step_bytes(networks, appearance, cfg: float) -> int:
    """Activations of one denoising step beyond the weights: a UNet pass over one row, two under guidance, and
    the appearance's keys/values on the device."""
    from .guided_step import is_guided

    rows = 2 if is_guided(cfg) else 1
    return networks.forward_memory(rows, appearance.width, appearance.height) + appearance.bytes()


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


def check_fits(width: int, height: int, device, dtype, architecture: str = "sd15") -> int:
    """Refuses a size that needs more memory than the device has at all; warns when it needs more than is free
    now. Returns the estimate in bytes."""
    import torch

    need = estimate_bytes(width, height, torch.tensor([], dtype=dtype).element_size(), architecture)
    total, available, what = device_memory(device)
    gib = 2**30
    if total is not None and need > total:
        room = total - WEIGHT_BYTES[architecture]
        largest = int((room / BYTES_PER_PIXEL[architecture]) ** 0.5) // 8 * 8 if room > 0 else 0
        advice = (f"Use a smaller size (up to about {largest}x{largest} fits)." if largest >= 64 else
                  f"No size fits: the weights alone need about {WEIGHT_BYTES[architecture] / gib:.1f} GiB; use a "
                  "machine with more memory.")
        raise TalkingPoseError(
            f"--size {width}x{height} needs about {need / gib:.1f} GiB of memory, more than the {total / gib:.1f} GiB "
            f"{what} of this machine. {advice}"
        )
    if available is not None and need > available:
        log.warning("--size %dx%d needs about %.1f GiB; only %.1f GiB of %s is free now.", width, height,
                    need / gib, available / gib, what)
    return need
