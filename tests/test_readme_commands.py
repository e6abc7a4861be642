"""Every command line the README shows is one the code accepts: `python cli.py …` lines go through the real
argument parser (nothing runs), and each `python -m benchmarks.…` names a benchmark whose `--help` lists every
option the README gives it. A renamed option or command then fails here instead of in a reader's terminal."""
import re
import shlex
import subprocess
import sys

import pytest

from helpers import PACK_ROOT
from talkingpose.cli import build_parser

README = (PACK_ROOT / "README.md").read_text()

# Placeholders the README writes where a reader puts a value of their own; numbers where the parser wants one.
PLACEHOLDER_VALUES = {"WxH": "64x64", "STRENGTH": "0.5", "S": "0.5", "F": "25", "N": "8"}


def _fenced_and_inline_commands(prefix: str) -> list[str]:
    """Command lines starting with `prefix` in fenced code blocks (a line each, `# comments` dropped) and in
    inline code spans (which may wrap over two lines)."""
    commands, prose = [], []
    for index, part in enumerate(README.split("```")):
        if index % 2:  # inside a fence
            for line in part.splitlines():
                line = line.split("  #", 1)[0].strip()
                if line.startswith(prefix):
                    commands.append(line)
        else:
            prose.append(part)
    for span in re.findall(r"`([^`]+)`", " ".join(prose).replace("\n", " ")):
        if span.startswith(prefix):
            commands.append(span)
    return commands


def _as_arguments(command: str, prefix: str) -> list[str] | None:
    """The arguments a reader would type, optional `[...]` parts included; None for a line that abbreviates
    (an ellipsis) or lists alternatives (`a|b|c`, `{x,y}`), which is a summary rather than a command."""
    rest = command[len(prefix):]
    if "…" in rest or "..." in rest or "|" in rest or "{" in rest:
        return None
    tokens = shlex.split(rest.replace("[", " ").replace("]", " "))
    return [PLACEHOLDER_VALUES.get(token, token) for token in tokens]


CLI_COMMANDS = [c for c in _fenced_and_inline_commands("python cli.py ") if _as_arguments(c, "python cli.py ")]
BENCHMARK_COMMANDS = [c for c in _fenced_and_inline_commands("python -m benchmarks.") if "<" not in c]  # not `<name>`


def test_the_readme_shows_commands_of_each_kind():
    """The extraction itself finds what the README is known to hold (else the tests below check nothing)."""
    kinds = {shlex.split(c)[2] for c in CLI_COMMANDS}
    assert {"animate", "finetune", "batch", "evaluate", "pose", "download", "convert"} <= kinds, kinds
    assert len(BENCHMARK_COMMANDS) >= 5


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_readme_command_line_is_accepted_by_the_parser(command, capsys):
    arguments = _as_arguments(command, "python cli.py ")
    try:
        parsed = build_parser(prog="cli.py").parse_args(arguments)
    except SystemExit:
        pytest.fail(f"The README's `{command}` is refused by the parser:\n{capsys.readouterr().err}")
    assert parsed.command == arguments[0]


def _benchmark_options() -> dict[str, set[str]]:
    options: dict[str, set[str]] = {}
    for command in BENCHMARK_COMMANDS:
        module, *rest = command[len("python -m "):].split()
        options.setdefault(module, set()).update(t for t in rest if t.startswith("--"))
    return options


@pytest.mark.parametrize("module, options", sorted(_benchmark_options().items()))
def test_readme_benchmark_exists_and_takes_the_options_it_is_shown_with(module, options):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    missing = sorted(o for o in options if o not in result.stdout)
    assert not missing, f"`python -m {module}` has no {missing}, which the README uses"
