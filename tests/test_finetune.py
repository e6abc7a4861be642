"""LoRA fine-tuning: exactness against the official training code (golden_train), the loss falling on a real
clip, adapter strength, bit-exact resume, bad input, and the two commands."""
import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from talkingpose import lora
from talkingpose.errors import TalkingPoseError
from talkingpose.finetune import recipe as R
from talkingpose.finetune.data import (
    ClipCache,
    PipelineEncoders,
    PoseInput,
    build_clip_cache,
    clip_crop,
    random_resized_crop_box,
)
from talkingpose.finetune.trainer import FinetuneSettings, LoraTrainer, add_training_adapter
from talkingpose.video_io import VideoReader

from helpers import PACK_ROOT, SHARED

pytestmark = pytest.mark.usefixtures("one_thread")

GOLDEN = PACK_ROOT / "tests" / "fixtures" / "golden_train"
VIDEO = SHARED / "samples" / "driving" / "vid1.mp4"
POSES = SHARED / "samples" / "dwpose" / "vid1.mp4"
SIZE = 64
FRAMES = 16
PARTS = ("denoising_unet", "reference_unet", "pose_guider")


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def golden():
    case = json.loads((GOLDEN / "case.json").read_text())
    return case, load_file(str(GOLDEN / "inputs.safetensors")), load_file(str(GOLDEN / "expected.safetensors"))


def golden_networks(dtype=torch.float32):
    from talkingpose.checkpoints import load_networks

    return load_networks(GOLDEN / "model.safetensors", dtype=dtype, attention_heads=8)


def small_pipeline(tiny_weights):
    """The golden case's small networks with the tiny VAE and image encoder (cross-attention width 32 both)."""
    from talkingpose.pipeline import load_pipeline

    return load_pipeline(GOLDEN / "model.safetensors", tiny_weights["vae"], tiny_weights["image_encoder"], attention_heads=8)


def sample_poses():
    return (PoseInput(render) for render in VideoReader(POSES))


@pytest.fixture(scope="module")
def clip_cache(tiny_weights):
    if not VIDEO.is_file():
        pytest.skip(f"shared sample {VIDEO} not found")
    pipe = small_pipeline(tiny_weights)
    return build_clip_cache(VideoReader(VIDEO), sample_poses(), PipelineEncoders(pipe.vae, pipe.image_encoder),
                            SIZE, SIZE, crops=2, max_frames=FRAMES)


LOWERING = FinetuneSettings(steps=25, rank=8, lr=2e-2, batch=2, width=SIZE, height=SIZE, frames=FRAMES, crops=2)


@pytest.fixture(scope="module")
def trained(tiny_weights, clip_cache, tmp_path_factory):
    """25 steps on the clip's frames; the adapter written to a file."""
    trainer = LoraTrainer(small_pipeline(tiny_weights).networks, clip_cache, LOWERING)
    result = trainer.train()
    path = result.adapter.save(tmp_path_factory.mktemp("lora") / "person.safetensors")
    return result, path


def _official_trainable(networks):
    networks.requires_grad_(False)
    networks.denoising_unet.requires_grad_(True)
    networks.pose_guider.requires_grad_(True)
    for name, param in networks.reference_unet.named_parameters():
        param.requires_grad_(not name.startswith(R.REFERENCE_FROZEN_PREFIX))


def _golden_step(networks, case, inputs, name, backward=True):
    spec = case["cases"][name]
    batch = R.TrainingBatch(inputs["latents"], inputs["ref_latents"],
                            inputs["clip_embeds_uncond" if spec["uncond"] else "clip_embeds"], inputs["pose"].float() / 255)
    draws = R.StepDraws(inputs["noise"], inputs["offset_noise"], torch.tensor(spec["timesteps"]), spec["uncond"])
    return R.step_loss(networks, R.training_scheduler(), batch, draws, backward=(lambda l: l.backward()) if backward else None)


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def _tensor_tolerance(part):
    # The official code hands the reference tokens over in float16, and their gradients come back through that
    # cast: the reference UNet's gradient tensors carry float16 rounding (2^-11 relative). Their norms do not.
    return 1e-3 if part == "reference_unet" else 1e-4


