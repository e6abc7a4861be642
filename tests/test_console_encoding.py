"""Console output on a Windows code page: every command's help, progress and errors, and the nodes' log lines,
through a pipe whose encoding is cp1252 (what Python uses on most Western Windows machines when the output is
redirected: a pipe, a log file, ComfyUI Desktop's log). Nothing may end in UnicodeEncodeError; characters
cp1252 lacks come out as backslash escapes, while files keep their real names."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from talkingpose.cli import COMMANDS

from helpers import COMFYUI_STYLE_LOAD, PACK_ROOT, SHARED

DRIVING = SHARED / "samples" / "driving" / "vid1.mp4"
POSES = SHARED / "samples" / "dwpose" / "vid1.mp4"
BETA = "\u03b2"  # not in cp1252


def _cp1252_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUTF8", "PYTHONIOENCODING", "LC_ALL", "LANG")}
    return {**env, "PYTHONIOENCODING": "cp1252", "PYTHONPATH": f"{PACK_ROOT}{os.pathsep}{PACK_ROOT / 'tests'}", **extra}


_RUN_MANY = textwrap.dedent("""
    import json, sys
    from talkingpose.cli import main
    codes = []
    for argv in json.loads(sys.argv[1]):
        print("=== " + " ".join(argv), flush=True)
        print("=== " + " ".join(argv), file=sys.stderr, flush=True)
        try:
            codes.append(main(argv))
        except SystemExit as exit_:  # --help and argparse's refusals
            codes.append(exit_.code)
        sys.stdout.flush(); sys.stderr.flush()
    print("CODES " + json.dumps(codes))
""")


def test_every_commands_help_and_bad_input_survive_a_cp1252_pipe(tmp_path):
    (tmp_path / "jobs.csv").write_text("out,driving\n")
    named = tmp_path / f"clip-{BETA}"  # a name cp1252 cannot write, echoed by every refusal below
    helps = [["--help"], *([c, "--help"] for c in COMMANDS),
             *(["pose", sub, "--help"] for sub in ("extract", "retarget", "smooth", "draw"))]
    refusals = [
        ["animate", "--driving", f"{named}.mp4", "--random-weights", "--out", str(tmp_path / "o.mp4")],
        ["animate", "--driving", str(DRIVING), "--random-weights", "--beta", "2", "--out", f"{named}.mp4"],
        ["metrics", "--real", f"{named}.mp4", "--generated", f"{named}.mp4", "--delta", "0"],
        ["pose", "smooth", "--driving", f"{named}.json", "--out", str(tmp_path / "s.json")],
        ["pose", "draw", "--keypoints", f"{named}.json", "--out", str(tmp_path / "d.mp4")],
        ["convert", str(named), str(tmp_path / "x.safetensors")],
        ["finetune", "--video", f"{named}.mp4", "--out", str(tmp_path / "a.safetensors"), "--random-weights"],
        ["batch", f"{named}.csv", "--out-dir", str(tmp_path / "out")],
        ["evaluate", "--dataset", str(named), "--out-dir", str(tmp_path / "eval")],
        ["download", "--models", str(tmp_path / "jobs.csv" / BETA)],
        ["animate", "--sizes", BETA],  # argparse's own refusal, with the unknown argument echoed
    ]
    (tmp_path / "track.json").write_text(json.dumps([{"people": [], "canvas_width": 64, "canvas_height": 48}]))
    made = [["pose", "draw", "--keypoints", str(tmp_path / "track.json"), "--out", f"{named}.mp4"]]  # "wrote ..."
    argv = helps + refusals + made
    result = subprocess.run([sys.executable, "-c", _RUN_MANY, json.dumps(argv)], cwd=tmp_path, env=_cp1252_env(),
                            capture_output=True)
    out, err = result.stdout.decode("cp1252"), result.stderr.decode("cp1252")  # what a cp1252 reader sees
    assert result.returncode == 0 and "Traceback" not in err and "UnicodeEncodeError" not in err, err[-3000:]
    codes = json.loads(out.rsplit("CODES ", 1)[1])
    assert codes == [0] * len(helps) + [2] * len(refusals) + [0], list(zip(argv, codes))
    assert f"wrote {named}.mp4 (1 frames, 64x48)".replace(BETA, "\\u03b2") in out
    assert (tmp_path / f"clip-{BETA}.mp4").is_file()
    assert "source image + driving video -> animated mp4" in out and "closed-loop gain beta" in out
    for refusal, said in zip(refusals, err.split("=== ")[len(helps) + 1:len(helps) + 1 + len(refusals)]):
        assert "error:" in said and BETA not in said, (refusal, said)
        if refusal[0] != "download":
            assert "clip-\\u03b2" in said or "\\u03b2" in said, (refusal, said)  # escaped, not lost


@pytest.mark.skipif(not DRIVING.is_file(), reason=f"shared sample {DRIVING} not found")
def test_a_real_render_prints_progress_and_its_result_through_a_cp1252_pipe(tmp_path):
    out = tmp_path / f"clip-{BETA}.mp4"
    result = subprocess.run(
        [sys.executable, "cli.py", "animate", "--driving", str(DRIVING), "--poses", str(POSES), "--random-weights",
         "--size", "64x64", "--steps", "2", "--frames", "3", "--device", "cpu", "--out", str(out)],
        cwd=PACK_ROOT, env=_cp1252_env(), capture_output=True)
    err = result.stderr.decode("cp1252")
    assert result.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert "animate 3/3 frames" in err  # the progress line, with its middle dots (in cp1252)
    assert result.stdout.decode("cp1252") == f"wrote {tmp_path}/clip-\\u03b2.mp4 (SMOKE RUN with random weights)\n"
    assert out.is_file()  # the file has its real name


_COMFYUI_LOG = textwrap.dedent("""
    import io, logging, pathlib, sys
    import fake_comfyui
    sys.modules.update(fake_comfyui.FakeComfyUI(pathlib.Path(sys.argv[1])).modules)
    # ComfyUI's app/logger.py: both streams rewrapped in the code page's encoding with no error handler given
    # (so strict), and the root logger writing to stderr.
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding=sys.stdout.encoding, line_buffering=True)
    sys.stderr = io.TextIOWrapper(sys.stderr.buffer, encoding=sys.stderr.encoding, line_buffering=True)
    logging.getLogger().addHandler(logging.StreamHandler())
    {load}
    log = logging.getLogger("TalkingPose")
    log.warning("TalkingPose: %d frame(s) failed and were replaced: %s", 1, "clip-\\u03b2 \\u2192 \\u03b4")
    try:
        raise ValueError("bad \\u03b2")
    except ValueError:
        log.exception("failed on \\u03b4")
""")


def test_the_nodes_log_lines_survive_comfyuis_strict_cp1252_console(tmp_path):
    code = _COMFYUI_LOG.replace("{load}", COMFYUI_STYLE_LOAD.format(name="ComfyUI-TalkingPose",
                                                                    init=str(PACK_ROOT / "__init__.py")))
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, env=_cp1252_env(),
                            capture_output=True)
    err = result.stderr.decode("cp1252")
    assert result.returncode == 0, err[-3000:]
    assert "Logging error" not in err and "UnicodeEncodeError" not in err, err[-3000:]
    assert "frame(s) failed and were replaced: clip-\\u03b2 \\u2192 \\u03b4" in err
    assert "failed on \\u03b4" in err and "ValueError: bad \\u03b2" in err
