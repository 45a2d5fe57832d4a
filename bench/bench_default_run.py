"""Where the embedded default's time goes: CPU and wall seconds per rule from a finished
run's benchmark files, the start-up each kind of job pays before its first useful
operation (interpreter and imports, and the harness's task indexing), and this machine's
float32 matmul rate, all in one report so that runs on different machines compare as ratios.

    snakemake --cores 2                          # a complete run of the embedded default
    python bench/bench_default_run.py [--json out.json]

Start-up is measured by running, in a fresh interpreter, exactly the imports a job's entry
script and the modules it calls make before touching data (five repeats, the median), and
for the downstream jobs also lm-eval's task indexing; the per-rule start-up share is that
time times the rule's job count over the rule's CPU seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Rule -> its benchmark files, and the imports its job makes before the first useful work.
RULES = {
    "train_minisuite": (
        "benchmarks/checkpoints/train_*.tsv",
        "import torch, transformers; from saturation import training",
    ),
    "measure_checkpoint": (
        "benchmarks/metrics/*/step*.tsv",
        "import torch, transformers; from saturation import tables, metrics, checkpoints",
    ),
    "feature_cache": (
        "benchmarks/rank_heads/*/step*/cache.tsv",
        "import torch, transformers; from saturation import heads",
    ),
    "rank_head": (
        "benchmarks/rank_heads/*/step*/r[0-9f]*.tsv",
        "import torch; from saturation import heads",
    ),
    "evaluate_downstream": (
        "benchmarks/downstream/*/step*.tsv",
        # The default's tasks are local: the harness indexes their folder only.
        "import torch, transformers, lm_eval; from saturation import downstream\n"
        "downstream.task_manager('results/downstream/tasks', "
        "['synthetic_next_token', 'synthetic_choice'])",
    ),
    "ngram_spectrum": (
        "benchmarks/ngrams/*/spectrum.tsv",
        "import torch, scipy.sparse; from saturation import ngrams",
    ),
    "sample_corpus": ("benchmarks/corpus/*.tsv", "from saturation import corpus"),
}


def read_benchmarks(pattern: str) -> list[dict]:
    rows = []
    for path in sorted(ROOT.glob(pattern)):
        with path.open() as fh:
            rows += list(csv.DictReader(fh, delimiter="\t"))
    return rows


def startup_seconds(imports: str, repeats: int = 5) -> float:
    """Median wall time of a fresh interpreter that makes ``imports`` and exits."""
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'workflow' / 'scripts')!r})\n{imports}"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(threads: int = 2, n: int = 2048, repeats: int = 10) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    rate = matmul_gflops()
    report = {"matmul_gflops_2_threads": rate, "rules": {}}
    for rule, (pattern, imports) in RULES.items():
        rows = read_benchmarks(pattern)
        if not rows:
            continue
        wall = sum(float(r["s"]) for r in rows)
        cpu = sum(float(r["cpu_time"]) for r in rows)
        start = startup_seconds(imports)
        report["rules"][rule] = {
            "jobs": len(rows),
            "wall_s": wall,
            "cpu_s": cpu,
            "startup_s_per_job": start,
            "startup_share": min(1.0, start * len(rows) / wall) if wall else None,
        }
    total_wall = sum(r["wall_s"] for r in report["rules"].values())
    total_cpu = sum(r["cpu_s"] for r in report["rules"].values())
    startup = sum(r["startup_s_per_job"] * r["jobs"] for r in report["rules"].values())
    report["total"] = {"wall_s": total_wall, "cpu_s": total_cpu, "startup_s": startup}
    print(f"float32 matmul, 2 threads: {rate:.0f} GFLOP/s")
    print("| rule | jobs | wall s | CPU s | start-up s/job | start-up share of wall |")
    print("|---|---:|---:|---:|---:|---:|")
    for rule, r in sorted(report["rules"].items(), key=lambda kv: -kv[1]["wall_s"]):
        print(
            f"| {rule} | {r['jobs']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
            f"{r['startup_s_per_job']:.1f} | {100 * r['startup_share']:.0f}% |"
        )
    print(
        f"| all benchmarked jobs | | {total_wall:.0f} | {total_cpu:.0f} | | "
        f"{100 * startup / total_wall:.0f}% |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
