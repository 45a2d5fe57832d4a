"""A local training run's listing: the workflow lists its step{N} folders, or the
checkpoint-{N} folders of a run that transformers.Trainer saved, when the DAG is built, with
the tokens Trainer logged; leaves out a checkpoint still being written until it is whole;
and names the folder and entry of what it cannot read. (A local run through every stage,
measured in place and left as it was found: tests/test_family_suite.py.)"""

import json

import pytest
import yaml

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
    (run / "step5").mkdir()  # being written: no config.json yet
    assert list(local_revisions(run, "k")) == [0, 10, 200]
    # Two folders that name one step: refused naming both, never one dropped.
    for twin in ("step010", "checkpoint-10"):
        (run / twin).mkdir()
        with pytest.raises(
            SuiteError, match=rf"(step10 and {twin}|{twin} and step10) are both step 10"
        ):
            local_revisions(run, "k")
        (run / twin).rmdir()
    with pytest.raises(SuiteError, match="holds no step"):
        local_revisions(run / "logs", "k")
    (run / "logs" / "last.ckpt").write_bytes(b"lightning")
    with pytest.raises(SuiteError, match=r"holds last.ckpt: .*save_pretrained"):
        local_revisions(run / "logs", "k")
    with pytest.raises(SuiteError, match=r"last.ckpt is a single-file checkpoint; .*config.json"):
        local_revisions(run / "logs" / "last.ckpt", "k")
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


def trainer_run(folder, steps=(2, 4), seed=0, hidden=16, vocab=20, context=16):
    """A tiny GPT-NeoX trained by transformers.Trainer for max(steps) steps, saved as
    Trainer saves (checkpoint-{N}/ with trainer_state.json, optimizer and RNG states)."""
    import torch
    from transformers import Trainer

    from conftest import tiny_gpt_neox

    model = tiny_gpt_neox(hidden=hidden, vocab=vocab, context=context, seed=seed)
    g = torch.Generator().manual_seed(seed)
    data = [
        {"input_ids": ids, "labels": ids}
        for ids in torch.randint(0, vocab, (64, context), generator=g)
    ]
    Trainer(model=model, args=trainer_args(folder, steps, 4, seed), train_dataset=data).train()
    return folder


