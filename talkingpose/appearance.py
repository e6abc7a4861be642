"""Appearance encoding, done once per source image and reused for every frame and step."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch

from .errors import TalkingPoseError

SD_LATENT_SCALE = 0.18215


@dataclass
class Appearance:
    """What the sampler needs from the source image.

    image_context: [1, 1, C] CLIP image embedding (one context token) for the conditional row.
    reference_latent: [1, 4, h, w] VAE posterior mean × latent scale.
    reference_tokens: per self-attention block (by module path), the input tokens of the reference UNet's
    self-attention ([1, L, C]). The sampler projects them to keys and values with the denoising UNet's own
    key/value weights (`TalkingPoseNetworks.project_reference`), once per video: so encoding needs the reference
    UNet alone, and sampling needs no reference UNet.
    model_fingerprint: the fingerprint of the networks that made it (weights and LoRA): the tokens are its
    reference UNet's, so they fit no other weights. Device and dtype are those of the tensors.
    """

    image_context: torch.Tensor
    reference_latent: torch.Tensor
    reference_tokens: dict
    width: int
    height: int
    fingerprint: str
    fit: str = "stretch"  # how pose frames of another aspect ratio are brought to the output's
    model_fingerprint: str = ""

    @property
    def device(self) -> torch.device:
        return self.image_context.device

    @property
    def dtype(self) -> torch.dtype:
        return self.image_context.dtype

    def to(self, device, dtype) -> "Appearance":
        """This appearance with its context and reference tokens on `device` in `dtype` (itself when they already
        are)."""
        device = torch.device(device)
        if _same_device(self.device, device) and self.dtype == dtype:
            return self
        move = lambda t: t.to(device, dtype)  # noqa: E731
        return replace(self, image_context=move(self.image_context),
                       reference_tokens={name: move(t) for name, t in self.reference_tokens.items()})

    def bytes(self) -> int:
        """Memory the reference tokens and the context take on their device."""
        tensors = [self.image_context, *self.reference_tokens.values()]
        return sum(t.numel() * t.element_size() for t in tensors)


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.type == "cpu" or (a.index or 0) == (b.index or 0))


def clip_embedding_width(model) -> int | None:
    """Width of the image embedding a CLIP vision model gives, read off its weights without running it: the
    projection's output size, or the hidden size when it has no projection. Works on transformers'
    `CLIPVisionModelWithProjection` and on the module inside ComfyUI's CLIP Vision object (same key names)."""
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    projection = state.get("visual_projection.weight")
    if projection is not None:
        return int(projection.shape[0])
    norm = next((t for k, t in state.items() if k.endswith("post_layernorm.weight")), None)
    return int(norm.shape[0]) if norm is not None else None


def encode_appearance(networks, image_embeds: torch.Tensor, reference_latent: torch.Tensor, width: int, height: int, fit: str = "stretch") -> Appearance:
    """Run the reference UNet once and keep its tokens; `image_embeds` is [1, C] or [1, 1, C]. Only the reference
    UNet runs here (the sampler projects the tokens)."""
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
    with torch.no_grad():
        tokens = networks.reference_tokens(reference_latent, embeds)
    digest = hashlib.sha256(reference_latent.detach().float().cpu().numpy().tobytes())
    digest.update(embeds.detach().float().cpu().numpy().tobytes())
    return Appearance(embeds.to(networks.reference_device, networks.weights_dtype), reference_latent.detach(), tokens, width, height,
                      digest.hexdigest()[:16], fit, networks.fingerprint)
