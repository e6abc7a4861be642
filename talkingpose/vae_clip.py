"""The standalone VAE and CLIP image encoder: their file names, loading them (diffusers `AutoencoderKL`,
transformers `CLIPVisionModelWithProjection`), encoding with them and decoding latents.

The pipeline, the standalone node host (`nodes/standalone.py`), fine-tuning's encoders, the downloads and the
benchmarks all use these; inside ComfyUI the nodes use ComfyUI's own VAE and CLIP Vision objects instead.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import images
from .appearance import SD_LATENT_SCALE, clip_embedding_width
from .errors import TalkingPoseError

# The image encoder and the VAE as the single files the shipped workflows load with ComfyUI's CLIP Vision Loader
# and VAE Loader, in models/clip_vision/ and models/vae/; the command line reads the same files.
IMAGE_ENCODER_FILE = "sd-image-variations-image-encoder.safetensors"
VAE_FILE = "vae-ft-mse-840000-ema-pruned.safetensors"
CLIP_CONFIG_METADATA = "transformers_config"  # the image encoder's config, kept in its single file's metadata


# ------------------------------------------------------------------------------------------------ loading
def load_vae(path: Path, dtype=torch.float32):
    """An SD1.x VAE: one `.safetensors` file (the original `vae-ft-mse-840000-ema-pruned.safetensors`, or any
    file in diffusers' key names, as ComfyUI's VAE Loader reads) or a diffusers `AutoencoderKL` folder."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if path.is_file():
        vae = _vae_from_single_file(path, dtype)
    elif (path / "config.json").is_file():
        vae = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype, low_cpu_mem_usage=False)
    else:
        raise TalkingPoseError(
            f"No VAE at {path}: expected {VAE_FILE} (Hugging Face stabilityai/sd-vae-ft-mse-original) or a diffusers "
            "AutoencoderKL folder. `python cli.py download --what vae` fetches it."
        )
    if vae.config.latent_channels != 4:
        raise TalkingPoseError(f"The VAE at {path} has {vae.config.latent_channels} latent channels; TalkingPose needs an SD1.x VAE (4).")
    return vae.eval().requires_grad_(False)


def _vae_from_single_file(path: Path, dtype):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from .checkpoints import read_state_dict

    state = read_state_dict(path)
    try:
        if "encoder.down_blocks.0.resnets.0.conv1.weight" in state:  # already diffusers' key names
            config = _vae_config(state, "encoder.down_blocks.{}.resnets.0.conv1.weight", "encoder.down_blocks.0.resnets.")
        else:
            state = {k.removeprefix("first_stage_model."): v for k, v in state.items()}
            config = _vae_config(state, "encoder.down.{}.block.0.conv1.weight", "encoder.down.0.block.")
            state = convert_ldm_vae_checkpoint(state, config)
        with torch.device("meta"):
            vae = AutoencoderKL(**config)
        vae.load_state_dict(state, strict=True, assign=True)
    except (KeyError, IndexError, RuntimeError) as exc:
        raise TalkingPoseError(
            f"{path} is not an SD1.x VAE ({type(exc).__name__}: {str(exc)[:200]}). Use {VAE_FILE} "
            "(Hugging Face stabilityai/sd-vae-ft-mse-original)."
        ) from exc
    return torch.nn.Module.to(vae, dtype=dtype)


def _vae_config(state: dict, block_key: str, layer_prefix: str) -> dict:
    """AutoencoderKL arguments read off the tensors' shapes (the SD VAE layout; GroupNorm of 32 groups)."""
    blocks, widths = 0, []
    while block_key.format(blocks) in state:
        widths.append(state[block_key.format(blocks)].shape[0])
        blocks += 1
    layers = len({k[len(layer_prefix):].split(".")[0] for k in state if k.startswith(layer_prefix)})
    latent = state["quant_conv.weight"].shape[0] // 2
    return {
        "in_channels": state["encoder.conv_in.weight"].shape[1], "out_channels": state["decoder.conv_out.weight"].shape[0],
        "latent_channels": latent, "layers_per_block": layers, "block_out_channels": tuple(widths),
        "down_block_types": ("DownEncoderBlock2D",) * blocks, "up_block_types": ("UpDecoderBlock2D",) * blocks,
        "scaling_factor": SD_LATENT_SCALE,
    }


