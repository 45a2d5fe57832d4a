"""The workflow's own lm-evaluation-harness tasks for the synthetic language.

Built from held-out documents of the eval split:

- ``synthetic_next_token``: LAMBADA-style; the context is ``context_tokens`` tokens, the
  target the next one. ``loglikelihood`` requests; metrics ``acc`` (the target is the greedy
  prediction) and ``perplexity`` (exp of minus the mean log-likelihood of the target).
- ``synthetic_choice``: SciQ/ARC-style multiple choice; the same kind of context and
  ``choices`` candidates, the true next token among distractors drawn from the eval split's
  unigram distribution. Metric ``acc``.

Token ids are written as words ``t0 t1 ...`` and a word-level tokenizer maps them back to the
same ids, so the harness sees exactly the token sequences the models were trained on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from saturation.downstream import DownstreamError

log = logging.getLogger(__name__)


def token_text(ids) -> str:
    return " ".join(f"t{int(i)}" for i in ids)


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer whose words ``t0 … t{V-1}`` are the synthetic token ids.

    The language has no end-of-text or padding token, and the harness needs both ids: they
    are set to ``t0``. Padding positions are masked out; the end-of-text id only prefixes
    empty contexts (rolling log-likelihood tasks), which the local tasks never have.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="t0", pad_token="t0", model_max_length=1 << 30
    )


def local_items(
    documents, vocab_size: int, n_items: int, context_tokens: int, choices: int, seed: int
) -> list[dict]:
    """Items cut from held-out documents: a context, its next token, and distractors."""
    docs = [np.asarray(d, dtype=np.int64) for d in documents]
    docs = [d for d in docs if len(d) > context_tokens]
    if not docs:
        raise DownstreamError(
            f"no eval document is longer than downstream.context_tokens = {context_tokens}"
        )
    rng = np.random.default_rng(seed)
    counts = np.bincount(np.concatenate(docs), minlength=vocab_size).astype(np.float64) + 1.0
    items = []
    for i in range(n_items):
        doc = docs[i % len(docs)]
        start = int(rng.integers(0, len(doc) - context_tokens))
        context = doc[start : start + context_tokens]
        target = int(doc[start + context_tokens])
        p = counts.copy()
        p[target] = 0.0
        distractors = rng.choice(vocab_size, size=choices - 1, replace=False, p=p / p.sum())
        label = int(rng.integers(0, choices))
        options = [int(t) for t in distractors]
        options.insert(label, target)
        items.append(
            {
                "context": token_text(context),
                "target": f"t{target}",
                "choices": [f"t{t}" for t in options],
                "label": label,
            }
        )
    return items


def task_configs(data_dir: Path) -> dict[str, dict]:
    """lm-eval task YAMLs of the local tasks, reading JSON lines the workflow wrote."""
    base = {
        "dataset_path": "json",
        "test_split": "test",
        "doc_to_text": "context",  # column names: the harness reads the fields as they are
        "target_delimiter": " ",
        "metadata": {"version": 1.0},
    }
    return {
        "synthetic_next_token": {
            "task": "synthetic_next_token",
            **base,
            "dataset_kwargs": {"data_files": {"test": str(data_dir / "items.jsonl")}},
            "output_type": "loglikelihood",
            # loglikelihood tasks put no delimiter between context and target (LAMBADA's
            # YAML also writes the space into the target)
            "doc_to_target": " {{target}}",
            "metric_list": [
                {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            ],
        },
        "synthetic_choice": {
            "task": "synthetic_choice",
            **base,
            "dataset_kwargs": {"data_files": {"test": str(data_dir / "items.jsonl")}},
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",
            "doc_to_target": "label",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        },
    }


def downstream_tasks(
    eval_path: str,
    vocab_size: int,
    n_items: int,
    context_tokens: int,
    choices: int,
    seed: int,
    out_dir: str,
) -> None:
    """Items (JSON lines), one task YAML per local task, and the word-level tokenizer."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    docs = pd.read_parquet(eval_path, columns=["tokens"]).tokens
    items = local_items(docs, vocab_size, n_items, context_tokens, choices, seed)
    with (out / "items.jsonl").open("w") as fh:
        for item in items:
            fh.write(json.dumps(item) + "\n")
    for name, cfg in task_configs(out).items():
        (out / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    synthetic_tokenizer(vocab_size).save_pretrained(out / "tokenizer")
    log.info(
        "%d items of %d context tokens, %d choices, in %s", n_items, context_tokens, choices, out
    )
