"""The schemas of the metrics stage's tables: metric rows, head spectra, checkpoint records,
per-document losses and truncated heads."""

from __future__ import annotations

import pyarrow as pa

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
# Each document's summed loss at each checkpoint: paired comparisons on the same documents.
DOCUMENTS_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("document", pa.int64()),  # its position in the evaluation sample
        ("half", pa.string()),  # select | report (saturation.metrics.document_half)
        ("nll", pa.float64()),  # summed over its predicted tokens, in nats
        ("n_predicted", pa.int64()),  # its predicted tokens (all but its first)
    ]
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
        ("model_type", pa.string()),  # the architecture (gpt2, opt, gpt_neox, llama, gemma)
        ("n_layers", pa.int64()),
        ("tied_head", pa.bool_()),
        ("head_input_size", pa.int64()),  # the head's input width (OPT's project_out: narrower)
        ("n_predicted_tokens", pa.int64()),
        ("head_fingerprint", pa.string()),
        ("weights_fingerprint", pa.string()),
        ("commit", pa.string()),  # the hub commit measured; null for local checkpoints
        ("weights_sha256", pa.string()),  # the hub's sha256 of the weights files (manifest)
        ("status", pa.string()),  # measured | duplicate | missing | unreadable
        ("reason", pa.string()),  # why an unreadable checkpoint was not measured
    ]
)
# Theorem 5.3 measured (metrics.parts truncation): the head truncated to rank d by its SVD.
TRUNCATION_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("d", pa.int64()),  # the truncation's rank: powers of two, and the head's rank
        ("head_rank", pa.int64()),  # min(V, d) of the head
        ("loss", pa.float64()),  # the truncated head's loss on the evaluation tokens (nats)
        ("gap", pa.float64()),  # loss - the full head's loss, Delta L(d)
        ("tail_norm", pa.float64()),  # T(d) = sqrt(sum_{i>d} sigma_i^2)
        ("w_error", pa.float64()),  # T(d) / ||W||_F
        ("gap_over_tail", pa.float64()),  # Delta L(d) / T(d), null at full rank
    ]
)
