"""The standalone pipeline: the TalkingPose networks plus a diffusers VAE and a transformers CLIP image encoder.

The headless command, the benchmark and the golden test use it; inside ComfyUI the nodes use ComfyUI's own
VAE and CLIP Vision objects with the same engine functions.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import images
from .appearance import SD_LATENT_SCALE, Appearance, encode_appearance
from .errors import TalkingPoseError
from .sampler import ClosedLoopSampler, SamplerSettings, SamplerState

log = logging.getLogger("TalkingPose")


def load_vae(path: Path, dtype=torch.float32):
    from diffusers import AutoencoderKL

    path = Path(path)
    if not (path / "config.json").is_file():
        raise TalkingPoseError(
            f"No VAE at {path}: expected a diffusers AutoencoderKL folder (config.json + weights), "
            "e.g. stabilityai/sd-vae-ft-mse."
        )
    vae = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype, low_cpu_mem_usage=False)
    if vae.config.latent_channels != 4:
        raise TalkingPoseError(f"The VAE at {path} has {vae.config.latent_channels} latent channels; TalkingPose needs an SD1.x VAE (4).")
    return vae.eval().requires_grad_(False)


def load_image_encoder(path: Path, dtype=torch.float32):
    from transformers import CLIPVisionModelWithProjection

    path = Path(path)
    if not (path / "config.json").is_file():
        raise TalkingPoseError(
            f"No image encoder at {path}: expected a transformers CLIPVisionModelWithProjection folder, "
            "e.g. lambdalabs/sd-image-variations-diffusers/image_encoder."
        )
    return CLIPVisionModelWithProjection.from_pretrained(str(path), torch_dtype=dtype).eval().requires_grad_(False)


class TalkingPosePipeline:
    def __init__(self, networks, vae, image_encoder, latent_scale: float = SD_LATENT_SCALE):
        self.networks = networks
        self.vae = vae
        self.image_encoder = image_encoder
        self.latent_scale = latent_scale
        projection = image_encoder.config.projection_dim
        if projection != networks.cross_attention_dim:
            raise TalkingPoseError(
                f"The image encoder's projection is {projection} wide but the TalkingPose UNet's cross-attention is "
                f"{networks.cross_attention_dim} wide. Use the sd-image-variations ViT-L/14 image encoder (768)."
            )
        if networks.pose_guider.out_channels != networks.unet_width:
            raise TalkingPoseError(
                f"The pose guider gives {networks.pose_guider.out_channels} channels but the UNet's conv_in makes "
                f"{networks.unet_width}: the two files come from different models."
            )

    @property
    def device(self):
        return self.networks.weights_device

    def to(self, device, dtype=None):
        """Move everything; the VAE stays in float32 under fp16 (SD VAEs overflow in fp16)."""
        vae_dtype = torch.float32 if dtype in (None, torch.float16) else dtype
        for module, module_dtype in ((self.networks, dtype), (self.vae, vae_dtype), (self.image_encoder, dtype)):
            torch.nn.Module.to(module, device=device, dtype=module_dtype)
        return self

    @torch.no_grad()
    def encode_appearance(self, source, width: int, height: int, fit: str = "stretch") -> Appearance:
        images.check_output_size(width, height)
        picture = images.fit_image(images.to_pil_rgb(images.flatten_onto_white(source), "source image"), width, height, fit)
        enc = self.image_encoder
        embeds = enc(images.clip_pixels(picture).to(enc.device, enc.dtype)).image_embeds
        pixels = images.reference_pixels(picture, width, height).to(self.vae.device, self.vae.dtype)
        latent = self.vae.encode(pixels).latent_dist.mean * self.latent_scale
        return encode_appearance(self.networks, embeds, latent, width, height, fit)

    def pose_pixels(self, pose, appearance: Appearance) -> torch.Tensor:
        return images.pose_pixels(pose, appearance.width, appearance.height, appearance.fit)

    def sampler(self, appearance: Appearance, settings: SamplerSettings, state: SamplerState | None = None, scheduler_config=None) -> ClosedLoopSampler:
        return ClosedLoopSampler(self.networks, appearance, settings, state, scheduler_config)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [n, 4, h, w] → images [n, 3, H, W] in [0, 1] (float32, on the CPU)."""
        out = []
        for latent in latents:  # one at a time keeps decode memory flat
            x = self.vae.decode(latent[None].to(self.vae.device, self.vae.dtype) / self.latent_scale).sample
            out.append((x / 2 + 0.5).clamp(0, 1).float().cpu())
        return torch.cat(out)


def load_pipeline(model_path: Path, vae_path: Path, image_encoder_path: Path, device="cpu", dtype=torch.float32, **kwargs) -> TalkingPosePipeline:
    from .checkpoints import load_networks

    networks = load_networks(model_path, dtype=dtype, **kwargs)
    pipe = TalkingPosePipeline(networks, load_vae(vae_path), load_image_encoder(image_encoder_path))
    return pipe.to(device, dtype)
