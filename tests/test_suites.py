"""Per-model hub entries: any revision naming (OLMo's ``stage1-step20000-tokens84B``), an
explicit list of revisions or a final checkpoint only, each model's own steps and tokens;
planned offline by Snakemake."""

import re

import pytest
import yaml

from conftest import ROOT, copy_workflow, load_yaml, run_snakemake
from saturation.config import ConfigError, check_semantics
from saturation.suites import CHECKPOINT_JOB, SuiteError, hub_models, measure_jobs


def hub_config(models, **hub):
    return {
        "checkpoints": {
            "source": "hub",
            "schedule": {"final_step": 2000, "log_spaced_until": 2, "every": 1000},
            "hub": {"models": models, "revision_template": "step{step}", **hub},
        }
    }


OLMO = {
    "repo": "allenai/OLMo-1B-0724-hf",
    "revision_template": "stage1-step{step}-tokens{tokens_b}B",
    "steps": [20000, 40000],
    "tokens_per_step": 4_194_304,
}
GPT2 = {"repo": "openai-community/gpt2", "revisions": [{"step": 0, "revision": "main"}]}


def test_entries_name_their_revisions_and_tokens():
    models = hub_models(
        hub_config(["EleutherAI/pythia-14m", OLMO, GPT2], tokens_per_step=2_097_152)
    )
    assert list(models) == ["pythia-14m", "OLMo-1B-0724-hf", "gpt2"]
    # A repo id: the section's template on the schedule, the section's tokens per step.
    assert models["pythia-14m"]["revisions"] == {
        0: "step0",
        1: "step1",
        2: "step2",
        1000: "step1000",
        2000: "step2000",
    }
    assert models["pythia-14m"]["tokens"][2000] == 2000 * 2_097_152
    # OLMo's branch names carry the tokens seen, in billions: 20000 x 4.19M = 83.9B.
    assert models["OLMo-1B-0724-hf"]["revisions"] == {
        20000: "stage1-step20000-tokens84B",
        40000: "stage1-step40000-tokens168B",
    }
    assert models["OLMo-1B-0724-hf"]["tokens"][40000] == 40000 * 4_194_304
    # A final checkpoint only.
    assert models["gpt2"]["revisions"] == {0: "main"}


def test_entry_errors_name_the_key():
    with pytest.raises(SuiteError, match=r"models\[1\]': two entries share the model name"):
        hub_models(hub_config(["EleutherAI/pythia-14m", {"repo": "other/pythia-14m"}]))
    bad = {"repo": "a/b", "revision_template": "ckpt-{epoch}"}
    with pytest.raises(SuiteError, match=r"models\[0\].revision_template'.*'epoch'"):
        hub_models(hub_config([bad]))
    twice = {
        "repo": "a/b",
        "revisions": [{"step": 5, "revision": "x"}, {"step": 5, "revision": "y"}],
    }
    with pytest.raises(SuiteError, match="step 5 is listed twice"):
        hub_models(hub_config([twice]))
    config = load_yaml(ROOT / "config/config.yaml")
    config.update(load_yaml(ROOT / "tests/config/paper.yaml"))
    config["checkpoints"]["hub"]["models"] = [bad]
    with pytest.raises(ConfigError, match="unknown field"):
        check_semantics(config)


def test_mixed_suite_plans_offline(tmp_path):
    """A config mixing a Pythia repo id, OLMo's naming and a final-only GPT-2 plans each
    model's own revisions, without the network."""
    workdir = copy_workflow(tmp_path)
    config = load_yaml(ROOT / "tests/config/paper.yaml")
    config["checkpoints"]["hub"]["models"] = ["EleutherAI/pythia-14m", OLMO, GPT2]
    config["scaling"]["models"] = ["pythia-14m"]
    config["rank_heads"]["backbones"] = [{"model": "pythia-14m", "step": None}]
    config["downstream"]["models"] = ["pythia-14m"]
    config["metrics"]["checkpoints_per_job"] = 1  # one job a revision, as config/pythia.yaml
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_snakemake(workdir, "-n", "--configfile", str(path), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    n_pythia = len(hub_models(config)["pythia-14m"]["revisions"])
    jobs = dict(
        line.split()[:2]
        for line in result.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[2:]
    )
    assert int(jobs["measure_checkpoint"]) == n_pythia + 2 + 1
    assert int(jobs["revision_manifest"]) == 3


def test_measuring_jobs_are_cut_across_models_from_the_front():
    """metrics.checkpoints_per_job over the (model, step) pairs in the config's order: a job
    of one model is named by its steps, a job across models by its first and last pairs; a
    model added at the end leaves every full job as it was."""
    models = [
        {"repo": "EleutherAI/pythia-70m", "steps": [0, 1, 2, 4, 8]},
        {"repo": "EleutherAI/pythia-160m", "steps": [0, 64, 128]},
    ]
    config = {**hub_config(models), "metrics": {"checkpoints_per_job": 4}}
    jobs = measure_jobs(config)
    assert jobs == {
        "pythia-70m/step0-4": [("pythia-70m", s) for s in (0, 1, 2, 4)],
        "pythia-70m.step8-pythia-160m.step128": [
            ("pythia-70m", 8),
            ("pythia-160m", 0),
            ("pythia-160m", 64),
            ("pythia-160m", 128),
        ],
    }
    config["checkpoints"]["hub"]["models"].append({"repo": "EleutherAI/pythia-410m"})
    grown = measure_jobs(config)
    assert {k: grown[k] for k in jobs} == jobs
    # The schedule's 0, 1, 2, 1000 and 2000: four a job.
    assert list(grown)[2:] == ["pythia-410m/step0-1000", "pythia-410m/step2000"]
    config["metrics"]["checkpoints_per_job"] = 1
    assert list(measure_jobs(config))[:2] == ["pythia-70m/step0", "pythia-70m/step1"]
    pattern = re.compile(CHECKPOINT_JOB)
    assert all(pattern.fullmatch(name) for name in [*jobs, *grown])


def test_a_revision_no_git_ref_can_have_is_refused_naming_its_key():
    """'../main' would be looked up, found missing and said only in a job's log."""
    config = {
        "checkpoints": {
            "source": "hub",
            "schedule": {"final_step": 10, "log_spaced_until": 0, "every": 10},
            "hub": {"models": [{"repo": "o/r", "revisions": [{"step": 0, "revision": "../main"}]}],
                    "revision_template": "step{step}", "tokens_per_step": 1, "branch_lists": "x"},
        }
    }  # fmt: skip
    with pytest.raises(SuiteError, match=r"'checkpoints.hub.models\[0\].revisions': '../main'"):
        hub_models(config)
    config["checkpoints"]["hub"]["models"] = [{"repo": "o/r", "revision_template": "v {step}"}]
    with pytest.raises(SuiteError, match=r"\[0\].revision_template': 'v 0' cannot name"):
        hub_models(config)
