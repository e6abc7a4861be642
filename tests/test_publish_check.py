"""tools/publish_check.py, the check before `comfy node publish`: it must refuse the Repository placeholder
(and the icon address built from it) until the owner replaces it, while CI, which runs it without --release,
stays green. comfy-cli itself runs in CI (.ci/run), not here."""
import re
import shutil
import subprocess
import sys

import pytest

from helpers import PACK_ROOT
from tools.publish_check import PLACEHOLDER, archive_problems

SHIPPED = (PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8")
ACCOUNT = re.search(r'Repository = "https://github\.com/([^/]+)/', SHIPPED).group(1)


def check(root, *options):
    return subprocess.run([sys.executable, str(PACK_ROOT / "tools" / "publish_check.py"), "--skip-comfy-cli",
                           "--root", str(root), *options], capture_output=True, text=True)


@pytest.fixture
def pack(tmp_path):
    """A copy of what the metadata checks read, with the shipped pyproject.toml under an account of our choice."""
    def make(account, pyproject=SHIPPED, icon=PACK_ROOT / "docs" / "icon.png"):
        (tmp_path / "docs").mkdir(exist_ok=True)
        shutil.copyfile(PACK_ROOT / "LICENSE", tmp_path / "LICENSE")
        shutil.copyfile(icon, tmp_path / "docs" / "icon.png")
        text = pyproject.replace(f"github.com/{ACCOUNT}/", f"github.com/{account}/")
        text = text.replace(f"githubusercontent.com/{ACCOUNT}/", f"githubusercontent.com/{account}/")
        (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
        return tmp_path
    return make


def test_the_release_check_fails_while_the_placeholder_is_there(pack):
    result = check(pack(PLACEHOLDER), "--release")
    assert result.returncode == 1
    assert f"still holds the placeholder {PLACEHOLDER}" in result.stderr and "Repository" in result.stderr


def test_the_release_check_passes_once_the_account_is_set(pack):
    result = check(pack("someone"), "--release")
    assert result.returncode == 0, result.stderr
    assert "Ready to publish" in result.stdout


def test_ci_passes_with_the_placeholder(pack):
    result = check(pack(PLACEHOLDER))
    assert result.returncode == 0, result.stderr


def test_the_shipped_pyproject_is_publishable_exactly_when_the_placeholder_is_gone():
    result = check(PACK_ROOT, "--release")
    assert result.returncode == (1 if PLACEHOLDER in SHIPPED else 0), result.stderr
    assert check(PACK_ROOT).returncode == 0


def test_the_icon_is_checked(pack, tmp_path_factory):
    from PIL import Image

    wide = tmp_path_factory.mktemp("icon") / "wide.png"
    Image.new("RGBA", (300, 200)).save(wide)
    assert "the registry wants a square" in check(pack("someone", icon=wide)).stderr
    other_repo = SHIPPED.replace(f"githubusercontent.com/{ACCOUNT}/ComfyUI-TalkingPose/", "githubusercontent.com/x/y/")
    assert "point both at the same repository" in check(pack("someone", pyproject=other_repo)).stderr
    missing = SHIPPED.replace("/docs/icon.png", "/docs/logo.png")
    assert "which is not in this repository" in check(pack("someone", pyproject=missing)).stderr


def test_the_archive_check():
    good = ["__init__.py", "nodes/__init__.py", "talkingpose/__init__.py", "requirements.txt", "install.py",
            "pyproject.toml", "LICENSE", "README.md", "web/talkingpose.js", "web/docs/TalkingPoseExtract.md",
            "example_workflows/1 Animate a photo (core nodes).json"]
    assert archive_problems(good) == []
    problems = archive_problems([n for n in good if not n.startswith("web/docs/")] + ["tests/test_cli.py"])
    assert any("nothing in web/docs/" in p for p in problems) and any(".comfyignore must leave tests/" in p for p in problems)
