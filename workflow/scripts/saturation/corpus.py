"""Corpus sampling: documents from a synthetic language, local files, or a hub dataset,
tokenised and written to Parquet with an explicit schema.

Every source is sampled with a seed, and the same configuration gives byte-identical Parquet.
Documents are assigned to the ``train`` or ``eval`` split by a seeded hash of their position
in the (seeded) document stream, so the two splits never share a document and changing the
size of one split leaves the other untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from saturation.io import write_json, write_parquet
from saturation.synthetic import SyntheticLanguage
from saturation.tables import CORPUS_SCHEMA, TOKEN_COUNTS_SCHEMA

log = logging.getLogger(__name__)

SPLITS = ("train", "eval")


class CorpusError(ValueError):
    """A corpus source that cannot be sampled as configured."""


def corpus_table(
    doc_ids: list[int],
    split: str,
    token_lists: list[np.ndarray],
    n_bytes: list[int] | None = None,
    texts: list[str] | None = None,
) -> pa.Table:
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int32)
    np.cumsum([len(t) for t in token_lists], out=offsets[1:])
    values = (
        np.concatenate(token_lists).astype(np.int32) if token_lists else np.zeros(0, dtype=np.int32)
    )
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return pa.table(
        {
            "doc_id": pa.array(doc_ids, pa.int64()),
            "split": pa.array([split] * len(doc_ids), pa.string()),
            "tokens": tokens,
            "n_bytes": pa.array(n_bytes or [None] * len(doc_ids), pa.int64()),
            "text": pa.array(texts or [None] * len(doc_ids), pa.string()),
        },
        schema=CORPUS_SCHEMA,
    )


def read_bytes(path: str | Path) -> int | None:
    """The UTF-8 bytes of the text a model predicts over the whole sample (every document's
    ``tokens[1:]``), or None where the corpus has no text."""
    if "n_bytes" not in pq.read_schema(path).names:
        return None
    n_bytes = pq.read_table(path, columns=["n_bytes"]).column("n_bytes")
    if n_bytes.null_count:
        return None
    return int(pc.sum(n_bytes).as_py() or 0)


def predicted_bytes(tokenizer, tokens: np.ndarray) -> int:
    """UTF-8 bytes of the text of ``tokens[1:]`` (special tokens, e.g. a separator, have
    none). A document cut mid-character counts its replacement character."""
    text = tokenizer.decode(tokens[1:].tolist(), skip_special_tokens=True)
    return len(text.encode("utf-8"))


def read_tokens(path: str | Path) -> list[np.ndarray]:
    """The documents of a corpus Parquet as int32 arrays."""
    table = pq.read_table(path, columns=["tokens"])
    col = table.column("tokens").combine_chunks()
    offsets = col.offsets.to_numpy()
    values = col.values.to_numpy()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(col))]


def count_tokens(sample_path: str | Path, out_path: str | Path) -> None:
    """Each token id's count in a sample (the ids it holds, ascending), streamed a record
    batch at a time: the memory is the vocabulary's, whatever the sample's length."""
    counts = np.zeros(0, dtype=np.int64)
    for batch in pq.ParquetFile(sample_path).iter_batches(columns=["tokens"]):
        values = batch.column("tokens").values.to_numpy()
        found = np.bincount(values, minlength=len(counts))
        if len(found) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(found) - len(counts), np.int64)])
        counts += found
    held = np.flatnonzero(counts)
    table = pa.table({"token": held, "count": counts[held]}, schema=TOKEN_COUNTS_SCHEMA)
    write_parquet(table, out_path)
    log.info("%d tokens of %d distinct ids counted in %s", counts.sum(), len(held), sample_path)


def read_token_counts(path: str) -> np.ndarray:
    """Each token id's count in the training sample (``count_tokens``'s table), by id."""
    table = pq.read_table(path)
    ids = table.column("token").to_numpy()
    counts = np.zeros(int(ids.max()) + 1 if len(ids) else 0, dtype=np.int64)
    counts[ids] = table.column("count").to_numpy()
    return counts


def split_of(index: int, seed: int, eval_fraction: float) -> str:
    """Seeded, stable assignment of the ``index``-th document of a stream to a split."""
    h = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "little") / 2**64
    return "eval" if u < eval_fraction else "train"


def take_tokens(
    documents: Iterable[tuple[np.ndarray, str | None]],
    split: str,
    n_tokens: int | None,
    seed: int,
    eval_fraction: float,
    max_document_tokens: int | None,
    cut=None,
) -> tuple[list[int], list[np.ndarray], list[str | None]]:
    """Walk the stream of (tokens, text) documents, keep those of ``split`` until
    ``n_tokens`` are in (None: every document of the split).

    The last document is cut so the sample holds exactly ``n_tokens`` tokens. A document cut
    to ``k`` tokens keeps the text ``cut(text, k)`` those tokens cover.
    """
    ids, kept, texts, total = [], [], [], 0
    for index, (tokens, text) in enumerate(documents):
        if split_of(index, seed, eval_fraction) != split or len(tokens) == 0:
            continue
        limit = np.inf if n_tokens is None else n_tokens - total
        if max_document_tokens is not None:
            limit = min(limit, max_document_tokens)
        if len(tokens) > limit:
            tokens = tokens[:limit]
            text = None if text is None or cut is None else cut(text, limit)
        ids.append(index)
        kept.append(np.asarray(tokens, dtype=np.int32))
        texts.append(text)
        total += len(tokens)
        if n_tokens is not None and total >= n_tokens:
            return ids, kept, texts
    if n_tokens is None and total:
        return ids, kept, texts
    raise CorpusError(
        f"the source ran out of documents after {total} tokens of the {split} split; "
        f"{n_tokens} were asked for (lower corpus.{split}_tokens or add documents)"
    )


# --- sources -----------------------------------------------------------------------------


def synthetic_documents(
    language: SyntheticLanguage, split: str, n_tokens: int, document_length: int, seed: int
) -> tuple[list[int], list[np.ndarray]]:
    """Independent stationary chains; each split draws from its own seeded stream."""
    stream = SPLITS.index(split)
    rng = np.random.default_rng([seed, stream])
    n_docs = -(-n_tokens // document_length)
    tokens = language.sample(n_docs, document_length, rng)
    docs = [row for row in tokens]
    docs[-1] = docs[-1][: n_tokens - document_length * (n_docs - 1)]
    # Document ids are distinct across splits: the split's index is the high part.
    ids = [stream * 10**12 + i for i in range(n_docs)]
    return ids, docs


def local_texts(paths: list[str], text_field: str, counts: dict | None = None) -> Iterator[str]:
    """Documents of local files, in the order given; ``counts`` (if given) gets each file's
    number of documents.

    ``.txt``: documents are separated by blank lines; ``.jsonl``: one JSON object a line,
    text under ``text_field``; ``.parquet``: the ``text_field`` column. Text is UTF-8; a
    byte that is not, or a line that is not JSON, is reported with its file and line.
    """
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise CorpusError(f"corpus.local.paths: no such file: {p}")
        suffix = path.suffix.lower()
        n = 0
        if suffix == ".txt":
            for block in utf8_text(path).split("\n\n"):
                if block.strip():
                    n += 1
                    yield block.strip()
        elif suffix == ".jsonl":
            with path.open("rb") as fh:
                for lineno, raw in enumerate(fh, 1):
                    line = utf8_line(raw, path, lineno)
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line.rstrip("\r\n"))
                    except json.JSONDecodeError as exc:
                        raise CorpusError(
                            f"{p}:{lineno}: not a JSON object: {exc.msg} (column {exc.colno}; a "
                            ".jsonl corpus holds one JSON object a line)"
                        ) from None
                    if not isinstance(record, dict) or text_field not in record:
                        raise CorpusError(
                            f"{p}:{lineno}: no field '{text_field}' (corpus.local.text_field)"
                        )
                    n += 1
                    yield record[text_field]
        elif suffix == ".parquet":
            table = pq.read_table(path)
            if text_field not in table.column_names:
                raise CorpusError(
                    f"{p}: no column '{text_field}' (corpus.local.text_field); "
                    f"columns are {table.column_names}"
                )
            texts = table.column(text_field).to_pylist()
            n = len(texts)
            yield from texts
        else:
            raise CorpusError(f"{p}: unknown file type '{suffix}' (use .txt, .jsonl or .parquet)")
        if counts is not None:
            counts[str(p)] = n


def utf8_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CorpusError(not_utf8(path, line, raw[exc.start : exc.start + 1])) from None


def utf8_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(not_utf8(path, lineno, raw[exc.start : exc.start + 1])) from None


def not_utf8(path, line: int, byte: bytes) -> str:
    return (
        f"{path}:{line}: not UTF-8 text (byte 0x{byte.hex()}); corpus files are read as UTF-8: "
        "convert it (e.g. iconv -f latin1 -t utf-8)"
    )


def local_hint(counts: dict) -> str:
    """Why local files gave fewer tokens than asked: each file's documents."""
    parts = []
    for path, n in counts.items():
        note = ""
        if n == 0:
            note = " (empty)"
        elif n == 1 and path.lower().endswith(".txt"):
            note = " (a .txt file's documents are separated by blank lines; this one has none)"
        parts.append(f"{path}: {n} document{'s' if n != 1 else ''}{note}")
    return "; the files hold " + ", ".join(parts)


