"""The tiny configuration through a real SLURM cluster brought up on this machine
(the ``slurm_cluster`` fixture), submitted with the shipped profile."""

import re
import time

from conftest import SLURM_ARGS, TINY, copy_workflow, parquet_digests, run_snakemake, submissions


def test_tiny_config_through_slurm_gives_the_local_tables(slurm_cluster, tiny_run, tmp_path):
    workdir = copy_workflow(tmp_path, TINY)
    submitted_before = submissions(slurm_cluster)
    start = time.perf_counter()
    result = run_snakemake(workdir, *SLURM_ARGS, timeout=1500)
    wall = time.perf_counter() - start
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    print(f"SLURM run of the tiny config: {wall:.0f} s")
    # Every job really went through sbatch: the controller logged each submission.
    log = result.stdout + result.stderr
    # Jobs that ran, `all` aside (the plan's total misses the downstream evaluations, which
    # join the DAG after the select_downstream checkpoint).
    n_jobs = len(re.findall(r"^Finished jobid: \d+ \(Rule: (?!all\))\w+\)", log, re.M))
    assert n_jobs > int(re.search(r"^total\s+(\d+)$", log, re.M).group(1)) - 1
    submitted = submissions(slurm_cluster) - submitted_before
    assert submitted == n_jobs, (submitted, n_jobs)
    assert parquet_digests(workdir) == parquet_digests(tiny_run)
