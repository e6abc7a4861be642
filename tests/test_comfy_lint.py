"""tools/comfy_lint.py, the `comfy-test lint` step of CI: what it lets through and what it fails on. comfy-test
itself runs in CI (.ci/run), not here; its Windows condition, every .py file in cp1252, is checked here too so
that a plain test run catches it."""
from tools.comfy_lint import EXCEPTIONS, problems

from helpers import PACK_ROOT


def _report(forbidden: dict[str, list[str]] | None = None, javascript_ok=True) -> dict:
    details = "Use ComfyUI APIs instead:\n\n" + "\n\n".join(
        f"{file}:\n" + "\n".join(f"  Line {n + 1}: {what}() -- use operations.X()" for n, what in enumerate(whats))
        for file, whats in (forbidden or {}).items())
    syntax = ({"passed": True} if not forbidden else
              {"passed": False, "error": "Forbidden patterns found (not ComfyUI-native)", "details": details})
    javascript = {"passed": javascript_ok, "error": None if javascript_ok else "2 error(s)", "details": None}
    return {"results": {"syntax": syntax, "javascript": javascript}}


def _listed() -> dict[str, list[str]]:
    listed: dict[str, list[str]] = {}
    for file, what in EXCEPTIONS:
        listed.setdefault(file, []).append(what)
    return listed


def test_only_the_listed_exceptions_pass_and_none_may_go_stale():
    assert problems(_report(_listed())) == []
    more = _listed()
    more["nodes/model_nodes.py"] = ["nn.Linear"]
    assert problems(_report(more)) == [
        "comfy-test lint: nodes/model_nodes.py: nn.Linear is not among the pack's exceptions (tools/comfy_lint.py); "
        "use ComfyUI's API or add it there with the reason"]
    fewer = _listed()
    del fewer["tests/fake_comfyui.py"]
    assert problems(_report(fewer)) == [
        "comfy-test lint no longer reports nn.Linear in tests/fake_comfyui.py: remove it from the exceptions in "
        "tools/comfy_lint.py"]
    assert problems(_report(_listed(), javascript_ok=False))[0].startswith("comfy-test lint, javascript: 2 error(s)")
    cp1252 = {"results": {"syntax": {"passed": False, "details": "nodes/x.py:\n  Line 1, col 2: RIGHTWARDS ARROW",
                                     "error": "Non-ASCII characters found that can't encode on Windows (cp1252)"}}}
    assert problems(cp1252) == ["comfy-test lint, syntax: Non-ASCII characters found that can't encode on Windows "
                                "(cp1252)\nnodes/x.py:\n  Line 1, col 2: RIGHTWARDS ARROW"]


def test_every_python_file_is_cp1252_text():
    """Windows reads a pack's files in its code page in places (comfy-test's rule): text the UI needs beyond
    cp1252 is written as \\u escapes."""
    bad = []
    for path in sorted(PACK_ROOT.rglob("*.py")):
        relative = path.relative_to(PACK_ROOT)
        if any(part.startswith(".") or part in ("__pycache__", "node_modules") for part in relative.parts):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                line.encode("cp1252")
            except UnicodeEncodeError as exc:
                bad.append(f"{relative}:{number}: {line[exc.start:exc.end]!a}")
    assert not bad, "characters cp1252 lacks:\n" + "\n".join(bad)
