"""Every file the workflow writes, as one registry: its name, its path (with the rule's
wildcards), the rule that writes it, its Parquet schema (:mod:`saturation.tables`) and what it
holds. The rules take their outputs' paths from here (``PATH``), `docs/outputs.md` is
generated from it (`python docs/make_outputs_reference.py`), and the tests check every file a
run writes against it.

A run-wide table is named as its file (``results/tables/{name}.parquet``); a job's part of it
is ``{name}_part``. No job imports this module, so editing a description re-runs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from saturation import tables
from saturation.story_cloze import TASK as STORY_CLOZE


@dataclass(frozen=True)
class Output:
    name: str
    path: str  # Snakemake's pattern: the rule's wildcards in braces
    rule: str  # the rule that writes it ({fig}: the figure's own rule)
    what: str  # one line for docs/outputs.md
    schema: pa.Schema | None = None  # a Parquet table's


def _outputs(*entries: Output) -> dict[str, Output]:
    named = {}
    for entry in entries:
        if entry.name in named:
            raise ValueError(f"two outputs are named {entry.name!r}")
        named[entry.name] = entry
    return named


def _table(name: str, rule: str, what: str, schema: pa.Schema) -> Output:
    return Output(name, f"results/tables/{name}.parquet", rule, what, schema)


def _part(table: str, folder: str, rule: str, what: str, schema: pa.Schema) -> Output:
    return Output(f"{table}_part", f"{folder}/{table}.parquet", rule, what, schema)


MEASURED = "results/metrics/{job}"  # a measuring job's folder (metrics.checkpoints_per_job)
RANK_HEADS = "results/rank_heads/{model}/step{step}"  # a backbone's, at the step trained on

OUTPUTS = _outputs(
    # --- the corpus
    Output(
        "synthetic_language",
        "results/corpus/synthetic_language.npz",
        "synthetic_language",
        "the synthetic language: its transition matrix and stationary distribution",
    ),
    Output(
        "synthetic_language_record",
        "results/corpus/synthetic_language.json",
        "synthetic_language",
        "its V, R, entropy rate and softmax rank bound",
    ),
    Output(
        "corpus",
        "results/corpus/{split}.parquet",
        "sample_corpus",
        "the sampled documents (`split`: train, eval), one a row; `n_bytes`: the UTF-8 bytes "
        "of the text of `tokens[1:]`, null for the synthetic language",
        tables.CORPUS_SCHEMA,
    ),
    Output(
        "corpus_record",
        "results/corpus/{split}.json",
        "sample_corpus",
        "the sample's record: source, tokenizer, document separator, seed, document and "
        "token counts",
    ),
    Output(
        "tokenized_corpus",
        "results/corpus/{split}/{tokenizer}.parquet",
        "tokenize_corpus",
        "the same documents tokenized with another tokenizer of the run (a model's own)",
        tables.CORPUS_SCHEMA,
    ),
    Output(
        "tokenized_corpus_record",
        "results/corpus/{split}/{tokenizer}.json",
        "tokenize_corpus",
        "its record, as the sample's",
    ),
    Output(
        "token_counts",
        "results/corpus/token_counts/{sample}.parquet",
        "count_tokens",
        "each id of a model's training sample (`train`, `train/{tokenizer}`) and how often it "
        "occurs (`metrics.parts` frequency)",
        tables.TOKEN_COUNTS_SCHEMA,
    ),
    Output(
        "eval_corpus",
        "results/eval_corpora/{eval_corpus}.parquet",
        "eval_corpus",
        "a named evaluation corpus (`metrics.eval_corpora`): what is scored (a harness "
        "task's `doc_to_target`), with the task's word and byte counts",
        tables.EVAL_TEXT_SCHEMA,
    ),
    Output(
        "eval_corpus_record",
        "results/eval_corpora/{eval_corpus}.json",
        "eval_corpus",
        "its record: the task or file it was read from, document, word and byte counts",
    ),
    Output(
        "eval_corpus_tokens",
        "results/eval_corpora/{eval_corpus}/{eval_tokenizer}.parquet",
        "tokenize_eval_corpus",
        "the same documents encoded with a model's tokenizer as the harness encodes them",
        tables.EVAL_TOKENS_SCHEMA,
    ),
    Output(
        "eval_corpus_tokens_record",
        "results/eval_corpora/{eval_corpus}/{eval_tokenizer}.json",
        "tokenize_eval_corpus",
        "its record, with the prefix token the first window conditions on",
    ),
    # --- checkpoints
    Output(
        "minisuite_checkpoint",
        "results/checkpoints/{model}/step{step}",
        "train_minisuite",
        "a mini-suite checkpoint: `config.json`, `model.safetensors`",
    ),
    Output(
        "training_history",
        "results/training/{model}.parquet",
        "train_minisuite",
        "a mini-suite model's training loss and learning rate at every step",
        tables.HISTORY_SCHEMA,
    ),
    Output(
        "revision_manifest",
        "results/checkpoints/{model}/revisions.parquet",
        "revision_manifest",
        "a hub model's scheduled revisions, known before any download: `status` ok, "
        "duplicate (the steps it equals) or missing; every weights file's sha256 and size",
        tables.MANIFEST_SCHEMA,
    ),
    Output(
        "prefetched",
        "results/prefetch/{model}/step{step}.json",
        "prefetch_checkpoint",
        "what `snakemake prefetch` put in the Hugging Face cache for a revision",
    ),
    # --- per-checkpoint metrics: a measuring job's parts, then the run's tables
    *(
        _part(table, MEASURED, "measure_checkpoint", what, tables.MEASURED_TABLES[table])
        for table, what in (
            (
                "checkpoint_metrics",
                "a measuring job's metric rows (`{job}`: `{model}/step{N}`; `{model}/step"
                "{first}-{last}` for several checkpoints of one model, `{model}.step{N}-"
                "{model}.step{M}` across models: `metrics.checkpoints_per_job`)",
            ),
            ("head_spectra", "its checkpoints' head spectra"),
            ("checkpoints", "its checkpoints' records"),
            ("document_losses", "its checkpoints' per-document losses"),
            ("truncated_heads", "its checkpoints' truncated heads"),
        )
    ),
    _table(
        "checkpoint_metrics",
        "aggregate_metrics",
        "tidy metric rows (layer 0 = embeddings, 1..L blocks, L+1 final norm); "
        "`duplicate_weights`, `duplicate_head`: the checkpoint serves another step's weights "
        "or LM head (left out of Figs 4 and 5); a named evaluation corpus's metrics are "
        "`{name}/loss` (nats per token), `{name}/word_perplexity`, `{name}/byte_perplexity`, "
        "`{name}/bits_per_byte` ([defined](analysis.md#named-evaluation-corpora)); beyond the "
        "paper, `gradient_share_*`, `gradient_batch_*`, `frequency_rho_1` … `_5`, "
        "`top_component_share`, `rankme`, `alpha_req` "
        "([defined](analysis.md#beyond-the-paper-per-checkpoint))",
        tables.CHECKPOINT_METRICS_SCHEMA,
    ),
    _table(
        "head_spectra",
        "aggregate_metrics",
        "the singular values of every checkpoint's LM head, descending",
        tables.HEAD_SPECTRA_SCHEMA,
    ),
    _table(
        "checkpoints",
        "aggregate_metrics",
        "one row per checkpoint: sizes, fingerprints, the hub `commit` measured, `status` "
        "(measured, duplicate, missing, unreadable) and the `reason` an unreadable one was not "
        "measured; `duplicate_of_step`: the smallest other step with the same weights; "
        "`duplicate_head_of_step`: another step serves the same LM head, byte for byte, "
        "whatever its other weights",
        tables.CHECKPOINTS_SCHEMA,
    ),
    _table(
        "document_losses",
        "aggregate_metrics",
        "each evaluation document's summed loss at each checkpoint (`half`: select, report)",
        tables.DOCUMENT_LOSSES_SCHEMA,
    ),
    _table(
        "truncated_heads",
        "aggregate_metrics",
        "each checkpoint's head truncated to rank d by its SVD (`metrics.parts` truncation; "
        "[defined](analysis.md#beyond-the-paper-per-checkpoint))",
        tables.TRUNCATED_HEADS_SCHEMA,
    ),
    # --- the scaling law and saturation
    _table(
        "saturation",
        "scaling_fit",
        "per N count (`parameters`: total, non_embedding; `selected`: Fig 1b's) and model, "
        "the best and final checkpoint, the law's extrapolation and the model's paired test "
        "of final − best ([defined](analysis.md))",
        tables.SATURATION_SCHEMA,
    ),
    _table(
        "scaling_fit",
        "scaling_fit",
        "per N count: E, A, α, B, β (`fitted` or held) with the published value beside each "
        "(`scaling.reference`), RMSE, max residual, points, models below the fit, `collapsed`, "
        "and a `note` where a fit was skipped, flagged or points were left out",
        tables.SCALING_FIT_SCHEMA,
    ),
    _table(
        "scaling_points",
        "scaling_fit",
        "every fitted point with its prediction and residual, per N count",
        tables.SCALING_POINTS_SCHEMA,
    ),
    _table(
        "saturation_by_size",
        "scaling_fit",
        "runs of one size with different seeds (`{size}-seed{k}`; the unnamed run is seed 0) "
        "side by side: how many and what share saturate, the spread of `final_minus_best` "
        "and of the best step",
        tables.SATURATION_BY_SIZE_SCHEMA,
    ),
    # --- rank-constrained heads
    Output(
        "rank_head_cache",
        f"{RANK_HEADS}/cache",
        "feature_cache",
        "a backbone's cached head inputs (`protocol: cached`; sharded safetensors, `temp()`: "
        "removed once its heads are trained)",
    ),
    Output(
        "original_head",
        f"{RANK_HEADS}/original.json",
        "feature_cache | score_original_head",
        "the backbone's own head: loss, accuracy, shape and singular values (a backbone from "
        "outside the run's models: `step0`)",
    ),
    Output(
        "rank_heads_part",
        f"{RANK_HEADS}/r{{ranks}}.parquet",
        "rank_head | stream_rank_heads",
        "one rank-head job's heads (`r{first}-{last}`: several ranks, "
        "`rank_heads.ranks_per_job`; `rfull`: the full-rank control)",
        tables.RANK_HEADS_SCHEMA,
    ),
    _table(
        "rank_heads",
        "aggregate_rank_heads",
        "every head trained (`head`: rank, full, original) with its loss and accuracy; with "
        "`lr_grid`, every rate of the grid, `chosen` the one the figures show",
        tables.RANK_HEADS_SCHEMA,
    ),
    _table(
        "backbone_spectra",
        "aggregate_rank_heads",
        "each rank-head backbone's own head's singular values at the checkpoint its heads "
        "were trained on (Fig 8)",
        tables.BACKBONE_SPECTRA_SCHEMA,
    ),
    # --- n-gram spectra
    Output(
        "ngram_corpus",
        "results/ngrams/{corpus}/tokens.parquet",
        "ngram_corpus",
        "an n-gram corpus's documents",
        tables.CORPUS_SCHEMA,
    ),
    Output(
        "ngram_corpus_record",
        "results/ngrams/{corpus}/tokens.json",
        "ngram_corpus",
        "its record, as the sample's",
    ),
    _part(
        "ngram_spectra",
        "results/ngrams/{corpus}",
        "ngram_spectrum",
        "one corpus's n-gram matrices' spectra and W-error",
        tables.NGRAM_SPECTRA_SCHEMA,
    ),
    _table(
        "ngram_spectra",
        "aggregate_ngrams",
        "every corpus's: for each n, the C × V matrix's singular values and W-error(d)",
        tables.NGRAM_SPECTRA_SCHEMA,
    ),
    # --- downstream evaluation
    Output(
        "downstream_tasks",
        "results/downstream/tasks",
        "downstream_tasks",
        "the synthetic language's local tasks and word-level tokenizer",
    ),
    Output(
        "story_cloze_task",
        f"results/downstream/harness_tasks/{STORY_CLOZE}.yaml",
        "story_cloze_task",
        "the harness's StoryCloze task reading the CSV files in `downstream.story_cloze_dir`",
    ),
    Output(
        "prefetched_tasks",
        "results/prefetch/tasks.json",
        "prefetch_tasks",
        "the harness's tasks' data sets, loaded into the datasets cache",
    ),
    Output(
        "selection",
        "results/downstream/selection.parquet",
        "select_downstream",
        "the checkpoints evaluated downstream (`role`: best, final, step)",
        tables.SELECTION_SCHEMA,
    ),
    Output(
        "downstream_part",
        "results/downstream/{job}.parquet",
        "evaluate_downstream",
        "one evaluation job's harness scores (`{job}` as a measuring job's: "
        "`downstream.checkpoints_per_job`)",
        tables.SCORES_SCHEMA,
    ),
    Output(
        "downstream_raw",
        "results/downstream/{job}.json",
        "evaluate_downstream",
        "the harness's raw results, a record per checkpoint",
    ),
    _table(
        "downstream",
        "aggregate_downstream",
        "every score with its checkpoint's role (accuracies as fractions)",
        tables.DOWNSTREAM_SCHEMA,
    ),
    *(
        Output(f"table1_{ext}", f"results/tables/table1.{ext}", "aggregate_downstream", what)
        for ext, what in (
            (
                "md",
                "Table 1: best vs final per model, task and metric, with the paired test of "
                "Δ final − best ([how it reads](table1.md))",
            ),
            ("tex", "the same, as LaTeX"),
            ("html", "the same, as HTML"),
        )
    ),
    # --- figures
    *(
        Output(
            f"figure_{ext}",
            f"results/figures/{{fig}}.{ext}",
            "{fig}",
            what,
        )
        for ext, what in (
            ("png", "each figure the run draws ([the figures](analysis.md))"),
            ("pdf", "the same, as PDF"),
            (
                "csv",
                "the numbers it plots, tidy (a row a plotted point or cell); its leading `#` "
                'lines give each column\'s unit: `pandas.read_csv(path, comment="#")`',
            ),
        )
    ),
)

PATH = {name: entry.path for name, entry in OUTPUTS.items()}
