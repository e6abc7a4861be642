"""The engine's speed options are reached from the command line: `animate --channels-last` and `--compile`."""
import pytest
import torch

from talkingpose.pipeline import load_pipeline
from talkingpose.sampler import SamplerSettings


class _Stop(Exception):
    pass


def test_animate_options_reach_the_pipeline(shared_dir, tmp_path, monkeypatch):
    from talkingpose import pipeline
    from talkingpose.cli import main

    seen = {}

    def load(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(pipeline, "load_pipeline", load)
    with pytest.raises(_Stop):
        main(["animate", "--driving", str(shared_dir / "samples" / "driving" / "vid3.mp4"), "--random-weights",
              "--size", "64x64", "--frames", "1", "--out", str(tmp_path / "x.mp4"), "--channels-last", "--compile"])
    assert seen["channels_last"] is True and seen["compile"] is True


def test_channels_last_keeps_the_frames(tiny_weights):
    frames = {}
    for channels_last in (False, True):
        pipe = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"], channels_last=channels_last)
        weight = pipe.networks.denoising_unet.conv_in.weight
        assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        appearance = pipe.encode_appearance(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)), 64, 64)
        sampler = pipe.sampler(appearance, SamplerSettings(steps=2))
        pose = pipe.pose_pixels(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(1)), appearance)
        frames[channels_last] = sampler.denoise(pose)
    torch.testing.assert_close(frames[True], frames[False], rtol=0, atol=2e-2)


# One guided step at SD1.5 size, 512², fp16, CFG 3.5 (`python -m benchmarks.bench_sampler --preset sd15 --dtype
# fp16 --count-ops`): 948 aten operations before the step was prepared once per video, 589 after (views not
# counted). The bound keeps it from growing back.
STEP_OPS_BOUND = 589


def test_guided_step_dispatches_at_most_its_bound_of_aten_ops_and_never_reads_back_to_the_host():
    from benchmarks.bench_sampler import count_step_ops

    # Fake tensors carry no values: a step that read one back to the host (a synchronisation) would raise here.
    ops, views = count_step_ops("sd15", 512, cfg=3.5, steps=30, dtype=torch.float16)
    assert ops <= STEP_OPS_BOUND, f"{ops} aten ops per guided step (bound {STEP_OPS_BOUND})"


def test_cuda_graph_is_used_on_cuda_unless_compiled(tiny_pipeline):
    from talkingpose.guided_step import step_mode
    from talkingpose.sampler import prepare_step

    assert step_mode(torch.device("cuda"), compiled=False) == "graph"
    assert step_mode(torch.device("cuda"), compiled=True) == "static"
    assert step_mode(torch.device("cpu"), compiled=True) == "static"
    assert step_mode(torch.device("cpu"), compiled=False) == "eager"
    appearance = tiny_pipeline.encode_appearance(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)), 64, 64)
    assert prepare_step(tiny_pipeline.networks, tiny_pipeline.sampler(appearance, SamplerSettings(steps=2)).scheduler,
                        [appearance], 3.5).mode == "eager"


def test_graph_ready_step_equals_eager_bit_for_bit(tiny_weights):
    """The step the CUDA graph records (static buffers, step values copied in before each step) against the eager
    step. On a CPU the graph's body runs without a graph; with TALKINGPOSE_TEST_DEVICE=cuda the graph replays."""
    import os

    from talkingpose.sampler import prepare_step

    device = torch.device(os.environ.get("TALKINGPOSE_TEST_DEVICE", "cpu"))
    pipe = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"], device=device)
    appearance = pipe.encode_appearance(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)), 64, 64)
    scheduler = pipe.sampler(appearance, SamplerSettings(steps=3)).scheduler
    poses = [pipe.networks.pose_features(pipe.pose_pixels(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(i)), appearance))
             for i in (1, 2)]
    start = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    recorded = prepare_step(pipe.networks, scheduler, [appearance], 3.5, mode="graph" if device.type == "cuda" else "static")
    eager = prepare_step(pipe.networks, scheduler, [appearance], 3.5, mode="eager")
    for pose in poses:  # two frames: the second replays what the first recorded
        torch.testing.assert_close(recorded.denoise(start, pose), eager.denoise(start, pose), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------- fp8 weight storage
def _render(pipe, frames=2, steps=3, cfg=3.5):
    """Latents of `frames` closed-loop frames with guidance (the prepared step: fused Q/K/V, kept cross-attention
    outputs, reference keys/values), from one fixed source and fixed poses."""
    appearance = pipe.encode_appearance(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)), 64, 64)
    sampler = pipe.sampler(appearance, SamplerSettings(steps=steps, cfg=cfg))
    poses = [pipe.pose_pixels(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(i)), appearance)
             for i in range(1, frames + 1)]
    return torch.stack([sampler.denoise(pose) for pose in poses])


