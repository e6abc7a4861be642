"""The pack inside a real ComfyUI: the shipped workflows queued over ComfyUI's HTTP API.

Runs only when COMFYUI_PATH points at a ComfyUI checkout (the server runs with COMFYUI_PYTHON, else this
interpreter); otherwise every test here is skipped with the reason. Example:

    COMFYUI_PATH=/work/comfyhost/ComfyUI COMFYUI_PYTHON=/work/comfyhost/venv/bin/python \\
        python -m pytest tests/test_comfyui_host.py -v

The checkout is not modified: the server gets a temporary --base-directory holding custom_nodes/ (a symlink to
this pack, and to VideoHelperSuite when the checkout has it), models/ (random tiny-vitl weights in the formats
ComfyUI's loaders read, the synthetic DWPose ONNX models of the shared golden data), input/ and output/.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from comfy_workflow import load_host_definitions, pack_definitions, spec_options, to_api_prompt
from helpers import PACK_ROOT, SHARED

PACK_DIR_NAME = "ComfyUI-TalkingPose"
VHS_DIR_NAME = "ComfyUI-VideoHelperSuite"
WORKFLOW_DIR = PACK_ROOT / "workflows"
DWPOSE_MODELS = SHARED / "golden" / "dwpose-a" / "models" / "det"
DRIVING_SAMPLE = SHARED / "samples" / "driving" / "vid1.mp4"

MODEL_NAME = "TalkingPose/"
BROKEN_MODEL_NAME = "broken/"
VAE_NAME = "random-sd-vae.safetensors"
CLIP_NAME = "random-vit-l-14.safetensors"
SOURCE_NAME = "tp_source.png"
DRIVING_NAME = "tp_driving.mp4"
FRAMES, FPS, CLIP_SIZE, OUT_SIZE = 6, 23, 128, 64
AUDIO_RATE = 44100
RUN_TIMEOUT_S = 300


# ------------------------------------------------------------------------------------------------ set-up
def _comfyui() -> tuple[Path, str]:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("COMFYUI_PATH is not set: the real-ComfyUI tests need a ComfyUI checkout "
                    "(set COMFYUI_PATH, and COMFYUI_PYTHON for its interpreter)")
    root = Path(path).expanduser().resolve()
    if not (root / "main.py").is_file() or not (root / "comfy").is_dir():
        pytest.skip(f"COMFYUI_PATH={path} is not a ComfyUI checkout (no main.py / comfy/)")
    if not DWPOSE_MODELS.is_dir() or not DRIVING_SAMPLE.is_file():
        pytest.skip(f"shared test data not found under {SHARED}")
    return root, os.environ.get("COMFYUI_PYTHON") or sys.executable


def _write_weights(models: Path) -> None:
    """tiny-vitl random weights where ComfyUI and the pack look for them, in the files they read."""
    import torch
    from safetensors.torch import load_file, save_file

    from talkingpose_pack.models.random_weights import (write_random_image_encoder, write_random_model,
                                                        write_random_vae)

    write_random_model(models / "talkingpose" / MODEL_NAME.rstrip("/"), "tiny-vitl", seed=3)
    broken = models / "talkingpose" / BROKEN_MODEL_NAME.rstrip("/")  # listed (all three files), unloadable
    broken.mkdir(parents=True)
    for part in ("denoising_unet", "reference_unet", "pose_guider"):
        (broken / f"{part}.pth").write_bytes(b"not a checkpoint")

    scratch = models / "scratch"
    # VAELoader reads one file; diffusers key names are converted by ComfyUI itself.
    vae_dir = write_random_vae(scratch / "vae", "tiny-vitl", seed=3)
    (models / "vae").mkdir(parents=True)
    shutil.move(str(vae_dir / "diffusion_pytorch_model.safetensors"), models / "vae" / VAE_NAME)
    # CLIPVisionLoader reads one file with Hugging Face key names; fp16 halves it (ComfyUI stores fp16 anyway).
    clip_dir = write_random_image_encoder(scratch / "clip", "tiny-vitl", seed=3)
    state = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(clip_dir / "model.safetensors")).items()}
    (models / "clip_vision").mkdir(parents=True)
    save_file(state, str(models / "clip_vision" / CLIP_NAME))
    shutil.rmtree(scratch)

    (models / "dwpose").mkdir(parents=True)
    for onnx in DWPOSE_MODELS.glob("*.onnx"):
        shutil.copyfile(onnx, models / "dwpose" / onnx.name)


def _write_inputs(folder: Path) -> None:
    """A short driving clip (frames of vid1 at FPS, with an AAC audio track) and a source photo."""
    import av
    from PIL import Image

    frames = []
    with av.open(str(DRIVING_SAMPLE)) as src:
        for frame in src.decode(video=0):
            frames.append(frame.to_image().resize((CLIP_SIZE, CLIP_SIZE), Image.BICUBIC))
            if len(frames) == FRAMES + 1:
                break
    frames[-1].save(folder / SOURCE_NAME)  # a frame the clip does not contain
    with av.open(str(folder / DRIVING_NAME), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width = video.height = CLIP_SIZE
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        video.time_base = Fraction(1, FPS)
        for index, picture in enumerate(frames[:FRAMES]):
            frame = av.VideoFrame.from_image(picture)
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(AUDIO_RATE * FRAMES / FPS)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / AUDIO_RATE)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            chunk.sample_rate = AUDIO_RATE
            chunk.pts = start
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyHost:
    def __init__(self, base: Path, url: str, process: subprocess.Popen, log: Path, has_vhs: bool):
        self.base, self.url, self.process, self.log, self.has_vhs = base, url, process, log, has_vhs

    def log_tail(self, n: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def get(self, path: str, raw: bool = False):
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            data = response.read()
        return data if raw else json.loads(data)

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def queue(self, prompt: dict, workflow: dict | None = None) -> str:
        payload = {"prompt": prompt, "client_id": "talkingpose-tests"}
        if workflow is not None:
            payload["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        status, reply = self.post("/prompt", payload)
        assert status == 200 and not reply.get("node_errors"), f"POST /prompt refused ({status}): {json.dumps(reply)[:3000]}"
        return reply["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the ComfyUI server died:\n{self.log_tail()}"
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and \
                    entry["status"].get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish within {timeout} s:\n{self.log_tail()}")

    def run(self, prompt: dict, workflow: dict | None = None) -> dict:
        entry = self.wait(self.queue(prompt, workflow))
        assert entry["status"]["status_str"] == "success", \
            f"the prompt failed: {json.dumps(entry['status'])[:4000]}\n--- server log ---\n{self.log_tail()}"
        return entry


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root, python = _comfyui()
    base = tmp_path_factory.mktemp("comfyui_base")
    for sub in ("custom_nodes", "input", "output", "temp", "user"):
        (base / sub).mkdir()
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
    vhs = root / "custom_nodes" / VHS_DIR_NAME
    if vhs.is_dir():
        (base / "custom_nodes" / VHS_DIR_NAME).symlink_to(vhs, target_is_directory=True)
    _write_weights(base / "models")
    _write_inputs(base / "input")

    port = _free_port()
    log = base / "server.log"
    command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", str(base), "--disable-auto-launch"]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    host = ComfyHost(base, f"http://127.0.0.1:{port}", process, log, vhs.is_dir())
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"ComfyUI exited during start-up (code {process.returncode}):\n{host.log_tail()}")
            try:
                host.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"ComfyUI did not answer within 180 s:\n{host.log_tail()}")
                time.sleep(0.5)
        yield host
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def defs(comfy):
    return {**load_host_definitions(), **pack_definitions(sys.modules["talkingpose_pack"].NODE_CLASS_MAPPINGS)}


# ------------------------------------------------------------------------------------------------ helpers
def load_workflow(name: str) -> dict:
    return json.loads((WORKFLOW_DIR / name).read_text(encoding="utf-8"))


def small_prompt(workflow: dict, defs: dict, prefix: str, seed: int) -> dict:
    """The workflow as an API prompt, on this test's files and with small, fast settings."""
    prompt = to_api_prompt(workflow, defs)
    overrides = {
        "LoadImage": {"image": SOURCE_NAME},
        "LoadVideo": {"file": DRIVING_NAME},
        "VHS_LoadVideo": {"video": DRIVING_NAME},
        "VAELoader": {"vae_name": VAE_NAME},
        "CLIPVisionLoader": {"clip_name": CLIP_NAME},
        "TalkingPoseModelLoader": {"model": MODEL_NAME},
        "TalkingPoseExtract": {"width": OUT_SIZE, "height": OUT_SIZE},
        "TalkingPoseAppearanceEncode": {"width": OUT_SIZE, "height": OUT_SIZE},
        "TalkingPoseClosedLoopSampler": {"steps": 2, "seed": seed},
        "SaveVideo": {"filename_prefix": prefix},
        "VHS_VideoCombine": {"filename_prefix": prefix},
    }
    seen = set()
    for node in prompt.values():
        for key, value in overrides.get(node["class_type"], {}).items():
            assert key in node["inputs"] and not isinstance(node["inputs"][key], list), (node["class_type"], key)
            node["inputs"][key] = value
            seen.add(node["class_type"])
    assert {"TalkingPoseModelLoader", "TalkingPoseClosedLoopSampler", "TalkingPoseExtract"} <= seen
    return prompt


