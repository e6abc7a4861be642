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