# ------------------------------------------------------------------------------------------------ golden_train
def test_golden_train_scheduler_is_the_official_training_scheduler(golden):
    case, _, _ = golden
    built = R.training_scheduler().config
    for key, value in case["scheduler"].items():
        assert built[key] == value, key
    assert built["beta_schedule"] == "scaled_linear"  # not the inference config's "linear"
    recipe = R.OFFICIAL
    assert (recipe.noise_offset, recipe.snr_gamma, recipe.uncond_ratio, recipe.max_grad_norm, recipe.latent_scale) == (
        case["noise_offset"], case["snr_gamma"], case["uncond_ratio"], case["max_grad_norm"], case["latent_scale"])


@pytest.mark.parametrize("name", ["cond", "uncond"])
def test_golden_train_loss_and_gradients_match_the_official_train_py(golden, name):
    case, inputs, expected = golden
    spec = case["cases"][name]
    networks = golden_networks()
    _official_trainable(networks)
    loss, rows = _golden_step(networks, case, inputs, name)

    print(f"golden_train {name}: loss {loss.item():.9g} (official {spec['loss']:.9g})")
    assert _rel(loss.item(), spec["loss"]) <= 1e-4
    for ours, theirs, weight in zip(rows.tolist(), spec["per_row_mse"], spec["min_snr_weight"]):
        assert _rel(ours, theirs * weight) <= 1e-4
    norms = {}
    for part in PARTS:
        grads = [p.grad for p in getattr(networks, part).parameters() if p.grad is not None]
        norms[part] = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item() if grads else 0.0
        assert _rel(norms[part], spec["grad_norms"][part]) <= 1e-4 or norms[part] == spec["grad_norms"][part] == 0.0, part
    total = sum(v * v for v in norms.values()) ** 0.5
    assert _rel(total, spec["total_grad_norm"]) <= 1e-4
    for key, grad in expected.items():
        if key.startswith(f"{name}.grad."):
            part, _, param = key[len(name) + 6:].partition(".")
            ours = dict(getattr(networks, part).named_parameters())[param].grad
            assert (ours - grad).norm() <= _tensor_tolerance(part) * grad.norm(), key


def test_golden_train_lora_gradients_are_the_official_gradients_projected(golden):
    """With B = 0 the LoRA model computes the official loss, and dL/dB = (alpha/r)·G·A^T for the official weight
    gradient G: fine-tuning follows the official gradient, restricted to the low-rank subspace."""
    case, inputs, expected = golden
    networks = golden_networks()
    targets = lora.target_modules(networks)
    rank, alpha = 4, 8.0
    add_training_adapter(networks, targets, rank, alpha, seed=0)
    loss, _ = _golden_step(networks, case, inputs, "cond")
    assert _rel(loss.item(), case["cases"]["cond"]["loss"]) <= 1e-4
    checked = 0
    for key, grad in expected.items():
        if not key.startswith("cond.grad.") or "pose_guider" in key:
            continue
        part, _, param = key[len("cond.grad."):].partition(".")
        module = getattr(networks, part).get_submodule(param.removesuffix(".weight"))
        a = module.lora_A["talkingpose_training"].weight
        b = module.lora_B["talkingpose_training"].weight
        projected = (alpha / rank) * grad @ a.detach().T
        assert (b.grad - projected).norm() <= _tensor_tolerance(part) * projected.norm(), key
        assert not a.grad.any()  # B = 0: A gets no gradient at the first step
        checked += 1
    assert checked == 5
    assert "up_blocks.3." not in " ".join(targets["reference_unet"])  # the official code freezes it
    assert any(name.startswith("up_blocks.3.") for name in targets["denoising_unet"])


# ------------------------------------------------------------------------------------------------ data
def test_crop_boxes_follow_the_official_random_resized_crop_bounds():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        box = random_resized_crop_box(generator, 512, 512)
        assert 0 <= box.top and box.top + box.height <= 512 and 0 <= box.left and box.left + box.width <= 512
        assert 0.9 * 512 * 512 * 0.99 <= box.width * box.height <= 512 * 512
        assert 0.9 * 0.99 <= box.width / box.height <= 1.0 / 0.99
    # A wide frame admits no near-square crop of 90 % of its area: the centred square, as torchvision falls back.
    assert random_resized_crop_box(generator, 360, 640) == random_resized_crop_box(generator, 360, 640)
    assert random_resized_crop_box(generator, 360, 640).__dict__ == {"top": 0, "left": 140, "height": 360, "width": 360}