def seeded_shuffle(items: list, seed: int) -> list:
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def huggingface_texts(
    path: str,
    name: str | None,
    split: str,
    text_field: str,
    seed: int,
    shuffle_buffer: int,
    data_files: dict | None = None,
    retry: dict | None = None,
) -> Iterator[str]:
    """A hub dataset, streamed and shuffled with a seeded buffer (no full download).

    Compressed files (The Pile's ``.jsonl.zst``) are decompressed as they stream; ``.zst``
    needs the ``zstandard`` package. Where the hub fails mid-way (``retry``: a rate limit,
    a dropped connection), the stream starts again and skips the records already given: the
    seeded shuffle gives them in the same order, so the sample is the one an unbroken stream
    gives.
    """
    from datasets import load_dataset

    def records() -> Iterator[dict]:
        try:
            dataset = load_dataset(path, name, split=split, streaming=True, data_files=data_files)
        except ValueError as exc:
            if "Bad split" in str(exc) or "Unknown split" in str(exc):
                raise CorpusError(
                    f"dataset {path} has no split '{split}' ({exc}); set "
                    "corpus.huggingface.split / eval_split, or data_files to map its files to "
                    "splits"
                ) from exc
            raise
        yield from dataset.shuffle(seed=seed, buffer_size=shuffle_buffer)

    stream = records() if retry is None else restarted(records, f"dataset {path}", retry)
    for record in stream:
        if text_field not in record:
            raise CorpusError(
                f"dataset {path}: records have no field '{text_field}' "
                f"(corpus.huggingface.text_field); fields are {sorted(record)}"
            )
        yield record[text_field]


