"""The run's metric tables from its measuring jobs': checkpoints that serve another step's
weights flagged, unreadable ones stopped on or left out, and the rows the analysis may use."""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from saturation.io import write_parquet
from saturation.tables import CHECKPOINTS_SCHEMA, MEASURED_TABLES

log = logging.getLogger(__name__)


def read_tables(paths: list[str], schema: pa.Schema) -> list[pa.Table]:
    return [pq.read_table(p, schema=schema) for p in paths]


def concat(tables: list[pa.Table], keys=("model", "step")) -> pa.Table:
    return pa.concat_tables(tables).sort_by([(k, "ascending") for k in keys])


def aggregate_metrics(
    inputs: dict, outputs: dict, trusted_steps: dict | None = None, unreadable: str = "fail"
) -> None:
    """The run's table of each kind from its measuring jobs' parts: ``inputs`` {table: [a
    job's part, ...]}, ``outputs`` {table: path}, by the tables' names in
    :mod:`saturation.outputs` (checkpoints, checkpoint_metrics, head_spectra, and where the
    run measures them document_losses and truncated_heads).

    Checkpoints that serve the same weights as another step of the same model are all
    flagged (``duplicate_of_step``: the smallest other step of the group;
    ``duplicate_weights`` on their metrics): none of a group is trusted as the original,
    except the steps listed in ``trusted_steps`` ({model: [step, ...]}).

    Checkpoints the measuring jobs recorded as unreadable stop the aggregation, each named
    with its reason (``unreadable: fail``; the measured ones are kept, so a re-run measures
    only a checkpoint that changed), or are left out with a warning (``skip``).
    """
    jobs = read_tables(inputs["checkpoints"], MEASURED_TABLES["checkpoints"])
    check_unreadable(jobs, inputs["checkpoints"], unreadable)
    ckpts, duplicates, head_duplicates = checkpoints_table(concat(jobs), trusted_steps or {})
    write_parquet(
        pa.Table.from_pandas(ckpts, schema=CHECKPOINTS_SCHEMA, preserve_index=False),
        outputs["checkpoints"],
    )
    metrics = concat(
        read_tables(inputs["checkpoint_metrics"], MEASURED_TABLES["checkpoint_metrics"])
    )
    write_parquet(
        flag_duplicate_checkpoints(metrics, duplicates, head_duplicates),
        outputs["checkpoint_metrics"],
    )
    for name, keys in (
        ("head_spectra", ("model", "step")),
        ("document_losses", ("model", "step", "document")),
        ("truncated_heads", ("model", "step", "d")),
    ):
        if name in outputs:
            parts = read_tables(inputs[name], MEASURED_TABLES[name])
            write_parquet(concat(parts, keys), outputs[name])


def checkpoints_table(jobs: pa.Table, trusted_steps: dict) -> tuple[pd.DataFrame, set, set]:
    """The run's checkpoint records with the steps each duplicates, and the (model, step)
    keys flagged as serving another step's weights and as serving another step's head."""
    ckpts = jobs.to_pandas()
    # The hub's sha256 where the manifest has it (duplicates it found were never fetched, so
    # they have no fingerprint of their own), else the measured weights' fingerprint.
    ckpts["_weights"] = ckpts.weights_sha256.fillna(ckpts.weights_fingerprint)
    ckpts["duplicate_of_step"] = same_as_step(ckpts, "_weights")
    trusted = pd.Series(
        [s in trusted_steps.get(m, []) for m, s in zip(ckpts.model, ckpts.step, strict=True)],
        index=ckpts.index,
    )
    flagged = ckpts["duplicate_of_step"].notna() & ~trusted
    ckpts.loc[flagged, "status"] = "duplicate"
    ckpts = ckpts.drop(columns="_weights")
    # A head equal to another step's (files that differ can serve one head): no new point in
    # the head's figures, which leave it out.
    ckpts["duplicate_head_of_step"] = same_as_step(
        ckpts, "head_fingerprint", ckpts.status == "measured"
    )
    head_flagged = ckpts["duplicate_head_of_step"].notna() & ~trusted
    for model, g in ckpts[head_flagged].groupby("model"):
        log.warning(
            "%s: steps %s serve the LM head of another step; left out of the head's figures",
            model,
            g.step.tolist(),
        )
    why = {
        "duplicate": "serve another step's weights",
        "missing": "are missing",
        "unreadable": "are unreadable (metrics.unreadable: skip)",
    }
    for model, g in ckpts[ckpts.status != "measured"].groupby("model"):
        for status, h in g.groupby("status"):
            log.warning(
                "%s: steps %s %s, left out of the analysis", model, h.step.tolist(), why[status]
            )

    def keys(rows):
        return set(zip(ckpts.model[rows], ckpts.step[rows], strict=True))

    return ckpts, keys(flagged), keys(head_flagged)


