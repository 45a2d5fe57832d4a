"""The rank-head sweep's tidy table: the gathering of every rank-head job's
rows with each backbone's original head. Kept apart from ``heads`` so that the gathering job
does not import torch."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from saturation.io import read_json, write_parquet
from saturation.tables import BACKBONE_SPECTRA_SCHEMA, RANK_HEADS_SCHEMA


def aggregate_rank_heads(head_paths, original_paths, out_path, spectra_path) -> None:
    """Every rank-head job's rows and each backbone's original head (``out_path``), and the
    original heads' singular values (``spectra_path``)."""
    spectra = []
    for p in original_paths:
        info = read_json(p)
        spectra += [
            {"backbone": info["backbone"], "step": info["step"], "index": i, "singular_value": v}
            for i, v in enumerate(info["singular_values"])
        ]
    write_parquet(pa.Table.from_pylist(spectra, schema=BACKBONE_SPECTRA_SCHEMA), spectra_path)
    rows = [r for p in head_paths for r in pq.read_table(p, schema=RANK_HEADS_SCHEMA).to_pylist()]
    for p in original_paths:
        info = read_json(p)
        d, v = info["head_input_size"], info["vocab_size"]
        rows.append(
            {
                "backbone": info["backbone"],
                "step": info["step"],
                "head": "original",
                "kind": "linear",
                "components": 1,
                "r": min(d, v),
                "hidden_size": d,
                "vocab_size": v,
                "trainable_params": 0,
                "training_tokens": 0,
                "steps": 0,
                "init": None,
                "protocol": None,
                "lr": 0.0,
                "select_loss": None,
                "chosen": True,
                "eval_loss": info["eval_loss"],
                "eval_accuracy": info["eval_accuracy"],
            }
        )
    table = pa.Table.from_pylist(rows, schema=RANK_HEADS_SCHEMA)
    table = table.sort_by(
        [
            ("backbone", "ascending"),
            ("step", "ascending"),
            ("head", "ascending"),
            ("kind", "ascending"),
            ("r", "ascending"),
            ("lr", "ascending"),
        ]
    )
    write_parquet(table, out_path)
