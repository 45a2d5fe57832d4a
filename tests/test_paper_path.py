"""The paper's path end to end: tests/config/paper.yaml (config/pythia.yaml's keys, tiny
sizes) against the loopback hub, with the unmodified huggingface_hub and datasets clients:
streaming The Pile's layout, revision manifests, measuring through the user's Hugging Face
cache, saturation, rank heads, n-grams of a hub corpus, downstream on a local harness task,
figures; locally, and through a real single-node SLURM cluster with the shipped profile.
Requests are counted at the server, submissions at the SLURM controller."""

import collections
import contextlib
import json
import math
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import (
    ROOT,
    SLURM_ARGS,
    copy_workflow,
    load_yaml,
    parquet_digests,
    run_snakemake,
    submissions,
)
from saturation.figures import read_plotted

PAPER = ROOT / "tests" / "config" / "paper.yaml"
MODEL_REPOS = ("EleutherAI/pythia-14m", "EleutherAI/pythia-31m", "EleutherAI/pythia-2.8b")
# What the loopback hub's branches are (tests/hub/repos.py).
EXPECTED_STATUS = {
    ("pythia-14m", 0): "duplicate",
    ("pythia-14m", 1): "duplicate",
    ("pythia-31m", 0): "duplicate",
    ("pythia-31m", 1): "duplicate",
    ("pythia-31m", 1000): "missing",
    ("pythia-2.8b", 0): "duplicate",
    ("pythia-2.8b", 512): "duplicate",
    ("pythia-2.8b", 2000): "duplicate",
}


def flat_keys(d, prefix=""):
    keys = set()
    for k, v in d.items():
        keys.add(prefix + k)
        if isinstance(v, dict) and not k.endswith(
            ("fixed", "initial", "data_files", "trusted_steps")
        ):
            keys |= flat_keys(v, prefix + k + ".")
    return keys


def test_paper_test_config_has_exactly_the_paper_config_keys():
    assert flat_keys(load_yaml(PAPER)) == flat_keys(load_yaml(ROOT / "config" / "pythia.yaml"))


