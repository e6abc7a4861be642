"""Test set-up. The engine (`talkingpose`) and the node layer (`nodes`) are imported from the checkout
(pytest's `pythonpath`), whatever the checkout's folder is called."""
import shutil
from pathlib import Path

import pytest

from helpers import SHARED


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Random tiny-preset weights in the released formats, written once per test session."""
    from talkingpose.random_weights import write_random_weights

    return write_random_weights(tmp_path_factory.mktemp("weights"), "tiny", seed=1)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_weights):
    from talkingpose.pipeline import load_pipeline

    return load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"])


@pytest.fixture()
def models_env(tmp_path, monkeypatch):
    """$TALKINGPOSE_MODELS with dwpose/ holding copies of the synthetic 'det' golden DWPose models; returns dwpose/."""
    src = SHARED / "golden" / "dwpose-a" / "models" / "det"
    if not src.is_dir():
        pytest.skip("golden DWPose models not available")
    dwpose = tmp_path / "models" / "dwpose"
    dwpose.mkdir(parents=True)
    for name in ("yolox_l.onnx", "dw-ll_ucoco_384.onnx"):
        shutil.copy(src / name, dwpose / name)
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return dwpose


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): the
    fine-tuning tests run faster so on the 2-core machine, where two spinning threads per process compete."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
