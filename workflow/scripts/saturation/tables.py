"""The schemas of the metrics stage's tables: metric rows, head spectra, checkpoint records."""

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
