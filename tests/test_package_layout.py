"""The engine is one importable package used the same way by the command line, the nodes and the tests, and
the checkout works whatever its folder is called (the README clones it as `ComfyUI-TalkingPose`)."""
import shutil
import subprocess
import sys

from helpers import COMFYUI_STYLE_LOAD, PACK_ROOT


def _run(args, cwd, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, **kwargs)


def test_engine_imports_without_comfyui_or_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None; sys.modules['comfy'] = None; sys.modules['folder_paths'] = None\n"
        "import talkingpose, talkingpose.cli, talkingpose.errors\n"
        "parser = talkingpose.cli.build_parser()\n"
        "print(sorted(parser._subparsers._group_actions[0].choices))\n"
    )
    result = _run(["-c", code], PACK_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'animate'" in result.stdout and "'metrics'" in result.stdout


def test_cli_shim_and_module_entry_are_the_same_command():
    shim = _run(["cli.py", "--help"], PACK_ROOT)
    module = _run(["-m", "talkingpose", "--help"], PACK_ROOT)
    assert shim.returncode == 0 and module.returncode == 0, shim.stderr + module.stderr
    strip = lambda text: text.split("\n", 1)[1]  # noqa: E731  (the usage line names the program)
    assert strip(shim.stdout) == strip(module.stdout)


def test_nodes_use_the_one_engine_package():
    import talkingpose.sampler
    from nodes import model_nodes

    model_nodes.TalkingPoseClosedLoopSampler.INPUT_TYPES()
    from talkingpose import sampler as via_nodes_path

    assert via_nodes_path is talkingpose.sampler
    assert "talkingpose.sampler" in sys.modules and not any(name.endswith(".models.sampler") for name in sys.modules)


def test_pack_loads_as_comfyui_loads_it_from_a_folder_with_any_name(tmp_path):
    """ComfyUI imports the folder by path: the entry point must find its engine without being installed."""
    folder = tmp_path / "custom_nodes" / "ComfyUI-TalkingPose"
    shutil.copytree(PACK_ROOT, folder, ignore=shutil.ignore_patterns(".git", ".venv", "out", "__pycache__", "*.egg-info"))
    code = COMFYUI_STYLE_LOAD.format(name=str(folder), init=str(folder / "__init__.py")) + (
        "import talkingpose\n"
        "print(talkingpose.__file__)\n"
        "print(len(pack.NODE_CLASS_MAPPINGS))\n"
    )
    # -I: no user site and no current directory on the path, as inside a ComfyUI process.
    result = _run(["-I", "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    engine_file, count = result.stdout.split()
    assert int(count) >= 10
    installed_elsewhere = not engine_file.startswith(str(folder))
    if installed_elsewhere:  # an editable install of this checkout wins over the copy: it must say so
        assert "Another copy of the TalkingPose engine" in result.stderr


def test_suite_runs_from_a_checkout_named_like_the_install_instructions(tmp_path):
    folder = tmp_path / "ComfyUI-TalkingPose"
    shutil.copytree(PACK_ROOT, folder, ignore=shutil.ignore_patterns(".git", ".venv", "out", "__pycache__", "*.egg-info"))
    result = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_nodes.py::test_node_definitions_are_well_formed",
                   "tests/test_package_layout.py::test_nodes_use_the_one_engine_package"], folder)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout
