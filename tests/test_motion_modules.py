"""Motion modules in a denoising checkpoint: dropped only when their output projection is zero, otherwise run at
one frame as the official inference (a 3D UNet with motion modules, loaded non-strictly) runs them."""
import logging

import pytest
import torch
from torch.nn import functional as F

from talkingpose import motion_modules
from talkingpose.checkpoints import convert_checkpoint, load_networks
from talkingpose.errors import TalkingPoseError
from talkingpose.random_weights import PRESETS, random_motion_modules, write_random_model


def _without_motion_keys(folder, out):
    out.mkdir()
    for name in ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth"):
        state = torch.load(folder / name, weights_only=True)
        torch.save({k: v for k, v in state.items() if "motion_modules" not in k}, out / name)
    return out


def _denoise_once(nets, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 1, nets.cross_attention_dim, generator=g)
    pose = nets.pose_features(torch.rand(1, 3, 64, 64, generator=g))
    return nets.predict(latents, torch.tensor(500), context, pose, None, 0)


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage2")
    zero = write_random_model(root / "zero", "tiny", seed=3, motion_modules="zero")
    active = write_random_model(root / "active", "tiny", seed=3, motion_modules="active")
    return {"zero": zero, "active": active, "plain": _without_motion_keys(zero, root / "plain")}


def test_zero_motion_modules_are_dropped_with_one_log_line(stage2, caplog):
    with caplog.at_level(logging.INFO, logger="TalkingPose"):
        nets = load_networks(stage2["zero"])
    lines = [r.getMessage() for r in caplog.records if "motion modules" in r.getMessage()]
    assert len(lines) == 1 and "dropped 21 motion modules whose output projection is zero" in lines[0]
    assert len(nets.motion_modules) == 0
    plain = load_networks(stage2["plain"])
    assert nets.fingerprint == plain.fingerprint
    torch.testing.assert_close(_denoise_once(nets), _denoise_once(plain), rtol=0, atol=0)


def test_active_motion_modules_are_applied_not_dropped(stage2):
    nets = load_networks(stage2["active"])
    # One after every place the official UNet runs one: 2 per down block, 1 in the mid block, 3 per up block.
    assert len(nets.motion_modules) == 4 * 2 + 1 + 4 * 3
    plain = load_networks(stage2["plain"])
    assert nets.fingerprint != plain.fingerprint
    assert (_denoise_once(nets) - _denoise_once(plain)).abs().max() > 1e-3


def test_motion_module_follows_the_block_the_official_unet_runs_it_after(stage2):
    unet = load_networks(stage2["plain"]).denoising_unet
    # Down and up blocks with attention: resnet -> attention -> motion; without: resnet -> motion;
    # mid block: resnet -> (attention -> motion -> resnet).
    assert motion_modules.target_block("down_blocks.0.motion_modules.1", unet) == "down_blocks.0.attentions.1"
    assert motion_modules.target_block("down_blocks.3.motion_modules.1", unet) == "down_blocks.3.resnets.1"
    assert motion_modules.target_block("mid_block.motion_modules.0", unet) == "mid_block.attentions.0"
    assert motion_modules.target_block("up_blocks.0.motion_modules.2", unet) == "up_blocks.0.resnets.2"
    assert motion_modules.target_block("up_blocks.3.motion_modules.2", unet) == "up_blocks.3.attentions.2"


def _official_single_frame(m, x):
    """The official temporal transformer (src/models/motion_module.py) written out for a video of one frame:
    attention over a single token is its value projection; the position table adds its row 0."""
    b, c, h, w = x.shape
    t = F.group_norm(x, 32, m["norm.weight"], m["norm.bias"], eps=1e-6)
    t = F.linear(t.permute(0, 2, 3, 1).reshape(b, h * w, c), m["proj_in.weight"], m["proj_in.bias"])
    d = t.shape[-1]
    for a in (0, 1):
        blk = f"transformer_blocks.0.attention_blocks.{a}."
        n = F.layer_norm(t, (d,), m[f"transformer_blocks.0.norms.{a}.weight"], m[f"transformer_blocks.0.norms.{a}.bias"])
        n = n + m[blk + "pos_encoder.pe"][0, 0]
        t = F.linear(F.linear(n, m[blk + "to_v.weight"]), m[blk + "to_out.0.weight"], m[blk + "to_out.0.bias"]) + t
    n = F.layer_norm(t, (d,), m["transformer_blocks.0.ff_norm.weight"], m["transformer_blocks.0.ff_norm.bias"])
    hidden, gate = F.linear(n, m["transformer_blocks.0.ff.net.0.proj.weight"], m["transformer_blocks.0.ff.net.0.proj.bias"]).chunk(2, -1)
    t = F.linear(hidden * F.gelu(gate), m["transformer_blocks.0.ff.net.2.weight"], m["transformer_blocks.0.ff.net.2.bias"]) + t
    out = F.linear(t, m["proj_out.weight"], m["proj_out.bias"])
    return out.reshape(b, h, w, c).permute(0, 3, 1, 2) + x


def test_single_frame_effect_equals_the_official_module_at_one_frame():
    torch.manual_seed(0)
    state = random_motion_modules(PRESETS["tiny"]["unet"], active=True)
    prefix = "up_blocks.1.motion_modules.0"
    module_state = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    module = motion_modules.build(prefix, module_state, "test", torch.float32)
    x = torch.randn(2, 64, 4, 4)
    official = {k.removeprefix("temporal_transformer."): v for k, v in module_state.items()}
    with torch.no_grad():
        torch.testing.assert_close(motion_modules.ApplyAtOneFrame(module)(None, (x,), x), _official_single_frame(official, x))


def test_active_motion_modules_in_the_reference_unet_are_refused(stage2, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("denoising_unet.pth", "pose_guider.pth"):
        (folder / name).write_bytes((stage2["plain"] / name).read_bytes())
    reference = torch.load(stage2["plain"] / "reference_unet.pth", weights_only=True)
    active = torch.load(stage2["active"] / "denoising_unet.pth", weights_only=True)
    reference.update({k: v for k, v in active.items() if "motion_modules" in k})
    torch.save(reference, folder / "reference_unet.pth")
    with pytest.raises(TalkingPoseError, match="reference_unet holds 21 motion modules with non-zero weights"):
        load_networks(folder)


def test_motion_module_of_another_layout_is_refused_with_a_sentence(stage2, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("reference_unet.pth", "pose_guider.pth"):
        (folder / name).write_bytes((stage2["plain"] / name).read_bytes())
    state = torch.load(stage2["active"] / "denoising_unet.pth", weights_only=True)
    state = {k: v for k, v in state.items() if ".attention_blocks.1." not in k}  # one temporal attention per block
    torch.save(state, folder / "denoising_unet.pth")
    with pytest.raises(TalkingPoseError, match="layout this pack cannot run at one frame"):
        load_networks(folder)


def test_converter_keeps_active_motion_modules_and_drops_zero_ones(stage2, tmp_path):
    from safetensors import safe_open

    for kind, expected in (("active", True), ("zero", False)):
        out = convert_checkpoint(stage2[kind], tmp_path / f"{kind}.safetensors", dtype=torch.float32)
        with safe_open(str(out), framework="pt") as f:
            assert any("motion_modules" in k for k in f.keys()) == expected
        torch.testing.assert_close(_denoise_once(load_networks(out)), _denoise_once(load_networks(stage2[kind])))
