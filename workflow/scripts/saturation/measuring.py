"""A measuring job: each checkpoint it reads measured one after another (a local folder, or a
hub revision read through the Hugging Face cache), its tables written once."""

from __future__ import annotations

import logging
import math

import numpy as np
import pyarrow as pa

from saturation.io import write_parquet
from saturation.tables import (
    CHECKPOINT_SCHEMA,
    DOCUMENT_LOSSES_SCHEMA,
    HEAD_SPECTRA_SCHEMA,
    MEASURED_TABLES,
    METRICS_SCHEMA,
    TRUNCATED_HEADS_SCHEMA,
)

log = logging.getLogger(__name__)

Tables = dict[str, pa.Table]  # a measuring job's part of each run table (MEASURED_TABLES)


def write_tables(tables: Tables, outputs: dict) -> None:
    """Each table to its path in ``outputs`` ({table: path}); those without a path are not
    written."""
    for name, table in tables.items():
        if outputs.get(name) is not None:
            write_parquet(table, outputs[name])


def empty_tables() -> Tables:
    return {name: schema.empty_table() for name, schema in MEASURED_TABLES.items()}


def checkpoint_columns(model_name: str, step: int, tokens_seen: int, model) -> dict:
    """The columns every row of a checkpoint's tables begins with (``CHECKPOINT_COLUMNS``)."""
    from saturation.metrics import parameter_counts

    return {
        "model": model_name,
        "step": step,
        "tokens_seen": tokens_seen,
        **parameter_counts(model),
        "hidden_size": model.config.hidden_size,
    }


def metrics_table(base: dict, metrics: list[tuple]) -> pa.Table:
    """One row per (metric, layer, value), after ``base``'s columns; never a silent NaN."""
    bad = [m for m, _, v in metrics if not np.isfinite(v)]
    if bad:
        raise ValueError(f"{base['model']} step {base['step']}: non-finite metrics {bad}")
    rows = {k: [v] * len(metrics) for k, v in base.items()}
    rows["metric"], rows["layer"], rows["value"] = map(list, zip(*metrics, strict=True))
    return pa.table(rows, schema=METRICS_SCHEMA)


def checkpoint_record(base: dict, model, head_weight, **columns) -> pa.Table:
    """A measured checkpoint's row: ``base``, the head's shape, the architecture, and the
    columns a measurement knows (``n_layers``, ``tied_head``, fingerprints, hub commit...)."""
    record = {
        **base,
        "vocab_size": head_weight.shape[0],
        "model_type": model.config.model_type,
        "head_input_size": head_weight.shape[1],
        "status": "measured",
        "reason": None,
        **columns,
    }
    return pa.Table.from_pylist([record], schema=CHECKPOINT_SCHEMA)


