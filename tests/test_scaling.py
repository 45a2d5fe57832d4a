"""The scaling-law fit recovers planted parameters; the saturation table is right."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from saturation.io import write_parquet
from saturation.scaling import fit_plan, fit_scaling_law, saturation_analysis, scaling_law
from saturation.tables import METRICS_SCHEMA

PAPER = {"E": 1.69, "A": 119.09, "alpha": 0.246, "B": 410.7, "beta": 0.28}


def test_fit_recovers_planted_a_and_alpha():
    rng = np.random.default_rng(0)
    n = np.repeat([4.05e8, 1.01e9, 1.41e9, 2.78e9, 6.86e9, 1.18e10], 20)
    t = np.tile(np.geomspace(2e9, 3e11, 20), 6)
    loss = scaling_law(n, t, **PAPER) * (1 + 1e-4 * rng.standard_normal(n.size))
    fit = fit_scaling_law(
        n, t, loss, {k: PAPER[k] for k in ("E", "B", "beta")}, {"A": 50.0, "alpha": 0.5}
    )
    assert fit["A"] == pytest.approx(119.09, rel=0.01)
    assert fit["alpha"] == pytest.approx(0.246, rel=0.01)
    assert fit["free"] == ["A", "alpha"] and fit["E"] == 1.69
    assert fit["rmse"] < 1e-3


def test_fit_with_all_parameters_free_on_exact_points():
    n = np.repeat(np.geomspace(1e4, 1e7, 6), 8)
    t = np.tile(np.geomspace(1e5, 1e8, 8), 6)
    planted = {"E": 2.0, "A": 30.0, "alpha": 0.4, "B": 50.0, "beta": 0.3}
    fit = fit_scaling_law(
        n,
        t,
        scaling_law(n, t, **planted),
        {},
        {"E": 1.0, "A": 10.0, "alpha": 0.5, "B": 10.0, "beta": 0.5},
    )
    for k, v in planted.items():
        assert fit[k] == pytest.approx(v, rel=1e-4)


def test_too_few_points_is_an_error():
    with pytest.raises(ValueError, match="cannot determine"):
        fit_scaling_law(
            [1e6], [1e9], [3.0], {}, {"E": 1, "A": 1, "alpha": 0.3, "B": 1, "beta": 0.3}
        )


# Pythia's parameter counts (total, and without the input embedding and the untied head)
PYTHIA = {
    "pythia-14m": (14_067_712, 1_189_888),
    "pythia-160m": (162_322_944, 85_056_000),
    "pythia-410m": (405_334_016, 302_311_424),
    "pythia-1b": (1_011_781_632, 805_736_448),
    "pythia-1.4b": (1_414_647_808, 1_208_602_624),
    "pythia-2.8b": (2_775_208_960, 2_517_652_480),
}
TOKENS_PER_STEP = 2_097_152
STEPS = (1000, 2000, 4000, 8000, 16000, 32000, 64000, 143000)


def metrics_rows(model, step, n, loss, select=None, report=None, hidden=64):
    """The loss rows measure_checkpoint writes for one checkpoint."""
    base = dict(
        model=model,
        step=step,
        tokens_seen=step * TOKENS_PER_STEP,
        n_params=n[0],
        n_params_no_embedding=n[1],
        hidden_size=hidden,
        layer=None,
    )
    values = {
        "loss": loss,
        "loss_select": loss if select is None else select,
        "loss_report": loss if report is None else report,
        "accuracy": 0.5,
    }
    return [dict(base, metric=k, value=v) for k, v in values.items()]


def paper_suite(tmp_path, saturate=True):
    """Pythia-sized models whose losses follow the paper's law with total N; the two
    smallest saturate: after step 16000 their loss rises (on both halves), and their best
    checkpoint's select-half loss is a little lower than its report-half loss."""
    rows = []
    for model, n in PYTHIA.items():
        for step in STEPS:
            loss = scaling_law(n[0], step * TOKENS_PER_STEP, **PAPER)
            select = report = loss
            if saturate and model in ("pythia-14m", "pythia-160m"):
                loss += 0.1 * np.log2(step / 16000) if step > 16000 else 0
                select = report = loss
                if step == 16000:
                    select, report = loss - 0.01, loss + 0.01
                    loss = (select + report) / 2
            rows += metrics_rows(model, step, n, loss, select, report)
    path = tmp_path / "metrics.parquet"
    write_parquet(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), path)
    return path


