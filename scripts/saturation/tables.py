"""Table schemas of the metrics stage, and the per-checkpoint job that fills them."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from saturation.io import write_parquet

log = logging.getLogger(__name__)

CHECKPOINT_COLUMNS = [
    ("model", pa.string()),
    ("step", pa.int64()),
    ("tokens_seen", pa.int64()),
    ("n_params", pa.int64()),
    ("n_params_no_embedding", pa.int64()),
    ("hidden_size", pa.int64()),
]
METRICS_SCHEMA = pa.schema(
    CHECKPOINT_COLUMNS + [("metric", pa.string()), ("layer", pa.int64()), ("value", pa.float64())]
)
SPECTRA_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("index", pa.int64()),
        ("singular_value", pa.float64()),
    ]
)
CHECKPOINTS_SCHEMA = pa.schema(
    CHECKPOINT_COLUMNS
    + [
        ("vocab_size", pa.int64()),
        ("n_layers", pa.int64()),
        ("tied_head", pa.bool_()),
        ("n_predicted_tokens", pa.int64()),
        ("head_fingerprint", pa.string()),
        ("weights_fingerprint", pa.string()),
    ]
)


def measure_checkpoint(
    model_name: str,
    step: int,
    tokens_per_step: int,
    checkpoint_dir: str,
    eval_path: str,
    sequence_length: int,
    batch_size: int,
    dtype: str,
    device: str,
    allow_pickle: bool,
    out_metrics: str,
    out_spectrum: str,
    out_checkpoint: str,
    threads: int = 1,
    progress_file=None,
) -> None:
    import torch

    from saturation.checkpoints import load_model
    from saturation.corpus import read_tokens
    from saturation.metrics import (
        fingerprints,
        forward_metrics,
        parameter_counts,
        singular_values,
        spectrum_metrics,
    )

    torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(checkpoint_dir, allow_pickle, dtype=getattr(torch, dtype), device=device)
    log.info("%s step %d on %s in %s", model_name, step, device, dtype)
    head = model.get_output_embeddings().weight
    sigma = singular_values(head)
    spec = spectrum_metrics(sigma)
    fwd = forward_metrics(
        model, read_tokens(eval_path), sequence_length, batch_size, device, progress_file
    )
    counts = parameter_counts(model)
    base = {
        "model": model_name,
        "step": step,
        "tokens_seen": step * tokens_per_step,
        **counts,
        "hidden_size": model.config.hidden_size,
    }
    metrics = [("loss", None, fwd["loss"]), ("accuracy", None, fwd["accuracy"])]
    metrics += [("anisotropy", i, a) for i, a in enumerate(fwd["anisotropy"])]
    metrics += [(k, None, v) for k, v in spec.items()]
    rows = {k: [v] * len(metrics) for k, v in base.items()}
    rows["metric"], rows["layer"], rows["value"] = map(list, zip(*metrics, strict=True))
    if not np.isfinite(rows["value"]).all():  # never a silent NaN in a table
        bad = [m for m, _, v in metrics if not np.isfinite(v)]
        raise ValueError(f"{model_name} step {step}: non-finite metrics {bad}")
    write_parquet(pa.table(rows, schema=METRICS_SCHEMA), out_metrics)
    write_parquet(
        pa.table(
            {
                "model": [model_name] * len(sigma),
                "step": [step] * len(sigma),
                "index": np.arange(len(sigma)),
                "singular_value": sigma,
            },
            schema=SPECTRA_SCHEMA,
        ),
        out_spectrum,
    )
    tied = head.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    record = {
        **base,
        "vocab_size": head.shape[0],
        "n_layers": fwd["n_layers"],
        "tied_head": tied,
        "n_predicted_tokens": fwd["n_predicted_tokens"],
        **fingerprints(model),
    }
    write_parquet(
        pa.table({k: [v] for k, v in record.items()}, schema=CHECKPOINTS_SCHEMA), out_checkpoint
    )
    log.info("loss %.4f, last-layer anisotropy %.4f", fwd["loss"], fwd["anisotropy"][-1])


def concat(paths: list[str], schema: pa.Schema) -> pa.Table:
    tables = [pq.read_table(p, schema=schema) for p in paths]
    return pa.concat_tables(tables).sort_by([("model", "ascending"), ("step", "ascending")])


def aggregate(
    metrics_paths, spectrum_paths, checkpoint_paths, out_metrics, out_spectra, out_checkpoints
) -> None:
    """One table of each kind for the whole run; checkpoints that serve the same weights as
    an earlier step of the same model are flagged (``duplicate_of_step``,
    ``duplicate_weights``)."""
    ckpts = concat(checkpoint_paths, CHECKPOINTS_SCHEMA).to_pandas()
    first = ckpts.groupby(["model", "weights_fingerprint"])["step"].transform("min")
    ckpts["duplicate_of_step"] = first.where(first != ckpts["step"]).astype("Int64")
    dup_schema = CHECKPOINTS_SCHEMA.append(pa.field("duplicate_of_step", pa.int64()))
    write_parquet(
        pa.Table.from_pandas(ckpts, schema=dup_schema, preserve_index=False), out_checkpoints
    )
    n_dup = int(ckpts["duplicate_of_step"].notna().sum())
    if n_dup:
        log.warning("%d checkpoints serve the same weights as an earlier step", n_dup)
    is_dup = ckpts["duplicate_of_step"].notna()
    dup = set(zip(ckpts["model"][is_dup], ckpts["step"][is_dup], strict=True))
    metrics = concat(metrics_paths, METRICS_SCHEMA)
    flags = [
        (m, s) in dup
        for m, s in zip(
            metrics.column("model").to_pylist(), metrics.column("step").to_pylist(), strict=True
        )
    ]
    metrics = metrics.append_column(pa.field("duplicate_weights", pa.bool_()), pa.array(flags))
    write_parquet(metrics, out_metrics)
    write_parquet(concat(spectrum_paths, SPECTRA_SCHEMA), out_spectra)
