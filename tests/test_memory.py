"""What stays in memory during a render and how much it needs: the encode side and the sampler side take turns
on the compute device, and the fit check's estimate counts every resident weight."""
import numpy as np
import pytest
import torch

from talkingpose.pipeline import load_pipeline


def test_the_two_sides_take_turns_on_the_compute_device(tiny_weights):
    """On a GPU the encode side (reference UNet, CLIP) comes in for a source while the sampler side waits on the
    offload device, and they swap back: the device never holds both UNets (the peak of a 512² render was the encode
    with every network resident)."""
    pipe = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"])
    moves = []

    def recording(name, module):
        real_to = module.to

        def to(device, _name=name, _to=real_to):
            moves.append((_name, torch.device(device).type))
            _to("cpu")  # this machine has one device: the move is recorded, the weights stay
            return module
        return to

    for name, module in (("reference_unet", pipe.networks.reference_unet), ("clip", pipe.image_encoder)):
        module.to = recording(name, module)
    real_sampler_side = pipe.networks.sampler_side

    def sampler_side():
        side = real_sampler_side()
        side.to = recording("sampler side", side)
        return side

    pipe.networks.sampler_side = sampler_side
    pipe.offload_device = torch.device("meta")  # stands for the offload device of a GPU machine
    source = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    moves_at = []
    for _ in range(2):  # a second source swaps them again
        pipe.encode_appearance(source, 64, 64)
        moves_at.append(list(moves))
        moves.clear()
    expected = [("sampler side", "meta"), ("reference_unet", "cpu"), ("clip", "cpu"),
                ("reference_unet", "meta"), ("clip", "meta"), ("sampler side", "cpu")]
    assert moves_at == [expected, expected]
    pipe.to("cpu")  # loading: the encode side goes straight to where it waits, the sampler side to the device
    assert moves == [("reference_unet", "meta"), ("clip", "meta"), ("sampler side", "cpu")]


def test_fp16_decode_that_overflows_is_decoded_again_in_float32(tiny_weights):
    from talkingpose.vae_clip import decode_latents, load_vae

    half = load_vae(tiny_weights["vae"]).to(torch.float16)
    single = load_vae(tiny_weights["vae"]).to(torch.float16).to(torch.float32)  # the same (fp16-rounded) weights
    ordinary = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    huge = ordinary * 3e4  # beyond float16's range inside the decoder
    assert not torch.isfinite(half.decode(huge.half()).sample).all()
    torch.testing.assert_close(decode_latents(half, huge), decode_latents(single, huge), rtol=0, atol=0)
    # an ordinary latent stays in half precision: close to float32, not bit-equal
    difference = (decode_latents(half, ordinary) - decode_latents(single, ordinary)).abs().max()
    assert 0 < difference < 0.01


