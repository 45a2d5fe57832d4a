"""Where the embedded default's time goes: the whole run's CPU seconds, CPU and wall seconds
per rule from its benchmark files, the start-up each kind of job pays before its first
useful operation (interpreter and imports, and the harness's task indexing), and this
machine's float32 matmul rate, all in one report so that runs on different machines
compare as ratios.

    python bench/bench_default_run.py --run RUN [RUN ...] [--json out.json]
    python bench/bench_default_run.py [RUN ...]          # runs that have already finished

RUN: a folder holding the workflow (a fresh clone; default: this checkout). With --run,
`snakemake --cores 2` runs there first and the CPU seconds of its whole process tree
(Snakemake, every job and what they start, all waited for) are counted exactly. Given two
runs, the report puts them side by side with the second's share of the first (a clone at
an older commit, then this one, on the same machine).

The per-rule CPU seconds come from Snakemake's benchmark files, which sample a job every
0.5 s for its first 15 s and every 30 s after: a job's last seconds past its last sample
are not counted, so long jobs are under-counted; the whole-run figure is the exact one.
Start-up is measured by running, in a fresh interpreter, exactly the imports a job's entry
script and the modules it calls make before touching data (five repeats, the median CPU),
for jobs that load a checkpoint with the model class, and for the downstream jobs also
lm-eval's task indexing; it is this checkout's start-up (an older run's jobs may have paid
more).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The model class a job that loads a mini-suite checkpoint imports (transformers imports it
# lazily, at the first load; it pulls in torch.distributed, dynamo and scipy.optimize).
NEOX = "; from transformers import GPTNeoXForCausalLM"
# Rule -> its benchmark files, and the imports its job makes before the first useful work.
RULES = {
    "train_minisuite": (
        "benchmarks/checkpoints/train_*.tsv",
        "import torch, transformers; from saturation import training" + NEOX,
    ),
    "measure_checkpoint": (
        "benchmarks/metrics/**/*.tsv",
        "import torch, transformers; from saturation import measuring, metrics, loading" + NEOX,
    ),
    "feature_cache": (
        "benchmarks/rank_heads/*/step*/cache.tsv",
        "import torch, transformers; from saturation import heads" + NEOX,
    ),
    "rank_head": (
        "benchmarks/rank_heads/*/step*/r[0-9f]*.tsv",
        "import torch; from saturation import heads",
    ),
    "evaluate_downstream": (
        "benchmarks/downstream/**/*.tsv",
        # The default's tasks are local: the harness indexes their folder only.
        "import torch, transformers, lm_eval; from saturation import downstream" + NEOX + "\n"
        "downstream.task_manager('results/downstream/tasks', "
        "['synthetic_next_token', 'synthetic_choice'])",
    ),
    "ngram_spectrum": (
        "benchmarks/ngrams/*/spectrum.tsv",
        "import torch, scipy.sparse; from saturation import ngrams",
    ),
    "sample_corpus": ("benchmarks/corpus/*.tsv", "from saturation import corpus"),
}


# Local jobs (no benchmark files; counted in the run's Snakemake log) and their imports: a
# rule name, or a prefix ending in "*" (the figures).
LOCAL_RULES = {
    "fig*": "from saturation import plots",
    "synthetic_language": "from saturation import synthetic",
    "aggregate_metrics": "from saturation import aggregation",
    "scaling_fit": "from saturation import scaling",
    "select_downstream": "from saturation import selection",
    "downstream_tasks": "from saturation import tasks",
    "aggregate_downstream": "from saturation import table1",
    "aggregate_rank_heads": "from saturation import rank_table",
    "aggregate_ngrams": "from saturation import ngrams",
}


def local_jobs(run: Path) -> dict[str, int]:
    """Local jobs by LOCAL_RULES key, from the run's latest Snakemake log."""
    logs = sorted((run / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return {}
    names = re.findall(r"^localrule (\w+):", logs[-1].read_text(), re.M)
    counts = dict.fromkeys(LOCAL_RULES, 0)
    for name in names:
        for key in LOCAL_RULES:
            if name == key or (key.endswith("*") and name.startswith(key[:-1])):
                counts[key] += 1
    return {k: n for k, n in counts.items() if n}


def read_benchmarks(run: Path, pattern: str) -> list[dict]:
    rows = []
    for path in sorted(run.glob(pattern)):
        with path.open() as fh:
            rows += list(csv.DictReader(fh, delimiter="\t"))
    return rows


def startup_seconds(imports: str, run: Path, repeats: int = 5) -> float:
    """Median CPU seconds of a fresh interpreter that makes ``imports`` in ``run`` and exits."""
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'workflow' / 'scripts')!r})\n{imports}"
    times = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=run)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
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


def run_workflow(run: Path, cores: int = 2) -> dict:
    """Run ``snakemake --cores`` in ``run``: wall seconds and the CPU seconds of its whole
    process tree."""
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with (run / "bench_run.log").open("w") as log:
        subprocess.run(
            [snakemake, "--cores", str(cores)], cwd=run, check=True, stdout=log, stderr=log
        )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_s": wall, "cpu_s": cpu}


