"""Random weights of the real architectures, in the real file formats.

No weights can be downloaded on CI machines or on a first try offline, so the tests, the benchmark and the
command line's `--random-weights` smoke run build models here. Everything goes through the same loaders as the
released files; only the values are random (speed does not depend on them).
"""
from __future__ import annotations

from pathlib import Path

import torch

SD15_UNET = {
    "in_channels": 4, "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2,
    "cross_attention_dim": 768, "attention_head_dim": 8,
}
SD15_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "scaling_factor": 0.18215,
}
VIT_L14 = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
    "patch_size": 14, "image_size": 224, "projection_dim": 768, "hidden_act": "quick_gelu",
}

PRESETS = {
    # The real SD1.5-size networks (about 2.6 GB of float32 per UNet).
    "sd15": {"unet": SD15_UNET, "vae": SD15_VAE, "clip": VIT_L14},
    # Small networks of the same layout, fast on a CPU: tests, CI and smoke runs.
    "tiny": {
        "unet": {**SD15_UNET, "block_out_channels": (32, 64, 64, 64), "cross_attention_dim": 32},
        "vae": {**SD15_VAE, "block_out_channels": (32, 32, 32, 32), "layers_per_block": 1},
        "clip": {**VIT_L14, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "patch_size": 32, "projection_dim": 32},
    },
}
# A small UNet that fits the full-size SD1.5 VAE and ViT-L/14 image encoder: what ComfyUI's own VAE and
# CLIP Vision loaders recognise (they identify models by their full architecture).
PRESETS["tiny-vitl"] = {**PRESETS["sd15"], "unet": {**PRESETS["tiny"]["unet"], "cross_attention_dim": 768}}


def _unet(config: dict, device=None):
    from diffusers import UNet2DConditionModel

    with torch.device(device or "cpu"):
        return UNet2DConditionModel(**config)


def random_networks(preset: str = "tiny", device=None, dtype=torch.float32, seed: int = 0):
    """TalkingPose networks with random weights, built in memory (for the benchmark)."""
    from .networks import TalkingPoseNetworks
    from .pose_guider import PoseGuider

    torch.manual_seed(seed)
    unet_config = PRESETS[preset]["unet"]
    denoising = _unet(unet_config, device)
    reference = _unet(unet_config, device)
    reference.conv_norm_out, reference.conv_out = None, torch.nn.Identity()
    with torch.device(device or "cpu"):
        guider = PoseGuider(unet_config["block_out_channels"][0])
    nets = TalkingPoseNetworks(denoising, reference, guider, fingerprint=f"random-{preset}-{seed}", source=f"random {preset}")
    return nets.to(dtype=dtype).eval().requires_grad_(False)


def write_random_model(folder: Path, preset: str = "tiny", seed: int = 0, dtype=torch.float32, motion_modules: bool = False) -> Path:
    """Write denoising_unet.pth, reference_unet.pth and pose_guider.pth as the release has them."""
    from .pose_guider import PoseGuider

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet_config = PRESETS[preset]["unet"]
    denoising = {k: v.to(dtype) for k, v in _unet(unet_config).state_dict().items()}
    # The reference UNet's pose-guider-free output head is absent from the released file.
    reference = {k: v.to(dtype) for k, v in _unet(unet_config).state_dict().items() if not k.startswith(("conv_norm_out.", "conv_out."))}
    if motion_modules:  # as AnimateAnyone stage-2 checkpoints carry them
        width = unet_config["block_out_channels"][0]
        denoising["down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"] = torch.zeros(width, width, dtype=dtype)
        denoising["up_blocks.3.motion_modules.2.temporal_transformer.proj_out.weight"] = torch.zeros(width, width, dtype=dtype)
    guider = {k: v.to(dtype) for k, v in PoseGuider(unet_config["block_out_channels"][0]).state_dict().items()}
    torch.save(denoising, folder / "denoising_unet.pth")
    torch.save(reference, folder / "reference_unet.pth")
    torch.save(guider, folder / "pose_guider.pth")
    return folder


def write_random_vae(folder: Path, preset: str = "tiny", seed: int = 0) -> Path:
    """A diffusers AutoencoderKL folder (config.json + safetensors)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    AutoencoderKL(**PRESETS[preset]["vae"]).save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


def write_random_image_encoder(folder: Path, preset: str = "tiny", seed: int = 0) -> Path:
    """A transformers CLIPVisionModelWithProjection folder (config.json + safetensors)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**PRESETS[preset]["clip"])).save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


def write_random_weights(root: Path, preset: str = "tiny", seed: int = 0) -> dict[str, Path]:
    """The three folders the standalone pipeline loads: talkingpose model, VAE and image encoder."""
    root = Path(root)
    return {
        "model": write_random_model(root / "talkingpose" / f"random-{preset}", preset, seed),
        "vae": write_random_vae(root / "vae" / f"random-{preset}", preset, seed),
        "image_encoder": write_random_image_encoder(root / "clip_vision" / f"random-{preset}", preset, seed),
    }