def trainer_args(folder, steps, batch_size, seed):
    """Trainer's arguments for a tiny CPU run to max(steps), saved every min(steps), the
    tokens it saw logged."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(folder),
        max_steps=max(steps),
        save_steps=min(steps),
        per_device_train_batch_size=batch_size,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        include_num_input_tokens_seen=True,
        seed=seed,
    )


def local_workflow(folder, run, backbone_step, checkpoints_per_job=None):
    """A copy of the workflow whose config is the tiny one with ``run`` as its one local
    model, ``mine`` (its scaling fit and rank-head backbone; no downstream evaluation)."""
    from conftest import copy_workflow

    workdir = copy_workflow(folder, TINY)
    config = load_yaml(TINY)
    config["checkpoints"] = {
        "source": "local",
        "schedule": config["checkpoints"]["schedule"],
        "local": {"models": [{"name": "mine", "path": str(run)}]},
    }
    if checkpoints_per_job is not None:
        config["metrics"]["checkpoints_per_job"] = checkpoints_per_job
    config["scaling"]["models"] = ["mine"]
    config["rank_heads"]["backbones"] = [{"model": "mine", "step": backbone_step}]
    config["downstream"]["activate"] = False
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


def test_a_trainer_run_is_read_as_trainer_saved_it(tmp_path):
    """checkpoint-{N} folders, their steps and the tokens Trainer counted; a checkpoint
    whose weights are cut short, or that has no trainer_state.json yet, is left out and
    picked up once whole; a folder pattern of one's own."""
    import shutil

    from saturation.local_runs import list_run

    run = trainer_run(tmp_path / "run", steps=(2, 4))
    listing = list_run(run, "k")
    assert sorted(listing.steps) == [2, 4] and listing.pending == {}
    assert listing.steps[4] == run / "checkpoint-4"
    state = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())
    assert (
        listing.tokens
        == {2: 2 * 4 * 16, 4: 4 * 4 * 16}
        == {2: listing.tokens[2], 4: state["num_input_tokens_seen"]}
    )
    # checkpoint-6 written in two halves: the weights first cut short, then whole but
    # without trainer_state.json (Trainer writes it last), then whole.
    half = run / "checkpoint-6"
    shutil.copytree(run / "checkpoint-4", half)
    weights = (half / "model.safetensors").read_bytes()
    state_file = (half / "trainer_state.json").read_bytes()
    (half / "trainer_state.json").unlink()
    (half / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    listing = list_run(run, "k")
    assert sorted(listing.steps) == [2, 4]
    assert "model.safetensors holds" in listing.pending[6]
    (half / "model.safetensors").write_bytes(weights)
    assert "no trainer_state.json yet" in list_run(run, "k").pending[6]
    (half / "trainer_state.json").write_bytes(
        state_file.replace(b'"global_step": 4', b'"global_step": 6')
    )
    assert sorted(list_run(run, "k").steps) == [2, 4, 6]
    # A pattern of one's own: only the folders it names.
    (run / "ckpt_9").mkdir()
    shutil.copy(run / "checkpoint-2" / "config.json", run / "ckpt_9")
    shutil.copy(run / "checkpoint-2" / "model.safetensors", run / "ckpt_9")
    assert list(list_run(run, "k", pattern=r"ckpt_(?P<step>\d+)").steps) == [9]
    with pytest.raises(ValueError, match=r"'k.pattern'.*no \(\?P<step>"):
        list_run(run, "k.path", pattern=r"ckpt_(\d+)")


def test_a_trainer_run_is_planned_with_its_tokens_and_a_half_written_checkpoint_waits(tmp_path):
    """The workflow plans a Trainer run's checkpoints, tokens_per_step unset (Trainer
    counted them), and names the checkpoint still being written in its warning."""
    import shutil

    from conftest import job_stats, run_snakemake

    run = trainer_run(tmp_path / "run", steps=(2, 4))
    shutil.copytree(run / "checkpoint-4", run / "checkpoint-6")
    (run / "checkpoint-6" / "trainer_state.json").unlink()
    workdir = local_workflow(tmp_path / "wf", run, backbone_step=None)
    result = run_snakemake(
        workdir, "-n", "--cores", "1", "results/tables/checkpoint_metrics.parquet"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert job_stats(result.stdout)["measure_checkpoint"] >= 1
    assert "mine.step2" in out or "mine/step2" in out
    assert "step6" not in out.replace("checkpoint-6", "")
    assert "mine step 6 is left out of this run, still being written" in out
    assert "no trainer_state.json yet" in out


@pytest.mark.slow
def test_new_checkpoints_of_a_trainer_run_are_measured_alone(tmp_path):
    """A Trainer run measured at its first two checkpoints; two more saved; the next plan
    measures exactly the two new ones and gathers the tables again, nothing else."""
    import shutil

    from conftest import job_stats, run_snakemake

    later = trainer_run(tmp_path / "later", steps=(2, 4, 6, 8), vocab=32, context=32)
    run = tmp_path / "run"
    run.mkdir()
    for step in (2, 4):
        shutil.copytree(later / f"checkpoint-{step}", run / f"checkpoint-{step}")
    workdir = local_workflow(tmp_path / "wf", run, backbone_step=2, checkpoints_per_job=1)
    target = "results/tables/checkpoint_metrics.parquet"
    result = run_snakemake(workdir, "--cores", "2", target)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_stats(result.stderr)["measure_checkpoint"] == 2
    for step in (6, 8):
        shutil.copytree(later / f"checkpoint-{step}", run / f"checkpoint-{step}")
    plan = run_snakemake(workdir, "-n", "--cores", "2", target)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert job_stats(plan.stdout) == {"measure_checkpoint": 2, "aggregate_metrics": 1}
    assert "results/metrics/mine/step6/checkpoint_metrics.parquet" in plan.stdout
    assert "results/metrics/mine/step8/checkpoint_metrics.parquet" in plan.stdout


def test_a_runs_own_tokenizer_stays_put_as_the_run_saves_more(tmp_path):
    """The tokenizer a local run's text is encoded with is its first checkpoint's that holds
    one: a later checkpoint, with the same files, does not move it (a new path would re-run
    the tokenization and every measurement that names it)."""
    import shutil

    from saturation.suites import local_models

    run = tmp_path / "run"
    for step in (10, 20):
        folder = run / f"step{step}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "tokenizer.json").write_text("{}")
    config = load_yaml(TINY)
    config["corpus"] = {"source": "local", "tokenizer": "gpt2", "eval_tokens": 100}
    config["checkpoints"] = {
        "source": "local",
        "schedule": config["checkpoints"]["schedule"],
        "local": {"tokens_per_step": 8, "models": [{"name": "mine", "path": str(run)}]},
    }
    before = local_models(config)["mine"]
    shutil.copytree(run / "step20", run / "step30")
    after = local_models(config)["mine"]
    assert before["tokenizer"] == after["tokenizer"] == str(run / "step10")
    assert sorted(after["steps"]) == [10, 20, 30] and after["tokens"][30] == 240


def trainer_study(folder, widths=(16, 32), steps=(2, 4, 6, 8)):
    """What a researcher has: held-out English-like text, a byte-level BPE of their own, and
    GPT-2 runs of two widths trained by transformers.Trainer on other text, each saved as
    Trainer saves (checkpoint-{N}/ with the tokenizer, trainer_state.json, optimizer and
    RNG states), under one folder of runs."""
    import torch
    from hub.repos import documents, tokenizer_files
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, Trainer

    train, held = documents(300, seed=3), documents(1200, seed=4)
    (folder / "tokenizer").mkdir(parents=True)
    for name, data in tokenizer_files(train, vocab_size=300).items():
        (folder / "tokenizer" / name).write_bytes(data)
    (folder / "heldout.txt").write_text("\n\n".join(held) + "\n")
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
    tok.pad_token = tok.eos_token
    ids = tok(tok.eos_token.join(train))["input_ids"]
    data = [{"input_ids": torch.tensor(ids[i : i + 32]), "labels": torch.tensor(ids[i : i + 32])}
            for i in range(0, len(ids) - 32, 32)]  # fmt: skip
    for d in widths:
        torch.manual_seed(d)
        model = GPT2LMHeadModel(
            GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=d, n_layer=1, n_head=2)
        )
        args = trainer_args(folder / "all-runs" / f"gpt2-d{d}", steps, 8, 0)
        Trainer(model=model, args=args, train_dataset=data, processing_class=tok).train()
    return folder


def docs_command(run, text, study) -> list[str]:
    """The common case's command as docs/your-models.md gives it, on this run and text."""
    import re
    import shlex

    from conftest import ROOT

    page = (ROOT / "docs" / "your-models.md").read_text()
    line = next(ln for ln in re.findall(r"```bash\n(.*?)```", page, re.S)[0].splitlines()
                if ln.startswith("snakemake"))  # fmt: skip
    line = line.replace("/data/my-runs", str(run)).replace("/data/heldout.txt", str(text))
    return shlex.split(line.replace("studies/my-runs", str(study)).split("#")[0])


@pytest.mark.slow
def test_a_trainer_run_and_its_text_are_measured_with_the_starter_config_alone(tmp_path):
    """The docs' one command - the starter config, the run's folder and the text - measures
    two Trainer runs with their own tokenizer, in a results folder of the study's own, named
    after their folders; Fig 1b is left out and the fit table says why. Two checkpoints
    saved later are measured alone, a half-written one waits, and Trainer deleting the
    first checkpoint (which held the tokenizer the text was sampled with) re-runs nothing
    but the aggregation."""
    import shutil
    import subprocess

    import pandas as pd

    from conftest import SNAKEMAKE, copy_workflow, job_stats

    study = trainer_study(tmp_path / "study")
    run = study / "runs"
    for d in (16, 32):  # the run as far as it had saved: checkpoints 2 and 4
        for step in (2, 4):
            shutil.copytree(study / "all-runs" / f"gpt2-d{d}" / f"checkpoint-{step}",
                            run / f"gpt2-d{d}" / f"checkpoint-{step}")  # fmt: skip
    workdir = copy_workflow(tmp_path / "wf")
    command = docs_command(run, study / "heldout.txt", study / "results-of-mine")
    assert command[command.index("--configfile") + 1] == "config/local-run.yaml"

    def snakemake(*extra):
        cmd = [SNAKEMAKE, *extra, *command[1:]]  # this environment's snakemake
        return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)

    result = snakemake()
    assert result.returncode == 0, result.stderr[-4000:]
    out = study / "results-of-mine"
    assert not (workdir / "results").exists()  # the study's folder holds the results
    metrics = pd.read_parquet(out / "results/tables/checkpoint_metrics.parquet")
    assert {(m, s) for m, s in zip(metrics.model, metrics.step, strict=True)} == {
        (f"gpt2-d{d}", s) for d in (16, 32) for s in (2, 4)
    }
    state = json.loads((run / "gpt2-d16/checkpoint-4/trainer_state.json").read_text())
    tokens = metrics[(metrics.model == "gpt2-d16") & (metrics.step == 4)].tokens_seen.iloc[0]
    assert tokens == state["num_input_tokens_seen"]
    sample = json.loads((out / "results/corpus/eval.json").read_text())
    assert sample["tokenizer"] == str(run / "gpt2-d16" / "checkpoint-2")  # the run's own
    assert sample["n_tokens"] == 50000  # the starter's evaluation sample
    figures = {p.name for p in (out / "results/figures").glob("*.png")}
    assert "fig1b_scaling.png" not in figures and "fig6_rank_heads.png" not in figures
    assert {"fig1a_loss.png", "fig4_head_spectrum.png", "fig7_w_error.png"} <= figures
    fit = pd.read_parquet(out / "results/tables/scaling_fit.parquet")
    assert fit.note.str.contains("scaling.models is not set").all()
    plotted = (out / "results/figures/fig7_w_error.csv").read_text()
    assert "heldout" in plotted and str(run) not in plotted  # named, never a path
    # Training saves two more checkpoints of gpt2-d32, and is writing a third.
    later = study / "all-runs" / "gpt2-d32"
    for step in (6, 8):
        shutil.copytree(later / f"checkpoint-{step}", run / "gpt2-d32" / f"checkpoint-{step}")
    shutil.copytree(later / "checkpoint-8", run / "gpt2-d32" / "checkpoint-10")
    (run / "gpt2-d32" / "checkpoint-10" / "trainer_state.json").unlink()
    plan = snakemake("-n")
    assert plan.returncode == 0, plan.stderr[-4000:]
    jobs = job_stats(plan.stdout)
    assert jobs["measure_checkpoint"] == 2 and "sample_corpus" not in jobs
    assert set(jobs) - {"measure_checkpoint", "all", "scaling_fit"} == {
        "aggregate_metrics",
        *(f.removesuffix(".png") for f in figures),
    }
    for step in (6, 8):
        assert f"results/metrics/gpt2-d32/step{step}/checkpoint_metrics.parquet" in plan.stdout
    assert "gpt2-d32 step 10 is left out of this run, still being written" in plan.stdout
    # Trainer's save_total_limit deletes the first checkpoints, the tokenizer's among them:
    # the same tokenizer is found in the next; nothing is sampled or measured again.
    assert snakemake().returncode == 0
    for d in (16, 32):
        shutil.rmtree(run / f"gpt2-d{d}" / "checkpoint-2")
    plan = snakemake("-n")
    assert plan.returncode == 0, plan.stderr[-4000:]
    jobs = job_stats(plan.stdout)
    assert "measure_checkpoint" not in jobs and "sample_corpus" not in jobs
    assert "ngram_spectrum" not in jobs and jobs["aggregate_metrics"] == 1
    # Rank heads on a backbone that follows the last checkpoint: heads trained at step 4,
    # the run now at step 8, the plan says why they are trained anew.
    trained = out / "results/rank_heads/gpt2-d32/step4/r1-full.parquet"
    trained.parent.mkdir(parents=True)
    trained.write_text("")
    heads = study / "heads.yaml"
    heads.write_text(yaml.safe_dump({"rank_heads": {
        "backbones": [{"model": "gpt2-d32", "step": None}], "ranks": [1, 2],
        "train_tokens": 4096, "sequence_length": None}}))  # fmt: skip
    at = command.index("config/local-run.yaml") + 1
    command[at:at] = [str(heads)]
    plan = snakemake("-n")
    assert plan.returncode == 0, plan.stderr[-4000:]
    assert (
        "rank heads of gpt2-d32 follow its last checkpoint, now step 8: they are trained anew "
        "there (those of step 4 stay)" in plan.stdout + plan.stderr
    )
