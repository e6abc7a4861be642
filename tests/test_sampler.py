"""The closed-loop sampler: loop arithmetic, resume, guidance rows, reference attention, bad input."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from talkingpose.errors import TalkingPoseError
from talkingpose.sampler import SamplerSettings, SamplerState, denoise_batch

SIZE = 64


def _source(seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (80, 56, 3), dtype=np.uint8))


def _poses(n, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def appearance(tiny_pipeline):
    return tiny_pipeline.encode_appearance(_source(), SIZE, SIZE)


def _run(pipe, appearance, settings, poses, state=None):
    sampler = pipe.sampler(appearance, settings, state)
    latents = [lat for _, lat in sampler.frames(pipe.pose_pixels(p, appearance) for p in poses)]
    return latents, sampler.state


def test_each_frame_starts_from_the_closed_loop_mix(tiny_pipeline, appearance, monkeypatch):
    from talkingpose import sampler as sampler_module

    starts = []
    real = sampler_module.denoise_batch
    monkeypatch.setattr(sampler_module, "denoise_batch", lambda *a, **k: starts.append(a[4].clone()) or real(*a, **k))
    settings = SamplerSettings(steps=2, cfg=2.0, beta=0.2, seed=7)
    latents, state = _run(tiny_pipeline, appearance, settings, _poses(3))
    z_t = state.noise
    torch.testing.assert_close(starts[0][0], z_t, rtol=0, atol=0)
    for k in (1, 2):
        torch.testing.assert_close(starts[k][0], z_t + 0.2 * (latents[k - 1] - z_t), rtol=0, atol=0)
    assert state.next_frame == 3


def test_beta_zero_restarts_every_frame_from_the_same_noise(tiny_pipeline, appearance):
    settings = SamplerSettings(steps=2, cfg=2.0, beta=0.0, seed=3)
    pose = _poses(1)[0]
    latents, _ = _run(tiny_pipeline, appearance, settings, [pose, pose])
    torch.testing.assert_close(latents[0], latents[1], rtol=0, atol=0)


def test_stopped_run_resumed_from_saved_state_makes_the_same_frames(tiny_pipeline, appearance, tmp_path):
    settings = SamplerSettings(steps=3, cfg=3.5, beta=0.05, seed=11)
    poses = _poses(5)
    whole, _ = _run(tiny_pipeline, appearance, settings, poses)
    first, state = _run(tiny_pipeline, appearance, settings, poses[:2])
    state.save(tmp_path / "state.safetensors")
    rest, final = _run(tiny_pipeline, appearance, settings, poses[2:], SamplerState.load(tmp_path / "state.safetensors"))
    assert final.next_frame == 5
    for a, b in zip(whole, first + rest):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_state_from_other_settings_is_refused_with_what_differs(tiny_pipeline, appearance):
    _, state = _run(tiny_pipeline, appearance, SamplerSettings(steps=2, seed=1, beta=0.05), _poses(1))
    with pytest.raises(TalkingPoseError, match=r"seed 1 in the state, 2 now; beta 0.05 in the state, 0.1 now"):
        tiny_pipeline.sampler(appearance, SamplerSettings(steps=2, seed=2, beta=0.1), state)
    other = tiny_pipeline.encode_appearance(_source(5), SIZE, SIZE)
    with pytest.raises(TalkingPoseError, match="another source image"):
        tiny_pipeline.sampler(other, SamplerSettings(steps=2, seed=1, beta=0.05), state)


def test_truncated_state_file_is_refused(tiny_pipeline, appearance, tmp_path):
    _, state = _run(tiny_pipeline, appearance, SamplerSettings(steps=1), _poses(1))
    path = state.save(tmp_path / "s.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(TalkingPoseError, match="damaged or not a TalkingPose state"):
        SamplerState.load(path)


def test_cancel_inside_a_frame_keeps_the_state_of_finished_frames(tiny_pipeline, appearance):
    sampler = tiny_pipeline.sampler(appearance, SamplerSettings(steps=4))
    sampler.denoise(tiny_pipeline.pose_pixels(_poses(1)[0], appearance))
    before = sampler.state

    class Stop(Exception):
        pass

    seen = []

    def on_step(frame, step, steps):
        seen.append((frame, step, steps))
        if step == 1:
            raise Stop

    with pytest.raises(Stop):
        sampler.denoise(tiny_pipeline.pose_pixels(_poses(1)[0], appearance), on_step)
    assert seen == [(1, 0, 4), (1, 1, 4)]
    assert sampler.state is before and sampler.state.next_frame == 1


@pytest.mark.parametrize("cfg, rows", [(3.5, [2]), (1.0, [1]), (0.5, [1])])
def test_guidance_runs_the_unconditional_row_only_when_cfg_above_one(tiny_pipeline, appearance, cfg, rows):
    nets = tiny_pipeline.networks
    seen = []
    handle = nets.denoising_unet.register_forward_pre_hook(lambda m, a, kw: seen.append((a[0].shape[0], kw["encoder_hidden_states"].clone())), with_kwargs=True)
    try:
        tiny_pipeline.sampler(appearance, SamplerSettings(steps=1, cfg=cfg)).denoise(tiny_pipeline.pose_pixels(_poses(1)[0], appearance))
    finally:
        handle.remove()
    assert [s[0] for s in seen] == rows
    context = seen[0][1]
    if cfg > 1:
        assert torch.count_nonzero(context[0]) == 0  # unconditional row: zero CLIP context
    torch.testing.assert_close(context[-1], appearance.image_context[0])


def test_reference_attention_equals_attention_over_concatenated_tokens(tiny_pipeline):
    """The precomputed-key/value processor is the official 'append the reference tokens' attention."""
    from talkingpose.reference_attention import ReferenceContext, ReferenceSelfAttention, project_reference_tokens

    nets = tiny_pipeline.networks
    name, attn = next(iter(nets._denoising_attention.items()))
    torch.manual_seed(0)
    tokens = torch.randn(2, 20, attn.to_q.in_features)
    bank = torch.randn(1, 12, attn.to_q.in_features)
    ctx = ReferenceContext(project_reference_tokens({name: attn}, {name: bank}), n_unconditional=1)
    ours = ReferenceSelfAttention(name, ctx)(attn, tokens)

    def official(x, kv):
        q, k, v = (t.view(t.shape[0], -1, attn.heads, t.shape[-1] // attn.heads).transpose(1, 2)
                   for t in (attn.to_q(x), attn.to_k(kv), attn.to_v(kv)))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)
        return attn.to_out[0](out)

    torch.testing.assert_close(ours[0:1], official(tokens[0:1], tokens[0:1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1:2], official(tokens[1:2], torch.cat([tokens[1:2], bank], 1)), rtol=1e-5, atol=1e-6)


def test_several_videos_batched_equal_each_video_alone(tiny_pipeline, appearance):
    other = tiny_pipeline.encode_appearance(_source(9), SIZE, SIZE)
    settings = SamplerSettings(steps=2, cfg=3.5)
    pose_a, pose_b = (tiny_pipeline.pose_pixels(p, appearance) for p in _poses(2, seed=4))
    start = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))

    def scheduler():
        s = tiny_pipeline.sampler(appearance, settings).scheduler
        return s

    together = denoise_batch(tiny_pipeline.networks, scheduler(), [appearance, other], 3.5, start, torch.cat([pose_a, pose_b]))
    alone_a = denoise_batch(tiny_pipeline.networks, scheduler(), [appearance], 3.5, start[:1], pose_a)
    alone_b = denoise_batch(tiny_pipeline.networks, scheduler(), [other], 3.5, start[1:], pose_b)
    # Rows of one batch are reduced in another order than a batch of one: float32 rounding, ~1e-5 here (measured
    # 1.3e-5 on one element of 512). The batched sampler's stated tolerance against single renders is 1e-3.
    torch.testing.assert_close(together, torch.cat([alone_a, alone_b]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta": 1.5}, "beta .* must be between 0 and 1"),
        ({"beta": -0.1}, "beta .* must be between 0 and 1"),
        ({"steps": 0}, "steps is 0; it must be a whole number of at least 1"),
        ({"cfg": float("nan")}, "cfg is nan"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(TalkingPoseError, match=message):
        SamplerSettings(**kwargs)


@pytest.mark.parametrize("width, height", [(100, 64), (64, 36), (32, 64)])
def test_output_size_not_a_multiple_of_8_is_refused(tiny_pipeline, width, height):
    with pytest.raises(TalkingPoseError, match="not a multiple of 8 of at least 64"):
        tiny_pipeline.encode_appearance(_source(), width, height)


def test_source_with_alpha_is_flattened_onto_white_and_nan_is_refused(tiny_pipeline):
    rgba = Image.new("RGBA", (64, 64), (10, 20, 30, 128))
    white_behind = Image.alpha_composite(Image.new("RGBA", (64, 64), (255, 255, 255, 255)), rgba).convert("RGB")
    torch.testing.assert_close(tiny_pipeline.encode_appearance(rgba, SIZE, SIZE).reference_latent,
                               tiny_pipeline.encode_appearance(white_behind, SIZE, SIZE).reference_latent,
                               atol=1e-6, rtol=0)
    nan = np.full((64, 64, 3), np.nan, dtype=np.float32)
    with pytest.raises(TalkingPoseError, match="NaN"):
        tiny_pipeline.encode_appearance(nan, SIZE, SIZE)


def test_pose_frames_of_another_size_and_aspect_are_resized_like_the_official_pipeline(tiny_pipeline, appearance):
    wide = np.zeros((30, 90, 3), dtype=np.uint8)
    wide[:, 40:50] = 255
    pixels = tiny_pipeline.pose_pixels(wide, appearance)
    assert pixels.shape == (1, 3, SIZE, SIZE)
    expected = np.asarray(Image.fromarray(wide).resize((SIZE, SIZE), Image.LANCZOS), dtype=np.float32) / 255
    torch.testing.assert_close(pixels[0].permute(1, 2, 0), torch.from_numpy(expected))


def test_batched_sampler_keeps_each_videos_own_closed_loop(tiny_pipeline, appearance):
    from talkingpose.sampler import BatchedClosedLoopSampler

    other = tiny_pipeline.encode_appearance(_source(7), SIZE, SIZE)
    settings = [SamplerSettings(steps=2, seed=1, beta=0.05), SamplerSettings(steps=2, seed=2, beta=0.2)]
    poses_a, poses_b = _poses(3, seed=5), _poses(3, seed=6)
    batch = BatchedClosedLoopSampler(tiny_pipeline.networks, [appearance, other], settings)
    together = [batch.denoise(torch.cat([tiny_pipeline.pose_pixels(a, appearance), tiny_pipeline.pose_pixels(b, other)]))
                for a, b in zip(poses_a, poses_b)]
    alone_a, _ = _run(tiny_pipeline, appearance, settings[0], poses_a)
    alone_b, _ = _run(tiny_pipeline, other, settings[1], poses_b)
    # Batched matmuls round differently from single ones; guidance 3.5 and the loop (beta 0.2) carry that up to
    # ~3e-4 on these random weights, so the golden tolerance is used.
    torch.testing.assert_close(torch.stack([t[0] for t in together]), torch.stack(alone_a), rtol=0, atol=1e-3)
    torch.testing.assert_close(torch.stack([t[1] for t in together]), torch.stack(alone_b), rtol=0, atol=1e-3)
    with pytest.raises(TalkingPoseError, match="share steps, cfg and output size"):
        BatchedClosedLoopSampler(tiny_pipeline.networks, [appearance, other], [SamplerSettings(steps=2), SamplerSettings(steps=3)])


def test_every_seed_in_range_draws_its_own_noise_and_larger_ones_are_refused():
    from nodes.model_nodes import TalkingPoseClosedLoopSampler
    from talkingpose.sampler import MAX_SEED, initial_noise

    # torch's generator keeps 32 bits of a seed (2^32 would draw what 0 draws): the range stops below that.
    assert MAX_SEED == 2**32 - 1
    for low, high in ((0, 2**31), (1, MAX_SEED), (MAX_SEED - 1, MAX_SEED)):
        assert not torch.equal(initial_noise(low, 4, 64, 64), initial_noise(high, 4, 64, 64))
    for too_big in (2**32, 2**63, 2**64 - 1):
        with pytest.raises(TalkingPoseError, match="seed .* out of range"):
            SamplerSettings(seed=too_big)
    widget = TalkingPoseClosedLoopSampler.INPUT_TYPES()["required"]["seed"][1]
    assert widget["min"] == 0 and widget["max"] == MAX_SEED
    assert SamplerSettings(seed=np.int64(7)).seed == 7


@pytest.mark.parametrize("seed", [1.5, 1.0, True, "3", None])
def test_non_integer_seeds_are_refused(seed):
    with pytest.raises(TalkingPoseError, match="not a whole number"):
        SamplerSettings(seed=seed)


def test_sampler_projects_the_appearance_as_one_reference_pass_projects_it(tiny_pipeline, appearance):
    """The appearance keeps the reference UNet's tokens (encoding needs no denoising UNet); the sampler projects
    them with the denoising blocks' key/value weights: the very keys and values a reference pass projected at
    once gives, bit for bit, also when appearances are batched."""
    from talkingpose.sampler import reference_keys_values

    nets = tiny_pipeline.networks
    expected = nets.reference_keys_values(appearance.reference_latent, appearance.image_context)
    other = tiny_pipeline.encode_appearance(_source(3), SIZE, SIZE)
    batched = reference_keys_values(nets, [appearance, other])
    assert reference_keys_values(nets, [appearance]).keys() == expected.keys() == batched.keys()
    for name, (k, v) in reference_keys_values(nets, [appearance]).items():
        assert torch.equal(k, expected[name][0]) and torch.equal(v, expected[name][1])
        assert torch.equal(batched[name][0][:1], k) and torch.equal(batched[name][1][:1], v)


@pytest.mark.parametrize("cfg", [3.5, 1.0])
def test_prepared_step_equals_the_unet_forward_and_scheduler_step_bit_for_bit(tiny_pipeline, appearance, cfg):
    """The step prepared once per video (time tables, kept cross-attention, fused Q/K/V, reference buffers, DDIM
    coefficients on the device) against diffusers' UNet forward with the plain reference attention and
    DDIMScheduler.step, as the sampler ran before: the same float32 numbers on a CPU."""
    from talkingpose.sampler import prepare_step

    nets = tiny_pipeline.networks
    scheduler = tiny_pipeline.sampler(appearance, SamplerSettings(steps=4)).scheduler
    pose = nets.pose_features(tiny_pipeline.pose_pixels(_poses(1)[0], appearance))
    start = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(5))
    guided = cfg > 1
    context = torch.cat([torch.zeros_like(appearance.image_context), appearance.image_context]) if guided else appearance.image_context
    latents = start
    with torch.no_grad():
        reference = nets.project_reference(appearance.reference_tokens)
    for t in scheduler.timesteps:
        v = nets.predict(torch.cat([latents] * (2 if guided else 1)), t, context, torch.cat([pose] * (2 if guided else 1)),
                         reference, 1 if guided else 0)
        if guided:
            v = v.chunk(2)[0] + cfg * (v.chunk(2)[1] - v.chunk(2)[0])
        latents = scheduler.step(v, t, latents, eta=0.0).prev_sample
    step = prepare_step(nets, scheduler, [appearance], cfg)
    for _ in range(2):  # the first frame keeps the cross-attention outputs, the second uses them
        torch.testing.assert_close(step.denoise(start, pose), latents, rtol=0, atol=0)


def test_prepared_pass_puts_back_what_it_swapped_also_after_an_error(tiny_pipeline, appearance):
    from talkingpose.sampler import prepare_step

    nets = tiny_pipeline.networks
    unet = nets.denoising_unet
    before = {name: module for name, module in unet.named_modules()}
    resnets = [m for m in unet.modules() if getattr(m, "time_emb_proj", None) is not None]
    step = prepare_step(nets, tiny_pipeline.sampler(appearance, SamplerSettings(steps=2)).scheduler, [appearance], 3.5)
    pose = nets.pose_features(tiny_pipeline.pose_pixels(_poses(1)[0], appearance))
    step.denoise(torch.zeros(1, 4, SIZE // 8, SIZE // 8), pose)

    class Stop(Exception):
        pass

    def stop(i):
        raise Stop

    handle = unet.mid_block.register_forward_hook(lambda *a: stop(0))
    try:
        with pytest.raises(Stop):
            step.denoise(torch.zeros(1, 4, SIZE // 8, SIZE // 8), pose)
    finally:
        handle.remove()
    assert {name: module for name, module in unet.named_modules()} == before
    assert not any(r.skip_time_act for r in resnets)
    assert nets._context.prepared is None and nets._context.cross_attention is None


def test_sampler_prepares_its_step_again_when_the_networks_change_precision(tiny_pipeline, appearance):
    nets = tiny_pipeline.networks
    sampler = tiny_pipeline.sampler(appearance, SamplerSettings(steps=1))
    pose = tiny_pipeline.pose_pixels(_poses(1)[0], appearance)
    sampler.denoise(pose)
    first = sampler._step
    assert first.fits(nets)
    try:
        nets.to(torch.float64)
        assert not first.fits(nets)
        assert sampler.denoise(pose).dtype == torch.float32
        assert sampler._step is not first and sampler._step.dtype == torch.float64
    finally:
        nets.to(torch.float32)
