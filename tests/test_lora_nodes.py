"""Train TalkingPose LoRA and Load TalkingPose LoRA through the adapter's standalone path (no ComfyUI)."""
import shutil

import numpy as np
import pytest
import torch

from talkingpose import lora
from talkingpose.errors import TalkingPoseError
from talkingpose.vae_clip import load_image_encoder, load_vae
from talkingpose.video_io import VideoReader
from nodes.backend import host
from nodes import lora_nodes
from nodes.lora_nodes import LoadTalkingPoseLoRA, TrainTalkingPoseLoRA
from nodes.model_nodes import LoadTalkingPoseModel, TalkingPoseAppearanceEncode, TalkingPoseClosedLoopSampler

from helpers import PACK_ROOT, SHARED

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = PACK_ROOT / "tests" / "fixtures" / "golden_train" / "model.safetensors"  # small SD1.5-layout networks
VIDEO = SHARED / "samples" / "driving" / "vid1.mp4"
POSES = SHARED / "samples" / "dwpose" / "vid1.mp4"
FRAMES = 12
TRAIN = dict(steps=3, rank=2, learning_rate=1e-2, width=64, height=64, batch=2, seed=0)


def test_train_node_seed_declares_no_control_after_generate():
    """The ComfyUI frontend gives an INT input named seed a "control after generate" (default randomize) unless the
    input says False; randomize would bring another seed to the queue that resumes a cancelled run, and the
    trainer refuses a checkpoint of another seed."""
    options = TrainTalkingPoseLoRA.INPUT_TYPES()["optional"]["seed"][1]
    assert options["control_after_generate"] is False


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    (tmp_path / "talkingpose").mkdir()
    shutil.copy(MODEL, tmp_path / "talkingpose" / "small.safetensors")
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def clip():
    if not VIDEO.is_file():
        pytest.skip(f"shared sample {VIDEO} not found")

    def image_batch(path):
        return torch.from_numpy(np.stack(list(VideoReader(path, max_frames=FRAMES)))).float() / 255

    return image_batch(VIDEO), image_batch(POSES)


@pytest.fixture
def encoders(tiny_weights):
    return load_image_encoder(tiny_weights["image_encoder"]), load_vae(tiny_weights["vae"])


def _model():
    return LoadTalkingPoseModel().load("small.safetensors", "fp32")[0]


def _train(model, encoders, clip, name="person", **overrides):
    clip_vision, vae = encoders
    frames, poses = clip
    kwargs = {**TRAIN, **overrides}
    return TrainTalkingPoseLoRA().train(model, clip_vision, vae, frames, kwargs.pop("steps"), kwargs.pop("rank"),
                                        kwargs.pop("learning_rate"), name, poses=poses, **kwargs)


def _latents(model, encoders, clip):
    clip_vision, vae = encoders
    frames, poses = clip
    appearance = TalkingPoseAppearanceEncode().encode(model, clip_vision, vae, frames[:1], 128, 128, "stretch")[0]
    latents, _ = TalkingPoseClosedLoopSampler().sample(model, appearance, poses[:2], seed=1, steps=2, cfg=3.5, beta=0.05)
    return latents["samples"], appearance


def test_trained_adapter_loads_by_name_and_strength_zero_is_the_base_model(models_dir, encoders, clip):
    model = _model()
    path, curve = _train(model, encoders, clip)
    assert path == str(models_dir / "talkingpose_lora" / "person.safetensors")
    assert curve.shape == (1, 320, 640, 3) and 0 <= curve.min() and curve.max() <= 1 and curve.std() > 0
    networks = model.load()
    assert all("talkingpose_training" not in getattr(getattr(networks, p), "peft_config", {}) for p in lora.UNETS)
    assert lora.read_adapter(path).info["steps"] == TRAIN["steps"]

    assert "person.safetensors" in LoadTalkingPoseLoRA.INPUT_TYPES()["required"]["lora"][0]
    base, base_appearance = _latents(model, encoders, clip)
    (off,) = LoadTalkingPoseLoRA().load(model, "person.safetensors", 0.0)
    (on,) = LoadTalkingPoseLoRA().load(model, "person.safetensors", 1.0)
    assert torch.equal(_latents(off, encoders, clip)[0], base)
    lora_latents, lora_appearance = _latents(on, encoders, clip)
    assert (lora_latents - base).abs().max() > 1e-3
    assert torch.equal(_latents(model, encoders, clip)[0], base)  # the base variant after the LoRA one ran

    with pytest.raises(TalkingPoseError, match="appearance was encoded with another TalkingPose model or LoRA setting"):
        TalkingPoseClosedLoopSampler().sample(on, base_appearance, clip[1][:1], 1, 2, 3.5, 0.05)
    with pytest.raises(TalkingPoseError, match="appearance was encoded with another TalkingPose model or LoRA setting"):
        TalkingPoseClosedLoopSampler().sample(model, lora_appearance, clip[1][:1], 1, 2, 3.5, 0.05)


