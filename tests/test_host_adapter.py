"""The ComfyUI adapter (`nodes/host.py`) against stand-ins of ComfyUI's modules, and its standalone twin
(`nodes/standalone.py`). What happens on ComfyUI's side — its memory manager moving models, --novram, its dtype
choice, its folder registry — is played by `fake_comfyui`; the real-host tests run the pack in a real ComfyUI."""
import inspect
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fake_comfyui
from helpers import PACK_ROOT
from nodes import model_nodes, standalone
from talkingpose import runtime
from talkingpose.errors import TalkingPoseError
from talkingpose.vae_clip import load_image_encoder, load_vae

SIZE = 64


@pytest.fixture
def comfy(monkeypatch, tmp_path, tiny_weights):
    """The node module running on the adapter over fake ComfyUI modules, with the tiny model installed."""
    fake, host = fake_comfyui.install(monkeypatch, tmp_path)
    fake.folder_paths.folder_names_and_paths["talkingpose"] = ([str(tiny_weights["model"].parent)], set())
    monkeypatch.setattr(model_nodes, "host", host)
    fake.host = host
    fake.clip = fake_comfyui.FakeClipVision(load_image_encoder(tiny_weights["image_encoder"]), fake.mm)
    fake.vae = fake_comfyui.FakeVAE(load_vae(tiny_weights["vae"]), fake.mm)
    return fake


def _image(batch=1, h=72, w=60, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((batch, h, w, 3), dtype=np.float32))


def _load(comfy, precision="fp32"):
    return model_nodes.LoadTalkingPoseModel().load("random-tiny/", precision)[0]


def _encode(comfy, model, size=SIZE):
    return model_nodes.TalkingPoseAppearanceEncode().encode(model, comfy.clip, comfy.vae, _image(), size, size, "stretch")[0]


# ------------------------------------------------------------------------------------------------ selection
def test_nodes_run_on_the_standalone_runtime_without_comfyui():
    from nodes import backend

    assert backend.host is standalone


