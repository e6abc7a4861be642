"""The pack inside a real ComfyUI: the shipped workflows queued over ComfyUI's HTTP API.

Runs only when COMFYUI_PATH points at a ComfyUI checkout (the server runs with COMFYUI_PYTHON, else this
interpreter); otherwise every test here is skipped with the reason — or fails with it where
TALKINGPOSE_REQUIRE_COMFYUI=1 (CI sets it, so a broken host set-up cannot pass as skipped tests). Example:

    COMFYUI_PATH=/work/comfyhost/ComfyUI COMFYUI_PYTHON=/work/comfyhost/venv/bin/python \\
        python -m pytest tests/test_comfyui_host.py -v

The checkout is not modified: the server gets a temporary --base-directory holding custom_nodes/ (a symlink to
this pack, and to VideoHelperSuite when the checkout has it), models/ (random tiny-vitl weights in the formats
ComfyUI's loaders read, the synthetic DWPose ONNX models of the shared golden data), input/ and output/.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from comfy_workflow import (BREAKING_CHANGES, COMPATIBLE_CHANGES, combo_choices, pack_definitions, spec_options,
                            to_api_prompt, validate_workflow)
from helpers import PACK_ROOT, SHARED
from nodes import NODE_CLASS_MAPPINGS

PACK_DIR_NAME = "ComfyUI-TalkingPose"
VHS_DIR_NAME = "ComfyUI-VideoHelperSuite"
WORKFLOW_DIR = PACK_ROOT / "example_workflows"
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
# The long-video workflow: a 7-frame clip in meta batches of 3 frames (chunks of 3, 3 and a short last one of 1).
LONG_DRIVING_NAME, LONG_FRAMES, FRAMES_PER_BATCH = "tp_driving_long.mp4", 7, 3
TONE_BASE_HZ, TONE_STEP_HZ = 300, 150  # its audio: a tone of 300 Hz + 150 Hz * frame index, so audio tells its frame


# A module the test host loads as a custom node (no nodes): it records, for every load_models_gpu call, the models
# asked for and then ComfyUI's current_loaded_models, and can unload every model, over two test-only routes.
MEMORY_PROBE = """
import comfy.model_management as mm
from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS = {}
calls = []
_load_models_gpu = mm.load_models_gpu


def _name(patcher):
    return type(patcher.model).__name__


def load_models_gpu(models, *args, **kwargs):
    result = _load_models_gpu(models, *args, **kwargs)
    calls.append({"requested": [_name(m) for m in models],
                  "loaded": [_name(m.model) for m in mm.current_loaded_models if m.model is not None]})
    return result


mm.load_models_gpu = load_models_gpu


@PromptServer.instance.routes.post("/tp_test/unload_models")
async def unload_models(request):
    mm.unload_all_models()
    calls.clear()
    return web.json_response({"loaded": [_name(m.model) for m in mm.current_loaded_models if m.model is not None]})


@PromptServer.instance.routes.get("/tp_test/loads")
async def loads(request):
    return web.json_response(calls)
"""


# ------------------------------------------------------------------------------------------------ set-up
def _skip_without_host(reason: str) -> None:
    if os.environ.get("TALKINGPOSE_REQUIRE_COMFYUI") == "1":
        pytest.fail(f"TALKINGPOSE_REQUIRE_COMFYUI=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _comfyui() -> tuple[Path, str]:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        _skip_without_host("COMFYUI_PATH is not set: the real-ComfyUI tests need a ComfyUI checkout "
                    "(set COMFYUI_PATH, and COMFYUI_PYTHON for its interpreter)")
    root = Path(path).expanduser().resolve()
    if not (root / "main.py").is_file() or not (root / "comfy").is_dir():
        _skip_without_host(f"COMFYUI_PATH={path} is not a ComfyUI checkout (no main.py / comfy/)")
    if not DWPOSE_MODELS.is_dir() or not DRIVING_SAMPLE.is_file():
        _skip_without_host(f"shared test data not found under {SHARED}")
    return root, os.environ.get("COMFYUI_PYTHON") or sys.executable


def _write_weights(models: Path) -> None:
    """tiny-vitl random weights where ComfyUI and the pack look for them, in the files they read."""
    import torch
    from safetensors.torch import load_file, save_file

    from talkingpose.random_weights import (write_random_image_encoder, write_random_model,
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
    """Short driving clips (frames of vid1 at FPS, with an AAC audio track) and a source photo."""
    import av
    from PIL import Image

    frames = []
    with av.open(str(DRIVING_SAMPLE)) as src:
        for frame in src.decode(video=0):
            frames.append(frame.to_image().resize((CLIP_SIZE, CLIP_SIZE), Image.BICUBIC))
            if len(frames) == max(FRAMES + 1, LONG_FRAMES):
                break
    frames[FRAMES].save(folder / SOURCE_NAME)  # a frame the FRAMES-frame clip does not contain
    _write_clip(folder / DRIVING_NAME, frames[:FRAMES])
    _write_clip(folder / LONG_DRIVING_NAME, frames[:LONG_FRAMES], stepped_tone=True)


def _write_clip(path: Path, pictures: list, fps: int = FPS, stepped_tone: bool = False) -> None:
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = pictures[0].size
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        video.time_base = Fraction(1, fps)
        for index, picture in enumerate(pictures):
            frame = av.VideoFrame.from_image(picture)
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(AUDIO_RATE * len(pictures) / fps)
        frequency = np.full(samples, 440.0)
        if stepped_tone:
            frequency = TONE_BASE_HZ + TONE_STEP_HZ * np.floor(np.arange(samples) * fps / AUDIO_RATE)
        tone = (0.3 * np.sin(2 * np.pi * np.cumsum(frequency) / AUDIO_RATE)).astype(np.float32)
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

    def run_until_idle(self, prompt: dict, timeout: float = 2 * RUN_TIMEOUT_S) -> str:
        """Queue a prompt and wait until the queue is empty: also the runs the prompt queued itself
        (VideoHelperSuite's Meta Batch Manager queues the next chunk while the current one runs)."""
        prompt_id = self.queue(prompt)
        deadline, idle_polls = time.monotonic() + timeout, 0
        while idle_polls < 2:
            assert time.monotonic() < deadline, f"the queue did not empty within {timeout} s:\n{self.log_tail()}"
            assert self.process.poll() is None, f"the ComfyUI server died:\n{self.log_tail()}"
            time.sleep(0.5)
            queue = self.get("/queue")
            idle_polls = idle_polls + 1 if not queue["queue_running"] and not queue["queue_pending"] else 0
        return prompt_id

    def run(self, prompt: dict, workflow: dict | None = None) -> dict:
        entry = self.wait(self.queue(prompt, workflow))
        assert entry["status"]["status_str"] == "success", \
            f"the prompt failed: {json.dumps(entry['status'])[:4000]}\n--- server log ---\n{self.log_tail()}"
        return entry


def _start_host(base: Path, env: dict | None = None):
    """A ComfyUI server on `base` (custom_nodes/, models/, input/ made by the caller); yields its ComfyHost and
    stops it."""
    root, python = _comfyui()
    for sub in ("custom_nodes", "input", "output", "temp", "user"):
        (base / sub).mkdir(exist_ok=True)
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
    vhs = root / "custom_nodes" / VHS_DIR_NAME
    if vhs.is_dir():
        (base / "custom_nodes" / VHS_DIR_NAME).symlink_to(vhs, target_is_directory=True)
    (base / "custom_nodes" / "tp_test_memory_probe.py").write_text(MEMORY_PROBE, encoding="utf-8")

    port = _free_port()
    log = base / "server.log"
    command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", str(base), "--disable-auto-launch"]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **(env or {})})
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
def comfy(tmp_path_factory):
    _comfyui()
    base = tmp_path_factory.mktemp("comfyui_base")
    _write_weights(base / "models")
    (base / "input").mkdir()
    _write_inputs(base / "input")
    yield from _start_host(base)


@pytest.fixture(scope="module")
def comfy_v1(comfy, tmp_path_factory):
    """A second server on the same weights and inputs with TALKINGPOSE_V1_NODES=1: the pack's nodes served as the V1
    classes, as before the move to the V3 schema, to compare declarations and renders with."""
    base = tmp_path_factory.mktemp("comfyui_v1_base")
    (base / "models").symlink_to(comfy.base / "models", target_is_directory=True)
    shutil.copytree(comfy.base / "input", base / "input")
    yield from _start_host(base, {"TALKINGPOSE_V1_NODES": "1"})


@pytest.fixture(scope="module")
def defs(comfy):
    """The running host's node definitions: what its frontend builds the prompt from."""
    return comfy.get("/object_info")


# ------------------------------------------------------------------------------------------------ helpers
def load_workflow(name: str) -> dict:
    return json.loads((WORKFLOW_DIR / name).read_text(encoding="utf-8"))


def small_prompt(workflow: dict, defs: dict, prefix: str, seed: int) -> dict:
    """The workflow as an API prompt, on this test's files and with small, fast settings."""
    prompt = to_api_prompt(workflow, defs, exact=False)
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
        "TalkingPoseTrainLoRA": {"steps": 2, "rank": 2, "learning_rate": 1e-3, "width": OUT_SIZE, "height": OUT_SIZE,
                                 "batch": 2, "seed": seed},
        "SaveVideo": {"filename_prefix": prefix},
        "VHS_VideoCombine": {"filename_prefix": prefix},
    }
    seen = set()
    for node in prompt.values():
        for key, value in overrides.get(node["class_type"], {}).items():
            assert key in node["inputs"] and not isinstance(node["inputs"][key], list), (node["class_type"], key)
            node["inputs"][key] = value
            seen.add(node["class_type"])
    assert {"TalkingPoseModelLoader", "TalkingPoseExtract"} <= seen
    assert seen & {"TalkingPoseClosedLoopSampler", "TalkingPoseTrainLoRA"}
    return prompt


