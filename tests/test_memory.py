"""What stays in memory during a render and how much it needs: the encode-side networks leave the compute
device once the appearance is encoded, and the fit check's estimate counts every resident weight."""
import numpy as np
import torch

from talkingpose.pipeline import load_pipeline


def test_encoders_wait_on_the_offload_device_between_sources(tiny_weights):
    pipe = load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"])
    moves = []
    for name, module in (("reference_unet", pipe.networks.reference_unet), ("clip", pipe.image_encoder)):
        real_to = module.to

        def to(device, _name=name, _to=real_to):
            moves.append((_name, torch.device(device).type))
            return _to("cpu")  # this machine has one device: the move is recorded, the weights stay

        module.to = to
    pipe.offload_device = torch.device("meta")  # stands for the offload device of a GPU machine
    source = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    moves_at = []
    for _ in range(2):  # a second source brings them back, and they leave again
        pipe.encode_appearance(source, 64, 64)
        moves_at.append(list(moves))
        moves.clear()
    expected = [("reference_unet", "cpu"), ("clip", "cpu"), ("reference_unet", "meta"), ("clip", "meta")]
    assert moves_at == [expected, expected]


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
