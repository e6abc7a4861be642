"""Appearance encoding, done once per source image and reused for every frame and step."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from .errors import TalkingPoseError

SD_LATENT_SCALE = 0.18215


@dataclass
class Appearance:
    """What the sampler needs from the source image.

    image_context: [1, 1, C] CLIP image embedding (one context token) for the conditional row.
    reference_latent: [1, 4, h, w] VAE posterior mean × latent scale.
    reference: per self-attention block, the reference tokens' keys and values ([1, heads, L, d] each).
    """

    image_context: torch.Tensor
    reference_latent: torch.Tensor
    reference: dict
    width: int
    height: int
    fingerprint: str
    fit: str = "stretch"  # how pose frames of another aspect ratio are brought to the output's
    # The networks' fingerprint when encoded (LoRA adapters included): the reference features depend on it.
    model_fingerprint: str = ""


def encode_appearance(networks, image_embeds: torch.Tensor, reference_latent: torch.Tensor, width: int, height: int, fit: str = "stretch") -> Appearance:
    """Run the reference UNet once and project its tokens; `image_embeds` is [1, C] or [1, 1, C]."""
    embeds = image_embeds.reshape(image_embeds.shape[0], -1, image_embeds.shape[-1])
    if embeds.shape[0] != 1 or embeds.shape[1] != 1:
        raise TalkingPoseError(
            f"Expected one CLIP image embedding for one source image, got shape {tuple(image_embeds.shape)}. "
            "Give a single source image."
        )
    if embeds.shape[-1] != networks.cross_attention_dim:
        raise TalkingPoseError(
            f"The CLIP vision model gives {embeds.shape[-1]}-wide image embeddings but the TalkingPose UNet expects "
            f"{networks.cross_attention_dim}. Use the ViT-L/14 image encoder of sd-image-variations "
            "(lambdalabs/sd-image-variations-diffusers, image_encoder/), whose projection is 768 wide."
        )
    expected = (1, networks.latent_channels, height // 8, width // 8)
    if tuple(reference_latent.shape) != expected:
        raise TalkingPoseError(
            f"The reference latent has shape {tuple(reference_latent.shape)}, expected {expected}: the VAE must be an "
            "SD1.x VAE (4 latent channels, 8× downsampling), e.g. stabilityai/sd-vae-ft-mse."
        )
    if not torch.isfinite(reference_latent).all() or not torch.isfinite(embeds).all():
        raise TalkingPoseError("The source image encoded to NaN values; check the VAE and CLIP vision model.")
    reference = networks.reference_keys_values(reference_latent, embeds)
    digest = hashlib.sha256(reference_latent.detach().float().cpu().numpy().tobytes())
    digest.update(embeds.detach().float().cpu().numpy().tobytes())
    digest.update(networks.fingerprint.encode())
    return Appearance(embeds.to(networks.weights_device, networks.weights_dtype), reference_latent.detach(), reference, width, height,
                      digest.hexdigest()[:16], fit, networks.fingerprint)
