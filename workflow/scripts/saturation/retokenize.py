"""One text sample, every tokenizer of the run: the corpus is drawn once with
``corpus.tokenizer`` (the reference), and each model whose tokenizer differs reads the same
documents, the same text of each, tokenized with its own.

Documents keep their ids and their order, so the selection and report halves of the
evaluation sample (even and odd positions) are the same documents for every model, and the
loss per byte compares models across vocabularies on one text.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from saturation.corpus import (
    CorpusError,
    corpus_table,
    document_separator,
    load_tokenizer,
    predicted_bytes,
    write_corpus,
)

log = logging.getLogger(__name__)


def tokenize_corpus(
    reference: str | Path,
    tokenizer_name: str,
    separator_mode: str,
    out_tokens: str | Path,
    out_meta: str | Path,
) -> None:
    """The reference sample's documents, as text, tokenized with ``tokenizer_name``.

    Each document gets the tokenizer's own separator (``corpus.document_separator``) and is
    never cut again: its text is already what the reference tokens covered.
    """
    table = pq.read_table(reference)
    if "text" not in table.column_names or table.column("text").null_count:
        raise CorpusError(
            f"{reference} holds no text of its documents (sampled before the text was kept, "
            "or from the synthetic language): delete it and re-run sample_corpus"
        )
    texts = table.column("text").to_pylist()
    tokenizer = load_tokenizer(tokenizer_name)
    separator = document_separator(tokenizer, separator_mode)
    head = [] if separator is None else [separator["id"]]
    docs = [
        np.asarray(head + tokenizer(t, add_special_tokens=False)["input_ids"], dtype=np.int32)
        for t in texts
    ]
    n_bytes = [predicted_bytes(tokenizer, d) for d in docs]
    split = table.column("split")[0].as_py() if table.num_rows else "eval"
    out = corpus_table(table.column("doc_id").to_pylist(), split, docs, n_bytes, texts)
    record = {
        "source": "tokenized",
        "reference": str(reference),
        "split": split,
        "tokenizer": tokenizer_name,
        "vocab_size": len(tokenizer),
        "document_separator": separator,
    }
    write_corpus(out, out_tokens, out_meta, record)
