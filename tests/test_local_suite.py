"""A local training run's listing: the workflow lists its step{N} folders when the DAG is
built, and names the folder and entry of what it cannot read. (A local run through every
stage, measured in place and left as it was found: tests/test_family_suite.py.)"""

import pytest

from conftest import TINY, load_yaml
from saturation.config import ConfigError, check_semantics
from saturation.suites import SuiteError, local_revisions


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
