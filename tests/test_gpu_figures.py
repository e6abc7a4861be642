"""The prepared GPU script's CPU dry run: every stage runs (tiny networks, tiny sizes) and the one JSON file it
writes has every key the GPU table of docs/performance.md is made from."""
import json
import subprocess
import sys

import pytest

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
    device_memory = {"peak_vram_512_gb", "peak_vram_512x768_gb", "peak_vram_512_fp8_gb"}
    assert all(figures[key] is None for key in device_memory)
    assert all(row["measured_gb"] is None and row["estimate_gb"] > 0 for row in figures["memory_estimate"])
    not_run |= device_memory
    measured = {key: figures[key] for key in gpu_figures.KEYS if key not in not_run}
    assert all(value is not None for value in measured.values()), measured
    assert figures["cap8gb_512x768_ok"] is True and figures["cap6gb_512_ok"] is True
    assert figures["graph_equals_eager"] is True
    assert figures["animate_512_s_per_frame"] > 0 and figures["batched8_frames_per_s"] > 0
    # the opt-ins that change frames, against the exact render: changed, and by less than another render would be
    assert figures["animate_512_fp8_s_per_frame"] > 0
    assert 10 < figures["fp8_vs_exact_psnr_db"] < float("inf") and 0 < figures["fp8_vs_exact_max_abs"] <= 255
    assert all(10 < figures[f"steps{n}_vs_30_psnr_db"] < float("inf") for n in (20, 15, 10))
    assert [row["size"] for row in figures["memory_estimate"]] == ["64x64", "64x96", "96x96"]
    table = results_table.table([path], include_dry_runs=True)
    assert "CPU (dry run)" in table and "animate 512², s/frame" in table
    assert results_table.table([path]) == "(no GPU runs in benchmarks/results/ yet)"


def _part(part: str, gpu: str = "NVIDIA H100 80GB HBM3", **figures) -> dict:
    """A part file as `--part` writes it: every key, null where the other part measures it."""
    made = dict.fromkeys(gpu_figures.KEYS)
    made.update(commit="abc1234", gpu=gpu, torch="2", diffusers="0", dry_run=False, part=part, wall_s=10.0, **figures)
    return made


def test_two_call_parts_merge_into_one_results_file(tmp_path):
    """The device tool carries at most 64 MiB a call, less than the official code and the wheels together: the
    figures are made in two calls (pack part, official part) and joined here. The figures below are made up to
    check the join: the speed-up is computed only for parts from one GPU, and only parts of one run are joined."""
    pack = tmp_path / "pack.json"
    pack.write_text(json.dumps(_part("pack", animate_512_s_per_frame=0.5, fp8_vs_exact_psnr_db=30.0)))
    official = tmp_path / "official.json"
    official.write_text(json.dumps(_part("official", official_512_s_per_frame=2.0,
                                         official_versions={"official_diffusers": "0.27.2"})))
    merged = json.loads(gpu_figures.merge([pack, official], tmp_path / "results").read_text())
    assert "part" not in merged and merged["speedup_vs_official"] == 4.0
    assert merged["animate_512_s_per_frame"] == 0.5 and merged["fp8_vs_exact_psnr_db"] == 30.0
    assert merged["official_versions"] == {"official_diffusers": "0.27.2"} and merged["wall_s"] == 20.0
    assert set(gpu_figures.KEYS) <= set(merged)
    table = results_table.table(sorted((tmp_path / "results").glob("*.json")))
    assert "| speed-up over the official code | 4.0× |" in table
    # the parts alone stay out of the README's table unless named
    assert results_table.table([pack, official]) == "(no GPU runs in benchmarks/results/ yet)"

    official.write_text(json.dumps(_part("official", gpu="NVIDIA H200", official_512_s_per_frame=2.0)))
    merged = json.loads(gpu_figures.merge([pack, official], tmp_path / "other").read_text())
    assert merged["speedup_vs_official"] is None and merged["official_gpu"] == "NVIDIA H200"
    with pytest.raises(SystemExit, match="part of a two-part run"):
        gpu_figures.merge([pack, pack], tmp_path / "other")


def test_the_official_part_without_the_official_code_is_refused(tmp_path):
    done = subprocess.run(["bash", "benchmarks/gpu_figures.sh", "--dry-run", "--part", "official", "--out",
                           str(tmp_path)], cwd=PACK_ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and "give --official CARRY_DIR" in done.stderr
    assert not list(tmp_path.iterdir())
