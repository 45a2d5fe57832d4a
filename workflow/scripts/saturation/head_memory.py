"""What a rank-head job holds in memory, from the backbone's shape and the rank_heads
settings, and the shapes the configuration alone tells: checked against the job's mem_mb
before any job runs (``config.check_rank_head_memory``), and against a device's measured peak
by ``bench/gpu_check.py``."""

from __future__ import annotations

import json

from saturation.suites import local_models, model_name

# Widths and padded vocabularies of the Pythia suite (model cards), for checks before any
# job; other hub models are checked when their head is read.
PYTHIA_WIDTHS = {
    "14m": 128, "31m": 256, "70m": 512, "160m": 768, "410m": 1024,
    "1b": 2048, "1.4b": 2048, "2.8b": 2560, "6.9b": 4096, "12b": 5120,
}  # fmt: skip
PYTHIA_VOCAB = 50304
# (hidden size, vocabulary) of other hub models a config names as rank-head backbones
# (their config.json); others are checked when their head is read.
KNOWN_SHAPES = {
    "meta-llama/Llama-2-7b-hf": (4096, 32000),
    "meta-llama/Llama-2-13b-hf": (5120, 32000),
    "meta-llama/Llama-2-70b-hf": (8192, 32000),
}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def known_shape(config: dict, model: str) -> tuple[int, int | None] | None:
    """(hidden size, vocabulary rows or None) of a model where the config alone says them."""
    ckpt, corpus = config["checkpoints"], config["corpus"]
    if ckpt["source"] == "minisuite":
        hidden = {m["name"]: m["hidden_size"] for m in ckpt["minisuite"]["models"]}
        vocab = corpus["synthetic"]["vocab_size"] if corpus["source"] == "synthetic" else None
        return hidden[model], vocab
    if ckpt["source"] == "local":  # the last checkpoint's config.json, read in place
        folder = list(local_models(config)[model]["steps"].values())[-1]
        cfg = json.loads((folder / "config.json").read_text())
        width = cfg.get("word_embed_proj_dim") or cfg.get("hidden_size") or cfg.get("n_embd")
        return (width, cfg.get("vocab_size")) if width else None
    for entry in ckpt["hub"]["models"]:
        repo = entry if isinstance(entry, str) else entry["repo"]
        owner, _, name = repo.partition("/")
        named = model_name(repo) if isinstance(entry, str) else entry.get("name", model_name(repo))
        if named == model and owner == "EleutherAI" and name.startswith("pythia-"):
            size = name.removeprefix("pythia-").removesuffix("-deduped")
            if size in PYTHIA_WIDTHS:
                return PYTHIA_WIDTHS[size], PYTHIA_VOCAB
    return None


def rank_head_memory_mb(heads: dict, eval_tokens: int, d: int, vocab: int | None) -> dict:
    """What one rank-head job holds at once, in MB: one cache shard in its stored dtype
    (the cache is streamed, so the cached tokens do not count), a float32 batch, the float32
    eval features, and, where V is known, a full head with its gradient and AdamW moments
    and the chunk of logits with its softmax and gradient."""
    mb = 1 / 2**20
    parts = {
        "cache shard (rank_heads.shard_tokens)": heads["shard_tokens"]
        * d
        * DTYPE_BYTES[heads["cache_dtype"]]
        * mb,
        "batch (rank_heads.batch_tokens)": heads["batch_tokens"] * d * 4 * mb,
        "eval features (corpus.eval_tokens)": eval_tokens * d * 4 * mb,
    }
    if vocab:
        parts["full-rank head and AdamW state"] = vocab * d * 4 * 4 * mb
        parts["logits chunk (rank_heads.chunk_tokens)"] = heads["chunk_tokens"] * vocab * 4 * 3 * mb
    return parts


def streamed_head_memory_mb(heads: dict, d: int, vocab: int | None) -> dict:
    """What one paper-protocol job holds at once, in MB, where V is known: every head of the
    job (each rank in each kind, the full-rank control, at each rate of the grid) with its
    gradient and AdamW moments, and the chunks of logits of one head (K of them for a
    mixture) with their softmax and gradient. The backbone's weights come on top."""
    if not vocab:
        return {}
    mb = 1 / 2**20
    ranks = [r for r in heads["ranks"] if r <= min(d, vocab)]
    k = heads["mixture_components"]
    per_kind = {"linear": 1, "mixture": k}
    params = sum(per_kind[kind] * r * (vocab + d) for r in ranks for kind in heads["kinds"])
    params += vocab * d  # the full-rank control
    rates = len(heads.get("lr_grid") or [1])
    widest = max(per_kind[kind] for kind in heads["kinds"])
    return {
        "heads and their AdamW state (rank_heads.ranks, kinds, lr_grid)": params * rates * 16 * mb,
        "logits chunk (rank_heads.chunk_tokens)": heads["chunk_tokens"]
        * vocab
        * widest
        * 4
        * 3
        * mb,
    }