def test_clip_crop_is_what_the_official_clip_image_processor_sees():
    from PIL import Image
    from transformers import CLIPImageProcessor

    from talkingpose.images import clip_processor_pixels

    rng = np.random.default_rng(0)
    frame = Image.fromarray(rng.integers(0, 256, (300, 451, 3), dtype=np.uint8))
    official = CLIPImageProcessor()(images=frame, return_tensors="pt").pixel_values
    torch.testing.assert_close(clip_processor_pixels(clip_crop(frame)), official, rtol=0, atol=1e-6)


def test_pairs_follow_the_official_margin_rule():
    cache = ClipCache(list(range(15)), [], torch.zeros(0), torch.zeros(0), torch.zeros(0), torch.zeros(0),
                      np.zeros(0), SIZE, SIZE, 15, 0)
    generator = torch.Generator().manual_seed(0)
    pairs = [cache.pair(generator, 10) for _ in range(2000)]
    for ref, tgt in pairs:
        if ref + 10 < 15:
            assert tgt >= ref + 10
        elif ref - 10 > 0:
            assert tgt <= ref - 10
    assert {ref for ref, _ in pairs} == set(range(15))
    assert any(ref == 10 and tgt not in (0,) for ref, tgt in pairs)  # neither rule applies: any frame


# ------------------------------------------------------------------------------------------------ training
def test_finetuning_on_the_sample_clip_lowers_the_loss_on_a_fixed_batch(trained):
    result, _ = trained
    print(f"fixed-batch loss {result.eval_before:.4f} -> {result.eval_after:.4f} "
          f"({100 * (result.eval_after / result.eval_before - 1):+.1f} %) after {LOWERING.steps} steps")
    assert result.eval_after < 0.9 * result.eval_before
    assert len(result.losses) == LOWERING.steps


def test_adapter_file_records_base_model_recipe_clip_and_losses(trained, tiny_weights):
    result, path = trained
    adapter = lora.read_adapter(path)
    info = adapter.info
    assert (adapter.rank, adapter.alpha) == (8, 8.0)
    assert info["base_fingerprint"] == golden_networks().base_fingerprint
    assert info["recipe"]["scheduler"]["beta_schedule"] == "scaled_linear" and info["recipe"]["snr_gamma"] == 5.0
    assert info["clip"]["frames_used"] == FRAMES and info["steps"] == LOWERING.steps
    assert info["loss"]["steps"] == LOWERING.steps and len(info["loss"]["curve"]) <= 100
    assert info["fixed_batch_loss"] == {"before": result.eval_before, "after": result.eval_after}
    assert adapter.targets == lora.target_modules(golden_networks())


def _render(pipe, frames=2):
    from talkingpose.sampler import SamplerSettings

    # 128² (not the training size): at a 8×8 latent the small UNet's deepest GroupNorm would see one value per
    # group in the reference UNet's single-image pass.
    source = next(iter(VideoReader(VIDEO, max_frames=1)))
    appearance = pipe.encode_appearance(source, 2 * SIZE, 2 * SIZE)
    sampler = pipe.sampler(appearance, SamplerSettings(steps=2, seed=3))
    poses = (pipe.pose_pixels(p, appearance) for p in VideoReader(POSES, max_frames=frames))
    return torch.stack([latent for _, latent in sampler.frames(poses)]), appearance


