"""The workflow end to end on the tiny config, and the paper config planned offline."""

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import FIGURES, copy_workflow, job_stats, load_yaml, run_snakemake
from saturation.loading import load_model
from saturation.tables import CORPUS_SCHEMA


def test_tiny_run_builds_corpus_and_checkpoints(tiny_run):
    config = load_yaml(tiny_run / "config" / "config.yaml")
    for split in ("train", "eval"):
        table = pq.read_table(tiny_run / f"results/corpus/{split}.parquet")
        assert table.schema.equals(CORPUS_SCHEMA, check_metadata=False)
        meta = json.loads((tiny_run / f"results/corpus/{split}.json").read_text())
        assert meta["n_tokens"] == config["corpus"][f"{split}_tokens"]
    language = json.loads((tiny_run / "results/corpus/synthetic_language.json").read_text())
    assert language["rank"] == 4 and language["softmax_rank_bound"] == 5
    assert 0 < language["entropy_rate"] < language["unigram_entropy"]
    for model, hidden in (("tiny-d8", 8), ("tiny-d16", 16)):
        for step in (0, 1, 2, 4, 20, 40):
            path = tiny_run / f"results/checkpoints/{model}/step{step}"
            assert (path / "model.safetensors").is_file()
        m = load_model(tiny_run / f"results/checkpoints/{model}/step40")
        assert m.config.hidden_size == hidden and not m.config.tie_word_embeddings
        history = pq.read_table(tiny_run / f"results/training/{model}.parquet").to_pandas()
        assert len(history) == 40 and history.loss.iloc[-5:].mean() < history.loss.iloc[:5].mean()
        assert "100%" in (tiny_run / f"logs/checkpoints/train_{model}.log").read_text()


