"""Corpus sampling: schema, exact sizes, split disjointness, determinism, text sources."""

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saturation.corpus import (
    CORPUS_SCHEMA,
    CorpusError,
    read_tokens,
    sample_corpus,
    split_of,
)
from saturation.synthetic import make_language, save_language


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def language_file(tmp_path):
    lang = make_language(vocab_size=16, rank=2, logit_scale=2.0, zipf_exponent=1.0, seed=0)
    path = tmp_path / "lang.npz"
    save_language(lang, path, tmp_path / "lang.json", seed=0)
    return path


def synthetic_params(split, n_tokens, seed=5):
    return {
        "source": "synthetic",
        "split": split,
        "n_tokens": n_tokens,
        "seed": seed,
        "document_length": 10,
    }


def test_synthetic_split_schema_and_size(tmp_path, language_file):
    out = tmp_path / "eval.parquet"
    sample_corpus(
        synthetic_params("eval", 95), {"language": language_file}, out, tmp_path / "eval.json"
    )
    table = pq.read_table(out)
    assert table.schema.equals(CORPUS_SCHEMA, check_metadata=False)
    assert table.schema.field("tokens").type == pa.list_(pa.int32())
    docs = read_tokens(out)
    assert sum(len(d) for d in docs) == 95 and len(docs) == 10 and len(docs[-1]) == 5
    assert set(table.column("split").to_pylist()) == {"eval"}
    meta = json.loads((tmp_path / "eval.json").read_text())
    assert meta["n_tokens"] == 95 and meta["n_documents"] == 10 and meta["seed"] == 5
    assert max(int(d.max()) for d in docs) < 16


def test_same_config_gives_byte_identical_parquet(tmp_path, language_file):
    paths = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.parquet"
        sample_corpus(
            synthetic_params("train", 500),
            {"language": language_file},
            out,
            tmp_path / f"{run}.json",
        )
        paths.append(out)
    assert sha(paths[0]) == sha(paths[1])
    other = tmp_path / "c.parquet"
    sample_corpus(
        synthetic_params("train", 500, seed=6),
        {"language": language_file},
        other,
        tmp_path / "c.json",
    )
    assert sha(other) != sha(paths[0])


def test_train_and_eval_streams_differ(tmp_path, language_file):
    for split in ("train", "eval"):
        sample_corpus(
            synthetic_params(split, 200),
            {"language": language_file},
            tmp_path / f"{split}.parquet",
            tmp_path / f"{split}.json",
        )
    train = pq.read_table(tmp_path / "train.parquet").to_pydict()
    evals = pq.read_table(tmp_path / "eval.parquet").to_pydict()
    assert not set(train["doc_id"]) & set(evals["doc_id"])
    assert train["tokens"] != evals["tokens"]


WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "dog",
    "ran",
    "far",
    "away",
    "big",
    "small",
    "red",
    "blue",
]


