"""Any causal-LM family through the workflow: tiny random-weight GPT-2 (tied head), OPT
(project_out: a head narrower than its blocks), Llama (tied), Gemma (scaled embeddings) and
GPT-NeoX, each with a tokenizer of its own, served by the loopback hub; then a local training
run on disk. Each goes through measuring, rank heads and downstream; each model's loss and
per-layer anisotropy equal a direct computation (the unmodified transformers client loading
the served repo, output_hidden_states plus hooks) to 1e-6, on the one text sample tokenized
its way."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_families import direct
from test_paper_path import PAPER, write_cloze_task

from conftest import copy_workflow, job_stats, load_yaml, run_snakemake

# What the workflow must see: (model_type, blocks, head input width, tied head).
EXPECTED = {
    "gpt2": ("gpt2", 2, 16, True),
    "opt-125m": ("opt", 2, 8, True),
    "Llama-3.2-1B": ("llama", 3, 16, True),
    "gemma-2b": ("gemma", 2, 16, True),
    "pythia-14m": ("gpt_neox", 2, 16, False),
}
TARGETS = [
    "results/tables/checkpoint_metrics.parquet",
    "results/tables/checkpoints.parquet",
    "results/tables/rank_heads.parquet",
    "results/tables/downstream.parquet",
]


def family_config(tasks) -> dict:
    config = load_yaml(PAPER)
    main = [{"step": 0, "revision": "main"}]
    config["checkpoints"]["hub"]["tokenizer"] = None  # each model's own
    config["checkpoints"]["hub"]["models"] = [
        {"repo": "openai-community/gpt2", "revisions": main},
        {"repo": "facebook/opt-125m", "revisions": main},
        {"repo": "meta-llama/Llama-3.2-1B", "revisions": main},
        {"repo": "google/gemma-2b", "revisions": main},
        {"repo": "EleutherAI/pythia-14m", "revisions": main, "tokenizer": "EleutherAI/pythia-160m"},
    ]
    config["scaling"]["models"] = ["pythia-14m"]
    config["rank_heads"]["backbones"] = [{"model": m, "step": None} for m in EXPECTED]
    # rank 2 and the full head, on as many tokens as every family's tokenizer makes of the text
    config["rank_heads"].update(ranks=[2], ranks_per_job=2, train_tokens=1500, select_tokens=300)
    # Every family's checkpoint in one evaluation job, across models.
    config["downstream"].update(models=None, include_path=str(tasks), checkpoints_per_job=5)
    config["ngrams"]["corpora"] = [{"name": "pile-pythia", "source": "workflow"}]
    return config


@pytest.fixture(scope="module")
def family_run(loopback_hub, tmp_path_factory):
    from hub import families
    from hub.repos import documents

    server, _ = loopback_hub
    built = families.build(server, documents(400, seed=0))
    tmp = tmp_path_factory.mktemp("families")
    (tmp / "wf").mkdir()
    workdir = copy_workflow(tmp / "wf")
    write_cloze_task(tmp / "tasks")
    config = family_config(tmp / "tasks")
    (workdir / "config" / "families.yaml").write_text(yaml.safe_dump(config))
    env = {"HF_HOME": str(tmp / "hf-user")}
    result = run_snakemake(
        workdir, *TARGETS, "--cores", "2", "--configfile", "config/families.yaml", env=env
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return {"workdir": workdir, "env": env, "built": built, "config": config, "tmp": tmp}


def read_sample(path):
    table = pd.read_parquet(path)
    return table, [np.asarray(t, dtype=np.int32) for t in table.tokens]


def pieces(docs, length):
    """Pieces of ``length`` tokens that share one token: every token but a document's first
    is predicted once."""
    return [d[i : i + length] for d in docs for i in range(0, len(d) - 1, length - 1)]


def check_against_direct(metrics, model_name, step, model, docs, length):
    loss, aniso = direct(model, pieces(docs, length))
    rows = metrics[(metrics.model == model_name) & (metrics.step == step)]
    got = rows[rows.metric == "loss"].value.item()
    assert got == pytest.approx(loss, rel=1e-6), model_name
    layers = rows[rows.metric == "anisotropy"].sort_values("layer").value.to_numpy()
    np.testing.assert_allclose(layers, aniso, atol=1e-6, err_msg=model_name)


def test_every_family_measures_like_a_direct_computation(family_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir, config = family_run["workdir"], family_run["config"]
    metrics = pd.read_parquet(workdir / TARGETS[0])
    ckpts = pd.read_parquet(workdir / TARGETS[1]).set_index("model")
    length = config["metrics"]["sequence_length"]
    reference, _ = read_sample(workdir / "results/corpus/eval.parquet")
    seen = {}
    for entry in config["checkpoints"]["hub"]["models"]:
        repo = entry["repo"]
        name = repo.rpartition("/")[2]
        tokenizer = entry.get("tokenizer", repo)
        key = tokenizer.replace("/", "--")
        path = workdir / (
            "results/corpus/eval.parquet"
            if tokenizer == config["corpus"]["tokenizer"]
            else f"results/corpus/eval/{key}.parquet"
        )
        sample, docs = read_sample(path)
        # The same documents and text for every tokenizer, tokenized its way.
        assert sample.doc_id.tolist() == reference.doc_id.tolist()
        assert sample.text.tolist() == reference.text.tolist()
        tok = AutoTokenizer.from_pretrained(tokenizer)
        assert [d[1:].tolist() for d in docs] == [
            tok(t, add_special_tokens=False)["input_ids"] for t in sample.text
        ]
        # Byte-level tokenizers decode exactly: one denominator for bits per byte.
        assert sample.n_bytes.sum() == sum(len(t.encode()) for t in reference.text)
        model = AutoModelForCausalLM.from_pretrained(repo).eval()  # through the loopback hub
        check_against_direct(metrics, name, 0, model, docs, length)
        row = ckpts.loc[name]
        seen[name] = (row.model_type, int(row.n_layers), int(row.head_input_size), row.tied_head)
        assert row.vocab_size == model.get_output_embeddings().weight.shape[0] >= len(tok)
    print("families as the workflow saw them (model_type, blocks, head input, tied):", seen)
    assert seen == EXPECTED
    per = metrics.pivot_table(index="model", columns="metric", values="value")
    assert per.bits_per_byte.notna().all()


def test_every_family_goes_through_rank_heads_downstream_and_fig2(family_run):
    workdir = family_run["workdir"]
    heads = pd.read_parquet(workdir / TARGETS[2])
    assert set(heads.backbone) == set(EXPECTED)
    ranked = heads[heads["head"] == "rank"]
    assert set(ranked.backbone) == set(EXPECTED) and set(ranked.r) == {2}
    assert heads.eval_loss.notna().all()
    down = pd.read_parquet(workdir / TARGETS[3])
    assert set(down.model) == set(EXPECTED) and down.value.notna().all()
    result = run_snakemake(
        workdir,
        "results/figures/fig2_anisotropy_layers.png",
        "--cores",
        "2",
        "--configfile",
        "config/families.yaml",
        env=family_run["env"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "results/figures/fig2_anisotropy_layers.png").stat().st_size > 20_000


def test_a_tokenizer_the_head_does_not_cover_is_refused_before_measuring(family_run):
    workdir, config = family_run["workdir"], json.loads(json.dumps(family_run["config"]))
    # pythia-14m's head has 384 rows; Gemma's tokenizer has 400 ids.
    config["checkpoints"]["hub"]["models"][4]["tokenizer"] = "google/gemma-2b"
    config["metrics"]["checkpoints_per_job"] = 1  # pythia-14m's revision a job of its own
    (workdir / "config" / "wrong.yaml").write_text(yaml.safe_dump(config))
    target = "results/metrics/pythia-14m/step0/checkpoint_metrics.parquet"
    result = run_snakemake(
        workdir, target, "--cores", "2", "--configfile", "config/wrong.yaml", env=family_run["env"]
    )
    assert result.returncode != 0
    log = (workdir / "logs/metrics/pythia-14m/step0.log").read_text()
    refusal = (
        "pythia-14m step 0 has an output vocabulary of 384 rows, but its tokenizer "
        "'google/gemma-2b' has 400 ids"
    )
    assert refusal in log
    assert refusal in result.stdout + result.stderr  # the log shown (profiles/default)
    assert not (workdir / target).exists()


def tree_digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def local_run(family_run):
    """A user's Llama training run on disk, two checkpoints, its tokenizer saved with the
    last one, and a stray file the listing ignores, through every stage; one checkpoint a
    measuring job."""
    from hub import families
    from transformers import AutoTokenizer

    workdir, tmp = family_run["workdir"], family_run["tmp"]
    served = family_run["built"]["meta-llama/Llama-3.2-1B"]
    run = tmp / "runs" / "my-llama"
    for step, seed in ((0, 7), (500, 8)):
        torch.manual_seed(seed)
        families.llama(served["vocab"], families.POSITIONS).save_pretrained(run / f"step{step}")
    AutoTokenizer.from_pretrained("meta-llama/Llama-3.2-1B").save_pretrained(run / "step500")
    (run / "notes.txt").write_text("not a checkpoint")
    before = tree_digest(run)
    config = json.loads(json.dumps(family_run["config"]))
    config["checkpoints"] = {
        "source": "local",
        "local": {"tokens_per_step": 4096, "models": [{"name": "my-llama", "path": str(run)}]},
    }
    config["metrics"]["checkpoints_per_job"] = 1
    config["scaling"]["models"] = ["my-llama"]
    config["rank_heads"]["backbones"] = [{"model": "my-llama", "step": None}]
    (workdir / "config" / "local.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(
        workdir,
        *TARGETS,
        "--cores",
        "2",
        "--configfile",
        "config/local.yaml",
        env=family_run["env"],
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return {**family_run, "run": run, "before": before, "config": config}


def test_a_local_run_with_its_own_tokenizer_goes_through_every_stage(local_run):
    """Measured in place on the same text, tokenized with the run's tokenizer, each
    checkpoint's numbers those of a direct computation; nothing in the run's folder is
    written, moved or deleted, nothing is copied in."""
    from transformers import AutoModelForCausalLM

    from saturation.suites import TokenizerFolder, tokenizer_key

    workdir, run = local_run["workdir"], local_run["run"]
    assert tree_digest(run) == local_run["before"]  # read in place, nothing written or moved
    assert not (workdir / "results/checkpoints/my-llama").exists()  # nothing copied in either
    key = tokenizer_key(TokenizerFolder(run / "step500"))  # identified by its files
    sample_path = workdir / f"results/corpus/eval/{key}.parquet"
    meta = json.loads(sample_path.with_suffix(".json").read_text())
    assert meta["tokenizer"] == str(run / "step500")  # the run's own, found beside it
    _, docs = read_sample(sample_path)
    metrics = pd.read_parquet(workdir / TARGETS[0])
    assert sorted(metrics.step.unique()) == [0, 500]
    for step in (0, 500):
        model = AutoModelForCausalLM.from_pretrained(run / f"step{step}").eval()
        check_against_direct(metrics, "my-llama", step, model, docs, 64)
    assert set(pd.read_parquet(workdir / TARGETS[2]).backbone) == {"my-llama"}
    assert set(pd.read_parquet(workdir / TARGETS[3]).model) == {"my-llama"}


def test_a_rewritten_or_broken_local_checkpoint_is_measured_again_by_itself(local_run):
    """A trainer rewrites step 0's weights in place (the folder's own time does not change):
    only step 0's measurement, and what reads it, is planned again. Then step 0's config is
    another width's: its job records it as unreadable, the aggregation stops naming it, step
    500's measurement stays as it was; with metrics.unreadable: skip the run finishes without
    it and names it at the end."""
    from safetensors import safe_open

    workdir, run, env = local_run["workdir"], local_run["run"], local_run["env"]
    config = local_run["config"]
    weights = run / "step0" / "model.safetensors"
    with safe_open(weights, "pt") as f:
        name = sorted(f.keys())[0]
    data = weights.read_bytes()
    size = int.from_bytes(data[:8], "little")
    start = 8 + size + json.loads(data[8 : 8 + size])[name]["data_offsets"][0]
    folder_time = (run / "step0").stat().st_mtime_ns
    with weights.open("r+b") as fh:  # four bytes of one tensor, overwritten where they are
        fh.seek(start)
        fh.write(b"\x00\x00\x80\x3f")
    assert (run / "step0").stat().st_mtime_ns == folder_time
    args = ("--cores", "2", "--configfile", "config/local.yaml")
    plan = run_snakemake(workdir, *TARGETS, *args, "-n", env=env)
    assert plan.returncode == 0, plan.stderr[-3000:]
    stats = job_stats(plan.stdout)
    assert stats["measure_checkpoint"] == 1, stats
    outputs = [line.strip() for line in plan.stdout.splitlines() if "output: " in line]
    assert any(o.startswith("output: results/metrics/my-llama/step0/") for o in outputs)
    assert not any("results/metrics/my-llama/step500/" in o for o in outputs)
    unchanged = {"sample_corpus", "tokenize_corpus", "feature_cache", "rank_head", "ngram_spectrum"}
    assert not unchanged & set(stats), stats
    # Step 0's config is now another width's: refused, named, step 500's table kept.
    step0_config = json.loads((run / "step0" / "config.json").read_text())
    step0_config["hidden_size"] *= 2
    (run / "step0" / "config.json").write_text(json.dumps(step0_config))
    kept = workdir / "results/metrics/my-llama/step500/checkpoint_metrics.parquet"
    kept_time = kept.stat().st_mtime_ns
    tables = ["results/tables/checkpoint_metrics.parquet", "results/tables/checkpoints.parquet"]
    failed = run_snakemake(workdir, *tables, *args, env=env)
    assert failed.returncode != 0
    log = (workdir / "logs/tables/aggregate_metrics.log").read_text()
    assert (
        f"1 checkpoint(s) could not be read, and metrics.unreadable is 'fail':\n  my-llama step "
        f"0: checkpoint {run / 'step0'}: its weights do not match the model its config.json "
        "describes (LlamaForCausalLM" in log
    )
    assert kept.stat().st_mtime_ns == kept_time
    recorded = pd.read_parquet(workdir / "results/metrics/my-llama/step0/checkpoints.parquet")
    assert recorded.status.tolist() == ["unreadable"]
    config = {**config, "metrics": {**config["metrics"], "unreadable": "skip"}}
    (workdir / "config" / "skip.yaml").write_text(yaml.safe_dump(config))
    skipped = run_snakemake(
        workdir, *tables, "--cores", "2", "--configfile", "config/skip.yaml", env=env
    )
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    out = skipped.stdout + skipped.stderr
    ran = job_stats(out)
    assert "aggregate_metrics" in ran and "measure_checkpoint" not in ran, ran
    assert kept.stat().st_mtime_ns == kept_time
    assert "1 checkpoint(s) were unreadable and are left out of the analysis" in out
    assert f"my-llama step 0: checkpoint {run / 'step0'}: its weights do not match" in out
    ckpts = pd.read_parquet(workdir / tables[1]).set_index("step")
    assert ckpts.status.to_dict() == {0: "unreadable", 500: "measured"}
    assert set(pd.read_parquet(workdir / tables[0]).step) == {500}
