"""Named evaluation corpora (``metrics.eval_corpora``): a checkpoint's loss on more text than
the run's evaluation sample, in the measuring job's one model load.

A corpus is the test documents of a rolling log-likelihood task of the LM Evaluation Harness
(``wikitext``: the paper's Fig 3), read through the harness's own task loading, or a file of
the user's. Each document is scored as the harness scores ``loglikelihood_rolling``
requests: the text the task scores (``doc_to_target``), encoded as the harness's ``HFLM``
encodes it, cut into the harness's own disjoint rolling windows of the model's context length
(``lm_eval.utils.get_rolling_token_windows`` with context 1, the first window after the
tokenizer's BOS token, else its EOS), each window's continuation scored by one forward pass.
Word and byte counts are the task's own (``process_results``); the metrics are its
aggregates: word perplexity exp(-sum ll / sum words), byte perplexity exp(-sum ll / sum
bytes), bits per byte -sum ll / sum bytes / ln 2, and the loss per token -sum ll / tokens.
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pyarrow as pa

from saturation.io import read_json, write_json, write_parquet
from saturation.tables import EVAL_TEXT_SCHEMA, EVAL_TOKENS_SCHEMA

log = logging.getLogger(__name__)


class EvalCorpusError(ValueError):
    pass


METRICS = ("loss", "word_perplexity", "byte_perplexity", "bits_per_byte")


def count_words(text: str) -> int:
    """The harness's default word count (``Task.count_words``)."""
    return len(re.split(r"\s+", text))


def harness_documents(task_name: str, include_path: str | None, retry: dict | None) -> list:
    """The test documents of a harness task of type ``loglikelihood_rolling``: the text it
    scores and its word and byte counts, from the task's own ``process_results``."""
    from saturation.downstream import check_tasks, load_tasks, task_manager

    manager = task_manager(include_path, [task_name])
    check_tasks(manager, [task_name])
    ((_, task),) = load_tasks(manager, [task_name], retry)
    if task.OUTPUT_TYPE != "loglikelihood_rolling":
        raise EvalCorpusError(
            f"config key 'metrics.eval_corpora': harness task '{task_name}' is a "
            f"{task.OUTPUT_TYPE} task; an evaluation corpus needs a loglikelihood_rolling "
            "task (wikitext, pile_*, ...)"
        )
    docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
    rows = []
    for i, doc in enumerate(docs):
        counts = task.process_results(doc, [0.0])
        rows.append(
            {
                "document": i,
                "text": task.doc_to_target(doc),
                "words": int(counts["word_perplexity"][1]),
                "bytes": int(counts["byte_perplexity"][1]),
            }
        )
    return rows


def file_documents(path: str, text_field: str) -> list:
    """A file of the user's: .txt (documents separated by blank lines), .jsonl or .parquet;
    words and bytes counted as the harness counts them by default."""
    from saturation.corpus import CorpusError, local_texts

    try:
        texts = [t for t in local_texts([path], text_field) if t.strip()]
    except CorpusError as exc:
        message = str(exc).replace("corpus.local.", "metrics.eval_corpora[].")
        raise EvalCorpusError(f"config key 'metrics.eval_corpora': {message}") from None
    if not texts:
        raise EvalCorpusError(f"config key 'metrics.eval_corpora': {path} holds no text")
    return [
        {"document": i, "text": t, "words": count_words(t), "bytes": len(t.encode("utf-8"))}
        for i, t in enumerate(texts)
    ]


def eval_corpus(entry: dict, include_path: str | None, retry: dict | None, out, meta) -> None:
    """One corpus's documents (``metrics.eval_corpora`` entry) to Parquet, with a record of
    where they came from (Snakemake-facing)."""
    if entry.get("harness_task"):
        rows = harness_documents(entry["harness_task"], include_path, retry)
        source = {"harness_task": entry["harness_task"]}
    else:
        rows = file_documents(entry["path"], entry.get("text_field", "text"))
        source = {"path": entry["path"]}
    write_parquet(pa.Table.from_pylist(rows, schema=EVAL_TEXT_SCHEMA), out)
    words, n_bytes = sum(r["words"] for r in rows), sum(r["bytes"] for r in rows)
    write_json({"name": entry["name"], **source, "documents": len(rows), "words": words,
                "bytes": n_bytes}, meta)  # fmt: skip
    log.info("%s: %d documents, %d words, %d bytes", entry["name"], len(rows), words, n_bytes)


def prefix_token_id(tokenizer) -> int:
    """The token the first window conditions on: the harness's ``HFLM.prefix_token_id``."""
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id
    if tokenizer.eos_token_id is None:
        raise EvalCorpusError(
            f"tokenizer {tokenizer.name_or_path} has neither a BOS nor an EOS token: the "
            "harness's rolling windows need one to condition the first token on"
        )
    return tokenizer.eos_token_id


