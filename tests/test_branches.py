"""Revisions discovered from a repo's branches (a model's revision_pattern), on the loopback
hub with an OLMo-2-shaped repo: stage-1 and stage-2 branches, tokens per step changing
between stages, tokens rounded otherwise than any template would."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, copy_workflow, load_yaml, run_snakemake
from saturation.suites import SuiteError, hub_models, revision_name

REPO = "allenai/OLMo-2-0425-1B"
STAGE1 = r"stage1-step(?P<step>\d+)-tokens(?P<tokens_b>\d+)B"
# Stage 1 at 4,194,304 tokens a step, rounded up by the publisher (8.39B -> 9B);
# stage 2 restarts its steps, with its own batch, once per ingredient.
BRANCHES = [
    "main",
    "stage1-step0-tokens0B",
    "stage1-step1000-tokens5B",
    "stage1-step2000-tokens9B",
    "stage2-ingredient1-step0-tokens0B",
    "stage2-ingredient1-step500-tokens3B",
    "stage2-ingredient2-step500-tokens3B",
]


@pytest.fixture
def olmo(hub):
    server, _ = hub
    for name in BRANCHES:
        server.add_branch("model", REPO, name, {"config.json": json.dumps({"b": name}).encode()})
    server.clear()
    return server


def config(tmp_path, pattern=STAGE1, **entry):
    hub = {
        "models": [{"repo": REPO, "revision_pattern": pattern, **entry}],
        "revision_template": "step{step}",
        "tokens_per_step": 4_194_304,
        "branch_lists": str(tmp_path / "branches"),
        "retries": 2,
        "backoff_seconds": 0.1,
        "max_backoff_seconds": 1,
    }
    schedule = {"final_step": 2000, "log_spaced_until": 2, "every": 1000}
    return {"checkpoints": {"source": "hub", "schedule": schedule, "hub": hub}}


def refs_requests(server):
    return [r for r in server.log if r["route"] == "refs"]


def test_stage1_branches_discovered_once_then_planned_from_the_file(olmo, tmp_path):
    cfg = config(tmp_path)
    model = hub_models(cfg)["OLMo-2-0425-1B"]
    assert model["revisions"] == {
        0: "stage1-step0-tokens0B",
        1000: "stage1-step1000-tokens5B",
        2000: "stage1-step2000-tokens9B",
    }
    assert model["tokens"] == {0: 0, 1000: 5_000_000_000, 2000: 9_000_000_000}
    # What a template would have guessed: 4B and 8B, branches that do not exist.
    guess = [
        revision_name("stage1-step{step}-tokens{tokens_b}B", s, s * 4_194_304) for s in (1000, 2000)
    ]
    assert guess == ["stage1-step1000-tokens4B", "stage1-step2000-tokens8B"]
    assert len(refs_requests(olmo)) == 1
    listed = json.loads((tmp_path / "branches" / "allenai--OLMo-2-0425-1B.json").read_text())
    assert listed == {"repo": REPO, "branches": sorted(BRANCHES)}
    # Later plans read the file: no request, the same revisions, even with a new branch.
    olmo.add_branch("model", REPO, "stage1-step3000-tokens13B", {"config.json": b"{}"})
    olmo.clear()
    again = hub_models(cfg)["OLMo-2-0425-1B"]
    assert again["revisions"] == model["revisions"] and olmo.log == []
    # steps picks among the matches; one that is not there is named.
    assert list(hub_models(config(tmp_path, steps=[2000]))["OLMo-2-0425-1B"]["revisions"]) == [2000]
    with pytest.raises(SuiteError, match=r"models\[0\].steps': steps \[1500\] are not among"):
        hub_models(config(tmp_path, steps=[1500]))


def test_patterns_that_match_nothing_or_claim_one_step_twice_are_named(olmo, tmp_path):
    stage2 = r"stage2-ingredient\d+-step(?P<step>\d+)-tokens(?P<tokens_b>\d+)B"
    with pytest.raises(SuiteError) as err:
        hub_models(config(tmp_path, stage2))
    assert "stage2-ingredient1-step500-tokens3B' and 'stage2-ingredient2-step500-tokens3B'" in str(
        err.value
    )
    assert REPO in str(err.value) and "step 500" in str(err.value)
    one = hub_models(
        config(tmp_path, r"stage2-ingredient1-step(?P<step>\d+)-tokens(?P<tokens_b>\d+)B")
    )
    assert one["OLMo-2-0425-1B"]["tokens"] == {0: 0, 500: 3_000_000_000}
    with pytest.raises(SuiteError, match=rf"no branch of {REPO} matches 'stage3-.*main"):
        hub_models(config(tmp_path, r"stage3-step(?P<step>\d+)"))
    with pytest.raises(SuiteError, match=r"needs a named group \(\?P<step>"):
        hub_models(config(tmp_path, r"stage1-step\d+"))
    with pytest.raises(SuiteError, match="give revision_pattern or revision_template, not both"):
        hub_models(config(tmp_path, revision_template="step{step}"))


def test_unlisted_branches_offline_say_where_to_list_them(olmo, tmp_path):
    code = (
        "import sys, json; sys.path.insert(0, 'workflow/scripts');"
        "from saturation.suites import hub_models;"
        f"hub_models(json.loads({json.dumps(json.dumps(config(tmp_path)))}))"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert f"the branches of {REPO} are not listed yet" in out.stderr
    assert "HF_HUB_OFFLINE is set: plan once where the network is" in out.stderr
    assert olmo.log == []


def test_a_pattern_model_plans_offline_with_snakemake(olmo, tmp_path):
    workdir = copy_workflow(tmp_path)
    cfg = load_yaml(ROOT / "tests/config/paper.yaml")
    entry = {
        "repo": REPO,
        "name": "olmo2",
        "revision_pattern": STAGE1,
        "tokens_per_step": 4_194_304,
    }
    cfg["checkpoints"]["hub"]["models"] = ["EleutherAI/pythia-14m", entry]
    cfg["scaling"]["models"] = ["pythia-14m"]
    cfg["rank_heads"]["backbones"] = [{"model": "pythia-14m", "step": None}]
    cfg["downstream"]["models"] = ["pythia-14m"]
    cfg["metrics"]["checkpoints_per_job"] = 1
    path = tmp_path / "olmo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    listed = run_snakemake(workdir, "-n", "--configfile", str(path))  # lists, where the hub is
    assert listed.returncode == 0, listed.stderr[-3000:]
    listed_file = workdir / "resources/branches/allenai--OLMo-2-0425-1B.json"
    # (another test may have added a stage-1 branch to the session's hub)
    n_olmo = sum(
        bool(re.fullmatch(STAGE1, b)) for b in json.loads(listed_file.read_text())["branches"]
    )
    assert n_olmo >= 3
    assert len(refs_requests(olmo)) == 1
    olmo.clear()
    result = run_snakemake(workdir, "-n", "--configfile", str(path), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert olmo.log == []
    jobs = dict(
        line.split()[:2]
        for line in result.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[2:]
    )
    pythia = {"checkpoints": dict(cfg["checkpoints"], hub={**cfg["checkpoints"]["hub"]})}
    pythia["checkpoints"]["hub"]["models"] = ["EleutherAI/pythia-14m"]
    n_pythia = len(hub_models(pythia)["pythia-14m"]["revisions"])
    assert int(jobs["measure_checkpoint"]) == n_pythia + n_olmo


def test_a_hostile_pattern_or_branch_list_is_named_and_never_hangs(tmp_path):
    """A pattern whose nested quantifiers backtrack without end on a long branch name is
    refused within a second a name (re would run for hours); a step group that captures
    letters, and a damaged branch-list file, are named; so is a local folder pattern's."""
    import time

    from saturation.branches import BranchError, listed_branches, pattern_revisions
    from saturation.local_runs import LocalRunError, list_run

    long_name = "stage1-step" + "1" * 40 + "-y"
    start = time.monotonic()
    with pytest.raises(BranchError, match=r"'k': .* takes more than 1 s to match"):
        pattern_revisions("o/r", r"stage1-step(?P<step>(?:\d|\d\d)+)-x", [long_name], 1, "k")
    assert time.monotonic() - start < 30
    with pytest.raises(BranchError, match=r"its step group captured 'abc' in 'stage1-abc'"):
        pattern_revisions("o/r", r"stage1-(?P<step>\w+)", ["stage1-abc"], 1, "k")
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "o--r.json").write_text('{"branches": ["main", ')  # cut short
    with pytest.raises(BranchError, match=r"o--r.json, is not one this workflow wrote.*delete it"):
        listed_branches("o/r", folder, {})
    run = tmp_path / "run" / "ckpt_ab"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    with pytest.raises(LocalRunError, match=r"'m.pattern': its step group captured 'ab'"):
        list_run(run.parent, "m.path", pattern=r"ckpt_(?P<step>\w+)")