def load_image_encoder(path: Path, dtype=torch.float32):
    """The CLIP image encoder: one `.safetensors` file (as ComfyUI's CLIP Vision Loader reads:
    `sd-image-variations-image-encoder.safetensors`) or a transformers `CLIPVisionModelWithProjection` folder."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    path = Path(path)
    if path.is_file():
        from .checkpoints import read_state_dict

        state = read_state_dict(path)
        try:
            config = CLIPVisionConfig.from_dict(_clip_config(path, state))
            with torch.device("meta"):
                encoder = CLIPVisionModelWithProjection(config)
            expected = encoder.state_dict().keys()
            encoder.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
            for name, buffer in list(encoder.named_buffers()):
                if buffer.is_meta and name.endswith("position_ids"):  # not saved: positions 0..n-1
                    owner, _, attribute = name.rpartition(".")
                    encoder.get_submodule(owner).register_buffer(
                        attribute, torch.arange(buffer.shape[-1]).expand(buffer.shape), persistent=False)
            missing = [k for k, t in list(encoder.named_parameters()) + list(encoder.named_buffers()) if t.is_meta]
            if missing:
                raise KeyError(", ".join(missing[:3]))
        except (KeyError, IndexError, RuntimeError, ValueError) as exc:
            raise TalkingPoseError(
                f"{path} is not a CLIP vision model in transformers' key names ({type(exc).__name__}: {str(exc)[:200]}). "
                f"Use {IMAGE_ENCODER_FILE} (`python cli.py download --what image_encoder`)."
            ) from exc
        return torch.nn.Module.to(encoder, dtype=dtype).eval().requires_grad_(False)
    if not (path / "config.json").is_file():
        raise TalkingPoseError(
            f"No image encoder at {path}: expected {IMAGE_ENCODER_FILE} or a transformers "
            "CLIPVisionModelWithProjection folder (lambdalabs/sd-image-variations-diffusers, image_encoder/). "
            "`python cli.py download --what image_encoder` fetches it."
        )
    return CLIPVisionModelWithProjection.from_pretrained(str(path), torch_dtype=dtype).eval().requires_grad_(False)


def _clip_config(path: Path, state: dict) -> dict:
    """The transformers config stored in the file's metadata (the download writes it), else the OpenAI ViT
    layout read off the shapes (64-wide heads, quick GELU)."""
    import json

    from safetensors import safe_open

    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get(CLIP_CONFIG_METADATA)
        if stored:
            return json.loads(stored)
    hidden = state["vision_model.post_layernorm.weight"].shape[0]
    patch = state["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    positions = state["vision_model.embeddings.position_embedding.weight"].shape[0]
    layers = len({k.split(".")[3] for k in state if k.startswith("vision_model.encoder.layers.")})
    return {
        "hidden_size": hidden, "intermediate_size": state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        "num_hidden_layers": layers, "num_attention_heads": max(1, hidden // 64), "patch_size": patch,
        "image_size": patch * round((positions - 1) ** 0.5), "hidden_act": "quick_gelu",
        "projection_dim": state["visual_projection.weight"].shape[0] if "visual_projection.weight" in state else hidden,
    }


def write_image_encoder_file(config_file: Path, weights_file: Path, out: Path) -> Path:
    """A transformers CLIP vision checkpoint (config.json + weights) as one `.safetensors` that ComfyUI's CLIP
    Vision Loader and `load_image_encoder` both read; checked by loading it before it is kept."""
    import json

    from safetensors.torch import save_file

    from . import durable
    from .checkpoints import read_state_dict

    config = json.loads(Path(config_file).read_text())
    state = {k: v.contiguous() for k, v in read_state_dict(weights_file).items() if not k.endswith("position_ids")}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with durable.replacing(out, keep_extension=True) as tmp:
        save_file(state, str(tmp), metadata={CLIP_CONFIG_METADATA: json.dumps(config)})
        load_image_encoder(tmp)
    return out


# ------------------------------------------------------------------------------------------------ encoding
def clip_projection_width(image_encoder) -> int | None:
    """Width of the image embedding the encoder gives, read off its weights before running it."""
    return clip_embedding_width(image_encoder)


def clip_embeds(image_encoder, pictures) -> torch.Tensor:
    """Projected image embeddings [n, C] of 224×224 PIL images, normalised as `CLIPImageProcessor` does; on the
    encoder's device and in its dtype."""
    pixels = torch.cat([images.clip_processor_pixels(picture) for picture in pictures])
    with torch.no_grad():
        return image_encoder(pixels.to(image_encoder.device, image_encoder.dtype)).image_embeds


def clip_image_embeds(image_encoder, source) -> torch.Tensor:
    """Projected image embedding [1, C] of a prepared source (`images.PreparedSource`)."""
    return clip_embeds(image_encoder, [source.clip_image])


def clip_zeroed_embeds(image_encoder) -> torch.Tensor:
    """The projected embedding [1, C] of all-zero normalised CLIP pixels (fine-tuning's unconditional context)."""
    zeros = torch.zeros(1, 3, images.CLIP_SIZE, images.CLIP_SIZE, device=image_encoder.device, dtype=image_encoder.dtype)
    with torch.no_grad():
        return image_encoder(zeros).image_embeds


def vae_posterior(vae, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE posterior mean and standard deviation (unscaled) of pixels [n, 3, H, W] in [-1, 1], on the VAE's
    device and in its dtype."""
    with torch.no_grad():
        posterior = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        return posterior.mean, posterior.std


def vae_encode_mean(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Raw (unscaled) posterior mean [1, 4, h, w] of pixels [1, H, W, 3] in [0, 1]."""
    x = pixels.movedim(-1, 1).to(vae.device, vae.dtype) * 2 - 1
    mean = vae_posterior(vae, x)[0]
    if vae.dtype == torch.float16 and not torch.isfinite(mean).all():  # as in `decode_latents`
        mean = vae_posterior(_float32_copy(vae), x.float())[0]
    return mean


# ------------------------------------------------------------------------------------------------ decoding
def decode_latents(vae, raw_latents: torch.Tensor) -> torch.Tensor:
    """Raw (unscaled) latents [n, 4, h, w] -> images [n, 3, H, W] in [0, 1], float32 on the CPU, one latent at a
    time so decode memory stays flat (the standalone VAE Decode of both the pipeline and the node path).

    A half-precision VAE decodes in its dtype (half the activations and convolution workspace of float32); a
    frame that overflows float16's range there (an SD VAE can) is decoded again by a float32 copy."""
    out = []
    with torch.no_grad():
        for latent in raw_latents:
            x = vae.decode(latent[None].to(vae.device, vae.dtype)).sample
            if vae.dtype == torch.float16 and not torch.isfinite(x).all():
                x = _float32_copy(vae).decode(latent[None].to(vae.device, torch.float32)).sample
            out.append((x / 2 + 0.5).clamp(0, 1).float().cpu())
    return torch.cat(out)


def _float32_copy(vae):
    import copy

    return copy.deepcopy(vae).to(torch.float32)
