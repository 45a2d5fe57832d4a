"""A local training run measured in place: the workflow lists its step{N} folders when the
DAG is built, reads them where they are, measures them exactly as it measures the same
checkpoints of its own mini-suite, and leaves every byte of them as it found it."""

import hashlib
import shutil

import pandas as pd
import pytest
import yaml

from conftest import TINY, copy_workflow, load_yaml, run_snakemake
from saturation.config import ConfigError, check_semantics
from saturation.suites import SuiteError, local_revisions


def tree_digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_local_run_is_measured_in_place_and_left_untouched(tiny_run, tmp_path):
    # A user's training run: the tiny mini-suite's checkpoints of one model, copied out of
    # the workflow's results into a folder of its own (plus a stray file the listing ignores).
    run = tmp_path / "runs" / "my-model"
    shutil.copytree(tiny_run / "results/checkpoints/tiny-d16", run)
    (run / "notes.txt").write_text("not a checkpoint")
    before = tree_digest(run)
    config = load_yaml(TINY)
    config["checkpoints"] = {
        "source": "local",
        "schedule": config["checkpoints"]["schedule"],  # not used by a local run
        "local": {"tokens_per_step": 16 * 32, "models": [{"name": "tiny-d16", "path": str(run)}]},
    }
    config["scaling"]["models"] = ["tiny-d16"]
    (tmp_path / "wf").mkdir()
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/tables/checkpoint_metrics.parquet", "results/tables/saturation.parquet"]
    result = run_snakemake(workdir, "--cores", "2", *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    assert tree_digest(run) == before  # read in place, nothing written, moved or deleted
    assert not (workdir / "results/checkpoints").exists()  # nothing copied in either
    # The same checkpoints and the same eval sample: the same numbers as the mini-suite run.
    ours = pd.read_parquet(workdir / targets[0]).drop(columns="duplicate_weights")
    theirs = pd.read_parquet(tiny_run / targets[0]).drop(columns="duplicate_weights")
    theirs = theirs[theirs.model == "tiny-d16"].reset_index(drop=True)
    assert sorted(ours.step.unique()) == [0, 1, 2, 4, 20, 40]
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs)


def test_local_listing_and_its_errors(tmp_path):
    run = tmp_path / "run"
    for step in (0, 10, 200):
        (run / f"step{step}").mkdir(parents=True)
        (run / f"step{step}" / "config.json").write_text("{}")
    (run / "logs").mkdir()
    assert list(local_revisions(run, "k")) == [0, 10, 200]
    # One checkpoint folder: a final checkpoint only, at the step the entry gives.
    assert local_revisions(run / "step200", "k", step=143000) == {143000: run / "step200"}
    (run / "step5").mkdir()
    with pytest.raises(SuiteError, match=r"'k': .*step5 has no config.json"):
        local_revisions(run, "k")
    with pytest.raises(SuiteError, match="holds no step"):
        local_revisions(run / "logs", "k")
    config = load_yaml(TINY)
    config["checkpoints"] = {
        "source": "local",
        "schedule": config["checkpoints"]["schedule"],
        "local": {
            "tokens_per_step": 512,
            "models": [{"name": "tiny-d16", "path": str(tmp_path / "nope")}],
        },
    }
    with pytest.raises(
        ConfigError, match=r"'checkpoints.local.models\[0\].path': .*nope is not a folder"
    ):
        check_semantics(config)
