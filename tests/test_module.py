"""The workflow used from another one: deployed by snakedeploy into a new folder and run as
a Snakemake module, it plans the same jobs as its checkout and writes the same bytes."""

import shutil
import subprocess
from pathlib import Path

from conftest import (
    ROOT,
    SNAKEMAKE,
    TINY,
    copy_workflow,
    job_stats,
    parquet_digests,
    run_snakemake,
)

SNAKEDEPLOY = str(Path(SNAKEMAKE).with_name("snakedeploy"))
# A job of the package's science and what it needs: the synthetic language, then the
# training split sampled from it.
TARGET = "results/corpus/train.parquet"


def deploy(tmp_path: Path) -> tuple[Path, Path]:
    """snakedeploy of a checkout (the repository's tracked layout) into tmp_path/study."""
    repo = copy_workflow(tmp_path / "repo")
    shutil.copy(ROOT / "LICENSE", repo / "LICENSE")
    study = tmp_path / "study"
    result = subprocess.run(
        [SNAKEDEPLOY, "deploy-workflow", str(repo), str(study), "--branch", "main"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return repo, study


def test_deployed_module_plans_and_runs_like_the_checkout(tiny_run, tmp_path):
    repo, study = deploy(tmp_path)
    # What the workflow catalog and snakedeploy expect, and what they copied.
    for name in ("config/config.yaml", "config/README.md", "profiles/slurm/config.yaml"):
        assert (study / name).read_bytes() == (repo / name).read_bytes(), name
    assert (study / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    snakefile = study / "workflow" / "Snakefile"
    text = snakefile.read_text()
    assert "use rule * from repo" in text and '"workflow/Snakefile"' in text
    # snakedeploy 0.17 writes a local repository's Snakefile relative to that repository,
    # where Snakemake reads it relative to the including Snakefile: point it at the
    # checkout, as `github("owner/repo", path="workflow/Snakefile", tag=...)` would.
    snakefile.write_text(text.replace('"workflow/Snakefile"', f'"{repo}/workflow/Snakefile"'))
    shutil.copy(TINY, study / "config" / "config.yaml")

    # The whole DAG, planned through the module, is the checkout's.
    plan = run_snakemake(study, "-n", "--cores", "2", timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    direct = run_snakemake(copy_workflow(tmp_path / "direct", TINY), "-n", "--cores", "2")
    assert direct.returncode == 0, direct.stderr[-3000:]
    assert job_stats(plan.stdout) == job_stats(direct.stdout)
    planned = set(job_stats(plan.stdout))  # every stage's rules
    assert {"train_minisuite", "measure_checkpoint", "rank_head", "ngram_spectrum"} <= planned
    assert {"select_downstream", "fig1a_loss", "all"} <= planned

    # Jobs run from the module's scripts and package, and write the checkout's bytes.
    run = run_snakemake(study, TARGET, "--cores", "2", timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert job_stats(run.stderr) == {"synthetic_language": 1, "sample_corpus": 1}
    ours, theirs = parquet_digests(study), parquet_digests(tiny_run)
    assert TARGET in ours and {k: theirs[k] for k in ours} == ours