def checkpoint_tables(
    model_name: str,
    step: int,
    tokens_seen: int,
    checkpoint_dir: str,
    eval_path: str,
    sequence_length: int,
    batch_size: int,
    dtype: str,
    device: str,
    allow_pickle: bool,
    threads: int = 1,
    progress_file=None,
    commit: str | None = None,
    weights_sha256: str | None = None,
    tokenizer: str | None = None,
    mem_mb: float | None = None,
    eval_corpora: dict | None = None,
    parts=("forward", "spectrum"),
    counts: str | None = None,
) -> Tables:
    """One checkpoint's metric rows, head spectrum, checkpoint record, per-document losses
    and, with ``parts`` beyond the paper's (``bottleneck.PARTS``), their metrics and the
    truncated heads (``counts``: the training sample's token counts, for ``frequency``); with
    ``mem_mb`` (the job's memory), a checkpoint too large for it is refused before it is
    loaded."""
    import torch

    from saturation.corpus import read_bytes, read_tokens
    from saturation.devices import resolve_device
    from saturation.loading import load_model
    from saturation.metrics import (
        fingerprints,
        forward_metrics,
        head_gram,
        singular_values,
        spectrum_metrics,
    )

    torch.set_num_threads(threads)
    device = resolve_device(device, "metrics.device")
    model = load_model(
        checkpoint_dir, allow_pickle, dtype=getattr(torch, dtype), device=device, mem_mb=mem_mb
    )
    log.info("%s step %d on %s in %s", model_name, step, device, dtype)
    head = model.get_output_embeddings().weight
    docs = read_tokens(eval_path)
    check_vocabulary(docs, head.shape[0], model_name, step, tokenizer, sample_vocab(eval_path))
    gram = head_gram(head)
    sigma = singular_values(head, gram)
    spec = spectrum_metrics(sigma)
    extras = beyond_paper(parts, model.get_output_embeddings(), device, counts, gram)
    fwd = forward_metrics(model, docs, sequence_length, batch_size, device, progress_file, extras)
    base = checkpoint_columns(model_name, step, tokens_seen, model)
    metrics = loss_metrics(fwd, read_bytes(eval_path))
    if eval_corpora:  # named corpora, scored as the harness scores rolling tasks
        from saturation.eval_corpora import measure_eval_corpora

        scored = measure_eval_corpora(model, eval_corpora, batch_size, device)
        metrics += [(k, None, v) for k, v in scored.items()]
    metrics += [("anisotropy", i, a) for i, a in enumerate(fwd["anisotropy"])]
    metrics += [(k, None, v) for k, v in spec.items()]
    if extras is not None:
        metrics += [(k, None, v) for k, v in extras.metrics().items()]
    log.info("loss %.4f, last-layer anisotropy %.4f", fwd["loss"], fwd["anisotropy"][-1])
    truncated = extras.truncation_rows() if extras is not None else []
    return {
        "checkpoint_metrics": metrics_table(base, metrics),
        "head_spectra": spectrum_table(model_name, step, sigma),
        "checkpoints": checkpoint_record(
            base,
            model,
            head,
            n_layers=fwd["n_layers"],
            tied_head=head.data_ptr() == model.get_input_embeddings().weight.data_ptr(),
            n_predicted_tokens=fwd["n_predicted_tokens"],
            **fingerprints(model),
            commit=commit,
            weights_sha256=weights_sha256,
        ),
        "document_losses": document_losses_table(model_name, step, fwd["documents"]),
        "truncated_heads": pa.Table.from_pylist(
            [{"model": model_name, "step": step, **row} for row in truncated],
            schema=TRUNCATED_HEADS_SCHEMA,
        ),
    }


def loss_metrics(fwd: dict, n_bytes: int | None) -> list[tuple]:
    """The forward pass's loss rows: loss, accuracy, the two halves' losses, and on text
    (``n_bytes``: the sample's) the loss per byte, comparable across tokenizers."""
    metrics = [("loss", None, fwd["loss"]), ("accuracy", None, fwd["accuracy"])]
    metrics += [(k, None, fwd[k]) for k in ("loss_select", "loss_report")]
    if n_bytes:
        nats = fwd["loss"] * fwd["n_predicted_tokens"] / n_bytes
        metrics += [("nats_per_byte", None, nats), ("bits_per_byte", None, nats / math.log(2))]
    return metrics


def document_losses_table(model_name: str, step: int, per_doc: dict) -> pa.Table:
    """Each evaluation document's summed loss, and the half it belongs to."""
    from saturation.metrics import document_half

    n = len(per_doc["document"])
    return pa.table(
        {
            "model": [model_name] * n,
            "step": [step] * n,
            "document": per_doc["document"],
            "half": [document_half(int(i)) for i in per_doc["document"]],
            "nll": per_doc["nll"],
            "n_predicted": per_doc["n_predicted"],
        },
        schema=DOCUMENT_LOSSES_SCHEMA,
    )


def beyond_paper(parts, head, device, counts: str | None, gram):
    """The accumulators of the parts beyond the paper's a measurement asks for, or None."""
    from saturation.bottleneck import PARTS, BeyondPaper

    if not set(parts) & set(PARTS):
        return None
    from saturation.corpus import read_token_counts

    counted = read_token_counts(counts) if "frequency" in parts else None
    return BeyondPaper(parts, head, device, counted, gram)


