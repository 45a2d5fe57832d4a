"""One evaluation text for every tokenizer: the sample is drawn once with the reference
tokenizer, keeps the exact text its tokens cover, and is tokenized again for each other
tokenizer of the run, so models with different vocabularies are measured on the same
documents and their loss per byte compares."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from saturation.corpus import CorpusError, read_bytes, sample_corpus
from saturation.retokenize import tokenize_corpus
from saturation.suites import model_tokenizers, other_tokenizers, tokenizer_key

TEXTS = [
    "Naïve models saturate; wider ones don't — at 2.8 billion parameters, "
    "the loss keeps falling. Ünïcödé text (€, 東京) counts in bytes, not characters.",
    "The head's rank bounds what the softmax can express.",
    "Anisotropy rises late in training, and the spectrum of the head collapses.",
]


def byte_bpe(folder, vocab_size, seed_texts, eos="<|endoftext|>"):
    """A byte-level BPE tokenizer (GPT-2's kind) trained here, saved to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[eos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(seed_texts, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def two_tokenizers(tmp_path):
    rng = np.random.default_rng(0)
    words = " ".join(TEXTS).split()
    corpus = [" ".join(rng.choice(words, size=30)) for _ in range(200)] + TEXTS
    return (
        byte_bpe(tmp_path / "small", 300, corpus),
        byte_bpe(tmp_path / "large", 600, corpus, eos="</s>"),
    )


def sample(tmp_path, tokenizer, max_document_tokens, n_tokens):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 4))
    params = {
        "source": "local",
        "split": "eval",
        "n_tokens": n_tokens,
        "seed": 5,
        "tokenizer": tokenizer,
        "eval_fraction": 1.0,
        "max_document_tokens": max_document_tokens,
        "document_separator": "eos",
        "local": {"paths": [str(docs)], "text_field": "text"},
    }
    sample_corpus(params, {}, tmp_path / "eval.parquet", tmp_path / "eval.json")
    return pq.read_table(tmp_path / "eval.parquet").to_pydict()


def test_the_sample_keeps_the_text_its_tokens_cover(tmp_path, two_tokenizers):
    from transformers import AutoTokenizer

    small, _ = two_tokenizers
    ref = sample(tmp_path, small, max_document_tokens=25, n_tokens=200)
    tok = AutoTokenizer.from_pretrained(small)
    cut = 0
    for tokens, text in zip(ref["tokens"], ref["text"], strict=True):
        # The text is a prefix of one of the documents, and it tokenizes back to exactly the
        # document's tokens after the separator.
        assert any(t.startswith(text) for t in TEXTS)
        assert tokens[0] == tok.eos_token_id
        assert tok(text, add_special_tokens=False)["input_ids"] == tokens[1:]
        cut += text not in TEXTS
    assert cut >= 4  # the cap of 25 tokens and the sample's size cut documents


def test_other_tokenizers_read_the_same_documents(tmp_path, two_tokenizers):
    from transformers import AutoTokenizer

    small, large = two_tokenizers
    ref = sample(tmp_path, small, max_document_tokens=None, n_tokens=150)
    tokenize_corpus(
        tmp_path / "eval.parquet", large, "auto", tmp_path / "large.parquet", tmp_path / "l.json"
    )
    other = pq.read_table(tmp_path / "large.parquet").to_pydict()
    meta = json.loads((tmp_path / "l.json").read_text())
    tok = AutoTokenizer.from_pretrained(large)
    assert other["doc_id"] == ref["doc_id"] and other["text"] == ref["text"]
    for tokens, text in zip(other["tokens"], other["text"], strict=True):
        assert tokens == [tok.eos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    assert meta["tokenizer"] == large and meta["vocab_size"] == len(tok)
    assert meta["document_separator"]["token"] == "</s>"
    assert sum(map(len, other["tokens"])) < sum(map(len, ref["tokens"]))  # a larger vocabulary
    # Bits per byte share one denominator: the UTF-8 bytes of the same text, whatever the
    # tokenizer (byte-level BPE decodes exactly; the separator has no bytes).
    text_bytes = sum(len(t.encode("utf-8")) for t in ref["text"])
    assert read_bytes(tmp_path / "eval.parquet") == text_bytes
    assert read_bytes(tmp_path / "large.parquet") == text_bytes


def test_a_sample_without_text_is_refused(tmp_path, two_tokenizers):
    from saturation.corpus import corpus_table
    from saturation.io import write_parquet

    write_parquet(corpus_table([0], "eval", [np.arange(5, dtype=np.int32)]), tmp_path / "e.parquet")
    with pytest.raises(CorpusError, match="e.parquet holds no text"):
        tokenize_corpus(
            tmp_path / "e.parquet", two_tokenizers[1], "auto", tmp_path / "o", tmp_path / "j"
        )


def hub_config(**hub):
    return {
        "corpus": {"source": "huggingface", "tokenizer": "EleutherAI/pythia-160m"},
        "checkpoints": {
            "source": "hub",
            "schedule": {"final_step": 0, "log_spaced_until": 0, "every": 1, "subset": None},
            "hub": {
                "revision_template": "main",
                "tokens_per_step": 1,
                "models": [
                    "EleutherAI/pythia-14m",
                    "EleutherAI/pythia-160m",
                    "openai-community/gpt2",
                    {"repo": "openai-community/gpt2-xl", "tokenizer": "openai-community/gpt2"},
                ],
                **hub,
            },
        },
    }


def test_each_model_reads_its_own_tokenizer_unless_told():
    own = model_tokenizers(hub_config())
    assert own == {
        "pythia-14m": "EleutherAI/pythia-14m",
        "pythia-160m": "EleutherAI/pythia-160m",
        "gpt2": "openai-community/gpt2",
        "gpt2-xl": "openai-community/gpt2",
    }
    # Only tokenizers other than corpus.tokenizer are tokenized for, each once.
    assert other_tokenizers(hub_config()) == {
        "EleutherAI--pythia-14m": "EleutherAI/pythia-14m",
        "openai-community--gpt2": "openai-community/gpt2",
    }
    shared = model_tokenizers(hub_config(tokenizer="EleutherAI/pythia-160m"))
    assert shared["pythia-14m"] == "EleutherAI/pythia-160m"
    assert shared["gpt2-xl"] == "openai-community/gpt2"  # the entry's own key wins
    assert tokenizer_key("/data/runs/my model/step100") == "data--runs--my--model--step100"