def run_report(run: Path, startup: dict[str, float]) -> dict:
    """Jobs, wall and CPU seconds, and start-up share per rule of one finished run."""
    rules = {}
    for rule, (pattern, _) in RULES.items():
        rows = read_benchmarks(run, pattern)
        if not rows:
            continue
        wall = sum(float(r["s"]) for r in rows)
        cpu = sum(float(r["cpu_time"]) for r in rows)
        rules[rule] = {
            "jobs": len(rows),
            "wall_s": wall,
            "cpu_s": cpu,
            "startup_s_per_job": startup[rule],
            "startup_share": min(1.0, startup[rule] * len(rows) / cpu) if cpu else None,
        }
    total = {
        "jobs": sum(r["jobs"] for r in rules.values()),
        "wall_s": sum(r["wall_s"] for r in rules.values()),
        "cpu_s": sum(r["cpu_s"] for r in rules.values()),
        "startup_s": sum(r["startup_s_per_job"] * r["jobs"] for r in rules.values()),
    }
    local = local_jobs(run)
    local_startup = sum(startup[key] * n for key, n in local.items())
    return {
        "run": str(run),
        "rules": rules,
        "total": total,
        "local_jobs": local,
        "startup_s_all_jobs": total["startup_s"] + local_startup,
    }


def print_run(report: dict) -> None:
    print(f"\n{report['run']}")
    if "whole_run" in report:
        w = report["whole_run"]
        print(
            "whole run: "
            + (f"{w['wall_s']:.0f} s wall, " if math.isfinite(w["wall_s"]) else "")
            + f"{w['cpu_s']:.0f} CPU s (every process); "
            f"start-up of all {report['total']['jobs'] + sum(report['local_jobs'].values())} "
            f"jobs (local ones too): {report['startup_s_all_jobs']:.0f} CPU s, "
            f"{100 * report['startup_s_all_jobs'] / w['cpu_s']:.0f}%"
        )
    print("| rule | jobs | wall s | CPU s | start-up CPU s/job | start-up share of CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for rule, r in sorted(report["rules"].items(), key=lambda kv: -kv[1]["cpu_s"]):
        print(
            f"| {rule} | {r['jobs']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
            f"{r['startup_s_per_job']:.1f} | {100 * r['startup_share']:.0f}% |"
        )
    t = report["total"]
    print(
        f"| all benchmarked jobs | {t['jobs']} | {t['wall_s']:.0f} | {t['cpu_s']:.0f} | | "
        f"{100 * t['startup_s'] / t['cpu_s']:.0f}% |"
    )


def print_comparison(before: dict, after: dict) -> None:
    print(f"\nCPU seconds side by side: {before['run']} -> {after['run']}")
    print("| rule | jobs | CPU s | jobs | CPU s | CPU share |")
    print("|---|---:|---:|---:|---:|---:|")
    empty = {"jobs": 0, "cpu_s": 0.0}
    for rule in RULES:
        b, a = before["rules"].get(rule, empty), after["rules"].get(rule, empty)
        share = f"{100 * a['cpu_s'] / b['cpu_s']:.0f}%" if b["cpu_s"] else ""
        print(
            f"| {rule} | {b['jobs']} | {b['cpu_s']:.0f} | {a['jobs']} | {a['cpu_s']:.0f} | "
            f"{share} |"
        )
    if "whole_run" in before and "whole_run" in after:
        b, a = before["whole_run"]["cpu_s"], after["whole_run"]["cpu_s"]
        print(f"| whole run (every process) | | {b:.0f} | | {a:.0f} | {100 * a / b:.0f}% |")
    b, a = before["total"], after["total"]
    print(
        f"| all benchmarked jobs | {b['jobs']} | {b['cpu_s']:.0f} | {a['jobs']} | "
        f"{a['cpu_s']:.0f} | {100 * a['cpu_s'] / b['cpu_s']:.0f}% |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, default=[ROOT], help="finished runs")
    parser.add_argument("--run", action="store_true", help="run snakemake in each RUN first")
    parser.add_argument(
        "--whole-cpu",
        type=float,
        nargs="+",
        help="finished runs: each one's whole-run CPU seconds, measured by e.g. /usr/bin/time",
    )
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    whole = {run: run_workflow(run.resolve()) for run in args.runs} if args.run else {}
    if args.whole_cpu:
        whole = {
            run: {"wall_s": math.nan, "cpu_s": c}
            for run, c in zip(args.runs, args.whole_cpu, strict=True)
        }
    rate = matmul_gflops()
    last = args.runs[-1].resolve()  # its task folder is what the downstream jobs index
    startup = {rule: startup_seconds(imports, last) for rule, (_, imports) in RULES.items()}
    startup |= {key: startup_seconds(imports, last) for key, imports in LOCAL_RULES.items()}
    reports = [run_report(run.resolve(), startup) for run in args.runs]
    for run, report in zip(args.runs, reports, strict=True):
        if run in whole:
            report["whole_run"] = whole[run]
    print(f"float32 matmul, 2 threads: {rate:.0f} GFLOP/s")
    for report in reports:
        print_run(report)
    if len(reports) == 2:
        print_comparison(*reports)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"matmul_gflops_2_threads": rate, "runs": reports}, indent=2)
        )


if __name__ == "__main__":
    main()