def spectrum_tables(
    row: dict,
    model_name: str,
    step: int,
    tokens_seen: int,
    dtype: str,
    retry: dict,
    store: str | None = None,
    allow_pickle: bool = False,
) -> Tables:
    """A hub revision's head spectrum without its weights: the head read by HTTP range
    (``saturation.ranged``), its rows and checkpoint record as a full measurement writes
    them, in ``metrics.dtype`` as the full load holds it (``store``: the head store that
    ``prefetch`` fills in this mode, read first). The forward pass's metrics and
    columns (loss, anisotropy, ``n_predicted_tokens``, ``weights_fingerprint``) are absent."""
    import hashlib

    import torch

    from saturation.metrics import find_blocks, singular_values, spectrum_metrics, tensor_digest
    from saturation.ranged import ranged_head

    head = ranged_head(row, retry, store, allow_pickle)
    weight = head.weight.to(getattr(torch, dtype))
    log.info(
        "%s step %d: head %s of %s read by range, %d bytes in %d requests",
        model_name,
        step,
        head.tensor,
        head.filename,
        head.bytes_read,
        head.requests,
    )
    sigma = singular_values(weight)
    model = head.model
    base = checkpoint_columns(model_name, step, tokens_seen, model)
    digest = hashlib.sha256()
    tensor_digest(digest, "head", weight)
    return empty_tables() | {
        "checkpoint_metrics": metrics_table(
            base, [(k, None, v) for k, v in spectrum_metrics(sigma).items()]
        ),
        "head_spectra": spectrum_table(model_name, step, sigma),
        "checkpoints": checkpoint_record(
            base,
            model,
            weight,
            n_layers=len(find_blocks(model)),
            tied_head=head.tied,
            head_fingerprint=digest.hexdigest(),
            commit=row["commit"],
            weights_sha256=row["weights_sha256"],
        ),
    }


def spectrum_table(model_name: str, step: int, sigma: np.ndarray) -> pa.Table:
    """A head's singular values, one row each, largest first."""
    return pa.table(
        {
            "model": [model_name] * len(sigma),
            "step": [step] * len(sigma),
            "index": np.arange(len(sigma)),
            "singular_value": sigma,
        },
        schema=HEAD_SPECTRA_SCHEMA,
    )


def sample_vocab(eval_path) -> int | None:
    """The vocabulary size of the tokenizer a sample was tokenized with (its JSON record),
    or None where the record is missing."""
    import json
    from pathlib import Path

    meta = Path(eval_path).with_suffix(".json")
    if not meta.is_file():
        return None
    return json.loads(meta.read_text()).get("vocab_size")


def check_vocabulary(
    docs, vocab_size: int, model_name: str, step: int, tokenizer, tokenizer_size=None
) -> None:
    """Refuse, before measuring, a model whose output vocabulary does not cover its
    tokenizer's ids (or the ids the sample holds)."""
    top = max((int(d.max()) for d in docs if len(d)), default=-1)
    if top >= vocab_size or (tokenizer_size or 0) > vocab_size:
        held = f"{tokenizer_size} ids" if tokenizer_size else f"token id {top}"
        raise ValueError(
            f"{model_name} step {step} has an output vocabulary of {vocab_size} rows, but its "
            f"tokenizer '{tokenizer}' has {held}: the model and the tokenizer do not match "
            "(name the model's own in its tokenizer key, checkpoints.hub.models[] or "
            "checkpoints.local.models[])"
        )


def unmeasured_tables(row: dict, model_name: str) -> Tables:
    """Empty metric tables and a checkpoint row saying why a revision was not measured."""
    record = {f.name: None for f in CHECKPOINT_SCHEMA}
    record.update(
        model=model_name,
        step=row["step"],
        commit=row.get("commit"),
        weights_sha256=row.get("weights_sha256"),
        status=row["status"],
        reason=row.get("reason"),
    )
    return empty_tables() | {
        "checkpoints": pa.Table.from_pylist([record], schema=CHECKPOINT_SCHEMA)
    }


