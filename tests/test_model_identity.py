"""What ties an appearance to its model, and what proves the reference mechanism ran: the model fingerprint and
the per-step count of reference-attention processor calls."""
import shutil

import pytest
import torch

from talkingpose.checkpoints import convert_checkpoint, load_networks
from talkingpose.errors import TalkingPoseError
from talkingpose.sampler import ClosedLoopSampler, SamplerSettings


def _predict(nets, reference=None):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 1, nets.cross_attention_dim, generator=g)
    pose = nets.pose_features(torch.rand(2, 3, 64, 64, generator=g))
    return nets.predict(latents, torch.tensor(500), context, pose, reference, 1)


def _reference(nets):
    g = torch.Generator().manual_seed(1)
    return nets.reference_keys_values(torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 1, nets.cross_attention_dim, generator=g))


def test_fingerprint_tells_apart_checkpoints_that_differ_in_one_inner_layer(tiny_weights, tmp_path):
    folder = tmp_path / "finetuned"
    shutil.copytree(tiny_weights["model"], folder)
    state = torch.load(folder / "denoising_unet.pth", weights_only=True)
    key = "up_blocks.2.attentions.1.transformer_blocks.0.attn1.to_v.weight"  # far from the first keys
    state[key] = state[key] + 1e-2
    torch.save(state, folder / "denoising_unet.pth")
    assert load_networks(folder).fingerprint != load_networks(tiny_weights["model"]).fingerprint


def test_fingerprint_is_shared_by_a_checkpoint_and_its_fp16_conversion(tiny_weights, tmp_path):
    folder = tmp_path / "fp16-exact"  # weights that fp16 holds exactly, so both files are the same model
    shutil.copytree(tiny_weights["model"], folder)
    for part in ("denoising_unet", "reference_unet", "pose_guider"):
        state = torch.load(folder / f"{part}.pth", weights_only=True)
        torch.save({k: v.half().float() for k, v in state.items()}, folder / f"{part}.pth")
    converted = convert_checkpoint(folder, tmp_path / "fp16.safetensors")
    assert load_networks(converted).fingerprint == load_networks(folder).fingerprint


def test_appearance_from_another_model_is_refused_by_the_sampler(tiny_pipeline, tiny_weights, tmp_path):
    from talkingpose.random_weights import write_random_model

    appearance = tiny_pipeline.encode_appearance(torch.rand(64, 64, 3), 64, 64)
    assert appearance.model_fingerprint == tiny_pipeline.networks.fingerprint
    other = load_networks(write_random_model(tmp_path / "other", "tiny", seed=5))
    with pytest.raises(TalkingPoseError, match="encoded with another TalkingPose model"):
        ClosedLoopSampler(other, appearance, SamplerSettings(steps=1))


def test_replaced_denoising_processors_fail_loudly(tiny_weights):
    from diffusers.models.attention_processor import AttnProcessor2_0

    nets = load_networks(tiny_weights["model"])
    reference = _reference(nets)
    _predict(nets, reference)  # runs with TalkingPose's own processors
    nets.denoising_unet.set_attn_processor(AttnProcessor2_0())  # e.g. another node's attention patch
    with pytest.raises(TalkingPoseError, match=r"reference attention ran in 0 of the denoising UNet's 16 self-attention"):
        _predict(nets, reference)


def test_some_replaced_processors_fail_loudly_too(tiny_weights):
    from diffusers.models.attention_processor import AttnProcessor2_0

    nets = load_networks(tiny_weights["model"])
    reference = _reference(nets)
    nets.denoising_unet.get_submodule("mid_block.attentions.0.transformer_blocks.0.attn1").set_processor(AttnProcessor2_0())
    with pytest.raises(TalkingPoseError, match=r"ran in 15 of the denoising UNet's 16"):
        _predict(nets, reference)


def test_replaced_reference_recording_processors_fail_loudly(tiny_weights):
    from diffusers.models.attention_processor import AttnProcessor2_0

    nets = load_networks(tiny_weights["model"])
    nets.reference_unet.set_attn_processor(AttnProcessor2_0())
    with pytest.raises(TalkingPoseError, match=r"recording processors ran in 0 of 16 self-attention blocks"):
        _reference(nets)