def test_cancel_keeps_the_checkpoint_and_queueing_again_resumes_exactly(models_dir, encoders, clip, monkeypatch):
    class Interrupted(Exception):
        pass

    model = _model()
    whole_path, _ = _train(model, encoders, clip, name="whole")
    calls = {"n": 0}

    def cancel_after_two_steps():
        calls["n"] += 1
        if calls["n"] == FRAMES + 2:  # once per encoded frame, then once per step
            raise Interrupted

    monkeypatch.setattr(host, "throw_if_cancelled", cancel_after_two_steps)
    with pytest.raises(Interrupted):
        _train(model, encoders, clip, name="cancelled")
    checkpoint = models_dir / "talkingpose_lora" / "cancelled.safetensors.checkpoint.pt"
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    assert not (models_dir / "talkingpose_lora" / "cancelled.safetensors").exists()
    assert "talkingpose_training" not in getattr(model.load().denoising_unet, "peft_config", {})

    monkeypatch.setattr(host, "throw_if_cancelled", lambda: None)
    resumed_path, _ = _train(model, encoders, clip, name="cancelled")
    assert not checkpoint.exists()
    whole, resumed = lora.read_adapter(whole_path), lora.read_adapter(resumed_path)
    for part in lora.UNETS:
        for key, tensor in whole.unet_weights[part].items():
            assert torch.equal(resumed.unet_weights[part][key], tensor), key


def _keypoints(people_per_frame, size=64):
    rng = np.random.default_rng(0)
    frames = []
    for count in people_per_frame:
        people = []
        for _ in range(count):
            body = np.concatenate([rng.uniform(8, size - 8, (18, 2)), np.ones((18, 1))], axis=1)
            people.append({"pose_keypoints_2d": body.flatten().tolist()})
        frames.append({"people": people, "canvas_width": size, "canvas_height": size})
    return frames


def test_keypoint_tracks_train_and_several_people_are_refused(models_dir, encoders, clip):
    model = _model()
    frames, _ = clip
    clip_vision, vae = encoders
    train = TrainTalkingPoseLoRA().train
    path, _ = train(model, clip_vision, vae, frames, 1, 2, 1e-3, "keypoints", pose_keypoint=_keypoints([1] * FRAMES),
                    width=64, height=64, batch=2)
    assert lora.read_adapter(path).info["clip"]["frames_used"] == FRAMES
    with pytest.raises(TalkingPoseError, match="more than one person"):
        train(model, clip_vision, vae, frames, 1, 2, 1e-3, "crowd", pose_keypoint=_keypoints([2] * FRAMES),
              width=64, height=64, batch=2)


@pytest.mark.parametrize("change, message", [
    ({"poses": None}, "either pose renders \\(poses\\) or POSE_KEYPOINT"),
    ({"pose_keypoint": _keypoints([1] * FRAMES)}, "either pose renders \\(poses\\) or POSE_KEYPOINT"),
    ({"poses": "short"}, "12 frames but 5 pose renders"),
    ({"output_name": "../escape"}, "output name '../escape'"),
    ({"learning_rate": 0.0}, "learning rate is 0.0"),
    ({"steps": 0}, "steps is 0"),
])
def test_train_node_bad_input_gets_a_sentence(models_dir, encoders, clip, change, message):
    clip_vision, vae = encoders
    frames, poses = clip
    kwargs = {"steps": 1, "rank": 2, "learning_rate": 1e-3, "output_name": "bad", "poses": poses, "width": 64, "height": 64}
    kwargs.update(change)
    if kwargs["poses"] == "short":
        kwargs["poses"] = poses[:5]
    with pytest.raises(TalkingPoseError, match=message):
        TrainTalkingPoseLoRA().train(_model(), clip_vision, vae, frames, **kwargs)


def test_training_a_lora_d_model_and_loading_a_missing_file_are_refused(models_dir, encoders, clip):
    model = _model()
    _train(model, encoders, clip, steps=1)
    (on,) = LoadTalkingPoseLoRA().load(model, "person.safetensors", 1.0)
    with pytest.raises(TalkingPoseError, match="Train on the base model"):
        _train(on, encoders, clip, name="again")
    with pytest.raises(TalkingPoseError, match="No TalkingPose LoRA 'gone.safetensors'"):
        LoadTalkingPoseLoRA().load(model, "gone.safetensors", 1.0)


def test_lora_list_says_how_to_get_one_when_the_folder_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path))
    assert LoadTalkingPoseLoRA.INPUT_TYPES()["required"]["lora"][0] == [lora_nodes.NONE_INSTALLED]


def test_train_node_never_replaces_an_adapter_without_overwrite_and_checks_the_name(models_dir, encoders, clip):
    """Issue 22, finding 2: a shared workflow using the name `person` replaced the artist's own person.safetensors,
    and a name over 255 bytes gave a raw OSError [Errno 36]."""
    folder = models_dir / "talkingpose_lora"
    folder.mkdir()
    own = folder / "person.safetensors"
    own.write_bytes(b"the artist's own adapter")
    with pytest.raises(TalkingPoseError, match=r"person.safetensors already exists; choose another output_name, or "
                                               r"switch overwrite on to replace it."):
        _train(_model(), encoders, clip, steps=1)
    assert own.read_bytes() == b"the artist's own adapter" and sorted(p.name for p in folder.iterdir()) == [own.name]
    with pytest.raises(TalkingPoseError, match="keep each part under 200"):
        _train(_model(), encoders, clip, name="x" * 256, steps=1)
    path, _ = _train(_model(), encoders, clip, steps=1, overwrite=True)
    assert lora.read_adapter(path).info["steps"] == 1


def test_load_node_refuses_a_strength_that_is_not_a_number(models_dir):
    """Issue 22, finding 6: ComfyUI's min/max check lets NaN through, and the sampler made all-NaN latents."""
    for strength, message in ((float("nan"), "not a number"), (float("inf"), "from -2 to 2"), (5.0, "from -2 to 2")):
        with pytest.raises(TalkingPoseError, match=message):
            LoadTalkingPoseLoRA().load(_model(), "person.safetensors", strength)
