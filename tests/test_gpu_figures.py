"""The prepared GPU script's CPU dry run: every stage runs (tiny networks, tiny sizes) and the one JSON file it
writes has every key the GPU table of docs/performance.md is made from."""
import json
import subprocess
import sys

from benchmarks import gpu_figures, results_table
from helpers import PACK_ROOT


def test_dry_run_writes_every_figure(tmp_path):
    command = [sys.executable, "-m", "benchmarks.gpu_figures", "--dry-run", "--work", str(tmp_path / "work"),
               "--out", str(tmp_path / "results")]
    subprocess.run(command, cwd=PACK_ROOT, check=True)
    [path] = (tmp_path / "results").glob("*-dry-run.json")
    figures = json.loads(path.read_text())
    assert figures["dry_run"] is True and figures["gpu"] == "CPU (dry run)"
    assert set(gpu_figures.KEYS) <= set(figures)
    # no official code carried here; the golden case takes minutes on a CPU (tests/test_golden_sampler.py has it)
    not_run = {"official_512_s_per_frame", "speedup_vs_official", "golden_fp32_max_abs"}
    # a CPU has no device allocator to read a peak from: those figures are the GPU run's alone
    device_memory = {"peak_vram_512_gb", "peak_vram_512x768_gb"}
    assert all(figures[key] is None for key in device_memory)
    assert all(row["measured_gb"] is None and row["estimate_gb"] > 0 for row in figures["memory_estimate"])
    not_run |= device_memory
    measured = {key: figures[key] for key in gpu_figures.KEYS if key not in not_run}
    assert all(value is not None for value in measured.values()), measured
    assert figures["cap8gb_512x768_ok"] is True and figures["cap6gb_512_ok"] is True
    assert figures["graph_equals_eager"] is True
    assert figures["animate_512_s_per_frame"] > 0 and figures["batched8_frames_per_s"] > 0
    assert [row["size"] for row in figures["memory_estimate"]] == ["64x64", "64x96", "96x96"]
    table = results_table.table([path], include_dry_runs=True)
    assert "CPU (dry run)" in table and "animate 512², s/frame" in table
    assert results_table.table([path]) == "(no GPU runs in benchmarks/results/ yet)"
