"""Named evaluation corpora: WikiText measured as the harness's own `wikitext` task measures
it. Against the loopback hub, with a data set repo shaped as
`EleutherAI/wikitext_document_level`, the unmodified clients, and lm-eval run on the same
checkpoint."""

import json
import math

import numpy as np
import pytest

from conftest import run_python

BOTH = """
import json, sys
import lm_eval
from huggingface_hub import snapshot_download
from saturation.eval_corpora import eval_corpus, measure_eval_corpora, tokenize_eval_corpus
from saturation.loading import load_model

folder, commit, out = sys.argv[1:4]
ckpt = snapshot_download("EleutherAI/pythia-14m", revision=commit, local_dir=f"{folder}/ckpt")
harness = lm_eval.simple_evaluate(
    model="hf",
    model_args=f"pretrained={ckpt},dtype=float32",
    tasks=["wikitext"],
    batch_size=3,
    device="cpu",
)["results"]["wikitext"]
entry = {"name": "wikitext", "harness_task": "wikitext"}
eval_corpus(entry, None, None, f"{folder}/text.parquet", f"{folder}/text.json")
tokenize_eval_corpus(f"{folder}/text.parquet", ckpt, f"{folder}/tok.parquet", f"{folder}/tok.json")
model = load_model(ckpt)
ours = measure_eval_corpora(
    model, {"wikitext": (f"{folder}/tok.parquet", f"{folder}/tok.json")}, 2, "cpu"
)
json.dump({"harness": harness, "ours": ours, "context": model.config.max_position_embeddings},
          open(out, "w"))
"""


def test_wikitext_equals_the_harnesss_own_wikitext_task(loopback_hub, tmp_path):
    """Word perplexity, byte perplexity and bits per byte of our rolling pass equal lm-eval's
    `wikitext` on the same checkpoint (relative 1e-6), and the loss per token is the same
    summed log-likelihood over the documents' tokens; the pages span several windows of the
    model's 64-token context, so the windows' cut is checked too."""
    import pyarrow.parquet as pq

    server, facts = loopback_hub
    pages = facts["wikitext_pages"]
    out = tmp_path / "both.json"
    hf = {"HF_HOME": str(tmp_path / "hf")}
    result = run_python(BOTH, tmp_path, facts["commits"]["pythia-14m"][3000], out, **hf)
    assert result.returncode == 0, result.stderr[-4000:]
    both = json.loads(out.read_text())
    harness, ours = both["harness"], both["ours"]
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert ours[f"wikitext/{metric}"] == pytest.approx(harness[f"{metric},none"], rel=1e-6)
    # The counts are the task's: words of the raw page (before detokenizing), UTF-8 bytes.
    text = pq.read_table(tmp_path / "text.parquet").to_pandas()
    # (each page starts and ends with whitespace: the harness's re.split counts the empty
    # strings before and after it as two words)
    assert list(text.words) == [len(p.split()) + 2 for p in pages]
    assert list(text.bytes) == [len(p.encode()) for p in pages]
    assert " @-@ " not in "".join(text.text) and "-12" in "".join(text.text)
    tokens = pq.read_table(tmp_path / "tok.parquet").to_pandas()
    lengths = tokens.tokens.map(len)
    assert lengths.max() > 2 * both["context"]  # several rolling windows a page
    nll = ours["wikitext/bits_per_byte"] * math.log(2) * text.bytes.sum()
    assert ours["wikitext/loss"] == pytest.approx(nll / lengths.sum(), rel=1e-12)
    assert math.exp(nll / text.words.sum()) == pytest.approx(ours["wikitext/word_perplexity"])


def test_rolling_windows_score_every_token_once_with_the_right_context():
    """Against a naive scorer, one forward pass per token: a token in the first L has the
    prefix token and every token before it as context; a later token, in the window of L
    tokens that ends where its L-token block of predictions ends, the tokens of that window
    before it. Every token is predicted exactly once."""
    import torch

    from conftest import tiny_gpt_neox
    from saturation.eval_corpora import rolling_loglikelihoods, rolling_windows

    L = 16
    model = tiny_gpt_neox(vocab=20, context=L)
    rng = np.random.default_rng(0)
    docs = [[int(t) for t in rng.integers(1, 20, size=n)] for n in (5, 16, 17, 40)]
    for doc in docs:
        assert [t for _, cont in rolling_windows(doc, 0, L) for t in cont] == doc
    got = rolling_loglikelihoods(model, docs, prefix=0, batch_size=3, device="cpu")
    naive = []
    with torch.no_grad():
        for doc in docs:
            total = 0.0
            for t, token in enumerate(doc):
                if t < L:
                    context = [0] + doc[:t]
                else:
                    end = min(len(doc), L + ((t - L) // L + 1) * L)  # its block's end
                    context = doc[end - L - 1 : t]
                logp = torch.log_softmax(model(torch.tensor([context])).logits[0, -1], -1)
                total += float(logp[token])
            naive.append(total)
    np.testing.assert_allclose(got, naive, rtol=1e-6)


def test_a_file_of_your_own_is_an_evaluation_corpus(tmp_path):
    """A .txt file's documents (blank-line separated), counted as the harness counts words
    and bytes, encoded with the model's tokenizer, scored: the loss per token is the summed
    log-likelihood of the rolling pass over the tokens; a file that is not there is named
    with its key."""
    import pyarrow.parquet as pq
    from hub.repos import documents, tokenizer_files
    from transformers import AutoTokenizer

    from conftest import tiny_gpt_neox
    from saturation.eval_corpora import (
        EvalCorpusError,
        eval_corpus,
        measure_eval_corpora,
        rolling_loglikelihoods,
        tokenize_eval_corpus,
    )

    texts = documents(5, seed=4)
    (tmp_path / "mine.txt").write_text("\n\n".join(texts) + "\n")
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    for name, data in tokenizer_files(documents(60, seed=2)).items():
        (tok_dir / name).write_bytes(data)
    entry = {"name": "mine", "path": str(tmp_path / "mine.txt")}
    eval_corpus(entry, None, None, tmp_path / "mine.parquet", tmp_path / "mine.json")
    rows = pq.read_table(tmp_path / "mine.parquet").to_pandas()
    assert list(rows.text) == texts
    assert list(rows.words) == [len(t.split()) for t in texts]
    assert list(rows.bytes) == [len(t.encode()) for t in texts]
    tokenize_eval_corpus(tmp_path / "mine.parquet", str(tok_dir), tmp_path / "t.parquet",
                         tmp_path / "t.json")  # fmt: skip
    tokens = pq.read_table(tmp_path / "t.parquet").to_pandas()
    tok = AutoTokenizer.from_pretrained(tok_dir)
    assert [list(t) for t in tokens.tokens] == [tok.encode(t) for t in texts]
    model = tiny_gpt_neox(vocab=384, context=32)
    got = measure_eval_corpora(model, {"mine": (tmp_path / "t.parquet", tmp_path / "t.json")},
                               4, "cpu")  # fmt: skip
    ll = rolling_loglikelihoods(model, [list(t) for t in tokens.tokens], tok.bos_token_id, 1, "cpu")
    n_tokens = sum(len(t) for t in tokens.tokens)
    assert got["mine/loss"] == pytest.approx(-ll.sum() / n_tokens, rel=1e-6)
    assert got["mine/word_perplexity"] == pytest.approx(math.exp(-ll.sum() / rows.words.sum()))
    with pytest.raises(EvalCorpusError, match=r"metrics.eval_corpora.*no such file: .*gone.txt"):
        eval_corpus({"name": "x", "path": str(tmp_path / "gone.txt")}, None, None, "a", "b")
