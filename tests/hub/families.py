"""Tiny random-weight causal LMs of each family the workflow supports, and repositories of
them for the loopback hub, each with a tokenizer of its own.

- GPT-2: tied head, BOS = EOS (``<|endoftext|>``).
- OPT: ``project_out``: the blocks are 16 wide, the head's input 8; BOS ``</s>``; the head
  has 8 rows more than the tokenizer has ids, as OPT's has.
- Llama: tied head, BOS ``<s>``, 3 blocks.
- Gemma: tied head, embeddings scaled by sqrt(d), BOS ``<bos>``.
- GPT-NeoX: untied head, Pythia's tokenizer (the corpus's).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import transformers


def gpt2(vocab: int, positions: int = 32, **ids):
    cfg = transformers.GPT2Config(
        n_embd=16, n_layer=2, n_head=2, vocab_size=vocab, n_positions=positions, **ids
    )
    return transformers.GPT2LMHeadModel(cfg)


def opt(vocab: int, positions: int = 32, **ids):
    cfg = transformers.OPTConfig(
        hidden_size=16,
        word_embed_proj_dim=8,  # project_in / project_out: the head's input is 8 wide
        ffn_dim=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        vocab_size=vocab,
        max_position_embeddings=positions,
        **ids,
    )
    return transformers.OPTForCausalLM(cfg)


def llama(vocab: int, positions: int = 32, tied: bool = True, **ids):
    cfg = transformers.LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=vocab,
        max_position_embeddings=positions,
        **ids,
        tie_word_embeddings=tied,
    )
    return transformers.LlamaForCausalLM(cfg)


def gemma(vocab: int, positions: int = 32, **ids):
    cfg = transformers.GemmaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        vocab_size=vocab,
        max_position_embeddings=positions,
        **ids,
    )
    return transformers.GemmaForCausalLM(cfg)


def gpt_neox(vocab: int, positions: int = 32, **ids):
    cfg = transformers.GPTNeoXConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        vocab_size=vocab,
        max_position_embeddings=positions,
        **ids,
        tie_word_embeddings=False,
    )
    return transformers.GPTNeoXForCausalLM(cfg)


BUILDERS = {"gpt2": gpt2, "opt": opt, "llama": llama, "gemma": gemma, "gpt_neox": gpt_neox}

# repo -> (family, tokenizer size, its special tokens by role, head rows above the tokenizer)
REPOS = {
    "openai-community/gpt2": (
        "gpt2",
        280,
        dict.fromkeys(("bos_token", "eos_token", "unk_token"), "<|endoftext|>"),
        0,
    ),
    "facebook/opt-125m": (
        "opt",
        320,
        {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
        8,
    ),
    "meta-llama/Llama-3.2-1B": (
        "llama",
        360,
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
        0,
    ),
    "google/gemma-2b": (
        "gemma",
        400,
        {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"},
        0,
    ),
}
POSITIONS = 128


def saved_files(model, tok_files: dict[str, bytes]) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)  # config.json + model.safetensors (a tied head once)
        files = {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}
    return {**files, **tok_files}


def special_ids(tok_files: dict[str, bytes]) -> dict[str, int]:
    """The model config's bos/eos/pad token ids: the tokenizer's."""
    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory() as d:
        for name, data in tok_files.items():
            (Path(d) / name).write_bytes(data)
        tok = PreTrainedTokenizerFast.from_pretrained(d)
    roles = ("bos_token_id", "eos_token_id", "pad_token_id")
    return {r: getattr(tok, r) for r in roles if getattr(tok, r) is not None}


def build(hub, texts: list[str]) -> dict[str, dict]:
    """Add a ``main`` branch per family repo to ``hub``: random weights, the family's own
    tokenizer trained on ``texts``. Returns {repo: {"family", "model", "vocab"}}; the models
    are the ones served, in eval mode."""
    import torch

    from hub.repos import tokenizer_files

    built = {}
    for i, (repo, (family, size, specials, extra)) in enumerate(REPOS.items()):
        tok_files = tokenizer_files(texts, vocab_size=size, specials=specials)
        ids = special_ids(tok_files)
        torch.manual_seed(100 + i)
        model = BUILDERS[family](size + extra, POSITIONS, **ids).eval()
        hub.add_branch("model", repo, "main", saved_files(model, tok_files))
        built[repo] = {"family": family, "model": model, "vocab": size + extra}
    return built
