"""`download` puts every file where and as the shipped workflows and the command line look for it, and the
command line reads those files; a failed download leaves no lock file behind."""
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from helpers import PACK_ROOT
from talkingpose import downloads
from talkingpose.animate import locate_weights
from talkingpose.cli import main
from talkingpose.errors import TalkingPoseError
from talkingpose.pipeline import load_pipeline
from talkingpose.vae_clip import load_image_encoder, load_vae


def ldm_vae_state(diffusers_state: dict, blocks: int) -> dict:
    """A diffusers AutoencoderKL state dict under the original (CompVis LDM) key names, as in
    vae-ft-mse-840000-ema-pruned.safetensors."""
    out = {}
    for key, tensor in diffusers_state.items():
        name = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        name = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)", r"encoder.down.\1.block.\2", name)
        name = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample", name)
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)",
                      lambda m: f"decoder.up.{blocks - 1 - int(m.group(1))}.block.{m.group(2)}", name)
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0",
                      lambda m: f"decoder.up.{blocks - 1 - int(m.group(1))}.upsample", name)
        name = re.sub(r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m.group(1)) + 1}", name)
        attention = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)", key)
        if attention:
            part = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}[attention.group(2)]
            name = f"{attention.group(1)}.mid.attn_1.{part}.{attention.group(3)}"
            if attention.group(3) == "weight" and part != "norm":
                tensor = tensor[:, :, None, None]  # 1x1 convolutions in the original
        out[name] = tensor.contiguous()
    return out


@pytest.fixture
def hub(tmp_path, tiny_weights, monkeypatch):
    """Hugging Face served from a local folder per repository, in the released files' formats."""
    import huggingface_hub
    from transformers import CLIPVisionModelWithProjection

    root = tmp_path / "hub"
    talkingpose = root / downloads.TALKINGPOSE_REPO / "weights"
    talkingpose.mkdir(parents=True)
    for part in ("denoising_unet", "reference_unet", "pose_guider"):
        shutil.copy(tiny_weights["model"] / f"{part}.pth", talkingpose / f"{part}.pth")
    vae = load_vae(tiny_weights["vae"])
    (root / downloads.VAE_REPO).mkdir(parents=True)
    save_file(ldm_vae_state(vae.state_dict(), len(vae.config.block_out_channels)), str(root / downloads.VAE_REPO / downloads.VAE_FILE))
    encoder = CLIPVisionModelWithProjection.from_pretrained(str(tiny_weights["image_encoder"]))
    released = root / downloads.IMAGE_ENCODER_REPO / "image_encoder"
    released.mkdir(parents=True)
    shutil.copy(tiny_weights["image_encoder"] / "config.json", released / "config.json")
    torch.save(encoder.state_dict(), released / "pytorch_model.bin")
    (root / downloads.DWPOSE_REPO).mkdir(parents=True)
    for name in downloads.DWPOSE_FILES:
        (root / downloads.DWPOSE_REPO / name).write_bytes(b"onnx")

    def hf_hub_download(repo_id, filename, local_dir):
        source = root / repo_id / filename
        if not source.is_file():
            raise FileNotFoundError(f"{repo_id}/{filename}")
        target = local_dir / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return {"vae": vae, "encoder": encoder}


def _workflow_file_names(loader_type):
    names = set()
    for path in (PACK_ROOT / "example_workflows").glob("*.json"):
        for node in json.loads(path.read_text())["nodes"]:
            if node["type"] == loader_type:
                names.add(node["widgets_values"][0])
    return names


def test_download_writes_the_files_the_workflows_load_and_the_command_line_reads_them(hub, tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["download", "--models", str(models)]) == 0
    vae_file = models / "vae" / downloads.VAE_FILE
    encoder_file = models / "clip_vision" / downloads.IMAGE_ENCODER_FILE
    assert vae_file.is_file() and encoder_file.is_file()
    assert _workflow_file_names("VAELoader") == {vae_file.name}
    assert _workflow_file_names("CLIPVisionLoader") == {encoder_file.name}
    assert sorted(p.name for p in (models / "talkingpose" / "TalkingPose").glob("*.pth")) == \
        ["denoising_unet.pth", "pose_guider.pth", "reference_unet.pth"]
    assert (models / "dwpose" / "yolox_l.onnx").is_file()
    assert not (models / "clip_vision" / ".sd-image-variations-download").exists()  # staging removed

    found = locate_weights(models)
    assert found == {"model": models / "talkingpose" / "TalkingPose", "vae": vae_file, "image_encoder": encoder_file}
    vae, encoder = load_vae(vae_file), load_image_encoder(encoder_file)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(latent).sample, hub["vae"].decode(latent).sample)
        pixels = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(encoder(pixels).image_embeds, hub["encoder"](pixels).image_embeds)
    pipe = load_pipeline(found["model"], found["vae"], found["image_encoder"])
    assert pipe.encode_appearance(torch.rand(64, 64, 3), 64, 64).reference_latent.shape == (1, 4, 8, 8)


def test_image_encoder_file_loads_without_its_stored_config(hub, tmp_path):
    """A single CLIP file from elsewhere (no metadata): the OpenAI ViT layout is read off the shapes."""
    save_file(hub["encoder"].state_dict(), str(tmp_path / "clip.safetensors"))
    encoder = load_image_encoder(tmp_path / "clip.safetensors")
    assert encoder.config.hidden_size == 32 and encoder.config.projection_dim == 32 and encoder.config.patch_size == 32


def test_wrong_single_files_are_refused_with_a_sentence(tmp_path):
    save_file({"something.weight": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(TalkingPoseError, match="is not an SD1.x VAE"):
        load_vae(tmp_path / "x.safetensors")
    with pytest.raises(TalkingPoseError, match="is not a CLIP vision model"):
        load_image_encoder(tmp_path / "x.safetensors")


def test_offline_failure_leaves_no_lock_file(tmp_path):
    """huggingface_hub itself, offline: the error is a sentence and no lock file stays behind."""
    dest = tmp_path / "talkingpose"
    code = ("from talkingpose import downloads\n"
            f"downloads.fetch(downloads.TALKINGPOSE_REPO, downloads.TALKINGPOSE_FILES, {str(dest)!r})\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACK_ROOT), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "Could not download weights/denoising_unet.pth" in result.stderr
    assert list(dest.rglob("*.lock")) == []
