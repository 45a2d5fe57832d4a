"""The scaling-law fit recovers planted parameters; the saturation table is right."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from saturation.io import write_parquet
from saturation.scaling import fit_scaling_law, saturation_analysis, scaling_law
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


def test_saturation_analysis_best_final_and_gaps(tmp_path):
    rows = []
    law = PAPER
    for model, n in (("small", 7e7), ("big1", 4e8), ("big2", 1e9), ("big3", 3e9)):
        for step in (1000, 2000, 4000, 8000, 16000):
            t = step * 2_097_152
            loss = scaling_law(n, t, **law)
            if model == "small" and step >= 8000:
                loss += 0.3 * (step / 8000)  # saturation: the loss goes back up
            for metric, value in (("loss", loss), ("accuracy", 0.5)):
                rows.append(
                    dict(
                        model=model,
                        step=step,
                        tokens_seen=t,
                        n_params=int(n * 1.1),
                        n_params_no_embedding=int(n),
                        hidden_size=64,
                        metric=metric,
                        layer=None,
                        value=value,
                    )
                )
    path = tmp_path / "metrics.parquet"
    write_parquet(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), path)
    out = {k: tmp_path / f"{k}.parquet" for k in ("sat", "fit", "pts")}
    fit = saturation_analysis(
        path,
        ["big1", "big2", "big3"],
        "non_embedding",
        1000,
        {k: law[k] for k in ("E", "B", "beta")},
        {"A": 50.0, "alpha": 0.5},
        out["sat"],
        out["fit"],
        out["pts"],
    )
    assert fit["A"] == pytest.approx(119.09, rel=1e-6)
    sat = pd.read_parquet(out["sat"]).set_index(["model", "role"])
    assert sat.loc[("small", "best"), "step"] == 4000
    assert sat.loc[("small", "final"), "step"] == 16000
    assert sat.loc[("small", "final"), "relative_gap"] > 0.1
    assert sat.loc[("small", "best"), "relative_gap"] == pytest.approx(0, abs=1e-9)
    assert abs(sat.loc[("big2", "final"), "relative_gap"]) < 1e-9
    assert not sat.loc[("small", "best"), "in_fit"] and sat.loc[("big1", "final"), "in_fit"]
    pts = pd.read_parquet(out["pts"])
    assert len(pts) == 15 and np.abs(pts.residual).max() < 1e-9
    fit_table = pd.read_parquet(out["fit"]).set_index("parameter")
    assert fit_table.loc["alpha", "fitted"] and not fit_table.loc["E", "fitted"]