def test_fp8_weight_storage_renders_exactly_the_fp8_rounded_weights(tiny_weights):
    """With fp8 storage every step is the exact render of the weights rounded to fp8 and back: the prepared
    step's shortcuts (fused Q/K/V, kept cross-attention outputs, reference keys/values, time projections) cast
    those weights consistently, nothing is computed from the storage dtype."""
    from talkingpose.networks import FP8_STORAGE

    stored = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"], weights_fp8=True)
    rounded = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"])
    rounded_parameters = dict(rounded.networks.named_parameters())
    count = 0
    for name, parameter in stored.networks.named_parameters():
        if parameter.dtype == FP8_STORAGE:
            target = rounded_parameters[name]
            target.data = parameter.data.to(target.dtype)
            count += 1
    assert count > 100 and stored.networks.denoising_unet.conv_in.weight.dtype == FP8_STORAGE
    assert stored.networks.weights_dtype == torch.float32
    torch.testing.assert_close(_render(stored), _render(rounded), rtol=0, atol=0)


# Tiny random weights, 64x64, 2 frames of 3 steps, cfg 3.5: mean |latent difference| 0.12 against a mean |latent|
# of 0.61 (measured when the option was added). Random weights make a network far more sensitive to rounding than
# trained ones; the real weights' figure is measured on the GPU (benchmarks/gpu_figures.py).
FP8_TINY_MEAN_DEVIATION_BOUND = 0.25


def test_fp8_weight_storage_is_an_opt_in_that_changes_the_frames_within_its_bound(tiny_weights, tiny_pipeline):
    from talkingpose.networks import FP8_STORAGE

    assert not tiny_pipeline.networks.weights_in_fp8  # off by default
    assert FP8_STORAGE not in {p.dtype for p in tiny_pipeline.networks.parameters()}
    stored = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"], weights_fp8=True)
    exact, fp8 = _render(tiny_pipeline), _render(stored)
    assert torch.isfinite(fp8).all()
    deviation = (fp8 - exact).abs().mean().item()
    assert 0 < deviation < FP8_TINY_MEAN_DEVIATION_BOUND, deviation
    # a render or appearance made with fp8 storage is not one made without it (resume, appearance checks)
    assert stored.networks.fingerprint == tiny_pipeline.networks.fingerprint + "+fp8-e4m3"


def test_fp8_weight_storage_runs_without_the_cuda_graph(tiny_weights):
    from talkingpose.guided_step import GuidedStep, step_mode
    from talkingpose.sampler import prepare_step

    assert step_mode(torch.device("cuda"), compiled=False, weights_in_fp8=True) == "eager"
    pipe = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"], weights_fp8=True)
    appearance = pipe.encode_appearance(torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)), 64, 64)
    scheduler = pipe.sampler(appearance, SamplerSettings(steps=2)).scheduler
    with pytest.raises(ValueError, match="fp8"):
        prepare_step(pipe.networks, scheduler, [appearance], 3.5, mode="graph")
    assert isinstance(prepare_step(pipe.networks, scheduler, [appearance], 3.5), GuidedStep)


def test_weights_fp8_reaches_the_pipeline_from_animate_and_batch(shared_dir, tmp_path, monkeypatch):
    from talkingpose import pipeline
    from talkingpose.batch.manifest import RenderOptions
    from talkingpose.cli import main
    from talkingpose.cli.batch import register, render_options

    seen = []

    def load(*args, **kwargs):
        seen.append(kwargs["weights_fp8"])
        raise _Stop

    monkeypatch.setattr(pipeline, "load_pipeline", load)
    command = ["animate", "--driving", str(shared_dir / "samples" / "driving" / "vid3.mp4"), "--random-weights",
               "--size", "64x64", "--frames", "1", "--out", str(tmp_path / "x.mp4")]
    for extra in ([], ["--weights-fp8"]):
        with pytest.raises(_Stop):
            main(command + extra)
    assert seen == [False, True]

    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    options = render_options(parser.parse_args(["batch", "jobs.csv", "--out-dir", str(tmp_path), "--weights-fp8"]))
    assert options.weights_fp8 and options.output_record()["weights_fp8"] is True
    # off: the record of a finished job is what it was before the option existed (reruns still skip it)
    assert "weights_fp8" not in RenderOptions().output_record()


def test_a_lora_on_fp8_weights_is_refused_with_what_to_do(tiny_weights, shared_dir, tmp_path, capsys):
    """peft would keep the adapters' weights in fp8 as well and multiply in it, which PyTorch cannot do: refused,
    before the networks load on the command line and when an adapter is attached (the nodes' path)."""
    from talkingpose.cli import main
    from talkingpose.errors import TalkingPoseError
    from talkingpose.lora import LoraAdapter, activate

    adapter = tmp_path / "style.safetensors"
    adapter.write_bytes(b"")
    code = main(["animate", "--driving", str(shared_dir / "samples" / "driving" / "vid3.mp4"), "--random-weights",
                 "--size", "64x64", "--frames", "1", "--out", str(tmp_path / "x.mp4"), "--weights-fp8",
                 "--lora", str(adapter)])
    assert code != 0
    assert "cannot run on weights stored in fp8" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.mp4*"))  # refused before anything was made
    pipe = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"], weights_fp8=True)
    with pytest.raises(TalkingPoseError, match="weight storage 'as precision'"):
        activate(pipe.networks, [(LoraAdapter(rank=2, alpha=2.0, unet_weights={}), 1.0)])
