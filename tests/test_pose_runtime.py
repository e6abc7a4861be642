"""onnxruntime providers and session cache, weight discovery (incl. comfyui_controlnet_aux's folders), download,
and the pose engine's independence from torch."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from talkingpose.errors import TalkingPoseError
from talkingpose.pose import PoseExtractor
from talkingpose.pose import onnx_models as ext

PACK_ROOT = Path(__file__).resolve().parent.parent
GOLDEN_MODELS = PACK_ROOT.parent / "shared" / "golden" / "dwpose-a" / "models" / "det"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("AUX_ANNOTATOR_CKPTS_PATH", raising=False)


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_provider_choice_prefers_accelerators_with_device_index():
    cpu_only = ext.choose_providers(0, ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert cpu_only == ["CPUExecutionProvider"]
    cuda = ext.choose_providers(1, ["CPUExecutionProvider", "DmlExecutionProvider", "CUDAExecutionProvider",
                                    "TensorrtExecutionProvider"])
    assert cuda == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert ext.choose_providers(0, ["ROCMExecutionProvider", "CPUExecutionProvider"])[0][0] == "ROCMExecutionProvider"
    assert ext.choose_providers(2, ["DmlExecutionProvider", "CPUExecutionProvider"])[0] == (
        "DmlExecutionProvider", {"device_id": 2})
    assert ext.choose_providers(0, ["CoreMLExecutionProvider", "CPUExecutionProvider"]) == [
        "CoreMLExecutionProvider", "CPUExecutionProvider"]


def test_silent_cpu_fallback_is_reported_once(caplog, monkeypatch):
    class FakeSession:
        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(ext, "_warned", set())
    requested = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="TalkingPose"):
        ext._warn_if_fell_back(FakeSession(), requested, Path("yolox_l.onnx"))
        ext._warn_if_fell_back(FakeSession(), requested, Path("dw-ll_ucoco_384.onnx"))
    warnings = [r for r in caplog.records if "CUDA" in r.getMessage()]
    assert len(warnings) == 1
    assert "onnxruntime-gpu" in warnings[0].getMessage() and "cuDNN" in warnings[0].getMessage()

    class CudaSession:
        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(ext, "_warned", set())
    caplog.clear()
    ext._warn_if_fell_back(CudaSession(), requested, Path("yolox_l.onnx"))
    assert not caplog.records


def test_sessions_are_cached_by_path_and_providers(tmp_path):
    if not GOLDEN_MODELS.is_dir():
        pytest.skip("golden DWPose models not available")
    model = shutil.copy(GOLDEN_MODELS / "yolox_l.onnx", tmp_path / "yolox_l.onnx")
    a = ext.load_session(model, ["CPUExecutionProvider"])
    b = ext.load_session(model, ["CPUExecutionProvider"])
    assert a is b
    other = shutil.copy(GOLDEN_MODELS / "yolox_l.onnx", tmp_path / "copy.onnx")
    assert ext.load_session(other, ["CPUExecutionProvider"]) is not a
    with pytest.raises(TalkingPoseError, match="not found.*yzd-v/DWPose"):
        ext.load_session(tmp_path / "absent.onnx", ["CPUExecutionProvider"])


def test_weights_found_in_given_folders_in_priority_order(tmp_path):
    first = _touch(tmp_path / "a", "yolox_l.onnx")
    second = _touch(tmp_path / "b" / "DWPose", "yolox_l.onnx", "dw-ll_ucoco_384.onnx")
    found = ext.find_dwpose_weights([first, tmp_path / "b"], custom_nodes_dirs=[])
    assert found.detector == first / "yolox_l.onnx"
    assert found.pose == second / "dw-ll_ucoco_384.onnx"


def test_weights_found_in_controlnet_aux_downloads(tmp_path, monkeypatch):
    custom_nodes = tmp_path / "custom_nodes"
    aux = custom_nodes / "comfyui_controlnet_aux"
    _touch(aux / "ckpts" / "yzd-v" / "DWPose", "yolox_l.onnx", "dw-ll_ucoco_384.onnx")
    found = ext.find_dwpose_weights([tmp_path / "models" / "dwpose"], custom_nodes_dirs=[custom_nodes])
    assert found.detector == aux / "ckpts" / "yzd-v" / "DWPose" / "yolox_l.onnx"
    # hr16 mirror folders are used too.
    shutil.rmtree(aux / "ckpts")
    _touch(aux / "ckpts" / "hr16" / "yolox-onnx", "yolox_l.onnx")
    _touch(aux / "ckpts" / "hr16" / "UnJIT-DWPose", "dw-ll_ucoco_384.onnx")
    found = ext.find_dwpose_weights([], custom_nodes_dirs=[custom_nodes])
    assert found.detector.parent.name == "yolox-onnx" and found.pose.parent.name == "UnJIT-DWPose"
    # config.yaml's annotator_ckpts_path and the AUX_ANNOTATOR_CKPTS_PATH variable.
    shutil.rmtree(aux / "ckpts")
    elsewhere = tmp_path / "aux-ckpts"
    _touch(elsewhere / "yzd-v" / "DWPose", "yolox_l.onnx", "dw-ll_ucoco_384.onnx")
    (aux / "config.yaml").write_text(f'annotator_ckpts_path: "{elsewhere}"\nUSE_SYMLINKS: False\n')
    assert ext.find_dwpose_weights([], custom_nodes_dirs=[custom_nodes]).pose.parent.parent.parent == elsewhere
    (aux / "config.yaml").unlink()
    monkeypatch.setenv("AUX_ANNOTATOR_CKPTS_PATH", str(elsewhere))
    assert ext.find_dwpose_weights([], custom_nodes_dirs=[]).detector.is_relative_to(elsewhere)


def test_weights_found_in_huggingface_cache(tmp_path):
    snap = tmp_path / "hf-cache" / "models--yzd-v--DWPose" / "snapshots" / "abc123"
    _touch(snap, "yolox_l.onnx", "dw-ll_ucoco_384.onnx")
    assert ext.find_dwpose_weights([], custom_nodes_dirs=[]).pose == snap / "dw-ll_ucoco_384.onnx"
    with pytest.raises(TalkingPoseError):
        ext.find_dwpose_weights([], custom_nodes_dirs=[], include_shared_caches=False)


def test_missing_weights_message_says_what_to_download(tmp_path):
    folder = tmp_path / "models" / "dwpose"
    with pytest.raises(TalkingPoseError) as info:
        ext.find_dwpose_weights([folder], custom_nodes_dirs=[])
    message = str(info.value)
    for needle in ("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "yzd-v/DWPose", str(folder)):
        assert needle in message


def test_download_uses_hf_hub_download(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, local_dir, **kwargs):
        calls.append((repo_id, filename))
        path = Path(local_dir) / filename
        path.write_bytes(b"onnx")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    weights = ext.download_dwpose_weights(tmp_path / "dwpose")
    assert calls == [("yzd-v/DWPose", "yolox_l.onnx"), ("yzd-v/DWPose", "dw-ll_ucoco_384.onnx")]
    assert weights.detector.is_file() and weights.pose.is_file()
    ext.download_dwpose_weights(tmp_path / "dwpose")
    assert len(calls) == 2  # present files are not fetched again


def test_pose_engine_imports_no_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        f"sys.path.insert(0, r'{PACK_ROOT}')\n"
        "import talkingpose.pose as pose\n"
        "import numpy as np\n"
        "assert pose.prepare_frame(np.zeros((8, 8, 3), np.uint8)).shape == (512, 512, 3)\n"
        "assert 'onnxruntime' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_swapped_model_files_are_rejected():
    if not GOLDEN_MODELS.is_dir():
        pytest.skip("golden DWPose models not available")
    with pytest.raises(TalkingPoseError, match="does not look like the YOLOX detector"):
        PoseExtractor(GOLDEN_MODELS / "dw-ll_ucoco_384.onnx", GOLDEN_MODELS / "yolox_l.onnx",
                          providers=["CPUExecutionProvider"])
