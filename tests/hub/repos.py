"""Repositories shaped like Pythia's and The Pile's, for the loopback hub.

- ``EleutherAI/pythia-160m``: the tokenizer (a byte-level BPE trained here, 300 entries,
  ``<|endoftext|>`` its EOS), as the paper config names it.
- ``EleutherAI/pythia-14m``, ``-31m``, ``-2.8b``: tiny GPT-NeoX models, untied head, the
  vocabulary padded to 384 rows above the tokenizer's 300, trained here for a few steps;
  branches ``step{N}`` on a subset of Pythia's schedule plus ``main`` (= the last step).
  step0 = step1 on every model (Pythia's #83); 31m misses one branch; 2.8b serves final-era weights
  (those of ``main``) on step0, step512 and step2000, and its last step differs from main
  (pythia#205).
- ``EleutherAI/pythia-70m``: a branch that serves only ``pytorch_model.bin``.
- ``monology/pile-uncopyrighted`` (dataset): ``train/00.jsonl.zst``, ``train/01.jsonl.zst``,
  ``val.jsonl.zst``, ``test.jsonl.zst`` with a ``text`` field.
- ``EleutherAI/wikitext_document_level`` (dataset): the harness's ``wikitext`` task's data,
  a page a record.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

STEPS = [0, 1, 2, 512, 1000, 2000, 3000]
# Training steps of the tiny run at each branch's step: step0 and step1 are the same weights.
TRAINED_AT = {0: 0, 1: 0, 2: 2, 512: 6, 1000: 12, 2000: 24, 3000: 40}
MODELS = {"pythia-14m": 16, "pythia-31m": 32, "pythia-2.8b": 24}
MISSING = {"pythia-31m": 1000}
FINAL_ERA = {"pythia-2.8b": [0, 512, 2000]}  # serve main's weights
VOCAB_ROWS = 384
TOKENIZER_SIZE = 300
SEQUENCE = 64

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "that",
    "this",
    "it",
    "his",
    "her",
    "their",
    "model",
    "data",
    "language",
    "token",
    "learning",
    "training",
    "loss",
    "layer",
    "head",
    "rank",
    "matrix",
    "vector",
    "small",
    "large",
    "early",
    "late",
    "study",
    "paper",
    "result",
    "figure",
    "table",
    "value",
    "step",
    "point",
    "curve",
    "rises",
    "falls",
    "stays",
    "grows",
    "drops",
    "reaches",
    "shows",
    "gives",
    "finds",
    "makes",
    "takes",
    "holds",
    "keeps",
]


def documents(n_docs: int, seed: int) -> list[str]:
    """Sentences of a word-level Markov chain: text with structure a model can learn."""
    rng = np.random.default_rng(seed)
    V = len(WORDS)
    logits = rng.normal(size=(V, V)) * 2.5
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    docs = []
    for _ in range(n_docs):
        w = rng.integers(V)
        words = []
        for _ in range(rng.integers(20, 80)):
            words.append(WORDS[w])
            w = rng.choice(V, p=probs[w])
        docs.append(" ".join(words).capitalize() + ".")
    return docs


def zst_jsonl(texts: list[str]) -> bytes:
    import zstandard

    raw = "".join(
        json.dumps({"text": t, "meta": {"pile_set_name": "Pile-CC"}}) + "\n" for t in texts
    )
    return zstandard.ZstdCompressor(level=3).compress(raw.encode())


def tokenizer_files(
    texts: list[str], vocab_size: int = TOKENIZER_SIZE, specials: dict | None = None
) -> dict[str, bytes]:
    """A byte-level BPE tokenizer trained on ``texts``, as a hub repo's files. ``specials``:
    its special tokens by role (default: Pythia's ``<|endoftext|>`` as BOS, EOS and UNK)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = specials or dict.fromkeys(("bos_token", "eos_token", "unk_token"), "<|endoftext|>")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(dict.fromkeys(specials.values())),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=2048,  # as Pythia's; the models see SEQUENCE positions
        **specials,
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fast.save_pretrained(d)
        return {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}


def train_snapshots(hidden: int, token_docs: list[list[int]], seed: int) -> dict[int, dict]:
    """State dicts of a tiny GPT-NeoX at each training step in TRAINED_AT."""
    import torch
    from transformers import GPTNeoXForCausalLM

    from saturation.training import MiniModel, gpt_neox_config

    torch.manual_seed(seed)
    spec = MiniModel("t", hidden, 2, 2, VOCAB_ROWS, SEQUENCE)
    model = GPTNeoXForCausalLM(gpt_neox_config(spec))
    stream = np.concatenate([np.asarray(d + [0]) for d in token_docs])
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    want = sorted(set(TRAINED_AT.values()))
    snapshots = {}
    for step in range(max(want) + 1):
        if step in want:
            snapshots[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        starts = rng.integers(0, len(stream) - SEQUENCE - 1, size=8)
        batch = torch.as_tensor(np.stack([stream[s : s + SEQUENCE] for s in starts]))
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return {s: snapshots[k] for s, k in TRAINED_AT.items()}, model.config


def checkpoint_files(state: dict, config, tok_files: dict, pickle: bool = False) -> dict:
    import torch
    from safetensors.torch import save

    files = {"config.json": config.to_json_string().encode(), **tok_files}
    if pickle:
        buf = io.BytesIO()
        torch.save(state, buf)
        files["pytorch_model.bin"] = buf.getvalue()
    else:
        files["model.safetensors"] = save({k: v.contiguous() for k, v in state.items()})
    return files


def add_corpus_and_tokenizer(hub):
    """The tokenizer repo and the Pile-shaped dataset; returns (tokenizer files, tokenizer,
    the documents tokenized)."""
    texts = documents(400, seed=0)
    tok_files = tokenizer_files(texts)
    import tempfile

    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory() as d:
        for name, data in tok_files.items():
            (Path(d) / name).write_bytes(data)
        tok = PreTrainedTokenizerFast.from_pretrained(d)
    token_docs = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]

    hub.add_branch("model", "EleutherAI/pythia-160m", "main", tok_files)
    hub.add_branch(
        "dataset",
        "monology/pile-uncopyrighted",
        "main",
        {
            "train/00.jsonl.zst": zst_jsonl(texts[:150]),
            "train/01.jsonl.zst": zst_jsonl(texts[150:300]),
            "val.jsonl.zst": zst_jsonl(texts[300:370]),
            "test.jsonl.zst": zst_jsonl(texts[370:]),
            "README.md": b"---\nlicense: other\n---\n# A Pile-shaped corpus for tests\n",
        },
    )
    return tok_files, tok, token_docs


def build(hub) -> dict:
    """Fill a LoopbackHub with the repositories above; returns facts the tests check."""
    tok_files, tok, token_docs = add_corpus_and_tokenizer(hub)
    facts = {"commits": {}, "steps": STEPS, "models": dict(MODELS)}
    for i, (name, hidden) in enumerate(MODELS.items()):
        repo = f"EleutherAI/{name}"
        snaps, config = train_snapshots(hidden, token_docs, seed=i)
        final = STEPS[-1]
        main_state = snaps[final]
        if name in FINAL_ERA:  # main: later weights than the last step branch
            main_state = {k: v + 0.01 for k, v in snaps[final].items()}
        commits = {}
        for step in STEPS:
            if MISSING.get(name) == step:
                continue
            state = main_state if step in FINAL_ERA.get(name, []) else snaps[step]
            files = checkpoint_files(state, config, tok_files)
            commits[step] = hub.add_branch("model", repo, f"step{step}", files).commit
        hub.add_branch("model", repo, "main", checkpoint_files(main_state, config, tok_files))
        facts["commits"][name] = commits
    snaps, config = train_snapshots(16, token_docs[:50], seed=9)
    hub.add_branch(
        "model",
        "EleutherAI/pythia-70m",
        "step2",
        checkpoint_files(snaps[2], config, tok_files, pickle=True),
    )
    facts["tokenizer_size"] = len(tok)
    facts["wikitext_pages"] = add_wikitext(hub)
    facts["llama2"] = add_llama2(hub)
    return facts


LLAMA2_REPO = "tests/tiny-llama-2"


def add_llama2(hub) -> dict:
    """``tests/tiny-llama-2``, Llama-2-7B's stand-in: a tiny random-weight Llama with an untied head (as
    Llama-2's) and a tokenizer of its own (``<s>``, ``</s>``, ``<unk>``), on ``main`` only: a
    backbone from outside the suite. Returns {"model": the model served, "repo"}."""
    import torch

    from hub import families

    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    tok_files = tokenizer_files(documents(400, seed=0), vocab_size=320, specials=specials)
    torch.manual_seed(42)
    model = families.llama(
        320, families.POSITIONS, tied=False, **families.special_ids(tok_files)
    ).eval()
    hub.add_branch("model", LLAMA2_REPO, "main", families.saved_files(model, tok_files))
    return {"model": model, "repo": LLAMA2_REPO}


def add_seeds(hub, size: str = "pythia-14m", seeds=(1, 2), saturating=(1,)) -> None:
    """PolyPythia-shaped repos ``EleutherAI/{size}-seed{k}``: the architecture of ``size``
    trained from other initialisations on the same data, a branch per step of STEPS. In the
    seeds listed in ``saturating`` the last step serves earlier weights, a loss above the
    best: a planted saturation."""
    import torch

    tok_files, _, token_docs = add_corpus_and_tokenizer(hub)
    for k in seeds:
        snaps, config = train_snapshots(MODELS[size], token_docs, seed=100 + k)
        final = STEPS[-1]
        if k in saturating:
            # The weights of step 1000, moved a little (so no other step serves them): a
            # final loss well above the best, at step 2000.
            g = torch.Generator().manual_seed(k)
            snaps[final] = {
                n: v + 1e-3 * torch.randn(v.shape, generator=g) for n, v in snaps[1000].items()
            }
        for step in STEPS:
            files = checkpoint_files(snaps[step], config, tok_files)
            hub.add_branch("model", f"EleutherAI/{size}-seed{k}", f"step{step}", files)
        hub.add_branch("model", f"EleutherAI/{size}-seed{k}", "main", files)


def build_sweep(hub, models: list[str], steps: list[int], hidden: int = 16) -> None:
    """Many revisions for a scale test: ``EleutherAI/{model}`` with a branch ``step{N}`` for
    every step, each a tiny GPT-NeoX whose weights differ from every other revision's (a
    seeded perturbation of one initialisation), and ``main`` = the last step."""
    import torch
    from transformers import GPTNeoXForCausalLM

    from saturation.training import MiniModel, gpt_neox_config

    tok_files, _, _ = add_corpus_and_tokenizer(hub)
    for i, name in enumerate(models):
        torch.manual_seed(i)
        model = GPTNeoXForCausalLM(
            gpt_neox_config(MiniModel("t", hidden, 2, 2, VOCAB_ROWS, SEQUENCE))
        )
        base = model.state_dict()
        generator = torch.Generator().manual_seed(1000 + i)
        for step in steps:
            state = {
                k: v + 0.01 * torch.randn(v.shape, generator=generator) for k, v in base.items()
            }
            files = checkpoint_files(state, model.config, tok_files)
            hub.add_branch("model", f"EleutherAI/{name}", f"step{step}", files)
        hub.add_branch("model", f"EleutherAI/{name}", "main", files)


LAMBADA_README = b"""---
pretty_name: LAMBADA OpenAI
language: [en, de, es, fr, it]
configs:
- config_name: default
  data_files:
  - split: test
    path: default/test-*
  default: true
- config_name: en
  data_files:
  - split: test
    path: en/test-*
---
# LAMBADA (OpenAI's), as a parquet repo for tests
"""


def add_lambada(hub, n_docs: int = 40) -> list[str]:
    """``EleutherAI/lambada_openai`` as the hub serves it: a parquet repo whose README
    declares its configs (``default``, ``en``, ...; here two), each a folder with a ``test``
    split, records with one field, ``text`` (the passage, its last word the target). The
    harness's ``lambada_openai`` task reads config ``default``, split ``test``. Returns the
    passages."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = documents(n_docs, seed=11)
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buffer)
    data = buffer.getvalue()
    hub.add_branch(
        "dataset",
        "EleutherAI/lambada_openai",
        "main",
        {
            "README.md": LAMBADA_README,
            "default/test-00000-of-00001.parquet": data,
            "en/test-00000-of-00001.parquet": data,
        },
    )
    return texts


WIKITEXT_README = b"""---
pretty_name: WikiText (document level)
configs:
- config_name: wikitext-2-raw-v1
  data_files:
  - split: train
    path: wikitext-2-raw-v1/train-*
  - split: validation
    path: wikitext-2-raw-v1/validation-*
  - split: test
    path: wikitext-2-raw-v1/test-*
- config_name: wikitext-103-raw-v1
  data_files:
  - split: test
    path: wikitext-103-raw-v1/test-*
---
# WikiText, one record a page, as a parquet repo for tests
"""


def wikitext_pages(n_pages: int, seed: int) -> list[str]:
    """Pages as WikiText's raw files spell them: `` = Title = `` headings, tokens split by
    spaces, `` @-@ `` and `` @,@ `` number separators, `` 's`` and spaced punctuation,
    what the harness's detokenizer undoes."""
    rng = np.random.default_rng(seed)
    pages = []
    for p, body in enumerate(documents(n_pages * 3, seed)[: n_pages * 3 : 3]):
        words = body.rstrip(".").split()
        for i in sorted(rng.choice(len(words), size=min(4, len(words)), replace=False)):
            words[i] += rng.choice([" @-@ 12", " 's", " ,", " ( 1 @,@ 000 )"])
        pages.append(f" = Page {p} = \n \n {' '.join(words)} . \n \n = = Notes = = \n \n N .\n")
    return pages


def add_wikitext(hub, n_pages: int = 6) -> list[str]:
    """``EleutherAI/wikitext_document_level`` as the hub serves it: a parquet repo whose
    README declares its configs, each a folder with its splits, records with one field,
    ``page``. The harness's ``wikitext`` task reads config ``wikitext-2-raw-v1``, split
    ``test``. Returns the test pages."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(pages):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"page": pages}), buffer)
        return buffer.getvalue()

    test = wikitext_pages(n_pages, seed=21)
    hub.add_branch(
        "dataset",
        "EleutherAI/wikitext_document_level",
        "main",
        {
            "README.md": WIKITEXT_README,
            "wikitext-2-raw-v1/train-00000-of-00001.parquet": parquet(wikitext_pages(3, 22)),
            "wikitext-2-raw-v1/validation-00000-of-00001.parquet": parquet(wikitext_pages(2, 23)),
            "wikitext-2-raw-v1/test-00000-of-00001.parquet": parquet(test),
            "wikitext-103-raw-v1/test-00000-of-00001.parquet": parquet(test),
        },
    )
    return test