def test_strength_zero_renders_the_base_frames_exactly_and_strength_one_others(trained, tiny_weights):
    _, path = trained
    pipe = small_pipeline(tiny_weights)
    base, _ = _render(pipe)
    base_fingerprint = pipe.networks.fingerprint

    lora.apply_lora(pipe.networks, path, 0.0)
    assert pipe.networks.fingerprint == base_fingerprint
    assert torch.equal(_render(pipe)[0], base)

    lora.apply_lora(pipe.networks, path, 1.0)
    trained_frames, appearance = _render(pipe)
    assert pipe.networks.fingerprint != base_fingerprint
    assert (trained_frames - base).abs().max() > 1e-3

    lora.activate(pipe.networks, ())  # switched off again on the same networks: the base model, exactly
    assert torch.equal(_render(pipe)[0], base)
    from talkingpose.sampler import SamplerSettings

    with pytest.raises(TalkingPoseError, match="appearance was encoded with another TalkingPose model or LoRA setting"):
        pipe.sampler(appearance, SamplerSettings(steps=2))


def test_resume_after_an_interruption_or_a_crash_is_bit_exact(tiny_weights, clip_cache, tmp_path):
    settings = FinetuneSettings(steps=4, rank=2, lr=2e-2, batch=2, width=SIZE, height=SIZE, frames=FRAMES, crops=2,
                                checkpoint_every=2)

    def trainer():
        return LoraTrainer(golden_networks(), clip_cache, settings)

    whole = trainer().train()

    checkpoint = tmp_path / "run.checkpoint.pt"

    def interrupt_after_first(step, steps, loss):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer().train(checkpoint, interrupt_after_first)
    assert torch.load(checkpoint, weights_only=True)["step"] == 1

    # A crash in the middle of step 3 (after the periodic checkpoint at step 2).
    crashing = trainer()
    calls = {"n": 0}

    def crash(module, inputs):
        calls["n"] += 1
        if calls["n"] == 1 + 3:  # the first pass is the fixed-batch loss before training
            raise RuntimeError("simulated crash")

    crashing.load_checkpoint(checkpoint)
    hook = crashing.networks.pose_guider.register_forward_pre_hook(crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.train(checkpoint)
    hook.remove()
    assert torch.load(checkpoint, weights_only=True)["step"] == 2

    resumed = trainer()
    resumed.load_checkpoint(checkpoint)
    result = resumed.train(checkpoint)
    assert result.losses == whole.losses
    assert result.eval_before == whole.eval_before and result.eval_after == whole.eval_after
    for part in lora.UNETS:
        for key, tensor in whole.adapter.unet_weights[part].items():
            assert torch.equal(result.adapter.unet_weights[part][key], tensor), key


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps is 0"),
    ({"lr": 0.0}, "learning rate is 0.0"),
    ({"lr": -1e-4}, "learning rate is -0.0001"),
    ({"rank": 0}, "rank is 0"),
    ({"width": 60}, "multiple of 8"),
])
def test_bad_settings_are_refused_with_a_sentence(kwargs, message):
    with pytest.raises(TalkingPoseError, match=message):
        FinetuneSettings(**kwargs)