@pytest.fixture
def tokenizer_dir(tmp_path):
    """A word-level tokenizer built here, saved as a Hugging Face tokenizer directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(path)
    return path


def make_texts(n):
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(n)]


def local_params(split, paths, tokenizer, n_tokens, seed=3):
    return {
        "source": "local",
        "split": split,
        "n_tokens": n_tokens,
        "seed": seed,
        "tokenizer": str(tokenizer),
        "eval_fraction": 0.5,
        "max_document_tokens": 6,
        "local": {"paths": [str(p) for p in paths], "text_field": "text"},
    }


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet"])
def test_local_sources_tokenise_and_split(tmp_path, tokenizer_dir, fmt):
    texts = make_texts(60)
    path = tmp_path / f"docs.{fmt}"
    if fmt == "txt":
        path.write_text("\n\n".join(texts))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    else:
        pq.write_table(pa.table({"text": texts}), path)
    out = {}
    for split in ("train", "eval"):
        p = local_params(split, [path], tokenizer_dir, 40)
        sample_corpus(p, {}, tmp_path / f"{split}.parquet", tmp_path / f"{split}.json")
        out[split] = pq.read_table(tmp_path / f"{split}.parquet").to_pydict()
        assert sum(len(t) for t in out[split]["tokens"]) == 40
        assert max(len(t) for t in out[split]["tokens"]) <= 6  # max_document_tokens
        # Each kept document sits on the split its seeded hash assigns.
        assert all(split_of(i, 3, 0.5) == split for i in out[split]["doc_id"])
    assert not set(out["train"]["doc_id"]) & set(out["eval"]["doc_id"])
    # Token ids are the tokenizer's: decode the first document and find it in the texts.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    first = tok.decode(out["eval"]["tokens"][0])
    assert any(t.startswith(first) for t in texts)


@pytest.mark.parametrize(
    "special, mode, expected",
    [
        ({"eos_token": "<eos>"}, "auto", ("eos", 1)),  # GPT-NeoX: EOS only (BOS = EOS there)
        ({"bos_token": "<bos>", "eos_token": "<eos>"}, "auto", ("bos", 2)),  # Llama: BOS
        ({"bos_token": "<bos>", "eos_token": "<eos>"}, "eos", ("eos", 1)),
        ({"eos_token": "<eos>"}, "none", None),
        ({}, "auto", None),  # a tokenizer without either: no separator (a warning)
    ],
)
def test_documents_start_with_the_separator(tmp_path, special, mode, expected):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<eos>": 1, "<bos>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok_dir = tmp_path / "tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", **special).save_pretrained(
        tok_dir
    )
    texts = make_texts(30)
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    params = {**local_params("eval", [path], tok_dir, 60), "document_separator": mode}
    params["max_document_tokens"] = 8
    sample_corpus(params, {}, tmp_path / "e.parquet", tmp_path / "e.json")
    docs = pq.read_table(tmp_path / "e.parquet").to_pydict()
    n_bytes_of = dict(zip(docs["doc_id"], docs["n_bytes"], strict=True))
    meta = json.loads((tmp_path / "e.json").read_text())
    plain = AutoTokenizer.from_pretrained(tok_dir)
    for doc_id, tokens in zip(docs["doc_id"], docs["tokens"], strict=True):
        words = plain(texts[seeded_order(len(texts))[doc_id]], add_special_tokens=False)
        head = [] if expected is None else [expected[1]]
        assert tokens == (head + words["input_ids"])[: len(tokens)]
        assert len(tokens) <= 8  # the separator counts towards max_document_tokens
        # n_bytes: the UTF-8 length of the words a model predicts (all but the first token).
        kept = texts[seeded_order(len(texts))[doc_id]].split()[: len(tokens) - len(head)]
        predicted = kept if head else kept[1:]
        assert n_bytes_of[doc_id] == len(" ".join(predicted).encode("utf-8"))
    if expected is None:
        assert meta["document_separator"] is None
    else:
        assert (meta["document_separator"]["kind"], meta["document_separator"]["id"]) == expected
    if not special:
        with pytest.raises(CorpusError, match="defines no BOS token"):
            sample_corpus(
                {**params, "document_separator": "bos"},
                {},
                tmp_path / "f.parquet",
                tmp_path / "f.json",
            )


def seeded_order(n, seed=3):
    """Which text each position of the local source's seeded shuffle holds."""
    return np.random.default_rng(seed).permutation(n).tolist()


def test_local_source_errors_name_the_problem(tmp_path, tokenizer_dir):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"body": "the cat"}) + "\n")
    with pytest.raises(CorpusError, match="no field 'text'"):
        sample_corpus(
            local_params("eval", [path], tokenizer_dir, 10),
            {},
            tmp_path / "e.parquet",
            tmp_path / "e.json",
        )
    with pytest.raises(CorpusError, match="no such file"):
        sample_corpus(
            local_params("eval", [tmp_path / "nope.txt"], tokenizer_dir, 10),
            {},
            tmp_path / "e.parquet",
            tmp_path / "e.json",
        )
    small = tmp_path / "small.txt"
    small.write_text("the cat\n\nthe dog")
    with pytest.raises(CorpusError, match="ran out of documents"):
        sample_corpus(
            local_params("eval", [small], tokenizer_dir, 1000),
            {},
            tmp_path / "e.parquet",
            tmp_path / "e.json",
        )
    assert not (tmp_path / "e.parquet").exists()


