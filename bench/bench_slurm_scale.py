"""The paper sweep's shape at scale on a real single-node SLURM cluster: hundreds of hub
revisions measured through the shipped profile, one submission per job, several
measurements grouped into one submission, or one job array per rule.

    python bench/bench_slurm_scale.py [--models 3] [--revisions 100] [--modes plain,group,array]

Needs root (it brings SLURM up with tests/slurm/up.sh, and stops it). Serves tiny GPT-NeoX
revisions (tests/hub/repos.py:build_sweep) from the loopback hub on 127.0.0.1, runs
`snakemake results/tables/checkpoint_metrics.parquet` once per mode in a fresh folder and
Hugging Face cache, and reports wall time, jobs per minute, and submissions counted at the
controller (its log's submit RPCs). Every mode's metrics table must be the same bytes.
Also times Snakemake's DAG build for config/pythia.yaml (a dry run), and this machine's
float32 matmul rate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

from slurm.cluster import PROFILE_ARGS, submissions  # noqa: E402 (tests/ on sys.path above)

TARGET = "results/tables/checkpoint_metrics.parquet"
# plain and array: the shipped profile without its grouping of measurements; group: the
# shipped profile as it is, its groups as wide as the node (--cores).
MODES = {
    "plain": [],
    "group": ["--cores", str(os.cpu_count())],
    "array": ["--slurm-array-jobs", "measure_checkpoint"],
}
GROUPING = ("groups", "group-components")


def matmul_gflops() -> float:
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start, n = time.perf_counter(), 10
    for _ in range(n):
        a @ b
    return 2 * 2048**3 * n / (time.perf_counter() - start) / 1e9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_config(models: list[str], steps: list[int]) -> dict:
    """tests/config/paper.yaml with the sweep's models and steps; stages past the
    measurements are not targeted."""
    config = yaml.safe_load((ROOT / "tests/config/paper.yaml").read_text())
    hub = config["checkpoints"]["hub"]
    hub["models"] = [f"EleutherAI/{m}" for m in models]
    config["checkpoints"]["schedule"]["subset"] = steps
    config["checkpoints"]["schedule"]["final_step"] = max(steps)
    config["scaling"]["models"] = models
    config["rank_heads"]["backbones"] = [{"model": models[0], "step": None}]
    config["downstream"]["activate"] = False
    config["downstream"]["models"] = [models[0]]
    return config


def workdir_for(base: Path, config: dict) -> Path:
    for name in ("workflow", "config", "profiles"):
        shutil.copytree(ROOT / name, base / name)
    (base / "config" / "sweep.yaml").write_text(yaml.safe_dump(config))
    return base


def run_mode(mode, args, config, tmp: Path, state: Path, env: dict) -> dict:
    workdir = workdir_for(tmp / mode, config)
    flags = list(MODES[mode])
    profile = workdir / "profiles" / "slurm" / "config.yaml"
    settings = yaml.safe_load(profile.read_text())
    if mode != "group":
        for key in GROUPING:
            settings.pop(key, None)
    profile.write_text(yaml.safe_dump(settings))
    cmd = [
        SNAKEMAKE,
        TARGET,
        *PROFILE_ARGS,
        "--jobs",
        str(args.jobs),
        *flags,
        "--configfile",
        "config/sweep.yaml",
    ]
    before = submissions(state)
    start = time.perf_counter()
    with (tmp / f"{mode}.log").open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**env, "HF_HOME": str(tmp / f"hf-{mode}")},
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:  # Snakemake waits for jobs it believes are running: then kill it
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            subprocess.run(["scancel", "--user", str(os.getuid())])
            returncode = "timeout"
    wall = time.perf_counter() - start
    log = (tmp / f"{mode}.log").read_text()
    if returncode != 0:
        done = len(re.findall(r"^Finished jobid", log, re.M))
        return {
            "mode": mode,
            "wall_s": round(wall, 1),
            "failed": returncode,
            "submissions": submissions(state) - before,
            "finished_jobs": done,
            "flags": " ".join(flags),
            "log_tail": log[-2000:],
        }
    finished = re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", log, re.M)
    local = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", log, re.M))
    remote = [r for r in finished if r not in local]
    measured = remote.count("measure_checkpoint")
    return {
        "mode": mode,
        "wall_s": round(wall, 1),
        "submissions": submissions(state) - before,
        "remote_jobs": len(remote),
        "measurements": measured,
        "jobs_per_min": round(len(remote) / wall * 60, 1),
        "metrics_sha256": hashlib.sha256((workdir / TARGET).read_bytes()).hexdigest()[:16],
        "flags": " ".join(flags),
    }


def dag_build_seconds(env: dict) -> dict:
    """A dry run of the paper config from the repository: DAG build and job count."""
    start = time.perf_counter()
    result = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "1", "--configfile", "config/pythia.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    total = re.search(r"^total\s+(\d+)$", result.stdout, re.M)
    return {"seconds": round(seconds, 1), "jobs": int(total.group(1)) if total else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--revisions", type=int, default=100)
    parser.add_argument("--modes", default="plain,group,array")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    from hub.repos import build_sweep
    from hub.server import LoopbackHub

    tmp = Path(tempfile.mkdtemp(prefix="slurm-scale-"))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HUB_CACHE")}
    report = {"matmul_gflops_2_threads": round(matmul_gflops(), 1)}
    report["dag_build_pythia"] = dag_build_seconds(env)
    print(
        f"matmul {report['matmul_gflops_2_threads']} GFLOP/s; dry run of config/pythia.yaml: "
        f"{report['dag_build_pythia']['seconds']} s, {report['dag_build_pythia']['jobs']} jobs",
        flush=True,
    )

    models = [f"scale-{i}" for i in range(args.models)]
    steps = [1000 * (k + 1) for k in range(args.revisions)]
    hub = LoopbackHub(tmp / "hub")
    start = time.perf_counter()
    build_sweep(hub, models, steps)
    port = free_port()
    hub.serve(port)
    print(
        f"hub: {len(models)} models x {len(steps)} revisions built in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_DISABLE_TELEMETRY="1")

    state = tmp / "slurm"
    up = subprocess.run(
        [str(ROOT / "tests/slurm/up.sh"), str(state)], capture_output=True, text=True
    )
    if up.returncode != 0:
        raise SystemExit(f"could not bring up SLURM: {up.stderr.strip()}")
    report["cpus"] = os.cpu_count()
    report["models"], report["revisions"] = len(models), len(steps)
    report["runs"] = []
    try:
        config = sweep_config(models, steps)
        for mode in args.modes.split(","):
            row = run_mode(mode, args, config, tmp, state, env)
            report["runs"].append(row)
            print(json.dumps(row), flush=True)
    finally:
        subprocess.run([str(ROOT / "tests/slurm/down.sh"), str(state)])
        hub.shutdown()
    digests = {r["metrics_sha256"] for r in report["runs"] if "failed" not in r}
    report["same_metrics"] = len(digests) == 1
    print(f"\n{'mode':6} {'wall s':>7} {'remote jobs':>11} {'submissions':>11} {'jobs/min':>8}")
    for r in report["runs"]:
        if "failed" in r:
            print(
                f"{r['mode']:6} failed ({r['failed']}) after {r['wall_s']:.0f} s, "
                f"{r['finished_jobs']} jobs finished, {r['submissions']} submissions"
            )
            continue
        print(
            f"{r['mode']:6} {r['wall_s']:7.0f} {r['remote_jobs']:11d} {r['submissions']:11d} "
            f"{r['jobs_per_min']:8.1f}"
        )
    print(f"every mode's metrics table the same bytes: {report['same_metrics']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    if not report["same_metrics"]:
        raise SystemExit("the modes' metrics tables differ")


if __name__ == "__main__":
    main()
