"""The node classes end to end through the adapter's standalone path (what CI can run without ComfyUI)."""
import numpy as np
import pytest
import torch

from talkingpose.errors import TalkingPoseError
from talkingpose.vae_clip import load_image_encoder, load_vae
from talkingpose.sampler import SamplerState
from nodes.backend import host
from nodes.model_nodes import (
    NONE_INSTALLED,
    LoadTalkingPoseModel,
    TalkingPoseAppearanceEncode,
    TalkingPoseClosedLoopSampler,
)

SIZE = 64


@pytest.fixture
def models_dir(tiny_weights, monkeypatch):
    root = tiny_weights["model"].parent.parent  # <root>/talkingpose/random-tiny
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(root))
    return root


@pytest.fixture
def loaded(models_dir, tiny_weights):
    (model,) = LoadTalkingPoseModel().load("random-tiny/", "fp32")
    return model, load_image_encoder(tiny_weights["image_encoder"]), load_vae(tiny_weights["vae"])


def _image(batch=1, h=72, w=60, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((batch, h, w, 3), dtype=np.float32))


def _encode(loaded, image=None, fit="stretch"):
    model, clip, vae = loaded
    return TalkingPoseAppearanceEncode().encode(model, clip, vae, _image() if image is None else image, SIZE, SIZE, fit)[0]


def test_loader_lists_installed_models_from_the_models_folder(models_dir):
    choices = LoadTalkingPoseModel.INPUT_TYPES()["required"]["model"][0]
    assert "random-tiny/" in choices


def test_loader_with_nothing_installed_explains_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path))
    choices = LoadTalkingPoseModel.INPUT_TYPES()["required"]["model"][0]
    assert choices[0] == NONE_INSTALLED
    with pytest.raises(TalkingPoseError, match=r"(?s)denoising_unet\.pth.*arjavanmardi/TalkingPose.*" + str(tmp_path)):
        LoadTalkingPoseModel().load(NONE_INSTALLED, "auto")


def test_model_folder_with_a_file_missing_is_listed_and_names_the_file_when_chosen(models_dir, tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "talkingpose" / "broken"
    shutil.copytree(models_dir / "talkingpose" / "random-tiny", broken)
    (broken / "reference_unet.pth").unlink()
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path))
    assert LoadTalkingPoseModel.INPUT_TYPES()["required"]["model"][0] == ["broken/"]
    with pytest.raises(TalkingPoseError, match=r"(?s)broken is missing reference_unet\.pth.*arjavanmardi/TalkingPose"):
        LoadTalkingPoseModel().load("broken/", "auto")


def test_loader_offers_no_download_a_shared_workflow_could_trigger(models_dir):
    """A workflow file carries widget values, so any in-node download choice could start a multi-GB download
    when someone queues a shared workflow: the only way to download is the command line."""
    choices = LoadTalkingPoseModel.INPUT_TYPES()["required"]["model"][0]
    assert all("download" not in c.lower() for c in choices)
    with pytest.raises(TalkingPoseError, match=r"not installed any more.*cli\.py download --what talkingpose"):
        LoadTalkingPoseModel().load("download now from Hugging Face arjavanmardi/TalkingPose (several GB)", "auto")


def test_auto_precision_is_fp32_on_cpu():
    assert host.compute_dtype("auto") == torch.float32
    assert host.compute_dtype("bf16") == torch.bfloat16


def test_graph_runs_end_to_end_and_matches_the_engine(loaded, tiny_weights):
    from talkingpose.pipeline import load_pipeline
    from talkingpose.sampler import SamplerSettings

    model, clip, vae = loaded
    appearance = _encode(loaded)
    poses = _image(batch=3, h=48, w=48, seed=3)
    latent, state = TalkingPoseClosedLoopSampler().sample(model, appearance, poses, seed=5, steps=2, cfg=3.5, beta=0.05)
    assert latent["samples"].shape == (3, 4, SIZE // 8, SIZE // 8)
    assert state.next_frame == 3

    # The same graph through the standalone pipeline gives the same latents (LATENT holds raw VAE latents).
    pipe = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"])
    ref_appearance = pipe.encode_appearance(_image()[0], SIZE, SIZE)
    sampler = pipe.sampler(ref_appearance, SamplerSettings(steps=2, cfg=3.5, beta=0.05, seed=5))
    expected = torch.stack([lat for _, lat in sampler.frames(pipe.pose_pixels(p, ref_appearance) for p in poses)])
    torch.testing.assert_close(latent["samples"] * 0.18215, expected, rtol=1e-4, atol=1e-4)

    decoded = host.vae_decode(vae, latent["samples"])
    assert decoded.shape == (3, SIZE, SIZE, 3) and 0 <= decoded.min() and decoded.max() <= 1


def test_state_output_continues_the_render_in_a_later_run(loaded):
    model, _, _ = loaded
    appearance = _encode(loaded)
    poses = _image(batch=4, h=48, w=48, seed=4)
    sampler = TalkingPoseClosedLoopSampler()
    whole, _ = sampler.sample(model, appearance, poses, 1, 2, 3.5, 0.05)
    first, state = sampler.sample(model, appearance, poses[:2], 1, 2, 3.5, 0.05)
    rest, end = sampler.sample(model, appearance, poses[2:], 1, 2, 3.5, 0.05, state=state)
    assert isinstance(end, SamplerState) and end.next_frame == 4
    torch.testing.assert_close(torch.cat([first["samples"], rest["samples"]]), whole["samples"], rtol=0, atol=0)


def test_empty_pose_batch_is_refused(loaded):
    model, _, _ = loaded
    with pytest.raises(TalkingPoseError, match="pose batch is empty"):
        TalkingPoseClosedLoopSampler().sample(model, _encode(loaded), torch.zeros(0, 64, 64, 3), 0, 2, 3.5, 0.05)


def test_several_source_images_are_refused(loaded):
    with pytest.raises(TalkingPoseError, match="one source image but got a batch of 2.*Image From Batch"):
        _encode(loaded, _image(batch=2))


def test_source_with_alpha_is_flattened_onto_white(loaded):
    rgb = _image()
    transparent = torch.cat([rgb, torch.zeros_like(rgb[..., :1])], dim=-1)
    white = _encode(loaded, torch.ones_like(rgb))
    flattened = _encode(loaded, transparent)
    torch.testing.assert_close(flattened.reference_latent, white.reference_latent)


def test_clip_vision_of_another_width_is_refused(loaded):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    model, _, vae = loaded
    vit_h_like = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                                                num_attention_heads=4, patch_size=32, projection_dim=40))
    with pytest.raises(TalkingPoseError, match="40-wide embeddings; TalkingPose needs 32.*ViT-H"):
        TalkingPoseAppearanceEncode().encode(model, vit_h_like, vae, _image(), SIZE, SIZE, "stretch")