def encode(tokenizer, text: str, prefix: int) -> list[int]:
    """``HFLM.tok_encode`` for a causal model: the tokenizer's own special-token default,
    none where the text already starts with the prefix token."""
    kwargs = {}
    if text.startswith(tokenizer.decode(prefix)):
        kwargs["add_special_tokens"] = False
    return tokenizer.encode(text, **kwargs)


def tokenize_eval_corpus(text_path: str, tokenizer_name: str, out: str, meta: str) -> None:
    """A corpus's documents encoded with one tokenizer, its prefix token recorded
    (Snakemake-facing)."""
    import pyarrow.parquet as pq

    from saturation.corpus import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_name)
    prefix = prefix_token_id(tokenizer)
    docs = pq.read_table(text_path).to_pylist()
    rows = [
        {
            "document": d["document"],
            "tokens": encode(tokenizer, d["text"], prefix),
            "words": d["words"],
            "bytes": d["bytes"],
        }  # fmt: skip
        for d in docs
    ]
    write_parquet(pa.Table.from_pylist(rows, schema=EVAL_TOKENS_SCHEMA), out)
    n_tokens = sum(len(r["tokens"]) for r in rows)
    write_json({"tokenizer": tokenizer_name, "prefix_token_id": prefix, "tokens": n_tokens,
                "vocab_size": len(tokenizer)}, meta)  # fmt: skip


def context_length(config) -> int:
    """The model's context: the harness's ``resolve_max_length`` from the model's config
    (its tokenizer's ``model_max_length`` and 2048 are the harness's fallbacks; every causal
    LM this workflow loads names its positions)."""
    from lm_eval.models.utils import resolve_max_length

    return resolve_max_length(config, None)


def rolling_windows(tokens: list[int], prefix: int, max_length: int) -> list[tuple[list, list]]:
    """The harness's disjoint rolling windows of a document: (context, continuation)."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    windows = get_rolling_token_windows(
        token_list=list(tokens), prefix_token=prefix, max_seq_len=max_length, context_len=1
    )
    return [make_disjoint_window(w) for w in windows]


def rolling_loglikelihoods(model, documents, prefix: int, batch_size: int, device) -> np.ndarray:
    """Each document's summed log-likelihood (nats), scored window by window as the
    harness's ``HFLM._loglikelihood_tokens`` scores them: the input (context + continuation)
    without its last token, the continuation's log-probabilities from the last
    len(continuation) positions; windows of one length batched together."""
    import torch

    max_length = context_length(model.config)
    windows = [
        (i, (ctx + cont)[-(max_length + 1) :][:-1], cont)
        for i, tokens in enumerate(documents)
        for ctx, cont in rolling_windows(tokens, prefix, max_length)
    ]
    windows.sort(key=lambda w: -len(w[1]))  # as the harness: longest first
    total = np.zeros(len(documents))
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            inputs = torch.zeros((len(chunk), len(chunk[0][1])), dtype=torch.long)
            for row, (_, inp, _) in enumerate(chunk):  # right-padded: a causal model's
                inputs[row, : len(inp)] = torch.tensor(inp)  # positions are unaffected
            logits = model(input_ids=inputs.to(device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, (doc, inp, cont) in enumerate(chunk):
                target = torch.tensor(cont, device=logprobs.device)
                picked = logprobs[row, len(inp) - len(cont) : len(inp)].gather(1, target[:, None])
                total[doc] += float(picked.sum())
    return total


def corpus_metrics(name: str, loglikelihoods, n_tokens: int, words: int, n_bytes: int) -> dict:
    """The harness's aggregates of one corpus, as metric rows ``{name}/{metric}``."""
    nll = -float(np.sum(loglikelihoods))
    return {
        f"{name}/loss": nll / n_tokens,
        f"{name}/word_perplexity": math.exp(nll / words),
        f"{name}/byte_perplexity": math.exp(nll / n_bytes),
        f"{name}/bits_per_byte": nll / n_bytes / math.log(2),
    }


def measure_eval_corpora(model, corpora: dict, batch_size: int, device) -> dict:
    """The metrics of every named corpus (``{name: (tokens parquet, its record)}``)."""
    import pyarrow.parquet as pq

    values = {}
    for name, (tokens_path, meta_path) in corpora.items():
        table = pq.read_table(tokens_path).to_pydict()
        prefix = read_json(meta_path)["prefix_token_id"]
        vocab = model.get_output_embeddings().weight.shape[0]
        top = max((max(t) for t in table["tokens"] if t), default=0)
        if top >= vocab:
            raise EvalCorpusError(
                f"evaluation corpus '{name}': token id {top} is beyond the model's "
                f"{vocab}-row head (a corpus tokenized for another model)"
            )
        ll = rolling_loglikelihoods(model, table["tokens"], prefix, batch_size, device)
        n_tokens = sum(len(t) for t in table["tokens"])
        values |= corpus_metrics(name, ll, n_tokens, sum(table["words"]), sum(table["bytes"]))
        log.info("%s: %s", name, {k: round(v, 4) for k, v in values.items() if k.startswith(name)})
    return values