def set_inputs(prompt: dict, class_type: str, **values) -> str:
    """Set widget values of the one node of that type in an API prompt; returns its id."""
    found = [key for key, node in prompt.items() if node["class_type"] == class_type]
    assert len(found) == 1, (class_type, found)
    inputs = prompt[found[0]]["inputs"]
    for key, value in values.items():
        assert key in inputs and not isinstance(inputs[key], list), (class_type, key)
        inputs[key] = value
    return found[0]


def history_of(comfy: ComfyHost, node_type: str, input_name: str, value) -> list[dict]:
    """History entries of every prompt in which a node of that type has that input value."""
    return [entry for entry in comfy.get("/history").values()
            if any(n["class_type"] == node_type and n["inputs"].get(input_name) == value for n in entry["prompt"][2].values())]


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
    info = probe(comfy.base / "input" / LONG_DRIVING_NAME)
    assert info["frames"] == LONG_FRAMES and info["fps"] == FPS and info["audio_streams"] == 1


def test_comfyui_host_lists_the_shipped_workflows(comfy):
    templates = comfy.get("/workflow_templates")
    expected = {p.stem for p in WORKFLOW_DIR.glob("*.json")}
    assert set(templates.get(PACK_DIR_NAME, [])) == expected, templates
    for name in expected:
        # Fetched as the browser does, the name's spaces and parentheses percent-encoded.
        served = comfy.get(f"/api/workflow_templates/{PACK_DIR_NAME}/{urllib.parse.quote(name)}.json", raw=True)
        assert json.loads(served) == load_workflow(f"{name}.json")
        # The template browser shows <name>.jpg from the same folder as the card's picture.
        assert comfy.get(f"/api/workflow_templates/{PACK_DIR_NAME}/{urllib.parse.quote(name)}.jpg", raw=True) == \
            (WORKFLOW_DIR / f"{name}.jpg").read_bytes()


def test_comfyui_host_serves_the_help_pages(comfy, defs):
    """The node library's help panel: /extensions/<pack folder>/docs/<node id>.md, the pack folder taken from the
    node's python_module."""
    for node_id in NODE_CLASS_MAPPINGS:
        assert defs[node_id]["python_module"] == f"custom_nodes.{PACK_DIR_NAME}", defs[node_id]["python_module"]
        served = comfy.get(f"/extensions/{PACK_DIR_NAME}/docs/{node_id}.md", raw=True)
        assert served == (PACK_ROOT / "web" / "docs" / f"{node_id}.md").read_bytes(), node_id


def test_comfyui_host_has_what_the_shipped_workflows_rely_on(comfy, defs):
    """Checked against this host's own /object_info, as its frontend loads the files: a newer core node that gained
    inputs, outputs or widgets after the ones the workflows use is no break (v0.33.0's CreateVideo, SaveVideo and
    GetVideoComponents), a changed slot, name or type is."""
    for path in sorted(WORKFLOW_DIR.glob("*.json")):
        workflow = load_workflow(path.name)
        if not comfy.has_vhs and any(n["type"].startswith("VHS_") for n in workflow["nodes"]):
            continue
        assert validate_workflow(workflow, defs, exact=False) == [], path.name
    # The pack's own nodes as the CI-side checks describe them (without a ComfyUI) are what the host serves.
    for node_type, described in pack_definitions(NODE_CLASS_MAPPINGS).items():
        current = defs[node_type]
        # The widget order; hidden inputs, which V3 adds to output nodes, are compared with V1's further down.
        for section in ("required", "optional"):
            assert current["input_order"].get(section) == described["input_order"].get(section), (node_type, section)
        assert current["output"] == described["output"] and current["output_name"] == described["output_name"], node_type
        assert current["input"]["required"].keys() == described["input"]["required"].keys(), node_type
    assert MODEL_NAME in combo_choices(defs["TalkingPoseModelLoader"]["input"]["required"]["model"])
    assert BROKEN_MODEL_NAME in combo_choices(defs["TalkingPoseModelLoader"]["input"]["required"]["model"])


