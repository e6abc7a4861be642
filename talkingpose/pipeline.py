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
    """`offload_device`: where the networks that are not running wait. The encode side (reference UNet, CLIP
    image encoder: 1.6 + 0.6 GB in fp16 at SD1.5 size) runs once per source, the sampler side (denoising UNet,
    pose guider, motion modules: 1.6 GB) for every frame; on a GPU the two take turns, so it never holds both
    UNets: the encode side comes in for a source while the sampler side waits, then they swap back."""

    def __init__(self, networks, vae, image_encoder, latent_scale: float = SD_LATENT_SCALE, offload_device="cpu"):
        self.networks = networks
        self.offload_device = torch.device(offload_device)
        self.compute_device = networks.weights_device
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
        return self.compute_device

    def to(self, device, dtype=None):
        """Everything in `dtype` (the VAE too: `decode_latents` decodes a frame that overflows fp16 again in
        float32); on `device` the sampler side and the VAE, the encode side waiting on `offload_device` until a
        source comes. Cast before the move, so the device never holds more than its share even while loading."""
        self.compute_device = torch.device(device)
        for module in (self.networks, self.vae, self.image_encoder):
            torch.nn.Module.to(module, dtype=dtype)
        self._place_encoders(self.offload_device)
        for module in (self.networks.sampler_side(), self.vae):
            module.to(self.compute_device)
        return self

    @torch.no_grad()
    def encode_appearance(self, source, width: int, height: int, fit: str = "stretch") -> Appearance:
        """The appearance of `source`. The encode side is on the compute device only meanwhile, and the sampler
        side, which encoding does not use, waits on the offload device meanwhile (a no-op where both are the same
        device, as on a CPU)."""
        prepared = images.prepare_source(source, width, height, fit)
        sampler_side = self.networks.sampler_side()
        sampler_side.to(self.offload_device)
        self._place_encoders(self.compute_device)
        try:
            embeds = clip_image_embeds(self.image_encoder, prepared)
            latent = vae_encode_mean(self.vae, prepared.reference_image()) * self.latent_scale
            return encode_appearance(self.networks, embeds, latent, width, height, fit)
        finally:
            self._place_encoders(self.offload_device)
            sampler_side.to(self.compute_device)

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