# ------------------------------------------------------------------------------------------------ the estimate
def _parameter_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@pytest.mark.parametrize("preset", ["tiny", "sd15"])
def test_the_weight_term_is_the_parameter_bytes_of_the_resident_networks(preset):
    """Built on the meta device in fp16 (shapes, no data): on a GPU the encode side (reference UNet, CLIP image
    encoder) and the VAE count while the source is encoded, the sampler side (denoising UNet, pose guider) and the
    VAE while frames are sampled and decoded; on a CPU every network stays in RAM."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from talkingpose import memory
    from talkingpose.random_weights import PRESETS, random_networks

    nets = random_networks(preset, device="meta", dtype=torch.float16)
    with torch.device("meta"):
        vae = AutoencoderKL(**PRESETS[preset]["vae"]).half()
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**PRESETS[preset]["clip"])).half()
    sampling = _parameter_bytes(nets.denoising_unet) + _parameter_bytes(nets.pose_guider) + _parameter_bytes(vae)
    encoding = _parameter_bytes(nets.reference_unet) + _parameter_bytes(clip) + _parameter_bytes(vae)
    everything = sampling + _parameter_bytes(nets.reference_unet) + _parameter_bytes(clip)

    def weights(phase, device_type="cuda"):
        terms = memory.estimate_phases(512, 512, 2, preset, device_type)[phase]
        return sum(t.bytes for t in terms if t.name.endswith(" weights") and t.name != "fused Q/K/V weights")

    assert weights("source VAE encode") == weights("reference pass") == encoding
    assert weights("sampling step") == weights("frame decode") == sampling
    assert weights("frame decode", "cpu") == everything
    if preset == "sd15":  # the networks of the release: 2 × 860 M UNet parameters, 84 M VAE, 304 M ViT-L/14
        assert 3.9 * 2**30 < everything < 4.0 * 2**30


def test_the_estimate_grows_with_the_output_size_as_the_activations_do():
    from talkingpose import memory

    sizes = [(512, 512), (512, 768), (768, 768)]
    phases = [memory.estimate_phases(w, h, 2, "sd15") for w, h in sizes]
    estimates = [memory.estimate_bytes(w, h, 2, "sd15") for w, h in sizes]
    assert estimates[0] < estimates[1] < estimates[2]
    growing = {"VAE activations", "UNet pass activations", "CUDA graph pool", "reference UNet pass activations",
               "reference tokens", "kept cross-attention outputs", "reference keys/values", "key/value buffers"}
    for phase in phases[0]:
        small, large = ({t.name: t.bytes for t in p[phase]} for p in (phases[0], phases[2]))
        for name in small:
            if name in growing:  # proportional to the pixel count: 768² has 2.25 times the pixels of 512²
                assert large[name] == pytest.approx(2.25 * small[name], rel=1e-3), (phase, name)
            elif name.endswith("weights"):
                assert large[name] == small[name], (phase, name)


def test_the_sampler_terms_are_the_buffers_a_prepared_step_keeps(tiny_pipeline):
    """Each term of the sampler's constants against the tensors a prepared step really holds after a frame."""
    from talkingpose import memory
    from talkingpose.sampler import make_scheduler, prepare_step

    nets = tiny_pipeline.networks
    size, steps = 64, 3
    appearance = tiny_pipeline.encode_appearance(np.zeros((size, size, 3), dtype=np.uint8), size, size)
    scheduler = make_scheduler()
    scheduler.set_timesteps(steps)
    step = prepare_step(nets, scheduler, [appearance], 3.5, mode="static")
    pose = nets.pose_features(torch.rand(1, 3, size, size))
    step.denoise(torch.randn(1, 4, size // 8, size // 8), pose)
    terms = {t.name: t.bytes for t in memory.sampler_terms(nets, size, size, 2, steps, 4)}

    def nbytes(tensors):
        return sum(t.numel() * t.element_size() for t in tensors)

    prepared = step.prepared.self_attention.values()
    assert terms["appearance"] == appearance.bytes()
    assert terms["fused Q/K/V weights"] == nbytes(p.qkv_weight for p in prepared)
    assert terms["kept cross-attention outputs"] == nbytes(step.prepared.cross_attention.values())
    assert terms["reference keys/values"] == nbytes(t for p in prepared for t in p.reference)
    assert terms["key/value buffers"] == nbytes(p.keys_values for p in prepared)
    static = step._static
    held = nbytes([step._time_table, static["row"], static["pose"], static["latents"]]) + static["latents"].numel() * 4
    assert terms["time table and static buffers"] == held  # (+ the frame's result, a copy of the latents)


def test_the_fit_check_refuses_a_card_the_render_would_run_out_of(monkeypatch):
    """A 2.5 GiB card cannot hold a 512² render in fp16 (2.3 GiB of weights while the source is encoded, 1.8 GiB
    while sampling, plus the activations): refused with the figures and a size that fits on it; a card smaller
    than the largest side's weights is told so."""
    from types import SimpleNamespace

    from talkingpose import memory
    from talkingpose.errors import TalkingPoseError

    def card_of(gib):
        monkeypatch.setattr(memory, "device_memory", lambda device: (gib * 2**30, gib * 2**30, f"GPU memory of a {gib} GB card"))

    card = SimpleNamespace(type="cuda")
    card_of(2.5)
    with pytest.raises(TalkingPoseError, match=r"--size 512x512 needs about 2\.9 GiB of memory, more than the 2\.5 GiB "
                                               r"GPU memory of a 2\.5 GB card of this machine\. Use a smaller size "
                                               r"\(up to about 280x280 fits\)"):
        memory.check_fits(512, 512, card, torch.float16)
    assert memory.estimate_bytes(280, 280, 2) <= 2.5 * 2**30 < memory.estimate_bytes(288, 288, 2)
    card_of(2)
    with pytest.raises(TalkingPoseError, match=r"more than the 2\.0 GiB .* No size fits: the weights alone need about "
                                               r"2\.3 GiB; use a machine with more memory\."):
        memory.check_fits(512, 512, card, torch.float16)
    card_of(4)
    assert memory.check_fits(512, 512, card, torch.float16) == memory.estimate_bytes(512, 512, 2)