HUB_FILE = re.compile(r"hf://datasets/(?P<repo>[^@/]+/[^@/]+)@(?P<revision>[^/]+)/(?P<file>[^:]+)")


def restarted(make: Callable[[], Iterator], what: str, retry: dict) -> Iterator:
    """The items of ``make()``; where the hub fails mid-way, ``make()`` again, past the items
    already given, after the wait ``saturation.retry.retry_delay`` gives (``retry``: its
    attempts, base and cap).

    datasets' file system reports a file it could not reach (a 429 from the hub's API) as
    missing: a ``FileNotFoundError`` on an ``hf://`` path is retried when the hub, asked
    through the retried API, lists that file; that request also waits out a spent window.
    """
    import time

    from saturation.retry import retry_delay

    given = 0
    for attempt in range(retry["attempts"]):
        try:
            for index, item in enumerate(make()):
                if index >= given:
                    given += 1
                    yield item
            return
        except Exception as exc:  # noqa: BLE001 - classified below
            delay = retry_delay(exc, attempt, retry["base"], retry["cap"])
            if delay is None and isinstance(exc, FileNotFoundError):
                delay = listed_file_delay(str(exc), attempt, retry)
            if delay is None or attempt == retry["attempts"] - 1:
                raise
            log.warning(
                "%s: %s; starting the stream again past its %d records in %.1f s (retry %d of %d)",
                what,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                given,
                delay,
                attempt + 1,
                retry["attempts"] - 1,
            )
            time.sleep(delay)


