"""install.py: onnxruntime is installed with this Python's pip only when no onnxruntime variant is present."""
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
    calls = _fake_env(monkeypatch, install, ["numpy", name])
    assert install.main() == 0
    assert calls == []


def test_installs_cpu_onnxruntime_with_the_running_python(monkeypatch, install):
    calls = _fake_env(monkeypatch, install, ["numpy", "onnxruntime-extensions", "onnx"])
    assert install.main() == 0
    assert calls == [[sys.executable, "-m", "pip", "install", "onnxruntime"]]


def test_pip_failure_is_reported(monkeypatch, install, capsys):
    from importlib import metadata

    monkeypatch.setattr(metadata, "distributions", lambda: [])

    def fail(cmd, **kw):
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(subprocess, "check_call", fail)
    assert install.main() == 1
    assert "onnxruntime" in capsys.readouterr().err


def test_real_environment_has_exactly_one_variant(install):
    # This venv has onnxruntime from install.py/CI: the script must see it and do nothing.
    variants = install.installed_onnxruntime_variants()
    assert len(variants) >= 1
    assert all(install.is_onnxruntime_variant(v.split("==")[0]) for v in variants)