def analyse(tmp_path, path, fit_models=None, parameters="total", **kw):
    out = {k: tmp_path / f"{k}.parquet" for k in ("sat", "fit", "pts")}
    kw = {
        "min_step": 1000,
        "fixed": {k: PAPER[k] for k in ("E", "B", "beta")},
        "initial": {"A": 50.0, "alpha": 0.5},
        **kw,
    }
    fits = saturation_analysis(
        path,
        fit_models or ["pythia-410m", "pythia-1b", "pythia-1.4b", "pythia-2.8b"],
        parameters,
        out_saturation=out["sat"],
        out_fit=out["fit"],
        out_points=out["pts"],
        **kw,
    )
    tables = {k: pd.read_parquet(v) for k, v in out.items()}
    return fits, tables


def test_both_parameter_counts_are_fitted_and_the_paper_constants_are_total_n(tmp_path):
    fits, t = analyse(tmp_path, paper_suite(tmp_path), reference={"A": 119.0, "alpha": 0.25})
    law = fits["total"]["law"]
    assert law["A"] == pytest.approx(119.09, rel=1e-6)
    assert law["alpha"] == pytest.approx(0.246, rel=1e-6)
    assert fits["total"]["rmse"] < 1e-9
    # The same points read with non-embedding N: another law, and a worse one.
    other = fits["non_embedding"]
    assert abs(other["law"]["alpha"] - 0.246) > 0.02 and other["rmse"] > 1e-4
    fit = t["fit"].set_index(["parameters", "parameter"])
    assert fit.loc[("total", "A"), "value"] == pytest.approx(119.09, rel=1e-6)
    assert fit.loc[("total", "A"), "fitted"] and not fit.loc[("total", "E"), "fitted"]
    assert fit.loc[("total", "A"), "selected"] and not fit.loc[("non_embedding", "A"), "selected"]
    assert fit.loc[("total", "n_points"), "value"] == 4 * len(STEPS)
    # The published values beside the fit (scaling.reference), for both counts; none else.
    assert fit.loc[("non_embedding", "alpha"), "reference"] == 0.25
    assert fit.reference.notna().sum() == 4
    # The arithmetic: the paper's law predicts 5.75 for pythia-14m's final checkpoint
    # with non-embedding N and 4.02 with total N.
    t_final = 143000 * TOKENS_PER_STEP
    paper = {k: PAPER[k] for k in PAPER}
    assert scaling_law(PYTHIA["pythia-14m"][1], t_final, **paper) == pytest.approx(5.75, abs=5e-3)
    assert scaling_law(PYTHIA["pythia-14m"][0], t_final, **paper) == pytest.approx(4.02, abs=5e-3)


