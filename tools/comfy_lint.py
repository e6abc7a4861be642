"""`comfy-test lint` (the community's install-test tool for ComfyUI packs, from PyPI) with the pack's exceptions.

    python tools/comfy_lint.py --comfy-test PATH/TO/comfy-test      # what CI runs on every change

comfy-test's static checks fail a pack for any character Windows' cp1252 cannot hold in a .py file (there is
none left) and for "not ComfyUI-native" patterns. The few of those below are deliberate, each with its reason;
anything else it reports fails, and so does an exception it no longer finds (so the list cannot go stale). Its
JavaScript check runs with --strict (warnings fail too). Exits 1 with one line per problem. Standard library
only; comfy-test runs as its own program.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (file, what comfy-test names) -> why it stays.
EXCEPTIONS = {
    ("talkingpose/pose_guider.py", "nn.Conv*d"):
        "the engine also runs without ComfyUI (command line, Ray workers), where comfy.ops does not exist; the node "
        "layer hands its modules to ComfyUI's ModelPatcher, which places and casts them",
    ("talkingpose/finetune/trainer.py", "torch.autocast"):
        "fine-tuning runs in mixed precision as the official training does, from the command line as well as the "
        "node; comfy.ops casts weights at inference and offers no training autocast",
    ("tests/fake_comfyui.py", "nn.Linear"):
        "a test stand-in for ComfyUI's CLIP vision model; tests/ is not in the published archive",
}
_FINDING = re.compile(r"^\s+Line \d+: (?P<what>[^\s(]+)")  # the name before its parentheses


def findings(report: dict) -> tuple[set[tuple[str, str]], list[str]]:
    """(file, pattern) pairs of the forbidden-pattern findings, and every other failure as a sentence."""
    found, other = set(), []
    for check, result in report.get("results", {}).items():
        if result.get("passed"):
            continue
        if check == "syntax" and result.get("error") == "Forbidden patterns found (not ComfyUI-native)":
            current = None
            for line in (result.get("details") or "").splitlines():
                if line.endswith(".py:") and not line.startswith(" "):
                    current = line[:-1]
                elif current and (match := _FINDING.match(line)):
                    found.add((current, match.group("what")))
        else:
            other.append(f"comfy-test lint, {check}: {result.get('error')}\n{result.get('details') or ''}".rstrip())
    return found, other


def problems(report: dict) -> list[str]:
    found, other = findings(report)
    new = [f"comfy-test lint: {file}: {what} is not among the pack's exceptions (tools/comfy_lint.py); use "
           "ComfyUI's API or add it there with the reason" for file, what in sorted(found - EXCEPTIONS.keys())]
    # comfy-test stops its syntax check at the first failing part: the patterns are looked at only after the
    # characters pass, so exceptions can be missing only from a report that got that far.
    syntax = report.get("results", {}).get("syntax", {})
    reached = syntax.get("passed") or syntax.get("error") == "Forbidden patterns found (not ComfyUI-native)"
    gone = [f"comfy-test lint no longer reports {what} in {file}: remove it from the exceptions in "
            "tools/comfy_lint.py" for file, what in sorted(EXCEPTIONS.keys() - found)] if reached else []
    return other + new + gone


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfy-test", required=True, help="the comfy-test program")
    parser.add_argument("--root", type=Path, default=ROOT, help="the pack folder (default: this checkout)")
    args = parser.parse_args(argv)
    run = subprocess.run([args.comfy_test, "lint", "--json", "--strict", str(args.root)], capture_output=True,
                         text=True, encoding="utf-8")
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(f"comfy-test lint gave no report (exit {run.returncode}): {run.stderr.strip()[-2000:]}", file=sys.stderr)
        return 1
    found = problems(report)
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"comfy-test lint: clean but for the {len(EXCEPTIONS)} exceptions listed in tools/comfy_lint.py.")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
