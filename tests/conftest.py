"""Test set-up. The engine (`talkingpose`) and the node layer (`nodes`) are imported from the checkout
(pytest's `pythonpath`), whatever the checkout's folder is called."""
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