def write_cloze_task(folder: Path) -> None:
    """A LAMBADA-style harness task of our own: the last word of a sentence of the corpus."""
    from hub.repos import documents

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "items.jsonl").open("w") as fh:
        for text in documents(40, seed=11):
            words = text.rstrip(".").split()
            fh.write(json.dumps({"context": " ".join(words[:-1]), "target": words[-1]}) + "\n")
    task = {
        "task": "loopback_cloze",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(folder / "items.jsonl")}},
        "test_split": "test",
        "output_type": "loglikelihood",
        "doc_to_text": "{{context}}",
        "doc_to_target": " {{target}}",
        "metric_list": [
            {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    (folder / "loopback_cloze.yaml").write_text(yaml.safe_dump(task))


CHECKPOINT_DIRS = tuple("models--" + r.replace("/", "--") for r in MODEL_REPOS) + ("staging",)


class DiskSampler:
    """Peak bytes of checkpoint files on disk (the Hugging Face cache's blobs of the
    measured models and the evict mode's staging folders), sampled every 50 ms while a run
    goes on."""

    def __init__(self, *roots: Path):
        self.roots, self.peak, self._stop = roots, 0, threading.Event()

    def size(self) -> int:
        total = 0
        for root in self.roots:
            for dirpath, _, files in os.walk(root):
                if not any(d in dirpath for d in CHECKPOINT_DIRS):
                    continue
                for f in files:
                    p = os.path.join(dirpath, f)
                    if not os.path.islink(p):
                        with contextlib.suppress(OSError):
                            total += os.path.getsize(p)
        return total

    def run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.size())
            time.sleep(0.05)

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def model_downloads(server) -> list[dict]:
    return [r for r in server.downloads() if r.get("repo") in MODEL_REPOS]


def paper_workdir(tmp_path: Path, **overrides) -> Path:
    """A copy of the workflow with config/paper.yaml, run as a user runs config/pythia.yaml:
    ``--configfile config/paper.yaml`` over the embedded default."""
    (tmp_path / "wf").mkdir(parents=True)
    workdir = copy_workflow(tmp_path / "wf")
    config = load_yaml(PAPER)
    write_cloze_task(tmp_path / "tasks")
    config["downstream"]["include_path"] = str(tmp_path / "tasks")
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        config[section][key] = value
    write_config(workdir, config)
    return workdir


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config" / "paper.yaml").write_text(yaml.safe_dump(config))


def read_config(workdir: Path) -> dict:
    return load_yaml(workdir / "config" / "paper.yaml")


ARGS = ("--configfile", "config/paper.yaml")
# The one job that measures every revision of the three models (metrics.checkpoints_per_job).
MEASURE_JOB = "pythia-14m.step0-pythia-2.8b.step3000"


@pytest.fixture(scope="module")
def paper_run(loopback_hub, tmp_path_factory):
    server, facts = loopback_hub
    tmp = tmp_path_factory.mktemp("paper")
    workdir = paper_workdir(tmp)
    hf_home = tmp / "hf-user"
    env = {"HF_HOME": str(hf_home)}
    server.clear()
    start = time.perf_counter()
    with DiskSampler(hf_home, workdir / "results") as disk:
        result = run_snakemake(workdir, "--cores", "2", *ARGS, env=env, timeout=1500)
    wall = time.perf_counter() - start
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    log = list(server.log)
    routes = collections.Counter(f"{r['method']} {r['route']} {r['status']}" for r in log)
    print(f"paper path, local: {wall:.0f} s, peak checkpoint bytes on disk {disk.peak}")
    print("requests at the loopback hub:", dict(sorted(routes.items())))
    return {"workdir": workdir, "env": env, "log": log, "facts": facts, "peak": disk.peak}


def test_every_stage_runs_and_duplicates_are_never_fetched(paper_run, loopback_hub):
    server, facts = loopback_hub
    workdir = paper_run["workdir"]
    gets = [
        r
        for r in paper_run["log"]
        if r["route"] == "resolve" and r["method"] == "GET" and r.get("repo") in MODEL_REPOS
    ]
    # No revision's file was downloaded twice in the run.
    per_file = collections.Counter((r["repo"], r["commit"], r["file"]) for r in gets)
    assert per_file and max(per_file.values()) == 1, per_file.most_common(3)
    fetched = {(r["repo"], r["commit"]) for r in gets}
    # Duplicates and missing branches were never fetched; every measured revision was, once.
    for (model, step), status in EXPECTED_STATUS.items():
        commit = facts["commits"][model].get(step)
        assert (f"EleutherAI/{model}", commit) not in fetched, (model, step, status)
    ckpts = pd.read_parquet(workdir / "results/tables/checkpoints.parquet")
    status = {(r.model, r.step): r.status for r in ckpts.itertuples()}
    for model in facts["models"]:
        for step in facts["steps"]:
            want = EXPECTED_STATUS.get((model, step), "measured")
            assert status[(model, step)] == want, (model, step)
            if want == "measured":
                commit = facts["commits"][model][step]
                assert (f"EleutherAI/{model}", commit) in fetched
                row = ckpts[(ckpts.model == model) & (ckpts.step == step)].iloc[0]
                assert row.commit == commit  # the weights measured are traceable
    assert len(fetched) == sum(v == "measured" for v in status.values())
    dup_of = {(r.model, r.step): r.duplicate_of_step for r in ckpts.itertuples()}
    assert dup_of[("pythia-14m", 1)] == 0 and dup_of[("pythia-2.8b", 2000)] == 0
    assert pd.isna(dup_of[("pythia-2.8b", 3000)]) and pd.isna(dup_of[("pythia-31m", 1000)])
    # The model's vocabulary (384 rows) covers the tokenizer's 300 ids.
    assert set(ckpts.vocab_size.dropna()) == {384}

    metrics = pd.read_parquet(workdir / "results/tables/checkpoint_metrics.parquet")
    measured = set(zip(metrics.model, metrics.step, strict=True))
    # A text corpus: every checkpoint also has its loss per byte of the scored text.
    per = metrics.pivot_table(index=["model", "step"], columns="metric", values="value")
    assert per.bits_per_byte.notna().all() and (per.bits_per_byte > 0).all()
    np.testing.assert_allclose(per.bits_per_byte, per.nats_per_byte / np.log(2), rtol=1e-12)
    sample_bytes = pd.read_parquet(workdir / "results/corpus/eval.parquet").n_bytes.sum()
    n_tokens = ckpts.set_index(["model", "step"]).n_predicted_tokens.reindex(per.index)
    np.testing.assert_allclose(per.nats_per_byte, per.loss * n_tokens / sample_bytes, rtol=1e-12)
    assert not measured & set(EXPECTED_STATUS)
    sat = pd.read_parquet(workdir / "results/tables/saturation.parquet")
    assert not set(zip(sat.model, sat.step, strict=True)) & set(EXPECTED_STATUS)
    selection = pd.read_parquet(workdir / "results/downstream/selection.parquet")
    assert not set(zip(selection.model, selection.step, strict=True)) & set(EXPECTED_STATUS)
    heads = pd.read_parquet(workdir / "results/tables/rank_heads.parquet")
    assert set(heads["head"]) == {"rank", "full", "original"} and set(heads.backbone) == {
        "pythia-31m",
        "tiny-llama-2",
    }
    ngrams = pd.read_parquet(workdir / "results/tables/ngram_spectra.parquet")
    assert set(ngrams.corpus) == {"pile-pythia", "pile-hub"}
    down = pd.read_parquet(workdir / "results/tables/downstream.parquet")
    assert set(down.task) == {"loopback_cloze"} and down.value.notna().all()
    for fig in (workdir / "results/figures").glob("*.png"):
        assert fig.stat().st_size > 10_000
    # Fig 9: the rate grid; Figs 10-13: the measurements beyond the paper
    assert len(list((workdir / "results/figures").glob("*.png"))) == 15
    # WikiText, as the harness's task defines it, measured at every checkpoint in the same
    # job, and Fig 3 drawn from it (figures.fig3_loss: wikitext/loss).
    metrics = pd.read_parquet(workdir / "results/tables/checkpoint_metrics.parquet")
    wiki = metrics[metrics.metric == "wikitext/loss"].set_index(["model", "step"]).value
    measured = metrics[metrics.metric == "loss"].set_index(["model", "step"]).value
    assert len(wiki) == len(measured) and wiki.notna().all()
    fig3 = read_plotted(workdir / "results/figures/fig3_anisotropy_training.csv")
    drawn = fig3.set_index(["model", "step"]).loss
    pd.testing.assert_series_equal(drawn, wiki.loc[drawn.index], check_names=False)
    text = pd.read_parquet(workdir / "results/eval_corpora/wikitext.parquet")
    assert len(text) == len(facts["wikitext_pages"])
    # The eval sample is The Pile's validation split; the training split its train files.
    meta = json.loads((workdir / "results/corpus/eval.json").read_text())
    assert meta["dataset_split"] == "validation"
    # The cache held the measured revisions and nothing else was left in the workdir.
    assert not (workdir / "results/checkpoints/staging").exists() or not any(
        (workdir / "results/checkpoints/staging").iterdir()
    )


def test_a_backbone_from_outside_the_suite_trains_its_heads_alone(paper_run, loopback_hub):
    """rank_heads.backbones' repo (the paper's Llama-2-7B; here tests/tiny-llama-2, a tiny
    Llama with its own tokenizer on the loopback hub): its heads beside the suite's, on the sample tokenized its
    way, in its own dtype; never measured over training."""
    import torch
    from test_families import direct
    from test_family_suite import pieces, read_sample

    _, facts = loopback_hub
    workdir, name = paper_run["workdir"], "tiny-llama-2"
    tables = workdir / "results" / "tables"
    for table, column in (("checkpoint_metrics", "model"), ("checkpoints", "model")):
        assert name not in set(pd.read_parquet(tables / f"{table}.parquet")[column])
    heads = pd.read_parquet(tables / "rank_heads.parquet")
    own = heads[heads.backbone == name]
    assert set(own.step) == {0} and set(own.vocab_size) == {320} and set(own.hidden_size) == {16}
    assert sorted(own[(own["head"] == "rank") & own.chosen].r) == [2, 8]
    # Its head's spectrum as the job read it: the served head in bfloat16 (its dtype), not
    # in float32.
    model = facts["llama2"]["model"]
    weight = model.lm_head.weight.detach()
    spectra = pd.read_parquet(tables / "backbone_spectra.parquet")
    sigma = spectra[spectra.backbone == name].sort_values("index").singular_value.to_numpy()
    in_bf16 = np.linalg.svd(weight.to(torch.bfloat16).double().numpy(), compute_uv=False)
    np.testing.assert_allclose(sigma, in_bf16, rtol=1e-9)
    in_f32 = np.linalg.svd(weight.double().numpy(), compute_uv=False)
    assert np.abs(sigma / in_f32 - 1).max() > 1e-5
    # Its own head's loss on the evaluation sample tokenized with its tokenizer.
    _, docs = read_sample(workdir / "results/corpus/eval/tests--tiny-llama-2.parquet")
    loss, _ = direct(model.to(torch.bfloat16), pieces(docs, 64))
    original = own[own["head"] == "original"].eval_loss.item()
    assert original == pytest.approx(loss, rel=5e-3)
    # Fig 6 draws it; Fig 8's x is its own head's W-error.
    fig8 = read_plotted(workdir / "results/figures/fig8_loss_vs_w_error.csv")
    drawn = fig8[fig8.backbone == name].sort_values("r")
    w_error = [np.sqrt((in_bf16[r:] ** 2).sum() / (in_bf16**2).sum()) for r in drawn.r]
    np.testing.assert_allclose(drawn.head_w_error, w_error, rtol=1e-9)
    assert name in set(read_plotted(workdir / "results/figures/fig6_rank_heads.csv").backbone)


def add_head_duplicates(server) -> dict[int, str]:
    """``tests/pythia-heads``: three branches of a tiny GPT-NeoX, the last two with one LM
    head and different bodies (whose files differ: the manifest cannot see it)."""
    import torch
    from hub import families
    from safetensors.torch import save

    branches = {}
    torch.manual_seed(7)
    models = [families.gpt_neox(384).eval() for _ in range(3)]
    states = [dict(m.state_dict()) for m in models]
    states[2]["lm_head.weight"] = states[1]["lm_head.weight"]
    for step, model, state in zip((0, 1000, 2000), models, states, strict=True):
        files = {
            "config.json": model.config.to_json_string().encode(),
            "model.safetensors": save({k: v.contiguous() for k, v in state.items()}),
        }
        server.add_branch("model", "tests/pythia-heads", f"s{step}", files)
        branches[step] = f"s{step}"
    return branches


def test_a_spectrum_only_run_reads_each_head_by_range(paper_run, loopback_hub, tmp_path):
    """metrics.parts: [spectrum]: every revision's head read by HTTP range, the same spectra
    as the full run's, only Figs 4 and 5; a head that two revisions serve (their files
    differ) flagged and left out of both figures."""
    server, facts = loopback_hub
    branches = add_head_duplicates(server)
    workdir = paper_workdir(tmp_path, **{"metrics.parts": ["spectrum"]})
    config = read_config(workdir)
    config["checkpoints"]["hub"]["models"].append(
        {
            "repo": "tests/pythia-heads",
            "revisions": [{"step": s, "revision": b} for s, b in branches.items()],
        }
    )
    write_config(workdir, config)
    env = {"HF_HOME": str(tmp_path / "hf")}
    server.clear()
    result = run_snakemake(workdir, "--cores", "2", *ARGS, env=env, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    log = list(server.log)
    figures = sorted(p.name for p in (workdir / "results/figures").glob("*.png"))
    assert figures == ["fig4_head_spectrum.png", "fig5_singular_entropy.png"]
    # The same spectra as the full run's, to the bit.
    full = pd.read_parquet(paper_run["workdir"] / "results/tables/head_spectra.parquet")
    ranged = pd.read_parquet(workdir / "results/tables/head_spectra.parquet")
    both = full.merge(ranged, on=["model", "step", "index"], suffixes=("_full", "_ranged"))
    assert len(both) == len(full) > 0
    assert (both.singular_value_full == both.singular_value_ranged).all()
    # Bytes served per revision: the config and, of the weights file, its header and head.
    per_revision = collections.defaultdict(lambda: collections.Counter())
    for r in log:
        if r["route"] == "resolve" and r["method"] == "GET" and r["status"] in (200, 206):
            per_revision[(r["repo"], r["commit"])][r["file"]] += r["bytes"]
    assert not any(repo.startswith("monology/") for repo, _ in per_revision)  # no corpus
    ckpts = pd.read_parquet(workdir / "results/tables/checkpoints.parquet")
    for row in ckpts[ckpts.status == "measured"].itertuples():
        if not row.model.startswith("pythia-") or row.model == "pythia-heads":
            continue
        sent = per_revision[(f"EleutherAI/{row.model}", row.commit)]
        # (a config.json equal to one already in the cache is not fetched again)
        assert set(sent) <= {"config.json", "model.safetensors"}, sent
        head = row.vocab_size * row.head_input_size * 4
        assert head < sent["model.safetensors"] < head + 10_000
        whole = revision_bytes(server, row.model, row.step)
        print(
            f"{row.model} step {row.step}: {sum(sent.values())} bytes served by range, "
            f"{whole} for the whole revision"
        )
    heads = ckpts[ckpts.model == "pythia-heads"].set_index("step")
    assert heads.duplicate_head_of_step.to_dict() == {0: pd.NA, 1000: 2000, 2000: 1000} or (
        pd.isna(heads.duplicate_head_of_step[0])
        and heads.duplicate_head_of_step[1000] == 2000
        and heads.duplicate_head_of_step[2000] == 1000
    )
    metrics = pd.read_parquet(workdir / "results/tables/checkpoint_metrics.parquet")
    assert set(metrics.metric) == {
        "singular_entropy",
        "spectral_entropy",
        "effective_rank",
        "stable_rank",
        "spectral_norm",
        "frobenius_norm",
    }
    flagged = metrics[metrics.duplicate_head]
    assert set(zip(flagged.model, flagged.step, strict=True)) == {
        ("pythia-heads", 1000),
        ("pythia-heads", 2000),
    }


def test_a_spectrum_only_prefetch_keeps_the_heads_for_an_offline_run(
    paper_run, loopback_hub, tmp_path
):
    """metrics.parts: [spectrum]: `snakemake prefetch` keeps each revision's head, read by
    range, in the head store (no weights file in the Hugging Face cache); the run offline then
    asks the hub nothing and gives the full run's spectra. Offline without it, a job says to
    prefetch."""
    server, facts = loopback_hub
    workdir = paper_workdir(tmp_path, **{"metrics.parts": ["spectrum"]})
    hf = tmp_path / "hf"
    server.clear()
    result = run_snakemake(
        workdir, "prefetch", "--cores", "2", *ARGS, env={"HF_HOME": str(hf)}, timeout=900
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    store = workdir / "results/checkpoints/heads"
    kept = sorted(store.rglob("*.safetensors"))
    measured = sum(
        1 for m in facts["commits"] for s in facts["commits"][m] if (m, s) not in EXPECTED_STATUS
    )
    assert len(kept) == measured
    assert not list(hf.rglob("model.safetensors"))  # no weights file was fetched whole
    stored = sum(p.stat().st_size for p in kept)
    whole = sum(
        revision_bytes(server, m, s)
        for m in facts["commits"]
        for s in facts["commits"][m]
        if (m, s) not in EXPECTED_STATUS
    )
    print(f"head store: {len(kept)} heads, {stored} bytes; the revisions whole: {whole} bytes")
    server.clear()
    offline = {"HF_HOME": str(hf), "HF_HUB_OFFLINE": "1"}
    result = run_snakemake(workdir, "--cores", "2", *ARGS, env=offline, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert server.log == []
    full = pd.read_parquet(paper_run["workdir"] / "results/tables/head_spectra.parquet")
    ranged = pd.read_parquet(workdir / "results/tables/head_spectra.parquet")
    pd.testing.assert_frame_equal(
        full.sort_values(["model", "step", "index"]).reset_index(drop=True),
        ranged.sort_values(["model", "step", "index"]).reset_index(drop=True),
    )
    # Offline with neither the head store nor the weights: the job says what to run.
    import shutil

    shutil.rmtree(store)
    shutil.rmtree(workdir / "results/metrics")
    target = f"results/metrics/{MEASURE_JOB}/checkpoint_metrics.parquet"
    result = run_snakemake(workdir, target, "--cores", "2", *ARGS, env=offline, timeout=900)
    assert result.returncode != 0
    logs = "".join(p.read_text() for p in (workdir / "logs/metrics").glob("*.log"))
    assert "run the prefetch target where the network is first" in logs


def test_a_sizes_seeds_are_summed_up_in_the_seed_table(loopback_hub, tmp_path):
    """PolyPythia-shaped seed repos on the loopback hub (one tiny architecture: pythia-14m
    and two seeds of it, one with a planted rise at its last step): the saturation table
    tests each run, and the seed table gives the size's share of saturating runs and the
    spread of final - best and of the best step; Figs 1a and 3 draw the runs as one band."""
    from hub.repos import add_seeds

    server, _ = loopback_hub
    add_seeds(server)
    runs = ["pythia-14m", "pythia-14m-seed1", "pythia-14m-seed2"]
    workdir = paper_workdir(tmp_path)
    config = read_config(workdir)
    config["checkpoints"]["hub"]["models"] = [f"EleutherAI/{m}" for m in runs]
    config["scaling"]["models"] = runs
    config["scaling"]["min_step"] = 2
    config["rank_heads"]["backbones"] = [{"model": "pythia-14m", "step": None}]
    config["downstream"]["models"] = ["pythia-14m"]
    write_config(workdir, config)
    targets = [
        "results/tables/saturation_by_size.parquet",
        "results/figures/fig1a_loss.png",
        "results/figures/fig3_anisotropy_training.png",
    ]
    env = {"HF_HOME": str(tmp_path / "hf")}
    result = run_snakemake(workdir, *targets, "--cores", "2", *ARGS, env=env, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    sat = pd.read_parquet(workdir / "results/tables/saturation.parquet")
    final = sat[sat.selected & (sat.role == "final")].set_index("model")
    assert bool(final.saturated["pythia-14m-seed1"])  # the planted rise is found
    table = pd.read_parquet(workdir / "results/tables/saturation_by_size.parquet")
    print(table.to_string())
    (row,) = table.itertuples()
    assert (row.size, row.runs, list(row.seeds)) == ("pythia-14m", 3, [0, 1, 2])
    flagged = int(final.saturated.fillna(False).astype(bool).sum())
    assert row.saturated == flagged and row.share_saturated == pytest.approx(flagged / 3)
    assert row.final_minus_best_max == pytest.approx(final.final_minus_best.max())
    assert row.final_minus_best_min == pytest.approx(final.final_minus_best.min())
    best = sat[sat.selected & (sat.role == "best")]
    assert (row.best_step_min, row.best_step_max) == (best.step.min(), best.step.max())


def revision_bytes(server, model: str, step: int) -> int:
    """Bytes of the files a job fetches for one revision (config, weights, tokenizer)."""
    branch = server.repos[("model", f"EleutherAI/{model}")].branches[f"step{step}"]
    return sum(e.size for e in branch.files.values())


SLURM_STEPS = [2, 512, 3000]  # a measured revision, a duplicate (2.8b) and the last
SLURM_TABLES = [
    f"results/tables/{t}.parquet"
    for t in ("checkpoint_metrics", "saturation", "rank_heads", "ngram_spectra", "downstream")
]


def test_paper_path_through_slurm_with_eviction(slurm_cluster, paper_run, loopback_hub, tmp_path):
    """The study's tables on three revisions a model (one measuring job each, the three in
    one group submission), submitted through the shipped SLURM profile with
    checkpoints.hub.evict: every stage's rules that go to the cluster run, the disk holds
    the checkpoints of the jobs running at once, and each measurement, the rank heads and
    the n-gram spectra are the local run's. (The figures are local rules: the local run
    makes them.)"""
    server, facts = loopback_hub
    workdir = paper_workdir(tmp_path / "slurm")
    config = read_config(workdir)
    config["checkpoints"]["hub"]["evict"] = True
    config["checkpoints"]["schedule"]["subset"] = SLURM_STEPS
    config["metrics"]["checkpoints_per_job"] = len(SLURM_STEPS)
    write_config(workdir, config)
    hf_home = tmp_path / "hf-fresh"
    server.clear()
    before = submissions(slurm_cluster)
    start = time.perf_counter()
    with DiskSampler(hf_home, workdir / "results") as disk:
        result = run_snakemake(
            workdir, *SLURM_TABLES, *SLURM_ARGS, *ARGS, env={"HF_HOME": str(hf_home)}, timeout=1500
        )
    wall = time.perf_counter() - start
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    submitted = submissions(slurm_cluster) - before
    measured = [
        (m, s)
        for m, steps in facts["commits"].items()
        for s in steps
        if s in SLURM_STEPS and (m, s) not in EXPECTED_STATUS
    ]
    largest = max(revision_bytes(server, m, s) for m, s in measured)
    all_measured = sum(revision_bytes(server, m, s) for m, s in measured)
    print(
        f"paper path through SLURM with eviction: {wall:.0f} s, {submitted} submissions; peak "
        f"checkpoint bytes on disk {disk.peak} (largest revision {largest}, all "
        f"{len(measured)} measured revisions {all_measured}; the local run without eviction "
        f"peaked at {paper_run['peak']})"
    )
    # --jobs 4, one of them the group of measuring jobs, two at a time (--cores 2), each
    # holding one revision at a time; a staged download also keeps a small .metadata file
    # per file fetched.
    assert 0 < disk.peak <= 5 * largest * 1.02 < all_measured
    # Every job that is not a local rule went through sbatch: the controller logged one
    # submission each (the plan's total misses the downstream evaluations, which join after
    # select_downstream); aggregation, selection and figures ran in the Snakemake process.
    log = result.stdout + result.stderr
    finished = re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", log, re.M)
    local = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", log, re.M))
    assert len(finished) > int(re.search(r"^total\s+(\d+)$", log, re.M).group(1))
    assert {
        "revision_manifest",
        "aggregate_metrics",
        "scaling_fit",
        "select_downstream",
        "aggregate_downstream",
    } <= local
    remote = [r for r in finished if r not in local]
    every_stage = {
        "sample_corpus",
        "measure_checkpoint",
        "score_original_head",
        "stream_rank_heads",
        "ngram_corpus",
        "ngram_spectrum",
        "evaluate_downstream",
    }
    assert every_stage <= set(remote), every_stage - set(remote)
    # The profile sends measuring jobs ten to a submission; every other job is one.
    measured_jobs = remote.count("measure_checkpoint")
    assert measured_jobs == 3  # a model's revisions a job, duplicates too: it records them
    groups = math.ceil(measured_jobs / 10)
    assert submitted == len(remote) - measured_jobs + groups, (submitted, len(remote))
    # Nothing is left behind: no staged checkpoint, no weights in the cache.
    staging = workdir / "results/checkpoints/staging"
    assert not staging.exists() or not any(staging.iterdir())
    assert DiskSampler(hf_home).size() == 0
    jobs = sorted(
        p.parent.name for p in (workdir / "results/metrics").glob("*/*/checkpoint_metrics.parquet")
    )
    assert jobs == ["step2-3000"] * 3
    for table in ("checkpoint_metrics", "head_spectra"):
        ours = pd.read_parquet(workdir / f"results/tables/{table}.parquet")
        theirs = pd.read_parquet(paper_run["workdir"] / f"results/tables/{table}.parquet")
        theirs = theirs[theirs.step.isin(SLURM_STEPS)].reset_index(drop=True)
        assert len(ours.drop_duplicates(["model", "step"])) == len(measured)
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    ours, theirs = parquet_digests(workdir), parquet_digests(paper_run["workdir"])
    same = ["results/tables/rank_heads.parquet", "results/tables/ngram_spectra.parquet"]
    assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}


def test_editing_a_metrics_key_downloads_nothing_already_cached(paper_run, loopback_hub):
    server, facts = loopback_hub
    workdir, env = paper_run["workdir"], paper_run["env"]
    config = read_config(workdir)
    config["metrics"]["batch_size"] = 4
    write_config(workdir, config)
    server.clear()
    # Every model's revisions (one job), measured again from the cache: nothing downloaded.
    job = f"results/metrics/{MEASURE_JOB}/checkpoint_metrics.parquet"
    result = run_snakemake(workdir, job, "--cores", "2", *ARGS, env=env, timeout=1500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    ran = result.stdout + result.stderr
    assert re.search(r"^measure_checkpoint\s+1$", ran, re.M), ran[-3000:]
    assert model_downloads(server) == []
    # Offline, from the cache alone: a new rank needs the backbone's stream again (the job
    # of ranks 2, 4 and the full head: one job, rank 8 dropped).
    config["rank_heads"]["ranks"] = [2, 4]
    write_config(workdir, config)
    server.clear()
    heads = "results/tables/rank_heads.parquet"
    result = run_snakemake(
        workdir, heads, "--cores", "2", *ARGS, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=900
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert [r["path"] for r in server.log if "EleutherAI/" in r["path"]] == []
    heads = pd.read_parquet(workdir / "results/tables/rank_heads.parquet")
    assert 4 in set(heads.r)


def windows_of(log: list[dict], bucket: str, seconds: float) -> list[int]:
    """Calls each fixed window of ``bucket`` let through (a window opens at the first call
    it lets through after the last one closed), recomputed from the server's log: all but
    the window's own 429s (an injected fault is let through by the window, then fails)."""
    counts, start = [], None
    for r in sorted((r for r in log if r["bucket"] == bucket), key=lambda r: r["time"]):
        if r["route"] == "ratelimit":
            continue
        if start is None or r["time"] >= start + seconds:
            start = r["time"]
            counts.append(0)
        counts[-1] += 1
    return counts


def test_prefetch_under_the_hubs_rate_limits(loopback_hub, tmp_path):
    """The manifests, the corpus and the prefetch under rate limits scaled to the test
    (the hub's two buckets, API and resolve, in fixed windows), with four jobs at once that
    share the budget: no job fails, the calls served stay within every window, and a 429
    is answered by waiting for the window, not by calling again at once."""
    server, facts = loopback_hub
    # (the revisions and the corpus: the harness's WikiText loading, seconds of task
    # indexing, would spread the calls over more windows than these limits are scaled for)
    workdir = paper_workdir(tmp_path, **{"metrics.eval_corpora": []})
    env = {"HF_HOME": str(tmp_path / "hf")}
    server.clear()
    # limits met even when a loaded machine spreads the jobs' calls out (at 20 and 40, a
    # loaded run once served 19 and 33 in its busiest windows), and loose enough that each
    # caller's retries outlast the waits
    api, resolve = server.limit("api", 12, 5), server.limit("resolve", 24, 5)
    # Whether a loaded machine's jobs meet those windows depends on its speed; this 429
    # does not: the first listing of a repo's refs is answered with one, Retry-After 2 s.
    server.inject("429", r"GET /api/models/[^/]+/[^/]+/refs", times=1, retry_after=2)
    start = time.monotonic()
    try:
        result = run_snakemake(workdir, "prefetch", "--cores", "4", *ARGS, env=env, timeout=900)
    finally:
        log = list(server.log)
        server.clear()
    wall = time.monotonic() - start
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for window in (api, resolve):
        served = windows_of(log, window.bucket, window.seconds)
        limited = [r for r in log if r["bucket"] == window.bucket and r["status"] == 429]
        print(
            f"{window.bucket}: {sum(served)} calls served in {len(served)} windows "
            f"(at most {max(served)} in one, limit {window.calls}), {len(limited)} answered 429"
        )
        assert max(served) <= window.calls
        # Every caller that meets a spent window waits for its end instead of calling again
        # at once: at most one 429 per caller and window. Callers: four jobs, each with up
        # to snapshot_download's 8 download threads.
        assert len(limited) <= 4 * 8 * len(served)
    # The injected 429 is waited out: its path is asked again no sooner than it said.
    (fault,) = [r for r in log if r["route"] == "fault"]
    again = [r for r in log if r["path"] == fault["path"] and r["time"] > fault["time"]]
    assert again and min(r["time"] for r in again) - fault["time"] >= 1.9
    fetched = {(r["repo"], r["commit"]) for r in log if r.get("repo") in MODEL_REPOS}
    per_revision = collections.Counter(
        f"{r['method']} {r['file']}" for r in log if r.get("repo") in MODEL_REPOS
    )
    print(f"prefetch under rate limits: {wall:.0f} s; {len(fetched)} revisions fetched")
    print("resolve calls of the revisions:", dict(per_revision))
    for model, commits in facts["commits"].items():
        for step in commits:
            assert (workdir / f"results/prefetch/{model}/step{step}.json").is_file()


def test_prefetch_fills_the_cache_for_an_offline_run(loopback_hub, tmp_path):
    """`snakemake prefetch` on a machine with the network, then jobs with HF_HUB_OFFLINE=1:
    every revision to be measured is in the cache, duplicates and missing ones are not."""
    server, facts = loopback_hub
    workdir = paper_workdir(tmp_path)
    env = {"HF_HOME": str(tmp_path / "hf")}
    server.clear()
    result = run_snakemake(workdir, "prefetch", "--cores", "4", *ARGS, env=env, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    fetched = {(r["repo"], r["commit"]) for r in model_downloads(server)}
    for model, commits in facts["commits"].items():
        for step, commit in commits.items():
            record = json.loads((workdir / f"results/prefetch/{model}/step{step}.json").read_text())
            assert record["commit"] == commit
            wanted = (model, step) not in EXPECTED_STATUS
            assert ((f"EleutherAI/{model}", commit) in fetched) == wanted, (model, step)
            assert ("snapshot" in record) == wanted
    assert (
        json.loads((workdir / "results/prefetch/pythia-31m/step1000.json").read_text())["status"]
        == "missing"
    )
    assert (workdir / "results/corpus/eval.parquet").is_file()
    # Offline, a measurement reads the cache and asks the hub nothing.
    server.clear()
    target = f"results/metrics/{MEASURE_JOB}/checkpoint_metrics.parquet"
    result = run_snakemake(
        workdir, target, "--cores", "2", *ARGS, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert server.log == []
    assert (workdir / target).is_file()