def test_gaps_at_each_checkpoints_own_tokens_on_the_report_half(tmp_path):
    fits, t = analyse(tmp_path, paper_suite(tmp_path))
    sat = t["sat"]
    sat = sat[sat.parameters == "total"].set_index(["model", "role"])
    best = sat.loc[("pythia-14m", "best")]
    assert best.step == 16000  # chosen on the select half
    assert best.loss == pytest.approx(best.loss_whole + 0.01)  # reported on the other half
    # The law at this checkpoint's own T (not the final T), closed form:
    own = scaling_law(PYTHIA["pythia-14m"][0], 16000 * TOKENS_PER_STEP, **PAPER)
    assert best.extrapolated_loss == pytest.approx(own, rel=1e-9)
    assert best.relative_gap == pytest.approx(best.loss / own - 1, rel=1e-9)
    assert best.relative_gap_whole == pytest.approx(best.loss_whole / own - 1, rel=1e-9)
    final = sat.loc[("pythia-14m", "final")]
    assert final.step == 143000 and final.relative_gap > 0.05
    assert (
        sat.loc[("pythia-14m", "final"), "below_fit"]
        and not sat.loc[("pythia-1b", "final"), "below_fit"]
    )
    assert sat.loc[("pythia-1b", "final"), "in_fit"] and not best.in_fit
    assert abs(sat.loc[("pythia-2.8b", "final"), "relative_gap"]) < 1e-9
    # The average over the models below the fit, per role, in the fit table.
    below = sat[sat.below_fit]
    fit = t["fit"].set_index(["parameters", "parameter"]).value
    for role in ("best", "final"):
        expected = below.xs(role, level="role").relative_gap.mean()
        assert fit[("total", f"mean_relative_gap_{role}")] == pytest.approx(expected)
    assert fit[("total", "n_below_fit")] == 2
    assert len(t["pts"]) == 2 * 4 * len(STEPS)
    assert np.abs(t["pts"][t["pts"].parameters == "total"].residual).max() < 1e-9


def test_a_fit_that_cannot_run_is_skipped_with_a_note(tmp_path, caplog):
    path = paper_suite(tmp_path)
    fits, t = analyse(tmp_path, path, fit_models=["pythia-2.8b"], min_step=143000)
    assert fits["total"]["law"] is None
    fit = t["fit"]
    assert fit.note.str.contains(
        r"fit skipped: 1 model size\(s\) with points above the floor; the free size "
        r"parameters \['A', 'alpha'\] need 3"
    ).all()
    assert not fit.fitted.any()
    sat = t["sat"]
    assert sat.extrapolated_loss.isna().all() and sat.loss.notna().all()
    assert "fit skipped" in caplog.text


def test_fit_step_range_and_narrow_models_are_left_out(tmp_path):
    path = tmp_path / "metrics.parquet"
    rows = []
    for model, n, hidden in (("narrow", (10_000, 8_000), 16), ("wide", (90_000, 80_000), 64)):
        for step in STEPS:
            rows += metrics_rows(model, step, n, 3.0 + 1.0 / step, hidden=hidden)
    write_parquet(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), path)
    fits, t = analyse(
        tmp_path,
        path,
        fit_models=["narrow", "wide"],
        min_step=2000,
        max_step=64000,
        min_width=33,
        fixed={"E": 1.0, "A": 1.0, "alpha": 0.5, "B": 1.0},
        initial={"beta": 0.5},
    )
    pts = t["pts"]
    assert set(pts.model) == {"wide"}
    assert sorted(set(pts.step)) == [2000, 4000, 8000, 16000, 32000, 64000]
    assert t["fit"].note.str.contains(r"\['narrow'\] left out of the fit").all()
    sat = t["sat"].set_index(["parameters", "model", "role"])
    assert not sat.loc[("total", "narrow", "final"), "in_fit"]
    assert sat.loc[("total", "narrow", "final"), "below_fit"]


def test_a_parameter_at_its_bound_is_flagged(tmp_path):
    """Three widths whose losses barely differ cannot determine alpha: the fit runs it to
    its bound, and the table says so instead of presenting the law as determined."""
    path = tmp_path / "metrics.parquet"
    rows = []
    widths = (("w64", (130_000, 120_000), 0.002), ("w128", (460_000, 400_000), 0.0),
              ("w256", (1_700_000, 1_500_000), 0.0))  # fmt: skip
    for model, n, worse in widths:
        for step in STEPS:
            loss = 2.0 + 50.0 / (step * 1000) ** 0.5 + worse
            rows += metrics_rows(model, step, n, loss, hidden=64)
    write_parquet(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), path)
    fits, t = analyse(
        tmp_path,
        path,
        fit_models=["w64", "w128", "w256"],
        fixed={"E": 2.0},
        initial={"A": 10.0, "alpha": 0.5, "B": 10.0, "beta": 0.5},
    )
    assert fits["total"]["law"]["alpha"] == pytest.approx(3.0, abs=1e-3)
    assert t["fit"].note.str.contains("alpha ended at its bound").all()


