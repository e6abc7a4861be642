"""The GPU table of docs/performance.md, made from the files benchmarks/gpu_figures.sh wrote:

    python -m benchmarks.results_table [benchmarks/results/*.json]

One column per file (GPU, commit), one row per figure; CPU dry runs and the parts of a two-part run (joined by
`python -m benchmarks.gpu_figures --merge`) are left out unless named explicitly.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = (
    ("animate_512_s_per_frame", "animate 512², s/frame (pose video -> mp4)", "{:.3f}"),
    ("animate_512x768_s_per_frame", "animate 512×768, s/frame", "{:.3f}"),
    ("sampler_512_s_per_frame", "sampler 512², s/frame", "{:.3f}"),
    ("batched8_frames_per_s", "8 videos batched, frames/s", "{:.2f}"),
    ("batched16_frames_per_s", "16 videos batched, frames/s", "{:.2f}"),
    ("peak_vram_512_gb", "peak VRAM 512², GB allocated", "{:.2f}"),
    ("peak_vram_512x768_gb", "peak VRAM 512×768, GB allocated", "{:.2f}"),
    ("cap8gb_512x768_ok", "100 frames 512×768 within 8 GB", "{}"),
    ("cap6gb_512_ok", "100 frames 512² within 6 GB", "{}"),
    ("golden_fp32_max_abs", "golden case fp32, max abs difference", "{:.1e}"),
    ("graph_equals_eager", "CUDA graph == eager, bitwise", "{}"),
    ("official_512_s_per_frame", "official code 512², s/frame", "{:.3f}"),
    ("speedup_vs_official", "speed-up over the official code", "{:.1f}×"),
    ("animate_512_fp8_s_per_frame", "animate 512², fp8 weights (opt-in), s/frame", "{:.3f}"),
    ("peak_vram_512_fp8_gb", "peak VRAM 512², fp8 weights (opt-in), GB allocated", "{:.2f}"),
    ("fp8_vs_exact_psnr_db", "fp8 weights vs exact, PSNR dB (random weights)", "{:.1f}"),
    ("fp8_vs_exact_max_abs", "fp8 weights vs exact, largest pixel difference (0-255)", "{}"),
    ("steps20_vs_30_psnr_db", "20 steps vs 30, PSNR dB (random weights)", "{:.1f}"),
    ("steps15_vs_30_psnr_db", "15 steps vs 30, PSNR dB (random weights)", "{:.1f}"),
    ("steps10_vs_30_psnr_db", "10 steps vs 30, PSNR dB (random weights)", "{:.1f}"),
)


def _cell(value, form: str) -> str:
    return "—" if value is None else form.format(value)


def table(paths: list[Path], include_dry_runs: bool = False) -> str:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    runs = [r for r in runs if include_dry_runs or not (r.get("dry_run") or r.get("part"))]
    if not runs:
        return "(no GPU runs in benchmarks/results/ yet)"
    head = "| figure | " + " | ".join(f"{r['gpu']}{' (CPU dry run)' if r.get('dry_run') else ''}"
                                      f"{' (' + r['part'] + ' part)' if r.get('part') else ''}, {r['commit'][:7]}"
                                      for r in runs) + " |"
    lines = [head, "| --- |" + " --- |" * len(runs)]
    for key, label, form in ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(r.get(key), form) for r in runs) + " |")
    for r in runs:
        for row in r.get("memory_estimate") or []:
            if row.get("measured_gb") is not None:
                lines.append(f"| memory estimate {row['size']} ({r['gpu']}) | estimate {row['estimate_gb']:.2f} GB, "
                             f"measured {row['measured_gb']:.2f} GB"
                             + (f" ({row['measured_reserved_gb']:.2f} GB reserved)" if row.get("measured_reserved_gb") else "")
                             + f", ratio {row['ratio']:.2f} |" + " |" * (len(runs) - 1))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="The GPU table of docs/performance.md from the result files of gpu_figures.sh.")
    parser.add_argument("files", nargs="*", type=Path,
                        help="result files (default: benchmarks/results/*.json; CPU dry runs only when named)")
    named = parser.parse_args(argv).files
    paths = named or sorted((Path(__file__).parent / "results").glob("*.json"))
    print(table(paths, include_dry_runs=bool(named)))


if __name__ == "__main__":
    main()