def test_nodes_pick_the_comfyui_adapter_when_comfyui_is_importable(tmp_path):
    code = (
        "import sys, pathlib, pytest\n"
        "import fake_comfyui\n"
        f"fake = fake_comfyui.FakeComfyUI(pathlib.Path({str(tmp_path)!r}))\n"
        "sys.modules.update(fake.modules)\n"
        "from nodes import backend, model_nodes, paths, pose_nodes\n"  # paths: the state and keypoint files' folders
        "print(backend.host.__name__, model_nodes.host.__name__, pose_nodes.host.__name__, paths.host.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PACK_ROOT, capture_output=True, text=True,
                            env={"PYTHONPATH": f"{PACK_ROOT}:{PACK_ROOT / 'tests'}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["nodes.host"] * 4


def test_standalone_runtime_has_the_adapters_interface(comfy):
    host = comfy.host
    public = {name for name, obj in vars(host).items()
              if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == host.__name__}
    assert public >= {"ManagedModel", "Progress", "compute_dtype", "clip_image_embeds", "vae_decode", "model_folders"}
    for name in sorted(public - {"weights_by_device"}):  # a helper of the adapter's own placement check
        assert hasattr(standalone, name), f"nodes.standalone lacks {name}"
        theirs, ours = getattr(host, name), getattr(standalone, name)
        if inspect.isfunction(theirs):
            assert list(inspect.signature(theirs).parameters) == list(inspect.signature(ours).parameters), name


def test_adapter_has_no_standalone_paths():
    source = (PACK_ROOT / "nodes" / "host.py").read_text()
    assert "IN_COMFYUI" not in source and "except ImportError" not in source


# ------------------------------------------------------------------------------------------------ folders
def test_model_folders_are_registered_through_comfyuis_api_first_in_line(comfy, tmp_path):
    fp = comfy.folder_paths
    fp.folder_names_and_paths["dwpose"] = (["/extra/dwpose"], {".onnx"})  # from extra_model_paths.yaml
    comfy.host.register_model_folders()
    default = str(tmp_path / "models" / "dwpose")
    assert ("dwpose", default, True) in fp.added and ("talkingpose", str(tmp_path / "models" / "talkingpose"), True) in fp.added
    assert comfy.host.model_folders("dwpose") == [tmp_path / "models" / "dwpose", Path("/extra/dwpose")]


# ------------------------------------------------------------------------------------------------ memory manager
def test_appearance_encode_survives_clip_and_vae_pushing_the_networks_out(comfy, tiny_weights):
    """ComfyUI loads CLIP Vision and the VAE inside Appearance Encode; with little free VRAM that pushes part of
    the TalkingPose networks out. They must be loaded again right before the reference UNet runs."""
    model = _load(comfy)
    comfy.mm.squeeze = True
    appearance = _encode(comfy, model)

    from talkingpose.pipeline import load_pipeline

    pipe = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"])
    expected = pipe.encode_appearance(_image()[0], SIZE, SIZE)
    torch.testing.assert_close(appearance.reference_latent, expected.reference_latent, rtol=1e-4, atol=1e-4)
    for name, tokens in expected.reference_tokens.items():
        torch.testing.assert_close(appearance.reference_tokens[name], tokens, rtol=1e-4, atol=1e-4)


def test_every_forward_group_loads_with_a_memory_estimate_that_grows_with_the_size(comfy):
    model = _load(comfy)
    small = _encode(comfy, model, 64)
    large = _encode(comfy, model, 128)
    encode_loads = [m for p, m, full in comfy.mm.calls if p is model.encoder.patcher]
    assert len(encode_loads) == 2 and 0 < encode_loads[0] < encode_loads[1]
    assert encode_loads[1] >= 4 * encode_loads[0] * 0.9  # activations grow with the area

    comfy.mm.calls.clear()
    comfy.mm.squeeze = True  # each frame's preview pushes half of the networks out before the next frame
    poses = _image(batch=3, h=48, w=48, seed=3)
    out, _ = model_nodes.TalkingPoseClosedLoopSampler().sample(model, small, poses, 5, 2, 3.5, 0.05, unique_id="7")
    frame_loads = [(m, full) for p, m, full in comfy.mm.calls if p is model.sampler.patcher]
    assert comfy.previewer.previews == 3
    assert len(frame_loads) >= 3 and all(m > 0 and full for m, full in frame_loads)
    assert out["samples"].shape == (3, 4, 8, 8) and torch.isfinite(out["samples"]).all()
    assert [data["frame"] for event, data in comfy.server.sent if event == "talkingpose.progress"] == [1, 2, 3]
    assert large.width == 128


def test_nodes_announce_the_engines_memory_estimates(comfy):
    """Appearance Encode and the sampler ask ComfyUI for what `talkingpose.memory` estimates (one row unguided)."""
    from talkingpose import memory

    model = _load(comfy)
    comfy.mm.calls.clear()
    appearance = _encode(comfy, model)
    assert [m for p, m, full in comfy.mm.calls if p is model.encoder.patcher] == [memory.appearance_encode_bytes(model.networks, SIZE, SIZE)]
    for cfg in (3.5, 1.0):
        comfy.mm.calls.clear()
        model_nodes.TalkingPoseClosedLoopSampler().sample(model, appearance, _image(1, 48, 48), 0, 1, cfg, 0.05, unique_id="7")
        assert {m for p, m, full in comfy.mm.calls if p is model.sampler.patcher} == {memory.denoise_step_bytes(model.networks, appearance, cfg, 1)}
    assert memory.denoise_step_bytes(model.networks, appearance, 3.5, 1) > memory.denoise_step_bytes(model.networks, appearance, 1.0, 1)


def test_encode_loads_only_the_reference_unet_and_sampling_no_reference_unet(comfy):
    """The encoder and sampler sides are separate models of ComfyUI's memory manager: Appearance Encode asks it for
    the reference UNet alone, the sampler for the denoising UNet and pose guider alone, so the side not running
    can stay offloaded (the reference UNet is 1.6 GB in fp16 at SD1.5 size)."""
    model = _load(comfy)
    nets = model.networks

    def parameters_loaded():  # every TalkingPose parameter the manager was asked to load since the last clear
        others = (comfy.clip.patcher, comfy.vae.patcher, comfy.previewer.patcher)
        return {id(t) for patcher, _, _ in comfy.mm.calls if patcher not in others for t in patcher.model.parameters()}

    def ids(module):
        return {id(t) for t in module.parameters()}

    comfy.mm.calls.clear()
    appearance = _encode(comfy, model)
    assert parameters_loaded() == ids(nets.reference_unet)
    comfy.mm.calls.clear()
    model_nodes.TalkingPoseClosedLoopSampler().sample(model, appearance, _image(2, 48, 48), 0, 2, 3.5, 0.05, unique_id="7")
    assert parameters_loaded() == ids(nets) - ids(nets.reference_unet)  # denoising UNet, pose guider, motion modules
    # every network is on one of the two sides
    assert ids(nets) == ids(nets.encoder_side()) | ids(nets.sampler_side())


def test_sampling_runs_with_the_reference_unet_pushed_out(comfy):
    """With the reference UNet wholly offloaded (no data here: the meta device) the sampler gives the frames it
    gives with it loaded: the reference keys and values come from the appearance, projected by the sampler side."""
    model = _load(comfy)
    appearance = _encode(comfy, model)
    poses = _image(2, 48, 48, seed=3)
    sampler = model_nodes.TalkingPoseClosedLoopSampler()
    expected, _ = sampler.sample(model, appearance, poses, 5, 2, 3.5, 0.05, unique_id="7")
    model.encoder.patcher.offload_all()
    assert all(p.is_meta for p in model.networks.reference_unet.parameters())
    latents, _ = sampler.sample(model, appearance, poses, 5, 2, 3.5, 0.05, unique_id="7")
    torch.testing.assert_close(latents["samples"], expected["samples"], rtol=0, atol=0)


def test_networks_left_on_another_device_are_reported_once(comfy, caplog, tmp_path, monkeypatch):
    """--novram: ComfyUI 'loads' the model but its weights stay on the CPU; sampling there is ~100x slower."""
    fake, host = fake_comfyui.install(monkeypatch, tmp_path / "gpu", load_device="cuda")
    fake.folder_paths.folder_names_and_paths["talkingpose"] = comfy.folder_paths.folder_names_and_paths["talkingpose"]
    monkeypatch.setattr(model_nodes, "host", host)
    fake.mm.novram = True
    model = model_nodes.LoadTalkingPoseModel().load("random-tiny/", "fp32")[0]
    with caplog.at_level(logging.WARNING, logger="TalkingPose"):
        model.load_sampler(1)
        model.load_sampler(1)
    warnings = [r.getMessage() for r in caplog.records if "stayed on cpu" in r.getMessage()]
    assert len(warnings) == 1 and "instead of cuda:0" in warnings[0] and "--novram" in warnings[0]


def test_networks_split_across_devices_are_refused_with_a_sentence(comfy):
    model = _load(comfy)
    model.load()
    comfy.mm.novram = True  # the next load leaves what was pushed out where it is
    model.sampler.patcher.offload_half()
    with pytest.raises(TalkingPoseError, match=r"split across devices \(.*MB on cpu, .*MB on meta"):
        model.load_sampler()


# ------------------------------------------------------------------------------------------------ precision
def test_auto_precision_follows_comfyuis_unet_dtype_with_fp16_first(comfy):
    comfy.mm.unet_dtype_answer = torch.bfloat16  # e.g. ComfyUI started with --bf16-unet
    model = _load(comfy, "auto")
    assert model.encoder.dtype == model.sampler.dtype == torch.bfloat16 and model.networks.weights_dtype == torch.bfloat16
    call = comfy.mm.unet_dtype_calls[-1]
    assert call["supported_dtypes"] == [torch.float16, torch.bfloat16, torch.float32]
    assert call["model_params"] == sum(p.numel() for p in model.networks.parameters())
    assert _load(comfy, "fp32").sampler.dtype == torch.float32  # an explicit choice wins


def test_storage_only_dtypes_from_comfyui_fall_back_to_a_compute_dtype(comfy, caplog):
    comfy.mm.unet_dtype_answer = torch.float8_e4m3fn  # --fp8_e4m3fn-unet
    with caplog.at_level(logging.WARNING, logger="TalkingPose"):
        assert comfy.host.compute_dtype("auto") == torch.float32  # the (fake) device is the CPU
    assert "computes in torch.float32" in caplog.text


def test_standalone_auto_precision_is_fp16_on_a_gpu_and_fp32_on_the_cpu():
    assert runtime.compute_dtype("auto", device="cuda") == torch.float16
    assert runtime.compute_dtype("auto", device="cpu") == torch.float32
    assert runtime.compute_dtype("bf16", device="cuda") == torch.bfloat16
    with pytest.raises(TalkingPoseError, match="Unknown precision 'fp8'"):
        runtime.compute_dtype("fp8")


# ------------------------------------------------------------------------------------------------ CLIP width
def test_clip_of_another_width_is_refused_from_its_weights_before_the_networks_load(comfy):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    model = _load(comfy)
    comfy.mm.calls.clear()
    wide = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                                          num_attention_heads=4, patch_size=32, projection_dim=40))
    wide.config = None  # ComfyUI's module has no transformers config: the width must come from the weights
    clip = fake_comfyui.FakeClipVision(wide, comfy.mm)
    with pytest.raises(TalkingPoseError, match="40-wide embeddings; TalkingPose needs 32"):
        model_nodes.TalkingPoseAppearanceEncode().encode(model, clip, comfy.vae, _image(), SIZE, SIZE, "stretch")
    assert comfy.mm.calls == []  # neither CLIP nor the TalkingPose networks were loaded