class _FakeEncoders:
    def posterior(self, pixels):
        n = pixels.shape[0]
        return pixels.new_zeros(n, 4, pixels.shape[2] // 8, pixels.shape[3] // 8), pixels.new_ones(n, 4, pixels.shape[2] // 8, pixels.shape[3] // 8)

    def clip(self, crops):
        return torch.zeros(len(crops), 32)

    def clip_zeroed(self):
        return torch.zeros(32)


def _frames(n):
    return [np.full((48, 40, 3), i, np.uint8) for i in range(n)]


def _person():
    render = np.zeros((48, 40, 3), np.uint8)
    render[10:20, 10:12] = 255
    return render


def test_a_clip_shorter_than_the_pair_margin_is_refused():
    poses = [PoseInput(_person()) for _ in range(8)]
    with pytest.raises(TalkingPoseError, match="8 usable frames.*at least 10 apart.*at least 11"):
        build_clip_cache(_frames(8), poses, _FakeEncoders(), SIZE, SIZE)


def test_frames_where_nobody_is_detected_are_skipped_and_counted():
    poses = [PoseInput(None), PoseInput(np.zeros((48, 40, 3), np.uint8))] + [PoseInput(_person()) for _ in range(12)]
    cache = build_clip_cache(_frames(14), poses, _FakeEncoders(), SIZE, SIZE)
    assert (cache.skipped_nobody, len(cache), cache.frame_indices[0]) == (2, 12, 2)
    poses = [PoseInput(None)] * 4 + [PoseInput(_person())] * 9
    with pytest.raises(TalkingPoseError, match="9 usable frames \\(4 of 13 frames show nobody"):
        build_clip_cache(_frames(13), poses, _FakeEncoders(), SIZE, SIZE)


def test_footage_of_several_people_is_refused():
    poses = [PoseInput(_person(), people=2 if i % 2 else 1) for i in range(20)]
    with pytest.raises(TalkingPoseError, match="10 of 20 checked frames show more than one person"):
        build_clip_cache(_frames(20), poses, _FakeEncoders(), SIZE, SIZE)


def test_an_adapter_of_another_base_model_is_refused_but_a_precision_copy_accepted(trained):
    _, path = trained
    other = golden_networks()
    with torch.no_grad():
        for module in other.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(1.5)
    other.base_fingerprint = "0123456789abcdef"
    with pytest.raises(TalkingPoseError, match="fine-tuned on another TalkingPose model.*0123456789abcdef"):
        lora.apply_lora(other, path)

    copy = golden_networks(torch.bfloat16)  # the same model in another precision, with another fingerprint
    copy.base_fingerprint = "converted-copy"
    lora.apply_lora(copy, path)
    assert copy.lora_signature


def test_an_adapter_of_another_layout_or_a_foreign_file_is_refused(trained, tmp_path):
    from safetensors.torch import save_file

    from talkingpose.random_weights import random_networks

    _, path = trained
    with pytest.raises(TalkingPoseError, match="does not fit this TalkingPose model's layout.*another architecture"):
        lora.apply_lora(random_networks("tiny"), path)
    foreign = tmp_path / "sd15_lora.safetensors"
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 8)}, str(foreign))
    with pytest.raises(TalkingPoseError, match="not a TalkingPose LoRA"):
        lora.read_adapter(foreign)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(TalkingPoseError, match="not a readable safetensors file"):
        lora.read_adapter(damaged)


def test_running_out_of_memory_says_what_to_lower_and_keeps_the_checkpoint(tiny_weights, clip_cache, tmp_path):
    settings = FinetuneSettings(steps=3, rank=2, lr=1e-3, batch=2, width=SIZE, height=SIZE, frames=FRAMES, crops=2)
    trainer = LoraTrainer(golden_networks(), clip_cache, settings)
    calls = {"n": 0}

    def out_of_memory(module, inputs):
        calls["n"] += 1
        if calls["n"] == 1 + 2:
            raise torch.OutOfMemoryError("simulated")

    trainer.networks.pose_guider.register_forward_pre_hook(out_of_memory)
    checkpoint = tmp_path / "oom.checkpoint.pt"
    with pytest.raises(TalkingPoseError, match="Out of CPU memory at batch 2, 64×64, rank 2. Lower the batch.*--resume"):
        trainer.train(checkpoint)
    assert torch.load(checkpoint, weights_only=True)["step"] == 1


def test_an_existing_checkpoint_is_never_overwritten_without_resume(tmp_path):
    from talkingpose.finetune.job import FinetuneJob, checkpoint_path, run

    out = tmp_path / "person.safetensors"
    checkpoint_path(out).write_bytes(b"a checkpoint")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")  # refused before the video is read
    with pytest.raises(TalkingPoseError, match="checkpoint of an interrupted run.*--resume"):
        run(FinetuneJob(video=video, out=out, random_weights="tiny"))
    assert checkpoint_path(out).read_bytes() == b"a checkpoint"


