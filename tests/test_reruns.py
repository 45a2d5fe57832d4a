"""After a complete run of the tiny configuration: config edits re-run exactly the jobs that
read the edited values (dry runs), two runs give byte-identical tables, and a run killed
with SIGKILL mid-job resumes with --rerun-incomplete to the same outputs."""

import os
import shutil
import signal
import subprocess
import time

import yaml

from conftest import FIGURES as ALL_FIGURES
from conftest import (
    SNAKEMAKE,
    TINY,
    copy_workflow,
    job_stats,
    load_yaml,
    parquet_digests,
    run_snakemake,
)


def planned(workdir, overlay: dict, tmp_path) -> dict[str, int]:
    """Job counts by rule of a dry run with ``overlay`` merged over the run's config."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    args = ("--configfile", "config/config.yaml", str(path))  # the overlay on the run's own
    result = run_snakemake(workdir, "-n", "--cores", "1", *args, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return job_stats(result.stdout)


TINY_CONFIG = load_yaml(TINY)
FIGURES = set(ALL_FIGURES)


def test_adding_a_rank_runs_only_that_head(tiny_run, tmp_path):
    jobs = planned(tiny_run, {"rank_heads": {"ranks": [1, 4, 8, 2]}}, tmp_path)
    assert jobs == {
        "rank_head": 1,
        "aggregate_rank_heads": 1,
        "fig6_rank_heads": 1,
        "fig8_loss_vs_w_error": 1,
        "fig10_truncated_heads": 1,  # it marks the trained heads beside the truncated ones
        "all": 1,
    }


def test_adding_a_model_runs_only_its_jobs_and_the_aggregates(tiny_run, tmp_path):
    models = TINY_CONFIG["checkpoints"]["minisuite"]["models"] + [
        {"name": "tiny-d24", "hidden_size": 24}
    ]
    jobs = planned(tiny_run, {"checkpoints": {"minisuite": {"models": models}}}, tmp_path)
    assert jobs.pop("train_minisuite") == 1
    assert jobs.pop("measure_checkpoint") == 1  # the new model's checkpoints only: the first
    # job (both models', twelve checkpoints a job) is full and stays
    assert jobs.pop("aggregate_metrics") == 1 and jobs.pop("scaling_fit") == 1
    # the new model's evaluations appear once select_downstream has run (a checkpoint)
    assert jobs.pop("select_downstream") == 1 and jobs.pop("aggregate_downstream") == 1
    assert set(jobs) - {"all"} <= FIGURES
    assert "rank_head" not in jobs and "ngram_spectrum" not in jobs


def test_changing_the_eval_sample_reruns_measurements_not_training(tiny_run, tmp_path):
    jobs = planned(tiny_run, {"corpus": {"eval_tokens": 3072}}, tmp_path)
    assert jobs["sample_corpus"] == 1  # the eval split; the train split is untouched
    assert jobs["measure_checkpoint"] == 1  # every checkpoint reads the eval sample (one job)
    assert jobs["feature_cache"] == 1  # it scores the eval split too
    assert "train_minisuite" not in jobs and "synthetic_language" not in jobs
    assert "ngram_spectrum" not in jobs  # built from the training split


def test_changing_the_local_tasks_reruns_only_the_evaluations(tiny_run, tmp_path):
    import pandas as pd

    selection = pd.read_parquet(tiny_run / "results/downstream/selection.parquet")
    n_checkpoints = len(selection[["model", "step"]].drop_duplicates())
    assert n_checkpoints <= 4  # both models' in one job
    jobs = planned(tiny_run, {"downstream": {"local_items": 32}}, tmp_path)
    assert jobs == {
        "downstream_tasks": 1,
        "evaluate_downstream": 1,
        "aggregate_downstream": 1,
        "all": 1,
    }
    assert n_checkpoints < len(selection)  # best = final is evaluated once


def test_turning_a_part_off_draws_its_figure_no_more(tiny_run, tmp_path):
    """metrics.parts without truncation and frequency: every measurement again (its params
    changed), and neither Fig 10 nor Fig 12."""
    parts = ["forward", "spectrum", "gradient", "representation"]
    jobs = planned(tiny_run, {"metrics": {"parts": parts}}, tmp_path)
    assert jobs["measure_checkpoint"] == 1 and jobs["aggregate_metrics"] == 1
    assert "fig10_truncated_heads" not in jobs and "fig12_head_frequency" not in jobs
    assert jobs["fig11_gradient_bottleneck"] == 1


def test_changing_a_figure_style_reruns_only_figures(tiny_run, tmp_path):
    jobs = planned(tiny_run, {"figures": {"colormap": "plasma"}}, tmp_path)
    assert set(jobs) - {"all"} == FIGURES and all(jobs[f] == 1 for f in FIGURES)


def planned_after_editing(workdir, module: str, tmp_path) -> dict[str, int]:
    """Dry-run job counts with a line added to a package module, which is then restored."""
    path = workdir / "workflow" / "scripts" / "saturation" / module
    text, stat = path.read_text(), path.stat()
    try:
        path.write_text(text + "\n# an edit\n")
        return planned(workdir, {}, tmp_path)
    finally:
        path.write_text(text)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_editing_the_plotting_code_reruns_only_figures(tiny_run, tmp_path):
    jobs = planned_after_editing(tiny_run, "plots.py", tmp_path)
    assert set(jobs) - {"all"} == FIGURES and all(jobs[f] == 1 for f in FIGURES)


def test_editing_the_metrics_code_reruns_the_measurements(tiny_run, tmp_path):
    jobs = planned_after_editing(tiny_run, "metrics.py", tmp_path)
    assert jobs["measure_checkpoint"] == 1  # two models' six checkpoints, in one job
    assert "train_minisuite" not in jobs and "sample_corpus" not in jobs
    assert "synthetic_language" not in jobs
    assert planned(tiny_run, {}, tmp_path) == {}  # restored: nothing to do


# The killed run builds the measured tables (every measurement, the saturation fit) from the
# tiny run's corpus and checkpoints; the stages after them are covered by the paper path's
# two runs, whose tables must be equal byte for byte.
KILLED_TARGETS = ("results/tables/checkpoint_metrics.parquet", "results/tables/saturation.parquet")


def test_killed_run_resumes_to_identical_outputs(tiny_run, tmp_path):
    """SIGKILL the whole run while a measuring job is in flight, then --rerun-incomplete."""
    (tmp_path / "killed").mkdir()
    workdir = copy_workflow(tmp_path / "killed", TINY)
    for folder in ("results/corpus", "results/checkpoints", "results/training"):
        shutil.copytree(tiny_run / folder, workdir / folder)  # mtimes kept: not re-made
    proc = subprocess.Popen(
        [SNAKEMAKE, "--cores", "2", *KILLED_TARGETS],
        cwd=workdir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        logs = (
            list((workdir / "logs" / "metrics").rglob("*.log"))
            if (workdir / "logs" / "metrics").exists()
            else []
        )
        if logs:  # the measuring job has started
            break
        time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("the run never reached the measuring jobs")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # As after a crash: release the dead run's lock, then resume.
    assert run_snakemake(workdir, "--unlock").returncode == 0
    resumed = run_snakemake(workdir, "--cores", "2", "--rerun-incomplete", *KILLED_TARGETS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The resumed run equals an uninterrupted one, table for table, byte for byte: every
    # checkpoint's measurements and the aggregated tables.
    ours = parquet_digests(workdir)
    reference = parquet_digests(tiny_run)
    measured = [k for k in ours if k.startswith("results/metrics/")]
    assert len(measured) == 5  # both models in one job, five tables a job
    assert ours == {k: reference[k] for k in ours}
