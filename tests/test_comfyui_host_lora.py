"""Train TalkingPose LoRA and Load TalkingPose LoRA inside a real ComfyUI, queued over its HTTP API.

Runs only when COMFYUI_PATH points at a ComfyUI checkout (see test_comfyui_host.py, whose server set-up this
module shares: tiny-vitl random weights in ComfyUI's own VAE and CLIP Vision formats).
"""
from __future__ import annotations

import numpy as np

from test_comfyui_host import CLIP_NAME, MODEL_NAME, SOURCE_NAME, VAE_NAME, _write_clip, comfy  # noqa: F401 (fixture)
from helpers import SHARED

FRAMES = 14  # pairs need frames at least 10 apart
SIZE = 64
TIMEOUT_S = 1800  # encoding the clip through the full-size VAE and ViT-L/14 is slow on a loaded CPU


def _run(comfy, prompt):
    entry = comfy.wait(comfy.queue(prompt), timeout=TIMEOUT_S)
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
    return entry


def _clip_files(comfy):
    from PIL import Image

    from talkingpose.video_io import VideoReader

    names = {}
    for kind in ("driving", "dwpose"):
        pictures = [Image.fromarray(f).resize((128, 128), Image.BILINEAR)
                    for f in VideoReader(SHARED / "samples" / kind / "vid1.mp4", max_frames=FRAMES)]
        names[kind] = f"tp_lora_{kind}.mp4"
        _write_clip(comfy.base / "input" / names[kind], pictures)
    return names


def _loaders(names):
    return {
        "model": {"class_type": "TalkingPoseModelLoader", "inputs": {"model": MODEL_NAME, "precision": "fp32"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_NAME}},
        "clip": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": CLIP_NAME}},
        "frames_video": {"class_type": "LoadVideo", "inputs": {"file": names["driving"]}},
        "frames": {"class_type": "GetVideoComponents", "inputs": {"video": ["frames_video", 0]}},
        "poses_video": {"class_type": "LoadVideo", "inputs": {"file": names["dwpose"]}},
        "poses": {"class_type": "GetVideoComponents", "inputs": {"video": ["poses_video", 0]}},
    }


def test_comfyui_host_trains_a_lora_and_renders_with_it(comfy):  # noqa: F811 (the fixture)
    from talkingpose.lora import read_adapter

    names = _clip_files(comfy)
    train = {
        **_loaders(names),
        "train": {"class_type": "TalkingPoseTrainLoRA", "inputs": {
            "model": ["model", 0], "clip_vision": ["clip", 0], "vae": ["vae", 0], "images": ["frames", 0],
            "steps": 2, "rank": 2, "learning_rate": 1e-3, "output_name": "tp_person", "poses": ["poses", 0],
            "width": SIZE, "height": SIZE, "batch": 2, "seed": 0, "resume": True}},
        "curve": {"class_type": "PreviewImage", "inputs": {"images": ["train", 1]}},
    }
    entry = _run(comfy, train)
    adapter_file = comfy.base / "models" / "talkingpose_lora" / "tp_person.safetensors"
    adapter = read_adapter(adapter_file)
    assert adapter.info["steps"] == 2 and adapter.info["clip"]["frames_used"] == FRAMES
    assert np.isfinite(adapter.info["loss"]["last"])
    assert entry["outputs"]["curve"]["images"], entry["outputs"]
    assert not adapter_file.with_name(adapter_file.name + ".checkpoint.pt").exists()

    render = {
        **_loaders(names),
        "source": {"class_type": "LoadImage", "inputs": {"image": SOURCE_NAME}},
        "lora": {"class_type": "TalkingPoseLoadLoRA", "inputs": {
            "model": ["model", 0], "lora": "tp_person.safetensors", "strength": 1.0}},
        "appearance": {"class_type": "TalkingPoseAppearanceEncode", "inputs": {
            "model": ["lora", 0], "clip_vision": ["clip", 0], "vae": ["vae", 0], "image": ["source", 0],
            "width": SIZE, "height": SIZE, "fit": "stretch"}},
        "sampler": {"class_type": "TalkingPoseClosedLoopSampler", "inputs": {
            "model": ["lora", 0], "appearance": ["appearance", 0], "pose_images": ["poses", 0],
            "seed": 1, "steps": 2, "cfg": 3.5, "beta": 0.05}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["vae", 0]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }
    entry = _run(comfy, render)
    assert len(entry["outputs"]["preview"]["images"]) == FRAMES
