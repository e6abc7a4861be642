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


# ------------------------------------------------------------------------------------------------ import graph
def _project_modules() -> dict[str, "Path"]:
    """Dotted name -> file of every module of the project: the engine, the nodes, the command-line shim, the
    benchmarks and the tools (run as scripts, so they go by their file name)."""
    modules = {}
    for package in ("talkingpose", "nodes"):
        for file in sorted((PACK_ROOT / package).rglob("*.py")):
            parts = file.relative_to(PACK_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    modules["cli"] = PACK_ROOT / "cli.py"
    for folder in ("benchmarks", "tools"):
        for file in sorted((PACK_ROOT / folder).glob("*.py")):
            modules[f"{folder}.{file.stem}"] = file
    return modules


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports anywhere in its text (functions included: a lazy import still
    closes a cycle, only later). `from package import name` points at the submodule where `name` is one."""
    import ast

    modules = _project_modules()
    graph = {}
    for name, file in modules.items():
        is_package = file.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module
                candidates = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                              for alias in node.names]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in modules:  # `import a.b.c` of a name inside a.b.c
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Each group of modules that import each other round in a circle (Tarjan's strongly connected components),
    sorted, with one cycle through it as a list that ends where it began."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:  # walk inside the group from its first member back to it
        start = min(group)
        path, seen = [start], {start}
        while True:
            following = sorted(t for t in graph[path[-1]] if t in group)
            if start in following and len(path) > 1:
                cycles.append((sorted(group), path + [start]))
                break
            step = next((t for t in following if t not in seen), None)
            if step is None:  # a dead end inside the group: back up
                path.pop()
                if not path:
                    break
                continue
            path.append(step)
            seen.add(step)
    return cycles


def test_import_graph_finds_a_cycle_where_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [(["a", "b", "c"], ["a", "b", "c", "a"])]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_projects_modules_import_each_other_without_cycles():
    graph = _import_graph()
    assert {"talkingpose.pipeline", "nodes.model_nodes", "cli", "benchmarks.bench_sampler"} <= set(graph)
    assert "talkingpose.sampler" in graph["talkingpose.pipeline"]  # imports are read, relative ones included
    cycles = _cycles(graph)
    assert not cycles, "Import cycles: " + "; ".join(
        f"{', '.join(group)} (e.g. {' -> '.join(cycle)})" for group, cycle in cycles)
