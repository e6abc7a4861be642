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


def random_motion_modules(unet_config: dict, active: bool) -> dict[str, torch.Tensor]:
    """Motion modules under the official key names, one wherever the official denoising UNet has one (after each
    transformer block, or resnet in blocks without attention, of the down, mid and up blocks). `active=False`
    zeroes their output projections, as AnimateDiff initialises them (identities)."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    widths = unet_config["block_out_channels"]
    layers = unet_config["layers_per_block"]
    places = [(f"down_blocks.{i}", w, layers) for i, w in enumerate(widths)]
    places += [("mid_block", widths[-1], 1)]
    places += [(f"up_blocks.{i}", w, layers + 1) for i, w in enumerate(reversed(widths))]
    official = (("attn1.", "attention_blocks.0."), ("attn2.", "attention_blocks.1."), ("norm1.", "norms.0."),
                ("norm2.", "norms.1."), ("norm3.", "ff_norm."))
    state = {}
    for block, width, count in places:
        for j in range(count):
            module = AnimateDiffTransformer3D(num_attention_heads=8, attention_head_dim=width // 8, in_channels=width,
                                              positional_embeddings="sinusoidal", num_positional_embeddings=32)
            if not active:
                torch.nn.init.zeros_(module.proj_out.weight)
                torch.nn.init.zeros_(module.proj_out.bias)
            for key, tensor in module.state_dict().items():
                name = key.replace("pos_embed.pe", "attn1.pos_encoder.pe")
                for new, old in official:
                    name = name.replace(f".{new}", f".{old}")
                state[f"{block}.motion_modules.{j}.temporal_transformer.{name}"] = tensor
                if name.endswith("attention_blocks.0.pos_encoder.pe"):  # the official keeps one table per attention
                    state[f"{block}.motion_modules.{j}.temporal_transformer.{name.replace('attention_blocks.0.', 'attention_blocks.1.')}"] = tensor.clone()
    return state


def write_random_model(folder: Path, preset: str = "tiny", seed: int = 0, dtype=torch.float32, motion_modules: str | None = None) -> Path:
    """Write denoising_unet.pth, reference_unet.pth and pose_guider.pth as the release has them.

    `motion_modules` adds AnimateDiff-style motion modules to the denoising UNet as stage-2 checkpoints carry
    them: "zero" (output projections zero: identities) or "active" (random weights throughout)."""
    from .pose_guider import PoseGuider

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet_config = PRESETS[preset]["unet"]
    denoising = {k: v.to(dtype) for k, v in _unet(unet_config).state_dict().items()}
    # The reference UNet's pose-guider-free output head is absent from the released file.
    reference = {k: v.to(dtype) for k, v in _unet(unet_config).state_dict().items() if not k.startswith(("conv_norm_out.", "conv_out."))}
    if motion_modules:
        denoising.update({k: v.to(dtype) for k, v in random_motion_modules(unet_config, motion_modules == "active").items()})
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
