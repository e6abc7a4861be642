"""Checkpoint loading: every accepted layout, strict validation and the fp16 converter."""
import logging
import shutil

import pytest
import torch
from safetensors.torch import save_file

from talkingpose import checkpoints
from talkingpose.checkpoints import convert_checkpoint, infer_unet_config, load_networks
from talkingpose.errors import TalkingPoseError
from talkingpose.random_weights import PRESETS, write_random_model


def _state(networks):
    return {k: v.clone() for k, v in networks.denoising_unet.state_dict().items()}


def _copy_model(tiny_weights, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_weights["model"], folder)
    return folder


def test_released_pth_folder_loads(tiny_weights):
    nets = load_networks(tiny_weights["model"])
    assert nets.denoising_unet.config.block_out_channels == (32, 64, 64, 64)
    assert nets.reference_unet.conv_norm_out is None  # the released reference UNet has no output head
    assert nets.pose_guider.out_channels == 32
    assert nets.fingerprint


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_load_and_compute_dtype_is_separate(tiny_weights, tmp_path, dtype):
    folder = tmp_path / "half"
    folder.mkdir()
    for part in checkpoints.PARTS:
        state = torch.load(tiny_weights["model"] / f"{part}.pth", weights_only=True)
        torch.save({k: v.to(dtype) for k, v in state.items()}, folder / f"{part}.pth")
    nets = load_networks(folder, dtype=torch.float32)
    assert nets.weights_dtype == torch.float32
    reference = load_networks(tiny_weights["model"])
    key = "down_blocks.0.attentions.0.proj_in.weight"
    expected = reference.denoising_unet.state_dict()[key].to(dtype).float()
    torch.testing.assert_close(nets.denoising_unet.state_dict()[key], expected, rtol=0, atol=0)


def test_per_part_safetensors_and_combined_file_load_the_same_tensors(tiny_weights, tmp_path):
    folder = tmp_path / "st"
    folder.mkdir()
    combined = {}
    for part in checkpoints.PARTS:
        state = torch.load(tiny_weights["model"] / f"{part}.pth", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"{part}.safetensors"))
        combined.update({f"{part}.{k}": v.contiguous() for k, v in state.items()})
    save_file(combined, str(tmp_path / "combined.safetensors"))
    from_pth = _state(load_networks(tiny_weights["model"]))
    for source in (folder, tmp_path / "combined.safetensors"):
        loaded = _state(load_networks(source))
        assert loaded.keys() == from_pth.keys()
        assert all(torch.equal(loaded[k], from_pth[k]) for k in loaded)


def test_converter_writes_fp16_safetensors_that_load(tiny_weights, tmp_path):
    out = convert_checkpoint(tiny_weights["model"], tmp_path / "talkingpose_fp16.safetensors")
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert all(k.split(".")[0] in checkpoints.PARTS for k in f.keys())
    assert dtypes == {"F16"}
    assert out.stat().st_size < sum((tiny_weights["model"] / f"{p}.pth").stat().st_size for p in checkpoints.PARTS) * 0.6
    nets = load_networks(out, dtype=torch.float32)
    ref = load_networks(tiny_weights["model"])
    torch.testing.assert_close(nets.pose_guider.conv_out.weight, ref.pose_guider.conv_out.weight, rtol=1e-3, atol=1e-3)


def test_missing_file_is_named_with_download_instructions(tiny_weights, tmp_path):
    folder = _copy_model(tiny_weights, tmp_path)
    (folder / "pose_guider.pth").unlink()
    with pytest.raises(TalkingPoseError, match=r"missing pose_guider\.pth.*arjavanmardi/TalkingPose"):
        load_networks(folder)


def test_full_sd_checkpoint_as_denoising_unet_is_refused(tiny_weights, tmp_path):
    folder = _copy_model(tiny_weights, tmp_path)
    torch.save({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
                "first_stage_model.encoder.conv_in.weight": torch.zeros(128, 3, 3, 3)}, folder / "denoising_unet.pth")
    with pytest.raises(TalkingPoseError, match=r"denoising_unet\.pth is a full Stable Diffusion checkpoint"):
        load_networks(folder)


def test_unexpected_and_misshapen_tensors_are_named(tiny_weights, tmp_path):
    folder = _copy_model(tiny_weights, tmp_path)
    state = torch.load(folder / "denoising_unet.pth", weights_only=True)
    state["down_blocks.0.attentions.0.extra_gate.weight"] = torch.zeros(3)
    state["down_blocks.0.attentions.0.proj_out.bias"] = torch.zeros(5)
    torch.save(state, folder / "denoising_unet.pth")
    with pytest.raises(TalkingPoseError) as err:
        load_networks(folder)
    message = str(err.value)
    assert "denoising_unet.pth" in message
    assert "extra_gate.weight (3,)" in message
    assert "proj_out.bias is (5,), expected (32,)" in message