# What a saved workflow depends on in a node's /object_info entry: the frontend builds the node's sockets and widgets
# from these, and maps a saved node's widgets_values onto the widgets in input_order.
SAVED_WORKFLOW_FIELDS = ("output", "output_name", "output_is_list", "output_node", "name", "display_name", "category",
                         "description", "python_module")
# Options the V3 schema (v0.33.0) states that a V1 declaration leaves to the frontend, with the frontend's own value.
V3_STATED_DEFAULTS = {"multiselect": False, "multiline": False}


def _as_served_on_v3(spec) -> tuple:
    """An input declaration in V3's spelling: a V1 combo (a list of choices) is COMBO with options, a socket without
    options has empty ones, and options at the frontend's default value are left out."""
    kind, options = spec[0], dict(spec_options(spec))
    if isinstance(kind, list):
        kind, options = "COMBO", {**options, "options": kind}
    return kind, {k: v for k, v in options.items() if V3_STATED_DEFAULTS.get(k, object()) != v}


def _served_on_v3(node_def: dict) -> bool:
    """GET_NODE_INFO_V1 of a comfy_api node has output_matchtypes; ComfyUI's info of a V1 class does not."""
    return "output_matchtypes" in node_def


def test_comfyui_host_serves_every_node_on_v3_as_declared_on_v1(defs, comfy_v1):
    """Every node is served on the V3 schema with the V1 declaration of the same host with TALKINGPOSE_V1_NODES=1:
    input names, types, options (defaults, limits, steps, rounding, combo choices, tooltips), widget order, outputs,
    so a saved workflow loads into the V3 nodes as into the V1 ones. Hidden inputs: the V1 ones are kept; V3 adds
    prompt/extra_pnginfo to output nodes, which the frontend neither shows nor saves."""
    defs_v1 = comfy_v1.get("/object_info")
    for node_type in NODE_CLASS_MAPPINGS:
        v3, v1 = defs[node_type], defs_v1[node_type]
        assert _served_on_v3(v3) and not _served_on_v3(v1), node_type
        for field in SAVED_WORKFLOW_FIELDS:
            assert v3[field] == v1[field], (node_type, field, v3[field], v1[field])
        for section in ("required", "optional"):
            assert v3["input_order"].get(section, []) == v1["input_order"].get(section, []), (node_type, section)
            assert list(v3["input"].get(section, {})) == list(v1["input"].get(section, {})), (node_type, section)
            for name, spec in v1["input"].get(section, {}).items():
                assert _as_served_on_v3(v3["input"][section][name]) == _as_served_on_v3(spec), (node_type, name)
        hidden_v1 = {name: kind for name, kind in v1["input"].get("hidden", {}).items()}
        hidden_v3 = {name: kind[0] for name, kind in v3["input"].get("hidden", {}).items()}
        added = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"} if v1["output_node"] else {}
        assert hidden_v3 == {**added, **hidden_v1}, (node_type, hidden_v3, hidden_v1)


def test_comfyui_host_check_tells_additions_from_breaks(comfy, defs):
    """The same check on this host's definitions changed as a later ComfyUI might: additions pass, breaks fail."""
    workflow = load_workflow("1 Animate a photo (core nodes).json")
    for change, add in COMPATIBLE_CHANGES.items():
        changed = copy.deepcopy(defs)
        add(changed)
        assert validate_workflow(workflow, changed, exact=False) == [], change
    for change, (mutate, message) in BREAKING_CHANGES.items():
        changed = copy.deepcopy(defs)
        mutate(changed)
        errors = validate_workflow(workflow, changed, exact=False)
        assert any(message in e for e in errors), (change, errors)


def test_comfyui_host_runs_the_core_nodes_workflow(comfy, defs):
    workflow = load_workflow("1 Animate a photo (core nodes).json")
    prefix = f"tp_tests/core_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    entry = comfy.run(small_prompt(workflow, defs, prefix, seed=1), workflow)
    files = output_files(comfy, entry)
    assert len(files) == 1 and files[0].name.startswith(prefix.split("/")[-1]), files
    info = check_video(files[0])
    print(f"core workflow: {time.monotonic() - started:.1f} s, {info}")


def test_comfyui_host_samples_without_the_reference_unet_loaded(comfy, defs):
    """The encoder side (reference UNet) and the sampler side (denoising UNet, pose guider) are separate models of
    ComfyUI's memory manager: with every model unloaded and the appearance cached, a new seed runs the sampler
    alone, which loads its side only; the reference UNet is not among ComfyUI's loaded models while it samples."""
    workflow = load_workflow("1 Animate a photo (core nodes).json")
    prompt = small_prompt(workflow, defs, f"tp_tests/sides_{uuid.uuid4().hex[:8]}", seed=11)
    comfy.run(prompt, workflow)
    encode_loads = [c["requested"] for c in comfy.get("/tp_test/loads") if "EncoderSide" in c["requested"]]
    assert all(c == ["EncoderSide"] for c in encode_loads), encode_loads  # (none where an earlier test cached it)
    status, unloaded = comfy.post("/tp_test/unload_models", {})
    assert status == 200 and unloaded["loaded"] == [], unloaded
    set_inputs(prompt, "TalkingPoseClosedLoopSampler", seed=12)  # Appearance Encode's output stays cached
    comfy.run(prompt, workflow)
    calls = comfy.get("/tp_test/loads")
    sampler_loads = [c for c in calls if "SamplerSide" in c["requested"]]
    assert len(sampler_loads) >= FRAMES, calls  # the sampler loads its side before every frame
    assert all(c["requested"] == ["SamplerSide"] and "EncoderSide" not in c["loaded"] for c in sampler_loads), calls
    assert not any("EncoderSide" in c["requested"] or "TalkingPoseNetworks" in c["requested"] for c in calls), calls


def test_comfyui_host_gets_the_templates_sample_inputs_on_load(comfy):
    """The pack copied its sample inputs into ComfyUI's input folder when ComfyUI loaded it (nodes/sample_inputs.py),
    so the templates' Load Image / Load Video find them; ComfyUI serves them as input files."""
    for sample in sorted((WORKFLOW_DIR / "input").iterdir()):
        served = comfy.get(f"/view?filename={urllib.parse.quote(sample.name)}&type=input", raw=True)
        assert served == sample.read_bytes(), sample.name