def test_rerun_has_nothing_to_do(tiny_run):
    result = run_snakemake(tiny_run, "-n", "--cores", "1")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_the_paper_config_plans_where_another_config_ran(tiny_run, tmp_path):
    """A dry run of config/pythia.yaml over another run's results/, copied in without
    Snakemake's record of them: the other run's downstream selection (a checkpoint's output,
    read as it stands) must add no evaluation of its models, whose checkpoints this run
    cannot make."""
    import shutil

    workdir = copy_workflow(tmp_path)
    shutil.copytree(tiny_run / "results", workdir / "results")
    result = run_snakemake(
        workdir,
        "-n",
        "--configfile",
        "config/pythia.yaml",
        env={"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"},
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "tiny-d16" not in result.stdout


def test_tiny_run_measures_every_checkpoint(tiny_run):
    import pandas as pd

    metrics = pd.read_parquet(tiny_run / "results/tables/checkpoint_metrics.parquet")
    assert set(metrics.model) == {"tiny-d8", "tiny-d16"}
    assert sorted(metrics.step.unique()) == [0, 1, 2, 4, 20, 40]
    assert not metrics.value.isna().any()
    per_ckpt = metrics.groupby(["model", "step"]).metric.value_counts().unstack()
    assert (per_ckpt["loss"] == 1).all() and (per_ckpt["anisotropy"] == 4).all()  # 2 blocks + 2
    assert (per_ckpt["loss_select"] == 1).all() and (per_ckpt["loss_report"] == 1).all()
    loss = metrics[metrics.metric == "loss"].set_index(["model", "step"]).value
    floor = json.loads((tiny_run / "results/corpus/synthetic_language.json").read_text())
    assert loss[("tiny-d16", 40)] < loss[("tiny-d16", 0)]
    assert loss.min() > floor["entropy_rate"] - 0.05
    spectra = pd.read_parquet(tiny_run / "results/tables/head_spectra.parquet")
    assert spectra.groupby(["model", "step"]).size().to_dict()[("tiny-d16", 40)] == 16
    sat = pd.read_parquet(tiny_run / "results/tables/saturation.parquet")
    assert set(sat.role) == {"best", "final"} and len(sat[sat.selected]) == 4
    assert set(sat.parameters) == {"total", "non_embedding"} and len(sat) == 8
    # Each document's loss: the report half's sums give the report loss, and each model's
    # final - best is that of its two checkpoints' report losses, with a standard error.
    docs = pd.read_parquet(tiny_run / "results/tables/document_losses.parquet")
    report = docs[docs.half == "report"].groupby(["model", "step"])[["nll", "n_predicted"]].sum()
    by = metrics[metrics.metric == "loss_report"].set_index(["model", "step"]).value
    np.testing.assert_allclose(
        (report.nll / report.n_predicted).sort_index(), by.sort_index(), rtol=1e-12
    )
    for model, g in sat[sat.selected].groupby("model"):
        best, final = (g[g.role == r].step.item() for r in ("best", "final"))
        expected = by[(model, final)] - by[(model, best)]
        assert g.final_minus_best.tolist() == pytest.approx([expected] * 2, abs=1e-12)
        assert (g.final_minus_best_se >= 0).all() and g.saturated.notna().all()
        assert (g.final_minus_best_low <= g.final_minus_best_high).all()
    for fig in FIGURES:
        for ext in ("png", "pdf"):
            assert (tiny_run / f"results/figures/{fig}.{ext}").stat().st_size > 1000


def test_jobs_of_one_or_several_make_the_same_tables(tiny_run, tmp_path):
    """The tiny run measures both models' checkpoints in one job, evaluates both models'
    selections in one job and trains a head a job. Cut otherwise (a model's six checkpoints
    a job, one model's two evaluations a job, all four heads in one), from the same corpus,
    checkpoints and feature cache, the tables are the same bytes."""
    import shutil

    import pandas as pd
    import yaml

    both = "results/metrics/tiny-d8.step0-tiny-d16.step40/checkpoint_metrics.parquet"
    assert (tiny_run / both).is_file()
    selection = pd.read_parquet(tiny_run / "results/downstream/selection.parquet")
    evaluated = sorted(set(zip(selection.model, selection.step, strict=True)))
    # Each model's best/final checkpoint and step 20: four evaluations, one job across models.
    assert len(evaluated) == 4 and [m for m, _ in evaluated] == ["tiny-d16"] * 2 + ["tiny-d8"] * 2
    (m0, s0), (m1, s1) = evaluated[0], evaluated[-1]
    written = sorted(p.name for p in (tiny_run / "results/downstream").glob("*.parquet"))
    assert written == sorted(["selection.parquet", f"{m0}.step{s0}-{m1}.step{s1}.parquet"])
    workdir = copy_workflow(tmp_path, tiny_run / "config" / "config.yaml")
    config = load_yaml(workdir / "config" / "config.yaml")
    config["metrics"]["checkpoints_per_job"] = 6
    config["downstream"]["checkpoints_per_job"] = 2
    config["rank_heads"]["ranks_per_job"] = 4
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    backbone = "results/rank_heads/tiny-d16/step40"
    for folder in ("results/corpus", "results/checkpoints", f"{backbone}/cache"):
        shutil.copytree(tiny_run / folder, workdir / folder)  # mtimes kept: not re-made
    shutil.copy2(tiny_run / backbone / "original.json", workdir / backbone / "original.json")
    tables = ["checkpoint_metrics", "head_spectra", "checkpoints", "rank_heads", "downstream"]
    targets = [f"results/tables/{t}.parquet" for t in tables]
    result = run_snakemake(workdir, *targets, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_stats(result.stderr)
    assert jobs["measure_checkpoint"] == 2 and jobs["rank_head"] == 1
    assert "feature_cache" not in jobs and "train_minisuite" not in jobs
    # (evaluations join the DAG after the selection: they are not in the first job stats)
    assert result.stderr.count("rule evaluate_downstream:") == 2
    for model in ("tiny-d8", "tiny-d16"):
        assert (workdir / f"results/downstream/{model}/step20-40.parquet").is_file()
    for target in targets:
        assert (workdir / target).read_bytes() == (tiny_run / target).read_bytes(), target
    assert (workdir / f"{backbone}/r1-full.parquet").is_file()
    assert (workdir / "results/metrics/tiny-d16/step0-40/checkpoint_metrics.parquet").is_file()
    result = run_snakemake(workdir, both, "-n")
    assert result.returncode != 0
    expected = "= 6, its jobs are tiny-d8/step0-40, tiny-d16/step0-40"
    assert expected in result.stdout


def test_tiny_run_sweeps_rank_heads(tiny_run):
    import pandas as pd

    heads = pd.read_parquet(tiny_run / "results/tables/rank_heads.parquet")
    assert sorted(heads[heads["head"] == "rank"].r) == [1, 4, 8]
    assert set(heads["head"]) == {"rank", "full", "original"}
    assert heads.eval_accuracy.between(0, 1).all() and not heads.eval_loss.isna().any()
    # The original head scored on the cached features is the measured loss of that checkpoint.
    metrics = pd.read_parquet(tiny_run / "results/tables/checkpoint_metrics.parquet")
    measured = metrics.query("model == 'tiny-d16' and step == 40 and metric == 'loss'").value.item()
    original = heads[heads["head"] == "original"].eval_loss.item()
    assert original == pytest.approx(measured, rel=1e-6)
    assert (tiny_run / "results/rank_heads/tiny-d16/step40/cache/train_00000.safetensors").exists()
    assert (tiny_run / "results/figures/fig6_rank_heads.png").stat().st_size > 1000


def test_the_papers_protocol_streams_the_backbone_and_chooses_each_ranks_rate(tiny_run, tmp_path):
    """rank_heads.protocol: paper on the tiny run's checkpoints: one job streams the backbone
    to every (kind, rank, rate) head; the training tokens are seen once (all but the packed
    stream's first are targets); each (kind, rank) keeps one rate; Fig 9 is drawn."""
    import shutil

    import pandas as pd
    import yaml

    workdir = copy_workflow(tmp_path, tiny_run / "config" / "config.yaml")
    config = load_yaml(workdir / "config" / "config.yaml")
    config["rank_heads"] |= {
        "protocol": "paper", "kinds": ["linear", "mixture"], "mixture_components": 2,
        "init": "normal", "lr_grid": [0.01, 0.05], "train_tokens": 3000, "select_tokens": 500,
        "batch_sequences": 8, "ranks_per_job": 4,
    }  # fmt: skip
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    for folder in ("results/corpus", "results/checkpoints"):
        shutil.copytree(tiny_run / folder, workdir / folder)  # mtimes kept: not re-made
    targets = ["results/tables/rank_heads.parquet", "results/figures/fig9_learning_rates.png"]
    result = run_snakemake(workdir, *targets, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_stats(result.stderr)
    assert jobs["stream_rank_heads"] == 1 and jobs["score_original_head"] == 1
    assert "feature_cache" not in jobs and "train_minisuite" not in jobs
    heads = pd.read_parquet(workdir / "results/tables/rank_heads.parquet")
    trained = heads[heads["head"] != "original"]
    # 3 ranks x 2 kinds + the full-rank control, each at 2 rates
    assert len(trained) == 14 and set(trained.lr) == {0.01, 0.05}
    assert (trained.groupby(["kind", "r", "head"]).chosen.sum() == 1).all()
    assert (trained.training_tokens == 3000 - 1).all() and (trained.protocol == "paper").all()
    assert trained.select_loss.notna().all() and (trained.init == "normal").all()
    mixture = trained[trained.kind == "mixture"]
    assert set(mixture.r) == {1, 4, 8} and (mixture.components == 2).all()
    # the original head on the evaluation split: the measured loss of that checkpoint
    metrics = pd.read_parquet(tiny_run / "results/tables/checkpoint_metrics.parquet")
    measured = metrics.query("model == 'tiny-d16' and step == 40 and metric == 'loss'").value.item()
    original = heads[heads["head"] == "original"].eval_loss.item()
    assert original == pytest.approx(measured, rel=1e-6)
    assert (workdir / "results/figures/fig9_learning_rates.png").stat().st_size > 1000


def test_tiny_run_evaluates_best_and_final_downstream(tiny_run):
    import pandas as pd

    from saturation.tables import DOWNSTREAM_SCHEMA

    table = pq.read_table(tiny_run / "results/tables/downstream.parquet")
    assert table.schema.equals(DOWNSTREAM_SCHEMA, check_metadata=False)
    down = table.to_pandas()
    metrics = pd.read_parquet(tiny_run / "results/tables/checkpoint_metrics.parquet")
    loss = metrics[metrics.metric == "loss"]
    for model, g in loss.groupby("model"):
        roles = down[down.model == model].groupby("role").step.unique().to_dict()
        assert list(roles["best"]) == [int(g.step[g.value == g.value.min()].min())]
        assert list(roles["final"]) == [40] and list(roles["step"]) == [20]
    assert set(down.task) == {"synthetic_next_token", "synthetic_choice"}
    acc = down[down.metric == "acc"]
    assert acc.value.between(0, 1).all() and (down.n_items == 64).all()
    # the trained model beats chance on the 4-way choice (25%)
    final = acc[(acc.role == "final") & (acc.task == "synthetic_choice")]
    assert (final.value > 0.3).all()
    md = (tiny_run / "results/tables/table1.md").read_text()
    assert md.count("\n") == 2 + 2 * 3  # header, rule, 2 models x 3 (task, metric) rows
    assert (tiny_run / "results/tables/table1.tex").read_text().startswith(r"\begin{tabular}")
    assert "<table>" in (tiny_run / "results/tables/table1.html").read_text()


def test_each_figure_writes_the_numbers_it_plots_beside_it(tiny_run):
    """Every figure's CSV read back: its units given, and its numbers those of the tables it
    draws from (Fig 1a's losses, Fig 4's sigma_i / sigma_1, Fig 8's losses and W-errors)."""
    import pandas as pd

    from saturation.figures import read_plotted
    from saturation.ngrams import head_w_error

    plotted = {fig: read_plotted(tiny_run / f"results/figures/{fig}.csv") for fig in FIGURES}
    for fig, frame in plotted.items():
        assert len(frame) and set(frame.attrs["units"]) == set(frame.columns), fig
    tables = tiny_run / "results/tables"
    metrics = pd.read_parquet(tables / "checkpoint_metrics.parquet")
    loss = metrics[(metrics.metric == "loss") & (metrics.step > 0)].set_index(["model", "step"])
    fig1a = plotted["fig1a_loss"].set_index(["series", "step"]).value
    pd.testing.assert_series_equal(
        fig1a.sort_index(), loss.value.sort_index(), check_names=False, check_index_type=False
    )
    spectra = pd.read_parquet(tables / "head_spectra.parquet")
    ratio = spectra.singular_value / spectra.groupby(["model", "step"]).singular_value.transform(
        "max"
    )
    fig4 = plotted["fig4_head_spectrum"].merge(spectra.assign(ratio=ratio))
    assert len(fig4) == len(spectra)
    np.testing.assert_allclose(fig4.sigma_over_sigma1, fig4.ratio, rtol=1e-12)
    heads = pd.read_parquet(tables / "rank_heads.parquet")
    fig8 = plotted["fig8_loss_vs_w_error"]
    ranked = heads[heads["head"] == "rank"]
    assert sorted(fig8.r) == sorted(ranked.r)
    # Fig 8's spectra, read by the rank heads' jobs, are the head's as its metrics job read it
    backbone_spectra = pd.read_parquet(tables / "backbone_spectra.parquet")
    assert len(backbone_spectra) and set(backbone_spectra.backbone) == set(heads.backbone)
    for (backbone, step), own in backbone_spectra.groupby(["backbone", "step"]):
        measured = spectra[(spectra.model == backbone) & (spectra.step == step)]
        np.testing.assert_allclose(
            own.sort_values("index").singular_value,
            measured.sort_values("index").singular_value,
            rtol=1e-9,
        )
    for row in fig8.itertuples():
        sigma = spectra[(spectra.model == row.backbone) & (spectra.step == row.step)]
        own = head_w_error(sigma.sort_values("index").singular_value.to_numpy())
        assert row.head_w_error == pytest.approx(own[row.r], rel=1e-12)
        assert row.eval_loss == ranked[ranked.r == row.r].eval_loss.item()
    # Beyond the paper: the head truncated to its full rank scores the pass's loss, its
    # W-errors are the spectrum's, and Fig 10 plots the table; Figs 11-13 the metric rows.
    truncated = pd.read_parquet(tables / "truncated_heads.parquet")
    full = truncated[truncated.d == truncated.head_rank].set_index(["model", "step"]).loss
    every_loss = metrics[metrics.metric == "loss"].set_index(["model", "step"]).value
    np.testing.assert_allclose(full, every_loss.reindex(full.index), atol=1e-5)
    for (model, step), g in truncated.groupby(["model", "step"]):
        sigma = spectra[(spectra.model == model) & (spectra.step == step)]
        own = head_w_error(sigma.sort_values("index").singular_value.to_numpy())
        np.testing.assert_allclose(g.w_error, own[g.d], rtol=1e-6)
    fig10 = plotted["fig10_truncated_heads"].merge(truncated, on=["model", "step", "d"])
    np.testing.assert_allclose(fig10.gap_x, fig10.gap_y, rtol=1e-12)
    for fig, name in (("fig11_gradient_bottleneck", "gradient_share_pooled"),
                      ("fig12_head_frequency", "frequency_rho_1"),
                      ("fig13_representation_rank", "rankme")):  # fmt: skip
        drawn = plotted[fig]
        drawn = drawn[drawn.metric == name].set_index(["series", "step"]).value
        rows = metrics[(metrics.metric == name) & (metrics.step > 0)]
        want = rows.set_index(["model", "step"]).value.reindex(drawn.index)
        np.testing.assert_allclose(drawn, want, rtol=1e-12)


def test_story_clozes_data_folder_plans_its_task_for_the_prefetch(tmp_path):
    """With downstream.story_cloze_dir set, prefetch plans the StoryCloze task written from
    its files (the harness then loads it, so a bad folder fails before any evaluation)."""
    workdir = copy_workflow(tmp_path)
    (workdir / "config" / "story.yaml").write_text(
        f"downstream: {{story_cloze_dir: {tmp_path / 'rocstories'}}}\n"
    )
    args = ("prefetch", "-n", "--configfile", "config/pythia.yaml", "config/story.yaml")
    env = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = run_snakemake(workdir, *args, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"story_cloze_task\s+1\n", result.stdout)
    assert "results/downstream/harness_tasks/storycloze_2016.yaml" in result.stdout


# How the registry's wildcards read in a path (the workflow's wildcard constraints).
WILDCARDS = {"split": "train|eval", "step": r"\d+", "job": ".+", "sample": ".+"}


def registry_patterns():
    from saturation.outputs import OUTPUTS

    patterns = []
    for entry in OUTPUTS.values():
        parts = re.split(r"(\{\w+\})", entry.path)
        regex = "".join(
            f"({WILDCARDS.get(p[1:-1], '[^/]+')})" if p.startswith("{") else re.escape(p)
            for p in parts
        )
        # a folder's outputs: the files under it
        patterns.append((entry, re.compile(regex + ("(/.+)?" if "." not in parts[-1] else ""))))
    return patterns


def written_by(workdir: Path) -> dict[str, str]:
    """{path: rule} of every output Snakemake recorded, from its metadata (file names are
    the paths' urlsafe base64, long ones cut into folders whose names start with @)."""
    import base64

    found = {}
    root = workdir / ".snakemake" / "metadata"
    for record in root.rglob("*"):
        if record.is_file():
            encoded = "".join(p.lstrip("@") for p in record.relative_to(root).parts)
            path = base64.urlsafe_b64decode(encoded).decode()
            found[path] = json.loads(record.read_text())["rule"]
    return found


def test_every_file_a_run_writes_is_in_the_output_registry_with_its_rule_and_schema(tiny_run):
    """Each file under results/ is an entry of saturation/outputs.py (the most specific path
    that matches), written by the entry's rule as Snakemake recorded it, and each Parquet
    table has the entry's columns and types."""
    patterns = registry_patterns()
    rules = written_by(tiny_run)
    seen, unknown = set(), []
    for path in sorted((tiny_run / "results").rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(tiny_run))
        matches = [(e, m) for e, m in ((e, p.fullmatch(rel)) for e, p in patterns) if m]
        if not matches:
            unknown.append(rel)
            continue
        entry, match = min(matches, key=lambda em: em[0].path.count("{"))
        seen.add(entry.name)
        folder = "." not in Path(entry.path).name  # a directory() output: its files
        output = rel[: match.start(match.lastindex)] if folder else rel
        rule = rules.get(output)
        assert rule is not None, f"{rel}: no rule recorded writing it"
        expected = entry.rule.replace("{fig}", Path(rel).stem).split(" | ")
        assert rule in expected, f"{rel}: written by {rule}, the registry says {entry.rule}"
        if entry.schema is not None:
            schema = pq.read_schema(path)
            got = [(f.name, f.type) for f in schema]
            assert got == [(f.name, f.type) for f in entry.schema], rel
    assert unknown == []
    # The tiny run writes every stage's outputs.
    for name in ("corpus", "training_history", "checkpoint_metrics_part", "checkpoint_metrics",
                 "head_spectra", "truncated_heads", "rank_heads_part", "rank_heads",
                 "ngram_spectra", "selection", "downstream_part", "table1_md", "figure_csv",
                 "minisuite_checkpoint", "token_counts"):  # fmt: skip
        assert name in seen, name
