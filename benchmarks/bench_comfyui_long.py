"""Peak memory of a real ComfyUI server rendering the long-video workflow in meta batches, against video length.

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/comfy/venv/bin/python \\
        python -m benchmarks.bench_comfyui_long --frames 200 2000 --frames-per-batch 50 --steps 1

For every length: a fresh ComfyUI server (its own port and temporary --base-directory with this pack and
VideoHelperSuite linked in, tiny-vitl random weights, the synthetic DWPose models of the shared test data) gets
example_workflows/3 Long video in chunks.json as an API prompt (64×64, Meta Batch Manager with --frames-per-batch) over a
driving clip made by looping the frames of the shared vid1.mp4 at 64×64 (with a tone as audio). The benchmark waits
until the queue is empty (VideoHelperSuite queues every further chunk itself), checks the one output video (frame
count, audio), then reads VmHWM (peak resident set size) and VmRSS of the server process from /proc/<pid>/status and
stops the server, so that every length has its own peak. ffmpeg (run by VideoHelperSuite) is a separate process and
not counted. Does nothing but say so when COMFYUI_PATH is not set. Linux only (/proc).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TALKINGPOSE_SHARED", ROOT.parent / "shared"))
VHS_DIR_NAME = "ComfyUI-VideoHelperSuite"
SIZE, FPS, AUDIO_RATE = 64, 23, 44100
NAMES = {"model": "TalkingPose/", "vae": "random-sd-vae.safetensors", "clip": "random-vit-l-14.safetensors",
         "source": "bench_source.png", "video": "bench_driving.mp4"}


def write_weights(models: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from talkingpose.random_weights import write_random_image_encoder, write_random_model, write_random_vae

    write_random_model(models / "talkingpose" / NAMES["model"].rstrip("/"), "tiny-vitl", seed=3)
    scratch = models / "scratch"
    vae_dir = write_random_vae(scratch / "vae", "tiny-vitl", seed=3)
    (models / "vae").mkdir(parents=True)
    shutil.move(str(vae_dir / "diffusion_pytorch_model.safetensors"), models / "vae" / NAMES["vae"])
    clip_dir = write_random_image_encoder(scratch / "clip", "tiny-vitl", seed=3)
    state = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(clip_dir / "model.safetensors")).items()}
    (models / "clip_vision").mkdir(parents=True)
    save_file(state, str(models / "clip_vision" / NAMES["clip"]))
    shutil.rmtree(scratch)
    (models / "dwpose").mkdir(parents=True)
    for onnx in (SHARED / "golden" / "dwpose-a" / "models" / "det").glob("*.onnx"):
        shutil.copyfile(onnx, models / "dwpose" / onnx.name)


def write_clip(folder: Path, frames: int) -> None:
    """`frames` frames of vid1 at SIZE×SIZE, looped as often as needed, at FPS with a mono AAC tone."""
    import av
    import numpy as np
    from PIL import Image

    with av.open(str(SHARED / "samples" / "driving" / "vid1.mp4")) as src:
        pictures = [f.to_image().resize((SIZE, SIZE), Image.BICUBIC) for f in src.decode(video=0)]
    pictures[len(pictures) // 2].save(folder / NAMES["source"])
    with av.open(str(folder / NAMES["video"]), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(1, FPS)
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        for index in range(frames):
            frame = av.VideoFrame.from_image(pictures[index % len(pictures)])
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(AUDIO_RATE * frames / FPS)
        for start in range(0, samples, 4096):
            t = np.arange(start, min(start + 4096, samples)) / AUDIO_RATE
            chunk = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                               format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = AUDIO_RATE, start
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))


def proc_status(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return fields


class Server:
    def __init__(self, comfyui: Path, python: str, base: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url, self.log = f"http://127.0.0.1:{self.port}", base / "server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--base-directory",
                 str(base), "--disable-auto-launch"], cwd=comfyui, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 300
        while True:
            self.check_alive()
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"ComfyUI did not answer within 300 s; see {self.log}")
                time.sleep(0.5)

    def check_alive(self):
        if self.process.poll() is not None:
            raise SystemExit(f"ComfyUI exited (code {self.process.returncode}):\n"
                             + "\n".join(self.log.read_text(errors="replace").splitlines()[-40:]))

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return json.loads(response.read())

    def post(self, path: str, payload: dict) -> dict:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"POST {path} refused: {exc.read()[:3000]!r}") from exc

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=60)


def api_prompt(frames_per_batch: int, steps: int, prefix: str) -> dict:
    from nodes import NODE_CLASS_MAPPINGS

    sys.path.insert(0, str(ROOT / "tests"))
    from comfy_workflow import load_host_definitions, pack_definitions, to_api_prompt

    workflow = json.loads((ROOT / "example_workflows" / "3 Long video in chunks.json").read_text(encoding="utf-8"))
    prompt = to_api_prompt(workflow, {**load_host_definitions(), **pack_definitions(NODE_CLASS_MAPPINGS)})
    settings = {
        "LoadImage": {"image": NAMES["source"]}, "VHS_LoadVideo": {"video": NAMES["video"]},
        "VAELoader": {"vae_name": NAMES["vae"]}, "CLIPVisionLoader": {"clip_name": NAMES["clip"]},
        "TalkingPoseModelLoader": {"model": NAMES["model"]},
        "TalkingPoseExtract": {"width": SIZE, "height": SIZE},
        "TalkingPoseAppearanceEncode": {"width": SIZE, "height": SIZE},
        "TalkingPoseClosedLoopSampler": {"steps": steps, "seed": 1},
        "VHS_BatchManager": {"frames_per_batch": frames_per_batch},
        "VHS_VideoCombine": {"filename_prefix": prefix}, "TalkingPoseSaveState": {"filename": prefix + "_state"},
    }
    for node in prompt.values():
        node["inputs"].update(settings.get(node["class_type"], {}))
    return prompt


def run_length(comfyui: Path, python: str, frames: int, frames_per_batch: int, steps: int, keep: bool) -> dict:
    import av

    base = Path(tempfile.mkdtemp(prefix="tp_bench_comfyui_"))
    try:
        for sub in ("custom_nodes", "input", "output", "temp", "user"):
            (base / sub).mkdir()
        (base / "custom_nodes" / "ComfyUI-TalkingPose").symlink_to(ROOT, target_is_directory=True)
        (base / "custom_nodes" / VHS_DIR_NAME).symlink_to(comfyui / "custom_nodes" / VHS_DIR_NAME, target_is_directory=True)
        write_weights(base / "models")
        write_clip(base / "input", frames)
        server = Server(comfyui, python, base)
        try:
            idle = proc_status(server.process.pid)
            started = time.monotonic()
            server.post("/prompt", {"prompt": api_prompt(frames_per_batch, steps, "bench/long"), "client_id": "bench"})
            rss_max, idle_polls = 0.0, 0
            while idle_polls < 2:
                time.sleep(1.0)
                server.check_alive()
                rss_max = max(rss_max, proc_status(server.process.pid)["VmRSS"])
                queue = server.get("/queue")
                idle_polls = idle_polls + 1 if not queue["queue_running"] and not queue["queue_pending"] else 0
            seconds = time.monotonic() - started
            after = proc_status(server.process.pid)
            history = server.get("/history")
        finally:
            server.stop()
        runs = list(history.values())
        failed = [r["status"] for r in runs if r["status"].get("status_str") != "success"]
        if failed:
            raise SystemExit(f"a chunk failed: {json.dumps(failed)[:3000]}")
        videos = [Path(item["fullpath"]) for r in runs for ui in r["outputs"].values() for item in ui.get("gifs", [])]
        if len(videos) != 1:
            raise SystemExit(f"expected one output video, got {videos}")
        with av.open(str(videos[0])) as container:
            made = sum(1 for _ in container.decode(video=0))
            has_audio = any(s.type == "audio" for s in container.streams)
        return {"frames": frames, "frames_per_batch": frames_per_batch, "steps": steps, "runs": len(runs),
                "video_frames": made, "audio": has_audio, "seconds": round(seconds, 1),
                "s_per_frame": round(seconds / frames, 3), "idle_VmRSS_MiB": round(idle["VmRSS"], 1),
                "VmHWM_MiB": round(after["VmHWM"], 1), "VmRSS_after_MiB": round(after["VmRSS"], 1),
                "VmRSS_max_sampled_MiB": round(rss_max, 1)}
    finally:
        if keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--frames-per-batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary base directories")
    args = parser.parse_args()
    if not os.environ.get("COMFYUI_PATH"):
        print("COMFYUI_PATH is not set: nothing to measure (this benchmark needs a ComfyUI checkout with "
              f"{VHS_DIR_NAME} in custom_nodes; COMFYUI_PYTHON for its interpreter).")
        return
    comfyui = Path(os.environ["COMFYUI_PATH"]).expanduser().resolve()
    if not (comfyui / "custom_nodes" / VHS_DIR_NAME).is_dir():
        raise SystemExit(f"{comfyui}/custom_nodes has no {VHS_DIR_NAME}")
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    for frames in args.frames:
        print(json.dumps(run_length(comfyui, python, frames, args.frames_per_batch, args.steps, args.keep)), flush=True)


if __name__ == "__main__":
    main()
