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
