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
from .vae_clip import clip_image_embeds, clip_projection_width, decode_latents, load_image_encoder, load_vae, vae_encode_mean

log = logging.getLogger("TalkingPose")


class TalkingPosePipeline:
    """`offload_device`: where the encode-side networks (reference UNet, CLIP image encoder) wait between
    sources. They run once per source, so on a GPU they leave it once the appearance is encoded (1.6 + 0.6 GB in
    fp16 at SD1.5 size) and come back only for the next source."""

    def __init__(self, networks, vae, image_encoder, latent_scale: float = SD_LATENT_SCALE, offload_device="cpu"):
        self.networks = networks
        self.offload_device = torch.device(offload_device)
        self.vae = vae
        self.image_encoder = image_encoder
        self.latent_scale = latent_scale
        projection = clip_projection_width(image_encoder)
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
        """Move everything, all in `dtype`: the VAE too (`decode_latents` decodes a frame that overflows fp16
        again in float32)."""
        for module, module_dtype in ((self.networks, dtype), (self.vae, dtype), (self.image_encoder, dtype)):
            torch.nn.Module.to(module, device=device, dtype=module_dtype)
        return self

    @torch.no_grad()
    def encode_appearance(self, source, width: int, height: int, fit: str = "stretch") -> Appearance:
        """The appearance of `source`; the encode-side networks are on the compute device only meanwhile."""
        prepared = images.prepare_source(source, width, height, fit)
        self._place_encoders(self.device)
        try:
            embeds = clip_image_embeds(self.image_encoder, prepared)
            latent = vae_encode_mean(self.vae, prepared.reference_image()) * self.latent_scale
            return encode_appearance(self.networks, embeds, latent, width, height, fit)
        finally:
            self._place_encoders(self.offload_device)

    def _place_encoders(self, device: torch.device) -> None:
        for module in (self.networks.reference_unet, self.image_encoder):
            module.to(device)

    def pose_pixels(self, pose, appearance: Appearance) -> torch.Tensor:
        return images.pose_pixels(pose, appearance.width, appearance.height, appearance.fit)

    def sampler(self, appearance: Appearance, settings: SamplerSettings, state: SamplerState | None = None, scheduler_config=None) -> ClosedLoopSampler:
        return ClosedLoopSampler(self.networks, appearance, settings, state, scheduler_config)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [n, 4, h, w] -> images [n, 3, H, W] in [0, 1] (float32, on the CPU)."""
        return decode_latents(self.vae, latents / self.latent_scale)


def load_pipeline(model_path: Path, vae_path: Path, image_encoder_path: Path, device="cpu", dtype=torch.float32,
                  channels_last: bool = False, compile: bool = False, weights_fp8: bool = False,
                  **kwargs) -> TalkingPosePipeline:
    """`channels_last`: NHWC convolutions (faster in half precision on tensor cores); `compile`: torch.compile
    the denoising UNet (falls back to eager where it cannot compile). Neither changes the results.
    `weights_fp8`: the UNets' weights stored in fp8 (`TalkingPoseNetworks.store_weights_in_fp8`), an opt-in that
    changes the frames."""
    from .checkpoints import load_networks

    networks = load_networks(model_path, dtype=dtype, **kwargs)
    pipe = TalkingPosePipeline(networks, load_vae(vae_path), load_image_encoder(image_encoder_path)).to(device, dtype)
    if weights_fp8:
        networks.store_weights_in_fp8()
    if channels_last:
        networks.use_channels_last()
    if compile:
        networks.compile_denoiser()
    return pipe
