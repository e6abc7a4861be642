"""Test set-up: the pack's root folder is a package (ComfyUI imports it by folder name), so the tests load it
under one fixed name, `talkingpose_pack`, whatever the checkout's folder is called."""
import importlib.util
import sys
from pathlib import Path

import pytest

from helpers import PACK_ROOT, SHARED


def _load_pack():
    if "talkingpose_pack" in sys.modules:
        return sys.modules["talkingpose_pack"]
    spec = importlib.util.spec_from_file_location(
        "talkingpose_pack", PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["talkingpose_pack"] = module
    spec.loader.exec_module(module)
    return module


_load_pack()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Random tiny-preset weights in the released formats, written once per test session."""
    from talkingpose_pack.models.random_weights import write_random_weights

    return write_random_weights(tmp_path_factory.mktemp("weights"), "tiny", seed=1)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_weights):
    from talkingpose_pack.models.pipeline import load_pipeline

    return load_pipeline(tiny_weights["model"], tiny_weights["vae"], tiny_weights["image_encoder"])