def revision_tables(checkpoint: str, hub: dict | None, step: int, **kwargs) -> Tables:
    """Measure one checkpoint: a local folder, or (``hub`` set) a revision of a manifest,
    read through the Hugging Face cache. Revisions the manifest marks missing or duplicate
    are recorded as such and not fetched."""
    if hub is None:
        return checkpoint_tables(step=step, checkpoint_dir=checkpoint, **kwargs)
    from saturation.hub import manifest_row, open_checkpoint

    row = manifest_row(checkpoint, step)
    if row["status"] in ("missing", "duplicate"):
        log.warning("%s step %d: %s, not measured", row["repo_id"], row["step"], row["status"])
        return unmeasured_tables(row, kwargs["model_name"])
    with open_checkpoint(checkpoint, row["step"], hub, kwargs["allow_pickle"]) as folder:
        return checkpoint_tables(
            step=step,
            checkpoint_dir=str(folder),
            commit=row["commit"],
            weights_sha256=row["weights_sha256"],
            **kwargs,
        )


def head_tables(c: dict, hub: dict, dtype: str, allow_pickle: bool) -> Tables:
    """The head's spectrum of one hub revision read by range (metrics.parts: [spectrum]);
    missing and duplicate revisions recorded, not read."""
    from saturation.hub import manifest_row

    row = manifest_row(c["checkpoint"], c["step"])
    if row["status"] in ("missing", "duplicate"):
        log.warning("%s step %d: %s, not measured", row["repo_id"], row["step"], row["status"])
        return unmeasured_tables(row, c["model"])
    return spectrum_tables(
        row,
        c["model"],
        c["step"],
        c["tokens_seen"],
        dtype,
        hub["retry"],
        hub.get("heads"),
        allow_pickle,
    )


def measure_checkpoint(
    checkpoints: list[dict],
    hub: dict | None,
    outputs: dict,
    parts=("forward", "spectrum"),
    **kwargs,
) -> None:
    """Measure checkpoints one after another in one process and write each table once, rows
    in the checkpoints' order. ``checkpoints``: dicts of model, step, tokens_seen,
    checkpoint (the step's folder, or the model's revision manifest), eval (the sample
    tokenized the model's way) and tokenizer; ``outputs``: {table: path} (MEASURED_TABLES).

    A checkpoint whose content is unusable (:class:`UnreadableCheckpoint`) is recorded with
    status ``unreadable`` and the reason, and the others are measured all the same; any other
    error stops the job, naming the checkpoint it was measuring."""
    from saturation.loading import UnreadableCheckpoint

    measured = []
    for c in checkpoints:
        try:
            if "forward" not in parts:  # the head alone, read by range
                tables = head_tables(c, hub, kwargs["dtype"], kwargs["allow_pickle"])
            else:
                tables = revision_tables(
                    c["checkpoint"],
                    hub,
                    c["step"],
                    tokens_seen=c["tokens_seen"],
                    model_name=c["model"],
                    eval_path=c["eval"],
                    tokenizer=c["tokenizer"],
                    eval_corpora=c.get("eval_corpora"),
                    parts=parts,
                    counts=c.get("counts"),
                    **kwargs,
                )
        except UnreadableCheckpoint as exc:
            log.error("%s step %d is not measured: %s", c["model"], c["step"], exc)
            row = {"step": c["step"], "status": "unreadable", "reason": str(exc)}
            tables = unmeasured_tables(row, c["model"])
        except Exception as exc:
            exc.add_note(f"while measuring {c['model']} step {c['step']} ({c['checkpoint']})")
            raise
        measured.append(tables)
    write_tables({n: pa.concat_tables([t[n] for t in measured]) for n in MEASURED_TABLES}, outputs)