def test_missing_tensor_in_reference_unet_is_named(tiny_weights, tmp_path):
    folder = _copy_model(tiny_weights, tmp_path)
    state = torch.load(folder / "reference_unet.pth", weights_only=True)
    del state["mid_block.attentions.0.transformer_blocks.0.attn1.to_k.weight"]
    torch.save(state, folder / "reference_unet.pth")
    with pytest.raises(TalkingPoseError, match=r"(?s)reference_unet\.pth.*missing.*attn1\.to_k\.weight \(64, 64\)"):
        load_networks(folder)


def test_pickled_objects_are_never_unpickled(tiny_weights, tmp_path):
    folder = _copy_model(tiny_weights, tmp_path)
    torch.save({"conv_in.weight": torch.zeros(1), "note": logging.getLogger("x")}, folder / "pose_guider.pth")
    with pytest.raises(TalkingPoseError, match=r"pose_guider\.pth could not be loaded as a plain tensor checkpoint"):
        load_networks(folder)


def test_pose_guider_that_does_not_fit_the_unet_is_refused(tiny_weights, tmp_path):
    from talkingpose.pipeline import TalkingPosePipeline
    from talkingpose.vae_clip import load_image_encoder, load_vae
    from talkingpose.pose_guider import PoseGuider

    folder = _copy_model(tiny_weights, tmp_path)
    torch.save(PoseGuider(out_channels=48).state_dict(), folder / "pose_guider.pth")
    nets = load_networks(folder)
    with pytest.raises(TalkingPoseError, match="pose guider gives 48 channels but the UNet's conv_in makes 32"):
        TalkingPosePipeline(nets, load_vae(tiny_weights["vae"]), load_image_encoder(tiny_weights["image_encoder"]))


def test_image_encoder_of_another_width_is_refused(tiny_weights, tmp_path):
    from talkingpose.pipeline import TalkingPosePipeline
    from talkingpose.vae_clip import load_vae
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    wide = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                                          num_attention_heads=4, patch_size=32, projection_dim=64))
    with pytest.raises(TalkingPoseError, match="projection is 64 wide but the TalkingPose UNet's cross-attention is 32"):
        TalkingPosePipeline(load_networks(tiny_weights["model"]), load_vae(tiny_weights["vae"]), wide)


def test_reference_and_denoising_unets_of_different_sizes_are_refused(tiny_weights, tmp_path):
    from diffusers import UNet2DConditionModel

    folder = _copy_model(tiny_weights, tmp_path)
    wider_context = UNet2DConditionModel(**{**PRESETS["tiny"]["unet"], "cross_attention_dim": 48}).state_dict()
    torch.save({k: v for k, v in wider_context.items() if not k.startswith(("conv_out", "conv_norm_out"))},
               folder / "reference_unet.pth")
    with pytest.raises(TalkingPoseError, match=r"different architectures \(cross_attention_dim\)"):
        load_networks(folder)


def test_unet_config_is_inferred_for_the_real_sd15_layout():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**PRESETS["sd15"]["unet"])
    config = infer_unet_config(unet.state_dict())
    assert config["block_out_channels"] == (320, 640, 1280, 1280)
    assert config["cross_attention_dim"] == 768
    assert config["layers_per_block"] == 2
    assert config["down_block_types"] == PRESETS["sd15"]["unet"]["down_block_types"]
    assert config["up_block_types"] == PRESETS["sd15"]["unet"]["up_block_types"]
    assert config["use_linear_projection"] is False


@pytest.mark.parametrize("part", ["denoising_unet", "pose_guider"])
def test_integer_tensors_with_the_right_keys_are_refused_with_a_sentence(tiny_weights, tmp_path, part):
    folder = _copy_model(tiny_weights, tmp_path)
    state = torch.load(folder / f"{part}.pth", weights_only=True)
    torch.save({k: (v * 100).to(torch.int32) for k, v in state.items()}, folder / f"{part}.pth")
    with pytest.raises(TalkingPoseError, match=rf"{part}\.pth: \d+ tensors of the {part} are not floating-point weights "
                                               r"\(first: .* is torch.int32\)"):
        load_networks(folder)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_weights_are_refused_instead_of_rendering_black(tiny_weights, tmp_path, bad):
    folder = _copy_model(tiny_weights, tmp_path)
    state = torch.load(folder / "reference_unet.pth", weights_only=True)
    key = sorted(k for k in state if k.endswith("attn1.to_q.weight"))[0]
    state[key].view(-1)[3] = bad
    torch.save(state, folder / "reference_unet.pth")
    with pytest.raises(TalkingPoseError, match=rf"1 tensors of the reference_unet hold NaN or infinite values "
                                               rf"\(first: {key}\)"):
        load_networks(folder)