def test_a_fit_needs_a_size_more_than_its_free_size_parameters():
    """Chinchilla's E, B, beta held: A and alpha need three sizes; alpha held too: two; no
    scaling.models: no fit. The plan says which."""
    chinchilla = {"E": 1.69, "B": 410.7, "beta": 0.28}
    assert fit_plan({"models": None, "fixed": chinchilla}) == ("no fit: scaling.models is not set")
    two = fit_plan({"models": ["a", "b"], "fixed": chinchilla})
    assert "names 2 model(s)" in two and "['A', 'alpha'] need 3 sizes" in two
    assert fit_plan({"models": ["a", "b", "c"], "fixed": chinchilla}) is None
    assert fit_plan({"models": ["a", "b"], "fixed": {**chinchilla, "alpha": 0.3}}) is None


def test_points_below_the_held_floor_are_left_out_and_a_collapsed_fit_is_flagged(tmp_path):
    """Three sizes on the paper's law, and a fourth, tiny run whose losses lie below the
    floor E + B / T^beta the held parameters set at its few tokens (no size term can
    explain them): its points are left out, named, and the law is recovered exactly. Then
    three sizes whose losses do not fall with N: the fit's size term vanishes and the table
    flags the fit as collapsed."""
    rows = []
    for model in ("pythia-410m", "pythia-1b", "pythia-1.4b"):
        for step in STEPS:
            loss = scaling_law(PYTHIA[model][0], step * TOKENS_PER_STEP, **PAPER)
            rows += metrics_rows(model, step, PYTHIA[model], loss)
    for step in (1, 2):  # 2M and 4M tokens: the floor is about 6 nats
        rows += metrics_rows("tiny", step, (1_000_000, 500_000), 5.0)
    path = tmp_path / "metrics.parquet"
    write_parquet(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), path)
    floor = PAPER["E"] + PAPER["B"] / (1 * TOKENS_PER_STEP) ** PAPER["beta"]
    assert floor > 5.0
    fits, t = analyse(tmp_path, path, fit_models=["tiny", "pythia-410m", "pythia-1b", "pythia-1.4b"],
                      min_step=1)  # fmt: skip
    law = fits["total"]["law"]
    assert law["A"] == pytest.approx(PAPER["A"], rel=1e-6)
    assert law["alpha"] == pytest.approx(PAPER["alpha"], rel=1e-6)
    assert "tiny" not in set(t["pts"].model)
    note = t["fit"].note.iloc[0]
    assert "2 of 26 points left out of the fit: their loss is below the floor" in note
    assert f"tiny step 1: 5.000 < {floor:.3f} nats" in note
    fit = t["fit"].set_index(["parameters", "parameter"]).value
    assert fit[("total", "collapsed")] == 0
    # Larger models worse: a size term falling with N can only vanish.
    rows = []
    for i, model in enumerate(("pythia-410m", "pythia-1b", "pythia-1.4b")):
        for step in STEPS:
            loss = (
                PAPER["E"] + 0.1 * (i + 1) + PAPER["B"] / (step * TOKENS_PER_STEP) ** PAPER["beta"]
            )
            rows += metrics_rows(model, step, PYTHIA[model], loss)
    write_parquet(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), path)
    fits, t = analyse(tmp_path, path, fit_models=["pythia-410m", "pythia-1b", "pythia-1.4b"])
    assert fits["total"]["collapsed"]
    fit = t["fit"].set_index(["parameters", "parameter"])
    assert fit.loc[("total", "collapsed"), "value"] == 1
    assert fit.loc[("total", "A"), "note"].count("fit collapsed") == 1