def output_files(comfy: ComfyHost, entry: dict) -> list[Path]:
    """The files the output nodes report in the history entry (SaveVideo: images, VHS: gifs)."""
    files = []
    for ui in entry["outputs"].values():
        for item in ui.get("images", []) + ui.get("gifs", []):
            if item.get("type") == "output":
                files.append(comfy.base / "output" / item.get("subfolder", "") / item["filename"])
    return files


def probe(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {"fps": Fraction(video.average_rate), "size": (video.width, video.height),
                "frames": sum(1 for _ in container.decode(video=0))}
    with av.open(str(path)) as container:
        audio = [s for s in container.streams if s.type == "audio"]
        samples = sum(f.samples for f in container.decode(audio=0)) if audio else 0
        info.update(audio_streams=len(audio), audio_seconds=samples / audio[0].rate if audio else 0.0)
    return info


def check_video(path: Path) -> dict:
    assert path.is_file(), f"{path} was not written"
    info = probe(path)
    assert info["frames"] == FRAMES, info
    assert info["fps"] == FPS, info
    assert info["size"] == (OUT_SIZE, OUT_SIZE), info
    assert info["audio_streams"] == 1, info
    assert info["audio_seconds"] > 0.5 * FRAMES / FPS, info  # the driving clip's audio, carried through
    return info


# ------------------------------------------------------------------------------------------------ tests
def test_comfyui_host_test_clip_is_as_intended(comfy):
    info = probe(comfy.base / "input" / DRIVING_NAME)
    assert info["frames"] == FRAMES and info["fps"] == FPS and info["audio_streams"] == 1


def test_comfyui_host_lists_the_shipped_workflows(comfy):
    templates = comfy.get("/workflow_templates")
    expected = {p.stem for p in WORKFLOW_DIR.glob("*.json")}
    assert set(templates.get(PACK_DIR_NAME, [])) == expected, templates
    for name in expected:
        served = comfy.get(f"/api/workflow_templates/{PACK_DIR_NAME}/{name}.json", raw=True)
        assert json.loads(served) == load_workflow(f"{name}.json")


def test_comfyui_host_node_definitions_match_the_test_fixture(comfy):
    """The snapshot the CI-side workflow checks use, and our own node descriptions, agree with the live host."""
    live = comfy.get("/object_info")
    fixture = load_host_definitions()
    for node_type, recorded in fixture.items():
        if node_type.startswith("VHS_") and not comfy.has_vhs:
            continue
        assert node_type in live, node_type
        current = live[node_type]
        for key in ("input_order", "output", "output_name", "output_node"):
            assert current.get(key) == recorded.get(key), (node_type, key)
        for section in ("required", "optional"):
            for name, spec in recorded["input"].get(section, {}).items():
                now = current["input"][section][name]
                if isinstance(spec[0], list) and not spec[0]:  # installed-file lists were emptied
                    assert isinstance(now[0], list), (node_type, name)
                    continue
                assert now[0] == spec[0], (node_type, name)
                for option in ("default", "min", "max", "control_after_generate"):
                    assert spec_options(now).get(option) == spec_options(spec).get(option), (node_type, name, option)
    ours = pack_definitions(sys.modules["talkingpose_pack"].NODE_CLASS_MAPPINGS)
    for node_type, described in ours.items():
        current = live[node_type]
        assert current["input_order"] == described["input_order"], node_type
        assert current["output"] == described["output"] and current["output_name"] == described["output_name"], node_type
        assert current["input"]["required"].keys() == described["input"]["required"].keys(), node_type
    assert MODEL_NAME in live["TalkingPoseModelLoader"]["input"]["required"]["model"][0]
    assert BROKEN_MODEL_NAME in live["TalkingPoseModelLoader"]["input"]["required"]["model"][0]


def test_comfyui_host_runs_the_core_nodes_workflow(comfy, defs):
    workflow = load_workflow("talkingpose_core_nodes.json")
    prefix = f"tp_tests/core_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    entry = comfy.run(small_prompt(workflow, defs, prefix, seed=1), workflow)
    files = output_files(comfy, entry)
    assert len(files) == 1 and files[0].name.startswith(prefix.split("/")[-1]), files
    info = check_video(files[0])
    print(f"core workflow: {time.monotonic() - started:.1f} s, {info}")


def test_comfyui_host_runs_the_videohelpersuite_workflow(comfy, defs):
    if not comfy.has_vhs:
        pytest.skip(f"{VHS_DIR_NAME} is not in {os.environ.get('COMFYUI_PATH')}/custom_nodes")
    workflow = load_workflow("talkingpose_videohelpersuite.json")
    prefix = f"tp_tests/vhs_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    entry = comfy.run(small_prompt(workflow, defs, prefix, seed=2), workflow)
    files = [f for f in output_files(comfy, entry) if f.suffix == ".mp4"]
    assert len(files) == 1, entry["outputs"]
    info = check_video(files[0])
    print(f"VideoHelperSuite workflow: {time.monotonic() - started:.1f} s, {info}")


def test_comfyui_host_recovers_after_a_failed_run(comfy, defs):
    workflow = load_workflow("talkingpose_core_nodes.json")
    # Refused at validation: not one of the model choices.
    prompt = small_prompt(workflow, defs, "tp_tests/refused", seed=3)
    next(n for n in prompt.values() if n["class_type"] == "TalkingPoseModelLoader")["inputs"]["model"] = "missing/"
    status, reply = comfy.post("/prompt", {"prompt": prompt})
    assert status == 400 and reply.get("node_errors"), reply
    # Fails while running: a listed model folder whose files are not checkpoints.
    prompt = small_prompt(workflow, defs, "tp_tests/failed", seed=4)
    loader_id = next(k for k, n in prompt.items() if n["class_type"] == "TalkingPoseModelLoader")
    prompt[loader_id]["inputs"]["model"] = BROKEN_MODEL_NAME
    entry = comfy.wait(comfy.queue(prompt))
    assert entry["status"]["status_str"] == "error", entry["status"]
    errors = [m for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and errors[0][1]["node_id"] == loader_id, entry["status"]["messages"]
    assert "broken" in errors[0][1]["exception_message"], errors[0][1]["exception_message"]
    assert not list((comfy.base / "output" / "tp_tests").glob("failed*"))
    # The server is healthy and the next good run succeeds.
    assert comfy.get("/queue") == {"queue_running": [], "queue_pending": []}
    assert comfy.get("/system_stats")["system"]["comfyui_version"]
    prefix = f"tp_tests/after_error_{uuid.uuid4().hex[:8]}"
    entry = comfy.run(small_prompt(workflow, defs, prefix, seed=5), workflow)
    files = output_files(comfy, entry)
    assert len(files) == 1
    check_video(files[0])
    # ComfyUI dropped the first model when the loader's input changed: it must have been freed at once.
    assert "memory leak" not in comfy.log.read_text(errors="replace"), comfy.log_tail()
