"""install.py: onnxruntime and OpenCV are installed with this Python's pip only when no variant of them is present."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

PACK_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def install():
    spec = importlib.util.spec_from_file_location("talkingpose_install", PACK_ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Dist:
    def __init__(self, name, version="1.0"):
        self.metadata = {"Name": name}
        self.version = version


def _fake_env(monkeypatch, install, names):
    from importlib import metadata

    monkeypatch.setattr(metadata, "distributions", lambda: [_Dist(n) for n in names])
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: calls.append(cmd) or 0)
    monkeypatch.delenv("TALKINGPOSE_SKIP_ONNXRUNTIME", raising=False)
    return calls


@pytest.mark.parametrize("name", ["onnxruntime", "onnxruntime-gpu", "onnxruntime_directml", "onnxruntime-openvino",
                                  "onnxruntime-rocm", "ort-nightly-gpu", "OnnxRuntime-Silicon"])
def test_present_variant_is_left_alone(monkeypatch, install, name):
    calls = _fake_env(monkeypatch, install, ["numpy", name, "opencv-python"])
    assert install.main() == 0
    assert calls == []


def test_installs_cpu_onnxruntime_with_the_running_python(monkeypatch, install):
    calls = _fake_env(monkeypatch, install, ["numpy", "onnxruntime-extensions", "onnx", "opencv-python"])
    assert install.main() == 0
    assert calls == [[sys.executable, "-m", "pip", "install", "onnxruntime"]]


def test_pip_failure_is_reported(monkeypatch, install, capsys):
    from importlib import metadata

    monkeypatch.setattr(metadata, "distributions", lambda: [])

    def fail(cmd, **kw):
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(subprocess, "check_call", fail)
    assert install.main() == 1
    err = capsys.readouterr().err
    assert "onnxruntime" in err and "opencv-python-headless" in err


def test_real_environment_has_exactly_one_variant(install):
    # This venv has onnxruntime from install.py/CI: the script must see it and do nothing.
    variants = install.installed_onnxruntime_variants()
    assert len(variants) >= 1
    assert all(install.is_onnxruntime_variant(v.split("==")[0]) for v in variants)


@pytest.mark.parametrize("name", ["opencv-python", "opencv_python_headless", "opencv-contrib-python", "opencv-contrib-python-headless"])
def test_present_opencv_is_left_alone(monkeypatch, install, name):
    """VideoHelperSuite and comfyui_controlnet_aux bring opencv-python: a headless build next to it would
    overwrite its cv2 files."""
    calls = _fake_env(monkeypatch, install, ["numpy", "onnxruntime", name])
    assert install.main() == 0
    assert calls == []


def test_headless_opencv_is_installed_only_when_none_is_present(monkeypatch, install):
    calls = _fake_env(monkeypatch, install, ["numpy", "onnxruntime", "opencv-python-rolling-docs"])
    assert install.main() == 0
    assert calls == [[sys.executable, "-m", "pip", "install", "opencv-python-headless>=4.8"]]


def test_several_opencv_builds_are_reported(monkeypatch, install, capsys):
    calls = _fake_env(monkeypatch, install, ["onnxruntime", "opencv-python", "opencv-python-headless"])
    assert install.main() == 0 and calls == []
    assert "several distributions of cv2 are installed" in capsys.readouterr().out


def test_requirements_do_not_install_an_opencv_build():
    """pip would install it next to another pack's OpenCV; install.py chooses instead."""
    import tomllib

    lines = (PACK_ROOT / "requirements.txt").read_text().lower().splitlines()
    requirements = [line for line in lines if line.strip() and not line.startswith("#")]
    project = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())["project"]
    assert requirements and not any("opencv" in line for line in requirements)
    assert not any("opencv" in d.lower() for d in project["dependencies"])
    assert project["optional-dependencies"]["opencv"] == ["opencv-python-headless>=4.8"]