def test_pose_frames_of_another_aspect_follow_the_fit_mode(loaded):
    model, _, _ = loaded
    crop = _encode(loaded, fit="crop")
    wide = torch.zeros(1, 32, 96, 3)
    wide[:, :, :32] = 1.0  # left third white: cropped away under 'crop', squeezed in under 'stretch'
    out_crop, _ = TalkingPoseClosedLoopSampler().sample(model, crop, wide, 0, 1, 1.0, 0.05)
    black = torch.zeros(1, 32, 96, 3)
    out_black, _ = TalkingPoseClosedLoopSampler().sample(model, crop, black, 0, 1, 1.0, 0.05)
    torch.testing.assert_close(out_crop["samples"], out_black["samples"])


def test_node_definitions_are_well_formed():
    from helpers import load_pack_like_comfyui

    pack = load_pack_like_comfyui()
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY = pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS, pack.WEB_DIRECTORY

    assert WEB_DIRECTORY == "./web"
    for key, cls in NODE_CLASS_MAPPINGS.items():
        assert key in NODE_DISPLAY_NAME_MAPPINGS
        assert callable(getattr(cls(), cls.FUNCTION))
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"}
        assert cls.CATEGORY.startswith("TalkingPose")
        assert len(cls.RETURN_TYPES) == len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))
    beta = NODE_CLASS_MAPPINGS["TalkingPoseClosedLoopSampler"].INPUT_TYPES()["required"]["beta"][1]
    assert (beta["default"], beta["min"], beta["max"], beta["step"], beta["display"]) == (0.05, 0.0, 1.0, 0.005, "slider")
    assert "553" in beta["tooltip"] and "203" in beta["tooltip"]


def test_loader_weight_storage_fp8_is_an_optional_opt_in(models_dir, tiny_weights):
    """Old workflows have no weight_storage widget: the loader then keeps the exact weights; fp8 is chosen only
    by name, renders, and carries its own fingerprint (appearances and states of it are not the exact model's)."""
    from nodes.model_nodes import WEIGHTS_FP8
    from talkingpose.networks import FP8_STORAGE

    spec = LoadTalkingPoseModel.INPUT_TYPES()
    assert "weight_storage" not in spec["required"] and WEIGHTS_FP8 in spec["optional"]["weight_storage"][0]
    (exact,) = LoadTalkingPoseModel().load("random-tiny/", "fp32")
    assert FP8_STORAGE not in {p.dtype for p in exact.networks.parameters()}
    (fp8,) = LoadTalkingPoseModel().load("random-tiny/", "fp32", WEIGHTS_FP8)
    assert fp8.networks.denoising_unet.conv_in.weight.dtype == FP8_STORAGE
    assert fp8.networks.fingerprint == exact.networks.fingerprint + "+fp8-e4m3"
    clip, vae = load_image_encoder(tiny_weights["image_encoder"]), load_vae(tiny_weights["vae"])
    appearance = _encode((fp8, clip, vae))
    latent, state = TalkingPoseClosedLoopSampler().sample(fp8, appearance, _image(batch=2, h=48, w=48, seed=3),
                                                          seed=5, steps=2, cfg=3.5, beta=0.05)
    assert torch.isfinite(latent["samples"]).all() and state.next_frame == 2
    with pytest.raises(TalkingPoseError, match="another TalkingPose model"):
        TalkingPoseClosedLoopSampler().sample(exact, appearance, _image(batch=1, h=48, w=48), seed=5, steps=2,
                                              cfg=3.5, beta=0.05)
