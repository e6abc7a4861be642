"""Seconds per frame of the official TalkingPose inference (dfki-av/TalkingPose, scripts/pose2vid.py's loop),
for `benchmarks/gpu_figures.py`. Runs in its own process with the official code and the diffusers,
transformers and huggingface-hub versions it pins first on the path (`benchmarks/prepare_official.sh`), so it
imports nothing from this pack.

    python benchmarks/official_speed.py OFFICIAL_DIR WEIGHTS_ROOT UNET_CONFIG.json INPUTS_DIR WIDTH HEIGHT FRAMES STEPS DEVICE DTYPE OUT.json

WEIGHTS_ROOT is what `talkingpose.random_weights.write_random_weights` wrote (the same random weights the pack's
figures use), UNET_CONFIG.json the UNet's diffusers config; INPUTS_DIR holds source.png and pose_000.png… (the same inputs). The pipeline is built as
pose2vid.py builds it (UNet3D with motion modules from inference_v2.yaml, fp16), and each frame is one call of
the official pipeline, as pose2vid.py makes them: the timing is per frame after the first.
"""
import json
import sys
import time
from pathlib import Path

# transformers 4.30.2 refuses a tokenizers newer than 0.14 at import; the image encoder uses no tokenizer, so
# tokenizers is hidden from it (find_spec then says it is absent and the check is skipped).
sys.modules["tokenizers"] = None
# peft, where the machine has it (this pack's environment does), is too new for transformers 4.30.2, and diffusers
# 0.27.2 imports it whenever it is found; the official inference uses no adapters, so it is hidden the same way.
sys.modules["peft"] = None


def main(official, weights, unet_config, inputs, width, height, frames, steps, device, dtype_name, out):
    sys.path.insert(0, official)
    import diffusers
    import torch
    import transformers
    import yaml
    from diffusers import AutoencoderKL, DDIMScheduler
    from PIL import Image
    from transformers import CLIPVisionModelWithProjection

    from src.models.pose_guider import PoseGuider
    from src.models.unet_2d_condition import UNet2DConditionModel
    from src.models.unet_3d import UNet3DConditionModel
    from src.pipelines.pipeline_pose2vid_long import Pose2VideoPipeline

    weights, inputs = Path(weights), Path(inputs)
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    model = next((weights / "talkingpose").iterdir())
    # pose2vid.py reads the SD1.5 base UNet folder (config + weights) and then the TalkingPose checkpoints over
    # it; the base folder here is the denoising UNet's own file under diffusers' weights name.
    base = Path(out).parent / "official-base" / "unet"
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_text(Path(unet_config).read_text())
    link = base / "diffusion_pytorch_model.bin"
    if not link.exists():
        link.symlink_to((model / "denoising_unet.pth").resolve())
    infer = yaml.safe_load((Path(official) / "configs/inference/inference_v2.yaml").read_text())

    def load(module, path, strict=True):
        module.load_state_dict(torch.load(path, map_location="cpu"), strict=strict)
        return module

    vae = AutoencoderKL.from_pretrained(str(next((weights / "vae").iterdir()))).to(device, dtype=dtype)
    reference_unet = load(UNet2DConditionModel.from_pretrained(str(base.parent), subfolder="unet"),
                          model / "reference_unet.pth").to(device, dtype=dtype)
    denoising_unet = load(UNet3DConditionModel.from_pretrained_2d(str(base.parent), "", subfolder="unet",
                                                                  unet_additional_kwargs=infer["unet_additional_kwargs"]),
                          model / "denoising_unet.pth", strict=False).to(device, dtype=dtype)
    width0 = json.loads(Path(unet_config).read_text())["block_out_channels"][0]  # 320 at SD1.5 size, as pose2vid.py
    pose_guider = load(PoseGuider(width0, block_out_channels=(16, 32, 96, 256)), model / "pose_guider.pth").to(device, dtype=dtype)
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(str(next((weights / "clip_vision").iterdir()))).to(device, dtype=dtype)
    scheduler = DDIMScheduler(**infer["noise_scheduler_kwargs"])
    pipe = Pose2VideoPipeline(vae=vae, image_encoder=image_encoder, reference_unet=reference_unet,
                              denoising_unet=denoising_unet, pose_guider=pose_guider, scheduler=scheduler).to(device, dtype=dtype)
    source = Image.open(inputs / "source.png").convert("RGB")
    poses = [Image.open(inputs / f"pose_{i:03d}.png").convert("RGB") for i in range(frames)]
    generator = torch.manual_seed(42)
    prev_latents = initial_noise = None
    stamps = []
    for index, pose in enumerate(poses):  # scripts/pose2vid.py's loop
        _video, prev_latents, noise = pipe(source, [pose], width, height, 1, steps, 3.5, index, 0.05, prev_latents,
                                           initial_noise, generator=generator)
        if index < 1:
            initial_noise = noise
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    result = {"official_s_per_frame": (stamps[-1] - stamps[0]) / (len(stamps) - 1), "official_frames": frames,
              "official_diffusers": diffusers.__version__, "official_transformers": transformers.__version__}
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    official, weights, unet_config, inputs, width, height, frames, steps, device, dtype_name, out = sys.argv[1:12]
    main(official, weights, unet_config, inputs, int(width), int(height), int(frames), int(steps), device, dtype_name, out)
