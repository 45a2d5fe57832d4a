"""Every Parquet table's schema, each written once: the columns and types a job writes and the
jobs that read it expect. Named after the table (``head_spectra`` -> ``HEAD_SPECTRA_SCHEMA``);
a job's part of a run-wide table has the run-wide table's schema. Where each table lives and
what writes it: :mod:`saturation.outputs`."""

from __future__ import annotations

import pyarrow as pa

# --- the corpus -------------------------------------------------------------------------------
CORPUS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.int64()),
        ("split", pa.string()),
        ("tokens", pa.list_(pa.int32())),
        # UTF-8 bytes of the text of tokens[1:], the tokens a model predicts (null for the
        # synthetic language, which has no text): the denominator of bits per byte.
        ("n_bytes", pa.int64()),
        # The text the tokens cover (after any cut to max_document_tokens), from which every
        # other tokenizer of the run tokenizes the same documents; null for the synthetic
        # language and for n-gram corpora.
        ("text", pa.string()),
    ],
    metadata={"description": b"token ids of sampled documents, one document a row"},
)
TOKEN_COUNTS_SCHEMA = pa.schema([("token", pa.int64()), ("count", pa.int64())])
# The documents of a named evaluation corpus as the harness scores them.
EVAL_TEXT_SCHEMA = pa.schema(
    [
        ("document", pa.int64()),  # its place in the task's test split (or the file)
        ("text", pa.string()),  # what is scored: the task's doc_to_target
        ("words", pa.int64()),  # the task's word count (wikitext: of the page before detokenizing)
        ("bytes", pa.int64()),  # the task's byte count (UTF-8)
    ]
)
# The same documents encoded with one tokenizer, as the harness's HFLM encodes them.
EVAL_TOKENS_SCHEMA = pa.schema(
    [
        ("document", pa.int64()),
        ("tokens", pa.list_(pa.int32())),
        ("words", pa.int64()),
        ("bytes", pa.int64()),
    ]
)

# --- checkpoints ------------------------------------------------------------------------------
MANIFEST_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("repo_id", pa.string()),
        ("step", pa.int64()),
        ("revision", pa.string()),
        ("commit", pa.string()),  # null where the revision does not exist
        ("status", pa.string()),  # ok | duplicate | missing
        ("weights_format", pa.string()),  # safetensors | bin | none
        ("weights_sha256", pa.string()),  # digest of the weights files' sha256 and names
        ("weights_bytes", pa.int64()),
        # each weights file as the hub's tree gave it: every download is checked against it
        (
            "weights_files",
            pa.list_(
                pa.struct([("path", pa.string()), ("sha256", pa.string()), ("size", pa.int64())])
            ),
        ),  # fmt: skip
        ("duplicate_steps", pa.list_(pa.int64())),  # the other scheduled steps it equals
        ("same_as_reference", pa.bool_()),
    ],
    metadata={"description": b"one row per scheduled revision, known before any download"},
)
# The mini-suite's training loss.
HISTORY_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("learning_rate", pa.float64()),
        ("loss", pa.float64()),
    ]
)