def listed_file_delay(message: str, attempt: int, retry: dict) -> float | None:
    """The backoff before retrying a 'missing' ``hf://`` file the hub does list; None where
    the message names no hub file or the hub does not have it."""
    from urllib.parse import unquote

    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    from saturation.retry import backoff, with_backoff

    m = HUB_FILE.search(message)
    if m is None:
        return None
    repo, revision, file = m.group("repo"), unquote(m.group("revision")), m.group("file")
    try:
        found = with_backoff(
            lambda: HfApi().get_paths_info(repo, [file], revision=revision, repo_type="dataset"),
            f"dataset {repo}@{revision}: {file}",
            **retry,
        )
    except Exception:  # noqa: BLE001 - the original error is the one to report
        return None
    if not any(isinstance(e, RepoFile) for e in found):
        return None
    return backoff(attempt, retry["base"], retry["cap"])


def load_tokenizer(name_or_dir: str):
    """A tokenizer from a hub repo id or a local directory; never remote code."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_dir, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise CorpusError(
            f"corpus.tokenizer: cannot load tokenizer '{name_or_dir}': {exc}"
        ) from exc


def document_separator(tokenizer, mode: str) -> dict | None:
    """The token put before every document (``corpus.document_separator``): models are
    trained on packed documents separated by it, so the first token of a document is
    predicted from it. ``auto``: BOS where the tokenizer defines one (Llama, Gemma, OPT), else
    EOS (GPT-NeoX's and GPT-2's BOS and EOS are the same token)."""
    if mode == "none":
        return None
    order = {"auto": ("bos", "eos"), "bos": ("bos",), "eos": ("eos",)}[mode]
    for kind in order:
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            token = getattr(tokenizer, f"{kind}_token")
            return {"mode": mode, "kind": kind, "token": token, "id": int(token_id)}
    name = getattr(tokenizer, "name_or_path", tokenizer)
    if mode == "auto":
        log.warning("tokenizer '%s' defines no BOS or EOS token: no document separator", name)
        return None
    raise CorpusError(
        f"corpus.document_separator: {mode}: the tokenizer '{name}' defines no "
        f"{mode.upper()} token; set it to auto or none"
    )


def tokenize(
    texts: Iterable[str], tokenizer, separator: dict | None = None
) -> Iterator[tuple[np.ndarray, str]]:
    """(token ids, text) of each text, the ids after the document separator if one is
    given; a text without tokens gets none (the sample skips it)."""
    head = [] if separator is None else [separator["id"]]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        yield np.asarray(head + list(ids) if ids else [], dtype=np.int32), text


def text_cutter(tokenizer, separator: dict | None):
    """``cut(text, k)``: the prefix of ``text`` that its first ``k`` tokens (the separator
    included) cover, from the tokenizer's character offsets (a slow tokenizer: the decoded
    tokens)."""
    head = 0 if separator is None else 1

    def cut(text: str, k: int) -> str:
        n = k - head
        if n <= 0:
            return ""
        if getattr(tokenizer, "is_fast", False):
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            return text[: enc["offset_mapping"][n - 1][1]]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:n]
        return tokenizer.decode(ids)

    return cut


def write_corpus(
    table: pa.Table, parquet_path: str | Path, json_path: str | Path, record: dict
) -> None:
    lengths = pc.list_value_length(table.column("tokens"))
    record = dict(
        record,
        n_documents=table.num_rows,
        n_tokens=int(pc.sum(lengths).as_py() or 0),
    )
    write_parquet(table, parquet_path)
    write_json(record, json_path)
    log.info(
        "wrote %d documents, %d tokens to %s",
        record["n_documents"],
        record["n_tokens"],
        parquet_path,
    )


def local_stream(params: dict, split: str, counts: dict | None = None) -> tuple[list, float]:
    """A local source's documents in the order the ``split`` sample walks them, and the
    share of them assigned to the evaluation split: an evaluation file of its own
    (``local.eval_files``) is the whole of the evaluation split and none of the training
    one. Local files are small enough to shuffle whole: a seeded permutation."""
    settings, eval_fraction = params["local"], params["eval_fraction"]
    paths = settings["paths"]
    if settings.get("eval_files"):
        paths = settings["eval_files"] if split == "eval" else paths
        eval_fraction = 1.0 if split == "eval" else 0.0
    texts = list(local_texts(paths, settings["text_field"], counts))
    return seeded_shuffle(texts, params["seed"]), eval_fraction


def local_capacity(params: dict, splits=("eval", "train")) -> dict[str, int]:
    """The tokens each split's sample of a local source could hold at most: its documents
    tokenized as the sample tokenizes them (one batch call: the fast tokenizers' threads),
    each cut to max_document_tokens."""
    tokenizer = load_tokenizer(params["tokenizer"])
    head = (
        0 if document_separator(tokenizer, params.get("document_separator", "auto")) is None else 1
    )
    cap = params["max_document_tokens"] or np.inf
    held = {}
    for split in splits:
        texts, eval_fraction = local_stream(params, split)
        mine = [
            t for i, t in enumerate(texts) if split_of(i, params["seed"], eval_fraction) == split
        ]
        lengths = (
            [len(ids) for ids in tokenizer(mine, add_special_tokens=False)["input_ids"]]
            if mine
            else []
        )
        held[split] = int(sum(min(n + head, cap) for n in lengths if n))
    return held


def ngram_corpus(params: dict, inputs, tokens_path, meta_path, retry: dict | None = None):
    """An n-gram corpus with a source of its own (``ngrams.corpora[]``): sampled as a training
    split is (``sample_corpus``), every document counted whole and none kept as text."""
    every_document = {"split": "train", "eval_fraction": 0.0, "max_document_tokens": None}
    settings = {**params, **every_document, "keep_text": False}
    sample_corpus(settings, inputs, tokens_path, meta_path, retry=retry)


def sample_corpus(params: dict, inputs, tokens_path, meta_path, retry: dict | None = None) -> None:
    """Sample the split ``params['split']`` of the configured source to Parquet + JSON.

    ``retry``: how a hub dataset's stream is retried (``saturation.suites.hub_retry``)."""
    source, split, n_tokens, seed = (
        params["source"],
        params["split"],
        params["n_tokens"],
        params["seed"],
    )
    record = {"source": source, "split": split, "seed": seed, "n_tokens_requested": n_tokens}
    if source == "synthetic":
        from saturation.synthetic import load_language

        language = load_language(inputs["language"])
        ids, docs = synthetic_documents(language, split, n_tokens, params["document_length"], seed)
        record.update(tokenizer=None, vocab_size=language.vocab_size, document_separator=None)
    else:
        tokenizer = load_tokenizer(params["tokenizer"])
        settings = params[source]
        counts = {}
        eval_fraction = params["eval_fraction"]
        if source == "local":
            texts, eval_fraction = local_stream(params, split, counts)
        if source == "huggingface":
            hub_split = settings["split"]
            if settings.get("eval_split"):  # each sample from its own split, whole
                hub_split = settings["eval_split"] if split == "eval" else settings["split"]
                eval_fraction = 1.0 if split == "eval" else 0.0
            texts = huggingface_texts(
                settings["path"],
                settings["name"],
                hub_split,
                settings["text_field"],
                seed,
                settings["shuffle_buffer"],
                settings.get("data_files"),
                retry=retry,
            )
            record["dataset_split"] = hub_split
        separator = document_separator(tokenizer, params.get("document_separator", "auto"))
        try:
            ids, docs, texts = take_tokens(
                tokenize(texts, tokenizer, separator),
                split,
                n_tokens,
                seed,
                eval_fraction,
                params["max_document_tokens"],
                cut=text_cutter(tokenizer, separator),
            )
        except CorpusError as exc:
            if source != "local":
                raise
            raise CorpusError(f"{exc}{local_hint(counts)}") from None
        if not params.get("keep_text", True):  # n-gram corpora: no other tokenizer reads it
            texts = None
        record.update(
            tokenizer=params["tokenizer"],
            vocab_size=len(tokenizer),
            document_separator=separator,
            **{source: settings},
        )
    texts = None if source == "synthetic" else texts
    n_bytes = None if source == "synthetic" else [predicted_bytes(tokenizer, d) for d in docs]
    write_corpus(corpus_table(ids, split, docs, n_bytes, texts), tokens_path, meta_path, record)
