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