def flag_duplicate_checkpoints(
    metrics: pa.Table, duplicates: set, head_duplicates: set
) -> pa.Table:
    """The metric rows with ``duplicate_weights`` and ``duplicate_head`` from the checkpoints'
    (model, step) keys."""
    keys = list(
        zip(metrics.column("model").to_pylist(), metrics.column("step").to_pylist(), strict=True)
    )
    for name, flagged in (("duplicate_weights", duplicates), ("duplicate_head", head_duplicates)):
        metrics = metrics.append_column(
            pa.field(name, pa.bool_()), pa.array([k in flagged for k in keys])
        )
    return metrics


def same_as_step(ckpts: pd.DataFrame, key: str, among=None) -> pd.Series:
    """For each checkpoint, the smallest other step of its model with the same ``key`` (a
    digest), or NA; ``among``: the rows that take part (default all)."""
    rows = ckpts if among is None else ckpts[among]
    others = {}
    for _, steps in rows.dropna(subset=[key]).groupby(["model", key])["step"]:
        for i in steps.index:
            rest = [int(x) for x in steps if x != steps[i]]
            if rest:
                others[i] = min(rest)
    return pd.Series(
        pd.array([others.get(i) for i in ckpts.index], dtype="Int64"), index=ckpts.index
    )


class UnreadableCheckpoints(RuntimeError):
    """Checkpoints the measuring jobs could not read; the message names each."""


def unreadable_lines(ckpts: pd.DataFrame) -> list[str]:
    """One line per checkpoint recorded as unreadable: model, step and reason."""
    bad = ckpts[ckpts.status == "unreadable"]
    return [f"{r.model} step {int(r.step)}: {r.reason}" for r in bad.itertuples()]


def check_unreadable(tables: list[pa.Table], paths: list[str], policy: str) -> None:
    """Stop (``fail``) or warn (``skip``) on the checkpoints the measuring jobs recorded as
    unreadable, each named with its reason and the table of its job (``paths``)."""
    lines, jobs = [], []
    for table, path in zip(tables, paths, strict=True):
        found = unreadable_lines(table.to_pandas())
        lines += found
        jobs += [str(path)] * bool(found)
    if not lines:
        return
    if policy == "skip":
        measured = sum((t.column("status").to_numpy(zero_copy_only=False) == "measured").sum()
                       for t in tables)  # fmt: skip
        if not measured:
            raise UnreadableCheckpoints(
                "none of the run's checkpoints could be read, so nothing is left to analyse "
                "(metrics.unreadable: skip leaves out the unreadable ones):\n  "
                + "\n  ".join(lines)
            )
        for line in lines:
            log.warning("left out, unreadable: %s", line)
        return
    raise UnreadableCheckpoints(
        f"{len(lines)} checkpoint(s) could not be read, and metrics.unreadable is 'fail':\n  "
        + "\n  ".join(lines)
        + "\nEvery other checkpoint's measurement is kept. Repair or replace these checkpoints "
        "(a local checkpoint whose files change is measured again, by itself; after a repair "
        "the workflow cannot see, such as a hub revision's files in the Hugging Face cache: "
        f"snakemake --forcerun {' '.join(jobs)}), or set metrics.unreadable: skip to leave "
        "them out of the analysis."
    )


def left_out_report(checkpoints_table: str) -> str | None:
    """What a finished run says at its end about the checkpoints it left out as unreadable
    (None where there were none, or the table was not made)."""
    from pathlib import Path

    if not Path(checkpoints_table).is_file():
        return None
    ckpts = pd.read_parquet(checkpoints_table, columns=["model", "step", "status", "reason"])
    lines = unreadable_lines(ckpts)
    if not lines:
        return None
    return (
        f"{len(lines)} checkpoint(s) were unreadable and are left out of the analysis "
        f"(metrics.unreadable: skip; {checkpoints_table}, status 'unreadable'):\n  "
        + "\n  ".join(lines)
    )


def distinct_heads(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of checkpoints whose LM head no other step serves (the head's figures)."""
    if "duplicate_head" not in metrics:
        return metrics
    return metrics[~metrics.duplicate_head]


def trusted_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metric rows the analysis may use: checkpoints flagged as serving another step's
    weights are left out, with a warning naming them."""
    if "duplicate_weights" not in metrics:
        return metrics
    dup = metrics[metrics.duplicate_weights]
    for model, g in dup.groupby("model"):
        log.warning(
            "%s: steps %s serve another step's weights; left out",
            model,
            sorted(set(g.step.astype(int))),
        )
    return metrics[~metrics.duplicate_weights]
