"""pytest set-up for the checkout's root folder.

The root folder has an `__init__.py` because ComfyUI loads it as a package, but it is not a package the tests
import: pytest would otherwise import that `__init__.py` while collecting, under a name made from the folder's
name — which fails for a folder called `ComfyUI-TalkingPose`, the name the install instructions use.
"""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


class _RootFolderIsADirectory:
    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        # pytest asks the hooks of the folder *above* the root about the root, so this must be a global plugin,
        # not a hook of this conftest.
        if path == ROOT:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config):
    config.pluginmanager.register(_RootFolderIsADirectory(), "talkingpose-root-folder")