def test_comfyui_host_tells_the_browser_which_weights_are_installed(comfy):
    """GET /talkingpose/weights (web/weights.js names missing weights on the loaders when a workflow opens)."""
    status = comfy.get("/api/talkingpose/weights")
    assert MODEL_NAME in status["talkingpose"]["installed"] and BROKEN_MODEL_NAME in status["talkingpose"]["installed"]
    assert str(comfy.base / "models" / "talkingpose") in status["talkingpose"]["message"]
    # The host has CLIP_NAME, not the converted encoder the templates name: that one is missing, with its command.
    assert status["image_encoder"]["installed"] is False
    assert "download --what image_encoder --models" in status["image_encoder"]["message"]


@pytest.mark.parametrize("frontend", [False, True], ids=["api_client", "frontend_client"])
def test_comfyui_host_previews_every_frame_with_previews_off(comfy, defs, frontend):
    """The core template run with ComfyUI's previews off (its default): the sampler node gets one preview picture
    per finished frame and the frame/ETA event per frame. A client that announces supports_preview_metadata, as
    ComfyUI's frontend does, gets them through ComfyUI's node progress API (v0.33.0 comfy_execution/progress.py, the
    registry behind comfy_api's execution.set_progress): progress_state for the sampler node and previews that name
    it; an API client without the flag still gets the plain progress messages and previews."""
    aiohttp = pytest.importorskip("aiohttp")
    import asyncio

    workflow = load_workflow("1 Animate a photo (core nodes).json")
    prompt = small_prompt(workflow, defs, f"tp_tests/samples_{uuid.uuid4().hex[:8]}", seed=4 + frontend)
    sampler_id = next(k for k, n in prompt.items() if n["class_type"] == "TalkingPoseClosedLoopSampler")
    client_id = f"tp-previews-{uuid.uuid4().hex[:8]}"

    async def run():
        previews, progress, executing, named, states, steps = 0, [], None, 0, [], []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{comfy.url}/ws?clientId={client_id}") as ws:
                if frontend:
                    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                async with session.post(f"{comfy.url}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                    reply = await r.json()
                    assert r.status == 200 and not reply.get("node_errors"), reply
                deadline = time.monotonic() + RUN_TIMEOUT_S
                while time.monotonic() < deadline:
                    message = await ws.receive(timeout=RUN_TIMEOUT_S)
                    if message.type == aiohttp.WSMsgType.BINARY:
                        kind = int.from_bytes(message.data[:4], "big")
                        if kind in (1, 4) and executing == sampler_id:  # preview image (with metadata on newer cores)
                            previews += 1
                        if kind == 4:  # metadata: 4-byte length, JSON, then the picture
                            size = int.from_bytes(message.data[4:8], "big")
                            named += json.loads(message.data[8:8 + size])["node_id"] == sampler_id
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        event = json.loads(message.data)
                        if event["type"] == "executing":
                            executing = event["data"].get("node")
                            if executing is None and event["data"].get("prompt_id") == reply["prompt_id"]:
                                break
                        elif event["type"] == "talkingpose.progress":
                            progress.append(event["data"]["frame"])
                        elif event["type"] == "progress" and event["data"]["node"] == sampler_id:
                            steps.append(event["data"]["value"])
                        elif event["type"] == "progress_state" and sampler_id in event["data"]["nodes"]:
                            states.append(event["data"]["nodes"][sampler_id]["state"])
                        elif event["type"] == "execution_error":
                            raise AssertionError(f"the run failed: {json.dumps(event['data'])[:3000]}")
                    else:
                        raise AssertionError(f"the websocket ended: {message.type}")
        return previews, progress, named, states, steps

    previews, progress, named, states, steps = asyncio.run(run())
    assert progress == list(range(1, FRAMES + 1))
    assert previews >= FRAMES, (previews, FRAMES)
    assert steps and steps[-1] == FRAMES * 2, steps  # the plain progress messages, to the last of 2 steps a frame
    if frontend:
        assert named >= FRAMES, (named, FRAMES)
        assert "running" in states and states[-1] == "finished", states


def test_comfyui_host_runs_the_videohelpersuite_workflow(comfy, defs):
    if not comfy.has_vhs:
        _skip_without_host(f"{VHS_DIR_NAME} is not in {os.environ.get('COMFYUI_PATH')}/custom_nodes")
    workflow = load_workflow("2 Animate a photo (VideoHelperSuite).json")
    prefix = f"tp_tests/vhs_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    entry = comfy.run(small_prompt(workflow, defs, prefix, seed=2), workflow)
    files = [f for f in output_files(comfy, entry) if f.suffix == ".mp4"]
    assert len(files) == 1, entry["outputs"]
    info = check_video(files[0])
    print(f"VideoHelperSuite workflow: {time.monotonic() - started:.1f} s, {info}")


def test_comfyui_host_recovers_after_a_failed_run(comfy, defs):
    workflow = load_workflow("1 Animate a photo (core nodes).json")
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
    assert errors[0][1]["exception_type"] == "talkingpose.TalkingPoseError", errors[0][1]["exception_type"]
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



# ------------------------------------------------------------------------------------------------ long videos
# The long-video workflow runs over LONG_DRIVING_NAME in meta batches of FRAMES_PER_BATCH frames. Besides the video,
# every graph here saves the sampler's latents (core SaveLatent) and the decoded frames as lossless PNGs (core
# SaveImage), so that renders are compared without the video encoder in between.
class LongRender:
    def __init__(self, comfy: ComfyHost, name: str):
        self.name = f"{name}_{uuid.uuid4().hex[:8]}"
        self.comfy, self.prefix = comfy, f"tp_tests/{self.name}"

    def graph(self, defs: dict, chunked: bool = True) -> dict:
        prompt = small_prompt(load_workflow("3 Long video in chunks.json"), defs, self.prefix, seed=6)
        self.ids = {n["class_type"]: key for key, n in prompt.items()}
        manager_id = self.ids["VHS_BatchManager"]
        if chunked:
            prompt[manager_id]["inputs"]["frames_per_batch"] = FRAMES_PER_BATCH
        else:  # the same graph without the Meta Batch Manager: one run over the whole clip
            del prompt[manager_id]
            for node in prompt.values():
                node["inputs"] = {k: v for k, v in node["inputs"].items() if v != [manager_id, 0]}
        prompt[self.ids["VHS_LoadVideo"]]["inputs"]["video"] = LONG_DRIVING_NAME
        prompt[self.ids["TalkingPoseSaveState"]]["inputs"]["filename"] = f"{self.prefix}_state"
        prompt["900"] = {"class_type": "SaveLatent", "inputs": {
            "samples": [self.ids["TalkingPoseClosedLoopSampler"], 0], "filename_prefix": f"{self.prefix}_latent"}}
        prompt["901"] = {"class_type": "SaveImage", "inputs": {
            "images": [self.ids["VAEDecode"], 0], "filename_prefix": f"{self.prefix}_frame"}}
        return prompt

    def run(self, prompt: dict) -> "LongRender":
        from PIL import Image
        from safetensors.torch import load_file

        started = time.monotonic()
        self.comfy.run_until_idle(prompt)
        self.seconds = time.monotonic() - started
        self.entries = history_of(self.comfy, "VHS_VideoCombine", "filename_prefix", self.prefix)
        for entry in self.entries:
            assert entry["status"]["status_str"] == "success", \
                f"{json.dumps(entry['status'])[:4000]}\n--- server log ---\n{self.comfy.log_tail()}"
        self.videos = [f for entry in self.entries for f in output_files(self.comfy, entry) if f.suffix == ".mp4"]
        folder = self.comfy.base / "output" / "tp_tests"
        self.latents = [load_file(str(f))["latent_tensor"] for f in sorted(folder.glob(f"{self.name}_latent_*.latent"))]
        self.frames = np.stack([np.asarray(Image.open(f)) for f in sorted(folder.glob(f"{self.name}_frame_*.png"))])
        self.states = sorted(int(text.rsplit(" ", 1)[1]) for entry in self.entries for ui in entry["outputs"].values()
                             for text in ui.get("text", []) if "next frame" in text)
        return self

    def decoded(self) -> tuple[np.ndarray, np.ndarray, int]:
        """RGB frames, mono audio samples and sample rate of the one output video."""
        import av

        assert len(self.videos) == 1, [e["outputs"] for e in self.entries]
        with av.open(str(self.videos[0])) as container:
            images = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(int)
        with av.open(str(self.videos[0])) as container:
            rate = container.streams.audio[0].rate
            sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        return images, sound, rate


def frame_of_tone(sound: np.ndarray, rate: int, slot: int) -> int:
    """Which driving frame the audio in output frame slot `slot` comes from (the long clip's tone steps per frame)."""
    width = rate / FPS
    part = sound[int((slot + 0.25) * width):int((slot + 0.75) * width)]
    spectrum = np.abs(np.fft.rfft(part * np.hanning(len(part))))
    frequency = np.fft.rfftfreq(len(part), 1 / rate)[spectrum.argmax()]
    return round((frequency - TONE_BASE_HZ) / TONE_STEP_HZ)


@pytest.fixture(scope="module")
def one_shot_long_render(comfy, defs):
    if not comfy.has_vhs:
        _skip_without_host(f"{VHS_DIR_NAME} is not in {os.environ.get('COMFYUI_PATH')}/custom_nodes")
    render = LongRender(comfy, "one_shot")
    render.run(render.graph(defs, chunked=False))
    assert len(render.entries) == 1 and len(render.videos) == 1
    assert [len(t) for t in render.latents] == [LONG_FRAMES] and render.states == [LONG_FRAMES]
    return render


def test_comfyui_host_chunked_long_video_equals_the_one_shot_render(comfy, defs, one_shot_long_render):
    """7 frames in meta batches of 3 (chunks 3 + 3 + 1): one video with all frames, the driving fps and the audio,
    and the frames of the same graph without the Meta Batch Manager."""
    import torch

    one_shot = one_shot_long_render
    render = LongRender(comfy, "chunked")
    render.run(render.graph(defs))
    chunks = -(-LONG_FRAMES // FRAMES_PER_BATCH)
    # VideoHelperSuite re-queued the workflow for every further chunk; only the last run finished the video.
    assert len(render.entries) == chunks, [e["outputs"] for e in render.entries]
    assert sum("unfinished_batch" in ui for e in render.entries for ui in e["outputs"].values()) == chunks - 1
    last = LONG_FRAMES - FRAMES_PER_BATCH * (chunks - 1)
    assert [len(t) for t in render.latents] == [FRAMES_PER_BATCH] * (chunks - 1) + [last]
    assert render.states == [min(FRAMES_PER_BATCH * (k + 1), LONG_FRAMES) for k in range(chunks)]  # after each chunk
    assert len(render.videos) == 1, [e["outputs"] for e in render.entries]
    info = probe(render.videos[0])
    assert info["frames"] == LONG_FRAMES and info["fps"] == FPS and info["size"] == (OUT_SIZE, OUT_SIZE), info
    assert info["audio_streams"] == 1 and info["audio_seconds"] > 0.5 * LONG_FRAMES / FPS, info

    # The closed loop went on across the chunks: the sampler's latents are the one-shot ones, bit for bit.
    latents = torch.cat(render.latents)
    assert torch.equal(latents, one_shot.latents[0]), (latents - one_shot.latents[0]).abs().max()
    # Decoded frames: ComfyUI's VAE decode of a batch of one frame (the short last chunk) differs from the same frame
    # decoded in a batch by ~2e-6 (another CPU conv kernel), which can move a value across an 8-bit rounding step.
    assert render.frames.shape == one_shot.frames.shape == (LONG_FRAMES, OUT_SIZE, OUT_SIZE, 3)
    png_diff = np.abs(render.frames.astype(int) - one_shot.frames.astype(int))
    assert png_diff.max() <= 1, png_diff.reshape(LONG_FRAMES, -1).max(axis=1)
    (video, sound, _), (one_video, one_sound, _) = render.decoded(), one_shot.decoded()
    assert np.array_equal(sound, one_sound)  # the whole clip's audio, muxed once after the last chunk
    video_diff = np.abs(video - one_video)
    if png_diff.max() == 0:  # the same input frames: x264 is deterministic
        assert video_diff.max() == 0, video_diff.reshape(LONG_FRAMES, -1).max(axis=1)
    else:  # a value 1/255 apart may be coded differently; the rest of the video is untouched
        assert video_diff.mean() < 0.05, video_diff.reshape(LONG_FRAMES, -1).max(axis=1)
    print(f"chunked long-video workflow: {chunks} runs, {render.seconds:.1f} s (one-shot {one_shot.seconds:.1f} s); "
          f"{info}; latents equal; PNG max |diff| {png_diff.max()}/255 ({int((png_diff > 0).sum())} values); "
          f"video max |diff| {video_diff.max()}/255")


def test_comfyui_host_chunked_render_resumes_from_a_saved_state(comfy, defs, one_shot_long_render):
    """The resume recipe of the long-video workflow's note: a render stopped after its first chunk continues with
    Load TalkingPose State (state -> sampler, next_frame -> Load Video's skip_first_frames) and a new Save State
    filename; the continuation has the one-shot render's remaining frames and the audio from that frame on.
    The first part is a single chunk, so ComfyUI reuses its cached Meta Batch Manager (whose unique_id
    VideoHelperSuite cleared at the end) in the continuation: the sampler must still see the chunk numbers."""
    import torch

    one_shot = one_shot_long_render
    # The first part: only one chunk gets made (a render that stopped there leaves the same state file).
    first = LongRender(comfy, "first_part")
    prompt = first.graph(defs)
    prompt[first.ids["VHS_LoadVideo"]]["inputs"]["frame_load_cap"] = FRAMES_PER_BATCH
    first.run(prompt)
    assert first.states == [FRAMES_PER_BATCH] and probe(first.videos[0])["frames"] == FRAMES_PER_BATCH

    rest = LongRender(comfy, "resumed")
    prompt = rest.graph(defs)
    prompt["902"] = {"class_type": "TalkingPoseLoadState", "inputs": {"filename": f"{first.prefix}_state"}}
    prompt[rest.ids["TalkingPoseClosedLoopSampler"]]["inputs"]["state"] = ["902", 0]
    prompt[rest.ids["VHS_LoadVideo"]]["inputs"]["skip_first_frames"] = ["902", 1]
    prompt[rest.ids["TalkingPoseExtract"]]["inputs"]["pose_state"] = ["902", 2]  # the note's step 1
    rest.run(prompt)  # its own Save State filename (the note's step 2)
    remaining = LONG_FRAMES - FRAMES_PER_BATCH
    assert len(rest.entries) == -(-remaining // FRAMES_PER_BATCH) and rest.states[-1] == LONG_FRAMES
    assert torch.equal(torch.cat(first.latents + rest.latents), one_shot.latents[0])
    frames = np.concatenate([first.frames, rest.frames]).astype(int)
    assert np.abs(frames - one_shot.frames.astype(int)).max() <= 1  # see the chunked test on 1/255
    video, sound, rate = rest.decoded()
    assert len(video) == remaining
    assert [frame_of_tone(sound, rate, k) for k in range(remaining)] == list(range(FRAMES_PER_BATCH, LONG_FRAMES))
    print(f"resumed at frame {FRAMES_PER_BATCH}: {len(rest.entries)} runs, {rest.seconds:.1f} s")


# ------------------------------------------------------------------------------------------------ file names (§7)
# Kept apart from the tests above (issue 13 §7 and issue 14): names in a queued prompt stay inside ComfyUI's folders.
def test_comfyui_host_node_file_names_stay_inside_comfyui_folders(comfy):
    import torch

    from talkingpose.pose import save_pose_keypoints
    from talkingpose.sampler import SamplerSettings, SamplerState

    tag = uuid.uuid4().hex[:8]
    folder = comfy.base / "output" / "tp_tests"
    folder.mkdir(exist_ok=True)
    SamplerState(torch.zeros(4, 8, 8), None, 0, SamplerSettings(), 64, 64).save(folder / f"paths_{tag}.safetensors")
    for name in (f"paths_{tag}.json", f"paths_{tag}_b.json"):
        save_pose_keypoints(folder / name, [{"people": [], "canvas_width": 64, "canvas_height": 48}])
    (comfy.base / f"outside_{tag}.json").write_text("[]")
    # An old-style state name (no suffix, not an entry of the list) and a keypoint file from the list.
    load_state = ("TalkingPoseLoadState", {"filename": f"tp_tests/paths_{tag}"})
    load_keypoints = ("TalkingPoseLoadKeypoints", {"path": f"tp_tests/paths_{tag}.json"})

    def prompt(loader, saver: str, save_inputs: dict) -> dict:
        link = "state" if saver == "TalkingPoseSaveState" else "pose_keypoint"
        return {"1": {"class_type": loader[0], "inputs": loader[1]},
                "2": {"class_type": saver, "inputs": {**save_inputs, link: ["1", 0]}}}

    # Loaders: a name outside the folders is refused when the prompt is queued, with the pack's sentence.
    for loader, saver, sentence in (
        (("TalkingPoseLoadState", {"filename": str(comfy.base / "models" / "x")}), "TalkingPoseSaveState", "is an absolute path"),
        (("TalkingPoseLoadKeypoints", {"path": f"../outside_{tag}.json"}), "TalkingPoseSaveKeypoints", "climbs out of its folder"),
    ):
        save_inputs = {"filename": f"tp_tests/ok_{tag}", "overwrite": False} if saver == "TalkingPoseSaveState" \
            else {"filename_prefix": f"tp_tests/ok_{tag}"}
        status, reply = comfy.post("/prompt", {"prompt": prompt(loader, saver, save_inputs), "client_id": "talkingpose-tests"})
        assert status == 400 and sentence in json.dumps(reply), (status, json.dumps(reply)[:2000])

    # '[' in a prefix: the second save numbers on instead of replacing the first. (Another input file each time:
    # ComfyUI does not run an unchanged prompt again.)
    for name in (f"paths_{tag}.json", f"paths_{tag}_b.json"):
        comfy.run(prompt(("TalkingPoseLoadKeypoints", {"path": f"tp_tests/{name}"}), "TalkingPoseSaveKeypoints",
                         {"filename_prefix": f"tp_tests/copy[{tag}]"}))
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(f"copy[{tag}]")) == \
        [f"copy[{tag}]_00001.json", f"copy[{tag}]_00002.json"]

    # Savers: names that leave the output folder (or no file system takes) fail with the sentence, write nothing.
    # The old-style state name passes validation although it is not in the list: the run reaches the saver.
    for loader, saver, inputs, sentence in (
        (load_state, "TalkingPoseSaveState", {"filename": f"../escaped_{tag}", "overwrite": True}, "climbs out of its folder"),
        (load_state, "TalkingPoseSaveState", {"filename": str(comfy.base / f"escaped_{tag}"), "overwrite": True}, "is an absolute path"),
        (load_state, "TalkingPoseSaveState", {"filename": f"tp_tests/nul\u0000{tag}", "overwrite": False}, "contains a NUL character"),
        (load_keypoints, "TalkingPoseSaveKeypoints", {"filename_prefix": f"../escaped_{tag}"}, "climbs out of its folder"),
        (load_keypoints, "TalkingPoseSaveKeypoints", {"filename_prefix": "k" * 300}, "has a folder or file name of 300 characters"),
    ):
        entry = comfy.wait(comfy.queue(prompt(loader, saver, inputs)))
        assert entry["status"]["status_str"] == "error" and sentence in json.dumps(entry["status"]), \
            json.dumps(entry["status"])[:3000]
    assert not list(comfy.base.glob(f"escaped_{tag}*"))


# ------------------------------------------------------------------------------------------------ LoRA
# The two shipped personalize workflows, as users open them: train on a clip, then render with the file it wrote.
LORA_FRAMES = 14  # fine-tuning pairs frames at least 10 apart
LORA_TIMEOUT_S = 1800  # encoding the clip through the full-size VAE and ViT-L/14 is slow on a loaded CPU
LORA_CLIP_NAME, LORA_OUTPUT_NAME = "tp_lora_person.mp4", "tp_person"


def _run_long(comfy, prompt):
    entry = comfy.wait(comfy.queue(prompt), timeout=LORA_TIMEOUT_S)
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
    return entry


def _write_lora_clip(comfy):
    """The person's clip: the first LORA_FRAMES frames of the driving sample, small."""
    from PIL import Image

    from talkingpose.video_io import VideoReader

    pictures = [Image.fromarray(f).resize((CLIP_SIZE, CLIP_SIZE), Image.BILINEAR)
                for f in VideoReader(DRIVING_SAMPLE, max_frames=LORA_FRAMES)]
    _write_clip(comfy.base / "input" / LORA_CLIP_NAME, pictures)


def _render_latents(comfy, defs, workflow_name: str, seed: int, **lora_inputs):
    """Render a shipped workflow (small settings, the test's photo and driving clip) and keep the sampler's latents."""
    from safetensors.torch import load_file

    tag = "".join(c if c.isalnum() else "_" for c in Path(workflow_name).stem) + f"_{uuid.uuid4().hex[:8]}"
    prompt = small_prompt(load_workflow(workflow_name), defs, f"tp_tests/{tag}", seed=seed)
    if lora_inputs:
        set_inputs(prompt, "TalkingPoseLoadLoRA", **lora_inputs)
    sampler = set_inputs(prompt, "TalkingPoseClosedLoopSampler")
    prompt["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0],
                                                          "filename_prefix": f"tp_tests/{tag}_latent"}}
    entry = _run_long(comfy, prompt)
    files = [f for f in output_files(comfy, entry) if f.suffix == ".mp4"]
    assert len(files) == 1, entry["outputs"]
    check_video(files[0])
    (latent,) = sorted((comfy.base / "output" / "tp_tests").glob(f"{tag}_latent_*.latent"))
    return load_file(str(latent))["latent_tensor"]


def test_comfyui_host_trains_a_lora_and_renders_with_it(comfy, defs):
    """4 Personalize - train a LoRA.json on a 14-frame clip (its poses extracted in the graph), then
    5 Personalize - render with the LoRA.json with the file it wrote: the LoRA changes the render at strength 1 and
    leaves the core-nodes workflow's render exactly at strength 0."""
    import torch

    from talkingpose.lora import read_adapter

    _write_lora_clip(comfy)
    train = small_prompt(load_workflow("4 Personalize - train a LoRA.json"), defs, "tp_tests/unused", seed=0)
    set_inputs(train, "LoadVideo", file=LORA_CLIP_NAME)
    set_inputs(train, "TalkingPoseTrainLoRA", output_name=LORA_OUTPUT_NAME)
    preview = set_inputs(train, "PreviewImage")
    entry = _run_long(comfy, train)
    adapter_file = comfy.base / "models" / "talkingpose_lora" / f"{LORA_OUTPUT_NAME}.safetensors"
    adapter = read_adapter(adapter_file)
    assert adapter.info["steps"] == 2 and adapter.info["clip"]["frames_used"] == LORA_FRAMES
    assert np.isfinite(adapter.info["loss"]["last"])
    assert entry["outputs"][preview]["images"], entry["outputs"]  # the loss curve
    assert not adapter_file.with_name(adapter_file.name + ".checkpoint.pt").exists()

    lora_name = adapter_file.name
    with_lora = _render_latents(comfy, defs, "5 Personalize - render with the LoRA.json", 7, lora=lora_name, strength=1.0)
    without = _render_latents(comfy, defs, "5 Personalize - render with the LoRA.json", 7, lora=lora_name, strength=0.0)
    core = _render_latents(comfy, defs, "1 Animate a photo (core nodes).json", 7)
    assert with_lora.shape == core.shape == (FRAMES, 4, OUT_SIZE // 8, OUT_SIZE // 8), core.shape
    assert torch.equal(without, core)
    assert not torch.equal(with_lora, core)
    print(f"personalize workflows: LoRA at strength 1 moves the latents by up to {(with_lora - core).abs().max():.3g}")


# ------------------------------------------------------------------------------------------------ V3 against V1
# The same saved workflows on the V3 nodes (the `comfy` host) and on the V1 classes (`comfy_v1`,
# TALKINGPOSE_V1_NODES=1): the same API prompt from the file, and the same outputs, bit for bit (both on this CPU).
HANDMADE_WORKFLOW = PACK_ROOT / "tests" / "fixtures" / "workflow_every_node_non_default.json"


def _render_outputs(comfy: ComfyHost, prompt: dict, tag: str) -> dict:
    """Run an API prompt with the sampler's latents and the decoded frames saved losslessly; returns the latents,
    the frames and the text the output nodes show (their paths made relative to the host's folder)."""
    from PIL import Image
    from safetensors.torch import load_file

    prompt = copy.deepcopy(prompt)
    ids = {n["class_type"]: key for key, n in prompt.items()}
    prompt["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [ids["TalkingPoseClosedLoopSampler"], 0],
                                                          "filename_prefix": f"tp_tests/{tag}_latent"}}
    prompt["901"] = {"class_type": "SaveImage", "inputs": {"images": [ids["VAEDecode"], 0],
                                                         "filename_prefix": f"tp_tests/{tag}_frame"}}
    entry = _run_long(comfy, prompt)
    folder = comfy.base / "output" / "tp_tests"
    (latent,) = sorted(folder.glob(f"{tag}_latent_*.latent"))
    texts = {node: [t.replace(str(comfy.base), "<base>") for t in ui["text"]]
             for node, ui in entry["outputs"].items() if "text" in ui}
    return {"latents": load_file(str(latent))["latent_tensor"], "texts": texts,
            "frames": np.stack([np.asarray(Image.open(f)) for f in sorted(folder.glob(f"{tag}_frame_*.png"))])}


def test_comfyui_host_saved_workflows_load_and_render_the_same_on_v3_and_v1_nodes(comfy, defs, comfy_v1):
    """Every shipped workflow and a hand-made one with a non-default value in every widget of ten of the pack's
    nodes (saved in today's widget order) become the same API prompt on either host; the core and VideoHelperSuite
    workflows and the hand-made one render the same latents, frames, keypoint file and metrics on both."""
    import torch

    defs_v1 = comfy_v1.get("/object_info")
    workflows = {path.name: json.loads(path.read_text(encoding="utf-8"))
                 for path in sorted(WORKFLOW_DIR.glob("*.json")) + [HANDMADE_WORKFLOW]}
    for name, workflow in workflows.items():
        if not comfy.has_vhs and any(n["type"].startswith("VHS_") for n in workflow["nodes"]):
            continue
        assert validate_workflow(workflow, defs, exact=False) == [], name
        assert to_api_prompt(workflow, defs, exact=False) == to_api_prompt(workflow, defs_v1, exact=False), name

    handmade = to_api_prompt(workflows[HANDMADE_WORKFLOW.name], defs, exact=False)
    extract = next(n for n in handmade.values() if n["class_type"] == "TalkingPoseExtract")["inputs"]
    assert (extract["width"], extract["hands"], extract["on_error"], extract["smoothing"]) == \
        (56, False, "repeat previous pose", 0.35), extract  # the file's values, not the defaults
    renders = {"handmade": handmade}
    for name in ("1 Animate a photo (core nodes).json", "2 Animate a photo (VideoHelperSuite).json"):
        if comfy.has_vhs or "VideoHelperSuite" not in name:
            renders[name] = small_prompt(workflows[name], defs, "tp_tests/v3_v1", seed=11)
    for name, prompt in renders.items():
        tag = f"v3_v1_{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        on_v3 = _render_outputs(comfy, prompt, tag)
        middle = time.monotonic()
        on_v1 = _render_outputs(comfy_v1, prompt, tag)
        assert torch.equal(on_v3["latents"], on_v1["latents"]), (name, (on_v3["latents"] - on_v1["latents"]).abs().max())
        assert on_v3["frames"].shape[0] == FRAMES and np.array_equal(on_v3["frames"], on_v1["frames"]), name
        assert on_v3["texts"] == on_v1["texts"], name
        print(f"{name}: V3 {middle - started:.1f} s, V1 {time.monotonic() - middle:.1f} s, outputs equal")
    keypoints = sorted((comfy.base / "output" / "tp_tests").glob("handmade_keypoints_*.json"))
    keypoints_v1 = sorted((comfy_v1.base / "output" / "tp_tests").glob("handmade_keypoints_*.json"))
    assert keypoints and [p.read_bytes() for p in keypoints] == [p.read_bytes() for p in keypoints_v1]


def test_comfyui_host_chunked_render_on_v1_nodes_equals_the_v3_render(comfy_v1, one_shot_long_render):
    """3 Long video in chunks on the V1 classes: the meta-batch carry (hidden unique_id/prompt) gives the latents of
    the V3 nodes' one-shot render (which the V3 chunked render equals, test above)."""
    import torch

    render = LongRender(comfy_v1, "chunked_v1")
    render.run(render.graph(comfy_v1.get("/object_info")))
    assert render.states == [FRAMES_PER_BATCH, 2 * FRAMES_PER_BATCH, LONG_FRAMES], render.states
    assert torch.equal(torch.cat(render.latents), one_shot_long_render.latents[0])
    print(f"chunked long video on V1 nodes: {render.seconds:.1f} s, latents equal to the V3 one-shot render")


def test_comfyui_host_runs_each_node_with_a_unique_id_input_even_with_equal_inputs(comfy):
    """Two Smooth Pose Keypoints nodes with equal inputs both run, as ComfyUI runs V1 nodes that declare a UNIQUE_ID
    input (it keys their results by node id): each keeps its own meta-batch carry under its id. ComfyUI v0.33.0 does
    not recognise V3's hidden unique_id there; the V3 declaration's not_idempotent flag keeps the behaviour."""
    aiohttp = pytest.importorskip("aiohttp")
    import asyncio

    from talkingpose.pose import save_pose_keypoints

    tag = uuid.uuid4().hex[:8]
    (comfy.base / "output" / "tp_tests").mkdir(exist_ok=True)
    save_pose_keypoints(comfy.base / "output" / "tp_tests" / f"equal_{tag}.json",
                        [{"people": [], "canvas_width": 64, "canvas_height": 48}])
    prompt = {"1": {"class_type": "TalkingPoseLoadKeypoints", "inputs": {"path": f"tp_tests/equal_{tag}.json"}}}
    for smooth, save in (("2", "3"), ("4", "5")):
        prompt[smooth] = {"class_type": "TalkingPoseSmoothKeypoints", "inputs": {"pose_keypoint": ["1", 0], "strength": 0.5}}
        prompt[save] = {"class_type": "TalkingPoseSaveKeypoints",
                        "inputs": {"pose_keypoint": [smooth, 0], "filename_prefix": f"tp_tests/equal_{tag}_{save}"}}
    client_id = f"tp-equal-{tag}"

    async def executed() -> list:
        ran = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{comfy.url}/ws?clientId={client_id}") as ws:
                async with session.post(f"{comfy.url}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                    reply = await r.json()
                    assert r.status == 200 and not reply.get("node_errors"), reply
                while True:
                    message = await ws.receive(timeout=RUN_TIMEOUT_S)
                    assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), message.type
                    event = json.loads(message.data) if message.type == aiohttp.WSMsgType.TEXT else {}
                    if event.get("type") == "execution_error":
                        raise AssertionError(f"the run failed: {json.dumps(event['data'])[:3000]}")
                    if event.get("type") == "executing" and event["data"].get("prompt_id") == reply["prompt_id"]:
                        if event["data"].get("node") is None:
                            return ran
                        ran.append(event["data"]["node"])

    ran = asyncio.run(executed())
    assert "2" in ran and "4" in ran, ran


def test_comfyui_host_lora_workflows_train_and_render_the_same_on_v3_and_v1_nodes(comfy, defs, comfy_v1):
    """4 Personalize - train a LoRA.json writes the same adapter weights on both hosts (each its own file in the
    shared models folder), and 5 Personalize - render with the LoRA.json renders the same outputs with it."""
    import torch
    from safetensors.torch import load_file

    defs_v1 = comfy_v1.get("/object_info")
    adapters = {}
    for host, host_defs, name in ((comfy, defs, "tp_person_v3"), (comfy_v1, defs_v1, "tp_person_v1")):
        _write_lora_clip(host)
        train = small_prompt(load_workflow("4 Personalize - train a LoRA.json"), host_defs, "tp_tests/unused", seed=3)
        set_inputs(train, "LoadVideo", file=LORA_CLIP_NAME)
        set_inputs(train, "TalkingPoseTrainLoRA", output_name=name, overwrite=True, resume=False)
        _run_long(host, train)
        adapters[name] = load_file(str(comfy.base / "models" / "talkingpose_lora" / f"{name}.safetensors"))
    v3, v1 = adapters["tp_person_v3"], adapters["tp_person_v1"]
    assert v3.keys() == v1.keys() and all(torch.equal(v3[k], v1[k]) for k in v3)

    render = small_prompt(load_workflow("5 Personalize - render with the LoRA.json"), defs, "tp_tests/v3_v1", seed=12)
    set_inputs(render, "TalkingPoseLoadLoRA", lora="tp_person_v3.safetensors", strength=0.8)
    tag = f"v3_v1_lora_{uuid.uuid4().hex[:8]}"
    on_v3, on_v1 = _render_outputs(comfy, render, tag), _render_outputs(comfy_v1, render, tag)
    assert torch.equal(on_v3["latents"], on_v1["latents"])
    assert on_v3["frames"].shape[0] == FRAMES and np.array_equal(on_v3["frames"], on_v1["frames"])