def sample_error(tmp_path, paths, tokenizer_dir, n_tokens=10, split="eval") -> str:
    with pytest.raises(CorpusError) as info:
        sample_corpus(
            local_params(split, paths, tokenizer_dir, n_tokens),
            {},
            tmp_path / "e.parquet",
            tmp_path / "e.json",
        )
    assert not (tmp_path / "e.parquet").exists()
    return str(info.value)


def test_text_that_is_not_utf8_is_named_by_file_and_line(tmp_path, tokenizer_dir):
    txt = tmp_path / "latin1.txt"
    txt.write_bytes("the cat\n\nthe dog\nthe caf\u00e9".encode("latin-1"))
    assert sample_error(tmp_path, [txt], tokenizer_dir).startswith(
        f"{txt}:4: not UTF-8 text (byte 0xe9); corpus files are read as UTF-8"
    )
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(b'{"text": "the cat"}\n{"text": "the caf\xe9"}\n')
    assert sample_error(tmp_path, [jsonl], tokenizer_dir).startswith(
        f"{jsonl}:2: not UTF-8 text (byte 0xe9)"
    )


def test_a_broken_jsonl_line_is_named_by_its_line(tmp_path, tokenizer_dir):
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": "the cat"}), "", json.dumps({"text": "the dog"}), '{"text": "x']
    path.write_text("\n".join(lines) + "\n")
    assert sample_error(tmp_path, [path], tokenizer_dir).startswith(
        f"{path}:4: not a JSON object: Unterminated string starting at (column 10; a .jsonl "
        "corpus holds one JSON object a line)"
    )


def test_running_out_of_documents_says_what_each_file_held(tmp_path, tokenizer_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    message = sample_error(tmp_path, [empty], tokenizer_dir)
    assert "ran out of documents after 0 tokens of the eval split" in message
    assert message.endswith(f"the files hold {empty}: 0 documents (empty)")
    # Documents one a line, with no blank lines between them: one document.
    one = tmp_path / "lines.txt"
    one.write_text("the cat\nthe dog\nthe cat and the dog\n")
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"text": "the dog"}) + "\n")
    message = sample_error(tmp_path, [one, small], tokenizer_dir, n_tokens=1000, split="train")
    assert message.endswith(
        f"the files hold {one}: 1 document (a .txt file's documents are separated by blank "
        f"lines; this one has none), {small}: 1 document"
    )


def test_a_held_out_file_is_the_evaluation_sample_whole_and_capacities_are_exact(
    tmp_path, tokenizer_dir
):
    """corpus.local.eval_files: the evaluation sample is drawn from it alone (every
    document, in the seeded order), the training split from paths alone; null train_tokens
    takes every training document; the plan's capacity count equals what sampling takes."""
    from saturation.corpus import local_capacity

    train_texts, held_texts = make_texts(40), [f"held {t}" for t in make_texts(15)]
    (tmp_path / "train.txt").write_text("\n\n".join(train_texts))
    (tmp_path / "held.txt").write_text("\n\n".join(held_texts))
    params = local_params("eval", [tmp_path / "train.txt"], tokenizer_dir, None)
    params["local"]["eval_files"] = [str(tmp_path / "held.txt")]
    params["max_document_tokens"] = None
    capacity = local_capacity(params)
    out = {}
    for split in ("eval", "train"):
        sample_corpus({**params, "split": split}, {}, tmp_path / f"{split}.parquet",
                     tmp_path / f"{split}.json")  # fmt: skip
        out[split] = pq.read_table(tmp_path / f"{split}.parquet").to_pydict()
        assert sum(len(t) for t in out[split]["tokens"]) == capacity[split]
    assert sorted(out["eval"]["text"]) == sorted(held_texts)
    assert sorted(out["train"]["text"]) == sorted(train_texts)
