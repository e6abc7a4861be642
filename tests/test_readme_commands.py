"""The README and the pages under docs/ hold: every command line they show is one the code accepts — `python cli.py …`
lines go through the real argument parser (nothing runs), and each `python -m benchmarks.…` names a benchmark whose
`--help` lists every option a page gives it — so a renamed option or command fails here instead of in a reader's
terminal; the README stays short enough to start with; and every relative link leads to a file (and heading) there."""
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from helpers import PACK_ROOT
from talkingpose.cli import build_parser

README = PACK_ROOT / "README.md"
PAGES = [README, *sorted((PACK_ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200  # the artist's first page; details live in docs/

# Placeholders the pages write where a reader puts a value of their own; numbers where the parser wants one.
PLACEHOLDER_VALUES = {"WxH": "64x64", "STRENGTH": "0.5", "S": "0.5", "F": "25", "N": "8"}


def _fenced_and_inline_commands(text: str, prefix: str) -> list[str]:
    """Command lines starting with `prefix` in fenced code blocks (a line each, `# comments` dropped) and in
    inline code spans (which may wrap over two lines)."""
    commands, prose = [], []
    for index, part in enumerate(text.split("```")):
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


def _shown_commands(prefix: str) -> list[tuple[str, str]]:
    """(page, command) for every page."""
    return [(str(page.relative_to(PACK_ROOT)), command) for page in PAGES
            for command in _fenced_and_inline_commands(page.read_text(encoding="utf-8"), prefix)]


def _as_arguments(command: str, prefix: str) -> list[str] | None:
    """The arguments a reader would type, optional `[...]` parts included; None for a line that abbreviates
    (an ellipsis) or lists alternatives (`a|b|c`, `{x,y}`), which is a summary rather than a command."""
    rest = command[len(prefix):]
    if "…" in rest or "..." in rest or "|" in rest or "{" in rest:
        return None
    tokens = shlex.split(rest.replace("[", " ").replace("]", " "))
    return [PLACEHOLDER_VALUES.get(token, token) for token in tokens]


CLI_COMMANDS = [(page, c) for page, c in _shown_commands("python cli.py ") if _as_arguments(c, "python cli.py ")]
BENCHMARK_COMMANDS = [(page, c) for page, c in _shown_commands("python -m benchmarks.") if "<" not in c]  # not `<name>`


def test_the_pages_show_commands_of_each_kind():
    """The extraction itself finds what the pages are known to hold (else the tests below check nothing): every
    command across README.md and docs/*.md, the main job and the download in the README itself."""
    kinds = {shlex.split(c)[2] for _, c in CLI_COMMANDS}
    assert {"animate", "finetune", "batch", "evaluate", "pose", "download", "convert", "metrics"} <= kinds, kinds
    in_readme = {shlex.split(c)[2] for page, c in CLI_COMMANDS if page == "README.md"}
    assert {"animate", "download"} <= in_readme, in_readme
    assert {page for page, _ in CLI_COMMANDS} > {"README.md"}, "no command found under docs/"
    assert len(BENCHMARK_COMMANDS) >= 5


def test_the_readme_shows_the_test_command_ci_runs():
    """`python -m pytest tests` is the README's test command and what .ci/run ends with."""
    assert "python -m pytest tests" in _fenced_and_inline_commands(README.read_text(encoding="utf-8"), "python -m pytest")
    assert (PACK_ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == "python -m pytest tests"


@pytest.mark.parametrize("page, command", CLI_COMMANDS)
def test_shown_command_line_is_accepted_by_the_parser(page, command, capsys):
    arguments = _as_arguments(command, "python cli.py ")
    try:
        parsed = build_parser(prog="cli.py").parse_args(arguments)
    except SystemExit:
        pytest.fail(f"{page}'s `{command}` is refused by the parser:\n{capsys.readouterr().err}")
    assert parsed.command == arguments[0]


def _benchmark_options() -> dict[str, set[str]]:
    options: dict[str, set[str]] = {}
    for _, command in BENCHMARK_COMMANDS:
        module, *rest = command[len("python -m "):].split()
        options.setdefault(module, set()).update(t for t in rest if t.startswith("--"))
    return options


@pytest.mark.parametrize("module, options", sorted(_benchmark_options().items()))
def test_shown_benchmark_exists_and_takes_the_options_it_is_shown_with(module, options):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    missing = sorted(o for o in options if o not in result.stdout)
    assert not missing, f"`python -m {module}` has no {missing}, which a page uses"


def test_the_readme_is_short_enough_to_start_with():
    """The README is what an artist reads first: what it does, install, weights, a first video, the nodes, the
    command line. Everything else goes into a page of its own under docs/."""
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details into docs/ (at most {README_MAX_LINES})"


def _anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation (markup included) dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code is not a link
    text = re.sub(r"`[^`]*`", "", text)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: are not files


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PACK_ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    broken = []
    for target in _relative_links(page):
        path, _, fragment = unquote(target).partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif fragment and linked.suffix == ".md" and fragment not in _anchors(linked):
            broken.append(f"{target}: no heading #{fragment} in {linked.relative_to(PACK_ROOT)}")
    assert broken == [], f"{page.relative_to(PACK_ROOT)}: {broken}"
