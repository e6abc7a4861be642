"""A missing Python package is named, with the command that installs it, when ComfyUI loads the pack and as the
error of a node that needs it (not a bare ModuleNotFoundError)."""
import re
import subprocess
import sys

from helpers import COMFYUI_STYLE_LOAD, PACK_ROOT

from talkingpose.dependencies import REQUIRED_MODULES, REQUIREMENTS_FILE, install_sentence, missing_requirements


def test_the_checked_packages_are_requirements_txt():
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS_FILE.read_text(encoding="utf-8").splitlines()]
    listed = {re.split(r"[<>=!~ \[;]", line)[0].lower() for line in lines if line}
    assert set(REQUIRED_MODULES.values()) == listed


def test_nothing_is_missing_here():
    assert missing_requirements() == []


def test_the_sentence_names_the_packages_and_the_command():
    text = install_sentence(["diffusers", "peft"], python="/opt/comfy/python")
    assert text.startswith("TalkingPose needs diffusers, peft, which are not installed")
    assert f'"/opt/comfy/python" -m pip install -r "{REQUIREMENTS_FILE}"' in text
    assert "is not installed" in install_sentence(["av"])
    text.encode("cp1252")  # printed to Windows consoles


def _load_without(blocked, then="", env=None):
    """Load the pack as ComfyUI does in a Python where `blocked` cannot be imported; stderr has the log."""
    code = ("import logging, sys\nlogging.basicConfig(level=logging.WARNING, format='%(name)s: %(message)s')\n"
            + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
            + COMFYUI_STYLE_LOAD.format(name="ComfyUI-TalkingPose", init=str(PACK_ROOT / "__init__.py")) + then)
    return subprocess.run([sys.executable, "-c", code], cwd=PACK_ROOT.parent, capture_output=True, text=True,
                          env=env)


def test_start_up_names_a_missing_package_once():
    result = _load_without(["diffusers", "peft"])
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "TalkingPose needs" in line]
    assert len(warnings) == 1, result.stderr
    assert "diffusers, peft, which are not installed" in warnings[0] and "-m pip install -r" in warnings[0]


def test_start_up_is_quiet_when_everything_is_there():
    result = _load_without([])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TalkingPose needs" not in result.stderr


def test_a_node_that_needs_it_says_the_same_sentence_as_its_error(tmp_path):
    import os

    import torch

    folder = tmp_path / "talkingpose" / "TalkingPose"  # three readable files: the loader gets as far as diffusers
    folder.mkdir(parents=True)
    for part in ("denoising_unet", "reference_unet", "pose_guider"):
        torch.save({"weight": torch.zeros(1)}, folder / f"{part}.pth")
    then = ("from talkingpose.errors import TalkingPoseError\n"
            "loader = pack.NODE_CLASS_MAPPINGS['TalkingPoseModelLoader']()\n"
            "try:\n    loader.load('TalkingPose/', 'fp32')\n"
            "except TalkingPoseError as exc:\n    print('ERROR:', exc, '| CAUSE:', repr(exc.__cause__))\n")
    result = _load_without(["diffusers"], then, env={**os.environ, "TALKINGPOSE_MODELS": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR: TalkingPose needs diffusers, which is not installed" in result.stdout, result.stdout
    assert "-m pip install -r" in result.stdout and "ModuleNotFoundError" in result.stdout
