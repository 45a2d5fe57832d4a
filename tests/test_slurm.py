"""The tiny configuration through a real SLURM cluster brought up on this machine.

tests/slurm/up.sh starts munged, slurmctld and slurmd (as root); their pids are stopped at
the end. Where SLURM cannot be brought up the test fails with the reason, never skips.
"""

import re
import subprocess
import time

import pytest

from conftest import ROOT, TINY, copy_workflow, parquet_digests, run_snakemake


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm-state")
    up = subprocess.run(
        [str(ROOT / "tests/slurm/up.sh"), str(state)], capture_output=True, text=True
    )
    if up.returncode != 0:
        subprocess.run([str(ROOT / "tests/slurm/down.sh"), str(state)])
        pytest.fail(f"could not bring up SLURM: {up.stderr.strip()}")
    yield state
    subprocess.run([str(ROOT / "tests/slurm/down.sh"), str(state)])


def test_tiny_config_through_slurm_gives_the_local_tables(slurm_cluster, tiny_run, tmp_path):
    workdir = copy_workflow(tmp_path, TINY)
    controller_log = slurm_cluster / "slurmctld.log"
    submitted_before = controller_log.read_text().count("_slurm_rpc_submit_batch_job")
    start = time.perf_counter()
    result = run_snakemake(
        workdir,
        "--executor",
        "slurm",
        "--jobs",
        "4",
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "30",
        timeout=1500,
    )
    wall = time.perf_counter() - start
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    print(f"SLURM run of the tiny config: {wall:.0f} s")
    # Every job really went through sbatch: the controller logged each submission.
    log = result.stdout + result.stderr
    # Jobs that ran, `all` aside (the plan's total misses the downstream evaluations, which
    # join the DAG after the select_downstream checkpoint).
    n_jobs = len(re.findall(r"^Finished jobid: \d+ \(Rule: (?!all\))\w+\)", log, re.M))
    assert n_jobs > int(re.search(r"^total\s+(\d+)$", log, re.M).group(1)) - 1
    submitted = controller_log.read_text().count("_slurm_rpc_submit_batch_job") - submitted_before
    assert submitted == n_jobs, (submitted, n_jobs)
    assert parquet_digests(workdir) == parquet_digests(tiny_run)