# ------------------------------------------------------------------------------------------------ commands
def test_finetune_and_animate_with_the_lora_offline_with_random_weights(tmp_path, capsys):
    from talkingpose.cli import main

    if not VIDEO.is_file():
        pytest.skip(f"shared sample {VIDEO} not found")
    out = tmp_path / "person.safetensors"
    assert main(["finetune", "--video", str(VIDEO), "--poses", str(POSES), "--out", str(out), "--steps", "2",
                 "--rank", "2", "--lr", "1e-3", "--size", "64x64", "--batch", "1", "--frames", "12",
                 "--random-weights"]) == 0
    assert "SMOKE RUN" in capsys.readouterr().out
    adapter = lora.read_adapter(out)
    assert adapter.info["steps"] == 2 and adapter.info["clip"]["random_weights"] == "tiny"
    assert not (tmp_path / "person.safetensors.checkpoint.pt").exists()

    video = tmp_path / "animated.mp4"
    assert main(["animate", "--driving", str(VIDEO), "--poses", str(POSES), "--out", str(video), "--size", "64x64",
                 "--frames", "2", "--steps", "2", "--random-weights", "--lora", str(out), "--lora-strength", "0.5"]) == 0
    assert video.is_file()
    assert main(["animate", "--driving", str(VIDEO), "--poses", str(POSES), "--out", str(tmp_path / "x.mp4"),
                 "--lora", str(tmp_path / "missing.safetensors"), "--random-weights"]) == 2
    assert "missing.safetensors does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ nothing lost
def test_finetune_never_replaces_an_existing_file_without_overwrite(tmp_path, capsys):
    """Issue 22, finding 1: `--out` named an earlier adapter (or any file, or a link to one) and the run replaced it."""
    from talkingpose.cli import main

    if not VIDEO.is_file():
        pytest.skip(f"shared sample {VIDEO} not found")
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"an earlier 1,000-step adapter")
    elsewhere = tmp_path / "elsewhere.safetensors"
    elsewhere.write_bytes(b"the user's file")
    link = tmp_path / "link.safetensors"
    link.symlink_to(elsewhere)
    args = ["finetune", "--video", str(VIDEO), "--poses", str(POSES), "--steps", "1", "--rank", "2", "--batch", "1",
            "--size", "64x64", "--frames", "12", "--random-weights"]
    for target in (out, link):
        assert main([*args, "--out", str(target)]) == 2
        assert f"{target} already exists; choose another --out, or add --overwrite to replace it." in capsys.readouterr().err
    assert out.read_bytes() == b"an earlier 1,000-step adapter" and elsewhere.read_bytes() == b"the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.safetensors", "link.safetensors", "m.safetensors"]
    assert main([*args, "--out", str(link), "--overwrite"]) == 0
    assert lora.read_adapter(link).info["steps"] == 1 and not link.is_symlink()  # the link replaced, not followed
    assert elsewhere.read_bytes() == b"the user's file"


def _fail_writing(monkeypatch, fails):
    """Durable writes run out of disk space half-way through their data where `fails(temporary name, how many such
    writes came before)` says so (the partial temporary file is on the disk until the write cleans it up); returns
    the list of the writes that failed."""
    from talkingpose import durable

    real_open, seen, failures = open, [], []

    class HalfWritten:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            failures.append(self.handle.name)
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def failing_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return handle
        name = Path(path).name
        earlier = sum(other == _file_of(name) for other in seen)
        seen.append(_file_of(name))
        return HalfWritten(handle) if fails(name, earlier) else handle

    monkeypatch.setattr(durable, "open", failing_open, raising=False)
    return failures


def _file_of(temporary_name: str) -> str:
    """`.NAME.PID.RANDOM.tmp` -> NAME."""
    return temporary_name[1:].rsplit(".", 3)[0]


def _same_adapter(a, b):
    for part in lora.UNETS:
        assert a.unet_weights[part].keys() == b.unet_weights[part].keys()
        for key, tensor in a.unet_weights[part].items():
            assert torch.equal(b.unet_weights[part][key], tensor), key