def test_clip_without_projection_reports_its_hidden_width():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from talkingpose.appearance import clip_embedding_width

    plain = CLIPVisionModel(CLIPVisionConfig(hidden_size=48, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, patch_size=32))
    assert clip_embedding_width(plain) == 48


# ------------------------------------------------------------------------------------------------ appearance
def test_appearance_from_another_checkpoint_of_the_same_shape_is_refused(comfy, tmp_path):
    from talkingpose.random_weights import write_random_model

    write_random_model(tmp_path / "other" / "twin", "tiny", seed=99)
    comfy.folder_paths.folder_names_and_paths["talkingpose"][0].append(str(tmp_path / "other"))
    appearance = _encode(comfy, _load(comfy))
    twin = model_nodes.LoadTalkingPoseModel().load("twin/", "fp32")[0]
    with pytest.raises(TalkingPoseError, match="encoded with another TalkingPose model"):
        model_nodes.TalkingPoseClosedLoopSampler().sample(twin, appearance, _image(batch=1, h=48, w=48), 0, 1, 3.5, 0.05)


def test_appearance_of_another_precision_is_cast_once_and_samples(comfy):
    appearance = _encode(comfy, _load(comfy, "fp32"))
    half = _load(comfy, "bf16")
    poses = _image(batch=2, h=48, w=48, seed=2)
    out, _ = model_nodes.TalkingPoseClosedLoopSampler().sample(half, appearance, poses, 0, 2, 3.5, 0.05)
    cast = appearance.to("cpu", torch.bfloat16)
    expected, _ = model_nodes.TalkingPoseClosedLoopSampler().sample(half, cast, poses, 0, 2, 3.5, 0.05)
    assert torch.isfinite(out["samples"]).all()
    torch.testing.assert_close(out["samples"], expected["samples"], rtol=0, atol=0)
    assert appearance.dtype == torch.float32 and cast.dtype == torch.bfloat16  # the node's output is not changed in place
