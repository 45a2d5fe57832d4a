"""Each model's best and final checkpoint, chosen fairly.

The best checkpoint is the minimum of ~150 noisy losses; picked and reported on the same
text, its loss is biased low, and so is best-vs-final. The evaluation documents are split
in two halves (:func:`saturation.metrics.document_half`): the best checkpoint is the one
with the lowest loss on the *select* half (earliest on ties), and every reported loss is
measured on the *report* half, which the choice never saw; the whole-sample loss is kept
beside it, labelled. The saturation table, Fig 1b, the downstream selection and Table 1
all use this one choice.
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa

from saturation.io import write_parquet
from saturation.tables import SELECTION_SCHEMA

log = logging.getLogger(__name__)

LOSSES = {"loss": "loss_whole", "loss_select": "loss_select", "loss_report": "loss_report"}
CHECKPOINT_KEYS = [
    "model",
    "step",
    "tokens_seen",
    "n_params",
    "n_params_no_embedding",
    "hidden_size",
]


class SelectionError(ValueError):
    """Checkpoints that cannot be selected as asked; the message names the model/step."""


def checkpoint_losses(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, step): the whole-sample loss and each half's, with the
    checkpoint's token count and parameter counts where the table has them."""
    rows = metrics[metrics.metric.isin(list(LOSSES))]
    missing = sorted(set(LOSSES) - set(rows.metric))
    if missing and not rows.empty:
        raise SelectionError(
            f"the metrics table has no {missing} rows (measured before the selection/report "
            "halves existed): re-run the measurements"
        )
    keys = [k for k in CHECKPOINT_KEYS if k in rows]
    wide = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="first")
    wide = wide.rename(columns=LOSSES).reset_index()
    wide.columns.name = None
    return wide.sort_values(["model", "step"], kind="stable").reset_index(drop=True)


def best_and_final(g: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """One model's best (minimum loss on the select half, earliest step on ties) and final
    (last step) rows of :func:`checkpoint_losses`."""
    g = g.sort_values("step", kind="stable")
    bad = g.step[g[["loss_select", "loss_report", "loss_whole"]].isna().any(axis=1)].tolist()
    if bad:
        raise SelectionError(f"model {g.model.iloc[0]!r} has no finite loss at steps {bad}")
    return g.loc[g.loss_select.idxmin()], g.iloc[-1]


def select_checkpoints(metrics: pd.DataFrame, models: list[str], steps: list[int]) -> pd.DataFrame:
    """Each model's best and final checkpoint, plus the configured steps; one row per
    (model, role, step)."""
    losses = checkpoint_losses(metrics)
    cols = ["loss_select", "loss_report", "loss_whole"]
    rows = []
    for model in models:
        g = losses[losses.model == model]
        if g.empty:
            raise SelectionError(f"model {model!r} has no measured loss")
        best, final = best_and_final(g)
        rows.append((model, "best", int(best.step), *best[cols]))
        rows.append((model, "final", int(final.step), *final[cols]))
        by_step = g.set_index("step")
        for step in steps:
            if step not in by_step.index:
                raise SelectionError(f"model {model!r} has no measured checkpoint at step {step}")
            rows.append((model, "step", int(step), *by_step.loc[step, cols]))
    sel = pd.DataFrame(rows, columns=["model", "role", "step", *cols])
    return sel.astype({c: float for c in cols})


def select_downstream(metrics_path: str, models: list[str], steps: list[int], out: str) -> None:
    from saturation.aggregation import trusted_metrics

    sel = select_checkpoints(trusted_metrics(pd.read_parquet(metrics_path)), models, steps)
    for r in sel.itertuples():
        log.info(
            "%s %s: step %d (loss %.4f on the report half, %.4f on the select half)",
            r.model,
            r.role,
            r.step,
            r.loss_report,
            r.loss_select,
        )
    write_parquet(pa.Table.from_pandas(sel, schema=SELECTION_SCHEMA, preserve_index=False), out)