@pytest.mark.parametrize("point", ["checkpoint", "final"])
def test_a_full_disk_at_each_save_point_is_a_sentence_and_resume_continues(clip_cache, tmp_path, monkeypatch, point):
    """Issue 22, finding 5: a full disk while a checkpoint or the adapter was written printed a traceback, left
    the partial temporary file (keeping the disk full) and lost the steps after the last checkpoint."""
    from talkingpose.finetune.job import checkpoint_path, train_to_file

    settings = FinetuneSettings(steps=5, rank=2, lr=2e-2, batch=2, width=SIZE, height=SIZE, frames=FRAMES, crops=2,
                                checkpoint_every=2)

    def trainer():
        return LoraTrainer(golden_networks(), clip_cache, settings)

    whole_out = tmp_path / "whole" / "whole.safetensors"
    whole = train_to_file(trainer(), whole_out, resume=False, overwrite=False)
    folder = tmp_path / "run"
    out = folder / "person.safetensors"
    checkpoint = checkpoint_path(out)
    if point == "checkpoint":  # the checkpoint of step 2 is written, the one of step 4 meets the full disk
        failures = _fail_writing(monkeypatch, lambda name, earlier: _file_of(name) == checkpoint.name and earlier == 1)
        expected = (r"Could not save the checkpoint of step 4 to .*person.safetensors.checkpoint.pt \(No space left on "
                    r"device\); nothing of it is left on the disk. The checkpoint of step 2 is kept: free some disk "
                    r"space and continue with --resume")
        kept_step = 2
    else:  # every step is made, then the adapter file meets the full disk
        failures = _fail_writing(monkeypatch, lambda name, earlier: _file_of(name) == out.name)
        expected = (r"Could not write the adapter .*person.safetensors \(No space left on device\); nothing of it is "
                    r"left on the disk. The finished training \(step 5\) is kept in .*person.safetensors.checkpoint.pt: "
                    r"free some disk space and continue with the same command plus --resume, which only writes the file.")
        kept_step = 5
    with pytest.raises(TalkingPoseError, match=expected):
        train_to_file(trainer(), out, resume=False, overwrite=False)
    assert len(failures) == 1
    assert sorted(p.name for p in folder.iterdir()) == [checkpoint.name]  # no partial file left behind
    assert torch.load(checkpoint, weights_only=True)["step"] == kept_step
    monkeypatch.undo()
    resumed = train_to_file(trainer(), out, resume=True, overwrite=False)
    assert sorted(p.name for p in folder.iterdir()) == [out.name]
    assert resumed.losses == whole.losses and resumed.eval_after == whole.eval_after
    _same_adapter(lora.read_adapter(whole_out), lora.read_adapter(out))


def test_a_full_disk_in_the_finetune_command_is_a_sentence_without_a_traceback(tmp_path, monkeypatch, capsys):
    """The same through the command: exit status 2, the sentence, no traceback; `--resume` then finishes."""
    from talkingpose.cli import main

    if not VIDEO.is_file():
        pytest.skip(f"shared sample {VIDEO} not found")
    out = tmp_path / "m.safetensors"
    args = ["finetune", "--video", str(VIDEO), "--poses", str(POSES), "--out", str(out), "--steps", "3", "--rank", "4",
            "--batch", "2", "--size", "64x64", "--frames", "16", "--random-weights"]
    _fail_writing(monkeypatch, lambda name, earlier: _file_of(name) == out.name)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and "--resume" in err
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert lora.read_adapter(out).info["steps"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.mark.parametrize("strength", ["inf", "nan", "-5", "1e9"])
def test_a_lora_strength_that_is_not_finite_or_out_of_range_is_refused_before_any_work(trained, tmp_path, capsys,
                                                                                      strength):
    """Issue 22, finding 6: `--lora-strength inf` exited 0 with a black video; -5 and 1e9 passed without a word."""
    from talkingpose.cli import main

    if not VIDEO.is_file():
        pytest.skip(f"shared sample {VIDEO} not found")
    _, path = trained
    out = tmp_path / "x.mp4"
    assert main(["animate", "--driving", str(VIDEO), "--poses", str(POSES), "--out", str(out), "--size", "64x64",
                 "--frames", "2", "--steps", "1", "--random-weights", "--lora", str(path), "--lora-strength", strength]) == 2
    err = capsys.readouterr().err
    assert ("not a number" if strength == "nan" else "use a value from -2 to 2") in err
    assert not out.exists() and not (tmp_path / "x.mp4.partial").exists()


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="file modes are POSIX")
def test_adapter_files_get_the_permissions_of_the_other_outputs(trained, tmp_path, monkeypatch):
    """Issue 22, finding 7: adapters were written 0600 while videos are 0644 (what a plain `open` gives)."""
    from talkingpose import durable

    result, _ = trained
    monkeypatch.setattr(durable, "_UMASK", 0o022)
    previous = os.umask(0o022)
    try:
        path = result.adapter.save(tmp_path / "person.safetensors")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(previous)