# --- per-checkpoint metrics -------------------------------------------------------------------
CHECKPOINT_COLUMNS = [
    ("model", pa.string()),
    ("step", pa.int64()),
    ("tokens_seen", pa.int64()),
    ("n_params", pa.int64()),
    ("n_params_no_embedding", pa.int64()),
    ("hidden_size", pa.int64()),
]
# A measuring job's metric rows; the run's table adds the duplicate flags.
METRICS_SCHEMA = pa.schema(
    CHECKPOINT_COLUMNS + [("metric", pa.string()), ("layer", pa.int64()), ("value", pa.float64())]
)
CHECKPOINT_METRICS_SCHEMA = METRICS_SCHEMA.append(
    pa.field("duplicate_weights", pa.bool_())  # serves another step's weights
).append(pa.field("duplicate_head", pa.bool_()))  # serves another step's LM head
# Each document's summed loss at each checkpoint: paired comparisons on the same documents.
DOCUMENT_LOSSES_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("document", pa.int64()),  # its position in the evaluation sample
        ("half", pa.string()),  # select | report (saturation.metrics.document_half)
        ("nll", pa.float64()),  # summed over its predicted tokens, in nats
        ("n_predicted", pa.int64()),  # its predicted tokens (all but its first)
    ]
)
HEAD_SPECTRA_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("index", pa.int64()),  # 0 for the largest
        ("singular_value", pa.float64()),
    ]
)
# A measuring job's record of each checkpoint; the run's table adds the duplicates' steps.
CHECKPOINT_SCHEMA = pa.schema(
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
CHECKPOINTS_SCHEMA = CHECKPOINT_SCHEMA.append(
    pa.field("duplicate_of_step", pa.int64())  # the smallest other step with its weights
).append(pa.field("duplicate_head_of_step", pa.int64()))  # ... with its LM head
# Theorem 5.3 measured (metrics.parts truncation): the head truncated to rank d by its SVD.
TRUNCATED_HEADS_SCHEMA = pa.schema(
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

# A measuring job's part of each of the run's metric tables, by table.
MEASURED_TABLES = {
    "checkpoint_metrics": METRICS_SCHEMA,
    "head_spectra": HEAD_SPECTRA_SCHEMA,
    "checkpoints": CHECKPOINT_SCHEMA,
    "document_losses": DOCUMENT_LOSSES_SCHEMA,
    "truncated_heads": TRUNCATED_HEADS_SCHEMA,
}

# --- the scaling law and saturation -----------------------------------------------------------
SATURATION_SCHEMA = pa.schema(
    [
        ("parameters", pa.string()),  # how N is counted: total | non_embedding
        ("selected", pa.bool_()),  # the count scaling.parameters names (Fig 1b's)
        ("model", pa.string()),
        ("n_params", pa.int64()),  # N, counted as `parameters` says
        ("in_fit", pa.bool_()),
        ("below_fit", pa.bool_()),  # N below every fitted model's: the paper's saturated models
        ("role", pa.string()),  # best | final
        ("step", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("loss", pa.float64()),  # on the report half: the best checkpoint never saw it
        ("loss_whole", pa.float64()),  # on the whole sample (select + report halves)
        ("extrapolated_loss", pa.float64()),  # the law at (N, this checkpoint's own T)
        ("relative_gap", pa.float64()),  # loss / extrapolated_loss - 1
        ("relative_gap_whole", pa.float64()),  # loss_whole / extrapolated_loss - 1
        # The model's final - best on the report half's documents, paired (its two rows
        # alike; saturation.significance): the difference, its standard error, the one-sided
        # p-value, the bootstrap interval, and whether it saturates at scaling.saturation_level.
        ("final_minus_best", pa.float64()),
        ("final_minus_best_se", pa.float64()),
        ("final_minus_best_p", pa.float64()),
        ("final_minus_best_low", pa.float64()),
        ("final_minus_best_high", pa.float64()),
        ("saturated", pa.bool_()),
    ]
)
# Runs of one size and different seeds side by side (saturation.significance.by_size).
SATURATION_BY_SIZE_SCHEMA = pa.schema(
    [
        ("size", pa.string()),
        ("n_params", pa.int64()),
        ("runs", pa.int64()),
        ("seeds", pa.list_(pa.int64())),
        ("saturated", pa.int64()),
        ("share_saturated", pa.float64()),
        ("final_minus_best_mean", pa.float64()),
        ("final_minus_best_min", pa.float64()),
        ("final_minus_best_max", pa.float64()),
        ("best_step_min", pa.int64()),
        ("best_step_median", pa.float64()),
        ("best_step_max", pa.int64()),
    ]
)
SCALING_FIT_SCHEMA = pa.schema(
    [
        ("parameters", pa.string()),
        ("selected", pa.bool_()),
        ("parameter", pa.string()),
        ("value", pa.float64()),
        ("fitted", pa.bool_()),
        ("note", pa.string()),  # why a fit was skipped or a model left out; else null
        ("reference", pa.float64()),  # the published value (scaling.reference); else null
    ]
)
SCALING_POINTS_SCHEMA = pa.schema(
    [
        ("parameters", pa.string()),
        ("model", pa.string()),
        ("step", pa.int64()),
        ("n_params", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("loss", pa.float64()),
        ("predicted_loss", pa.float64()),
        ("residual", pa.float64()),
    ]
)

# --- rank-constrained heads and n-gram spectra ------------------------------------------------
RANK_HEADS_SCHEMA = pa.schema(
    [
        ("backbone", pa.string()),
        ("step", pa.int64()),
        ("head", pa.string()),  # rank | full | original
        ("kind", pa.string()),  # linear | mixture (of ``components`` softmaxes)
        ("components", pa.int64()),
        ("r", pa.int64()),
        ("hidden_size", pa.int64()),
        ("vocab_size", pa.int64()),
        ("trainable_params", pa.int64()),
        ("training_tokens", pa.int64()),
        ("steps", pa.int64()),
        ("init", pa.string()),  # scaled | normal (N(0, 1), the paper's)
        ("protocol", pa.string()),  # cached | paper (streamed, App. B.1)
        ("lr", pa.float64()),  # the peak learning rate
        # the loss on the held-out selection split (a learning-rate grid), else null
        ("select_loss", pa.float64()),
        ("chosen", pa.bool_()),  # the grid point the figures show (true without a grid)
        ("eval_loss", pa.float64()),
        ("eval_accuracy", pa.float64()),
    ]
)
# Each backbone's own head's singular values, descending (Fig 8's W-error at d = r),
# as the rank heads' jobs read them at the checkpoint the heads were trained on.
BACKBONE_SPECTRA_SCHEMA = pa.schema(
    [
        ("backbone", pa.string()),
        ("step", pa.int64()),
        ("index", pa.int64()),  # 0 for the largest
        ("singular_value", pa.float64()),
    ]
)
NGRAM_SPECTRA_SCHEMA = pa.schema(
    [
        ("corpus", pa.string()),
        ("tokenizer", pa.string()),
        ("n", pa.int64()),
        ("C", pa.int64()),
        ("V", pa.int64()),
        ("nnz", pa.int64()),
        ("d", pa.int64()),
        ("singular_value", pa.float64()),  # sigma_d; null at d = 0
        ("w_error", pa.float64()),
    ]
)

# --- downstream evaluation --------------------------------------------------------------------
SELECTION_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("role", pa.string()),  # best | final | step (a configured extra step)
        ("step", pa.int64()),
        ("loss_select", pa.float64()),  # the half the best checkpoint is chosen on
        ("loss_report", pa.float64()),  # the other half: the loss to report
        ("loss_whole", pa.float64()),  # the whole sample
    ]
)
# An evaluation job's harness scores; the run's table adds each checkpoint's role.
SCORES_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("task", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("stderr", pa.float64()),
        ("n_items", pa.int64()),
    ]
)
DOWNSTREAM_SCHEMA = SCORES_SCHEMA.insert(2, pa.field("role", pa.string()))
