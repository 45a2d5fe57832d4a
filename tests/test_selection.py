"""Best and final checkpoints: chosen on one half of the evaluation documents, reported on
the other, against a planted answer and against a direct computation of each half."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_gpt_neox
from saturation.metrics import MetricError, document_half, forward_metrics
from saturation.selection import SelectionError, checkpoint_losses, select_checkpoints


def metrics_table(losses: dict[str, dict[int, tuple[float, float]]]) -> pd.DataFrame:
    """Rows as measure_checkpoint writes them; each step's (select, report) losses, the whole
    sample's loss their mean (halves of equal size)."""
    rows = []
    for m, per_step in losses.items():
        for s, (sel, rep) in per_step.items():
            for metric, v in (
                ("loss_select", sel),
                ("loss_report", rep),
                ("loss", (sel + rep) / 2),
            ):
                rows.append({"model": m, "step": s, "metric": metric, "value": v})
    rows += [{"model": m, "step": 0, "metric": "accuracy", "value": 0.0} for m in losses]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # any row order


def test_best_is_chosen_on_the_select_half_and_reported_on_the_other():
    metrics = metrics_table(
        {
            # The select half's minimum is step 20 (tie with 30: earliest); on the report half
            # step 30 would look best, and on the whole sample too: a choice made on the
            # reported text would pick it.
            "a": {0: (9.0, 9.0), 10: (3.0, 3.1), 20: (2.5, 2.7), 30: (2.5, 2.4), 40: (2.8, 2.9)},
            "b": {0: (9.0, 9.0), 10: (4.0, 4.0), 20: (3.0, 3.0), 40: (2.0, 2.1)},  # monotone
        }
    )
    sel = select_checkpoints(metrics, ["a", "b"], steps=[10])
    got = {(r.model, r.role): (r.step, r.loss_report, r.loss_whole) for r in sel.itertuples()}
    assert got == {
        ("a", "best"): (20, 2.7, pytest.approx(2.6)),
        ("a", "final"): (40, 2.9, pytest.approx(2.85)),
        ("a", "step"): (10, 3.1, pytest.approx(3.05)),
        ("b", "best"): (40, 2.1, pytest.approx(2.05)),
        ("b", "final"): (40, 2.1, pytest.approx(2.05)),
        ("b", "step"): (10, 4.0, pytest.approx(4.0)),
    }
    with pytest.raises(SelectionError, match="step 30"):
        select_checkpoints(metrics, ["b"], steps=[30])
    with pytest.raises(SelectionError, match="'c'"):
        select_checkpoints(metrics, ["c"], steps=[])
    old = metrics[metrics.metric.isin(["loss", "accuracy"])]  # a table without the halves
    with pytest.raises(SelectionError, match="re-run the measurements"):
        checkpoint_losses(old)


def test_selection_bias_is_removed_on_pure_noise():
    """Checkpoints of equal true loss: choosing and reporting on the same text reports a
    best loss below the truth; reported on the other half it is unbiased."""
    rng = np.random.default_rng(0)
    same, fair = [], []
    for _ in range(100):
        noise = rng.normal(0, 0.05, size=(40, 2))
        sel = select_checkpoints(
            metrics_table({"m": {s: (3 + a, 3 + b) for s, (a, b) in enumerate(noise)}}), ["m"], []
        )
        best = sel[sel.role == "best"].iloc[0]
        same.append(best.loss_select - 3)
        fair.append(best.loss_report - 3)
    assert np.mean(same) < -0.08  # E[min of 40 N(0, 0.05)] = -0.11
    assert abs(np.mean(fair)) < 0.015  # 100 trials: standard error 0.005


def test_forward_metrics_halves_match_a_direct_computation():
    model = tiny_gpt_neox(hidden=16, layers=2, heads=2, vocab=20, context=12, seed=0)
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 20, n).astype(np.int32) for n in (12, 30, 5, 1, 9, 7)]
    out = forward_metrics(model, docs, sequence_length=12, batch_size=4)
    nll = {"select": 0.0, "report": 0.0}
    count = {"select": 0, "report": 0}
    with torch.no_grad():
        for i, doc in enumerate(docs):
            for start in range(0, len(doc) - 1, 11):  # pieces share a token
                piece = doc[start : start + 12]
                ids = torch.from_numpy(piece.astype(np.int64))[None]
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
                half = document_half(i)
                nll[half] -= logp[torch.arange(len(piece) - 1), ids[0, 1:]].sum().item()
                count[half] += len(piece) - 1
    assert document_half(0) == "select" and document_half(1) == "report"
    for half in ("select", "report"):
        assert out[f"loss_{half}"] == pytest.approx(nll[half] / count[half], rel=1e-6)
    whole = (nll["select"] + nll["report"]) / (count["select"] + count["report"])
    assert out["loss"] == pytest.approx(whole, rel=1e-6)
    with pytest.raises(MetricError, match="at least 2 are needed"):
        forward_metrics(model, [docs[1]], sequence_length=12, batch_size=4)
