"""Train the mini-suite: small GPT-NeoX causal LMs (untied head, like Pythia) on CPU.

A nanoGPT-style loop: AdamW, linear warm-up then cosine decay, gradient clipping, and
Hugging Face safetensors checkpoints written at the scheduled steps.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from saturation.io import write_parquet
from saturation.tables import HISTORY_SCHEMA

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiniModel:
    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    sequence_length: int


@dataclass(frozen=True)
class TrainingSetup:
    batch_size: int
    learning_rate: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    seed: int


def gpt_neox_config(m: MiniModel):
    from transformers import GPTNeoXConfig

    head_dim = m.hidden_size // m.num_heads
    # Pythia rotates a quarter of each head; tiny heads rotate all of it so that the
    # rotary dimension stays even and non-zero.
    rotary_pct = 0.25 if head_dim >= 32 else 1.0
    return GPTNeoXConfig(
        vocab_size=m.vocab_size,
        hidden_size=m.hidden_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads,
        intermediate_size=4 * m.hidden_size,
        max_position_embeddings=m.sequence_length,
        rotary_pct=rotary_pct,
        tie_word_embeddings=False,
        use_parallel_residual=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """The learning-rate multiplier: linear warm-up to 1, then cosine decay to ``min_ratio``
    at ``total``. Shared by the mini-suite and the rank-constrained heads."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * (0.5 * (1 + math.cos(math.pi * progress)))


def learning_rate(step: int, total: int, setup: TrainingSetup) -> float:
    return setup.learning_rate * warmup_cosine(step, total, setup.warmup_steps, setup.min_lr_ratio)


def pack_sequences(token_lists: list[np.ndarray], sequence_length: int) -> np.ndarray:
    """Concatenate documents and cut the stream into rows of ``sequence_length`` tokens."""
    stream = np.concatenate(token_lists).astype(np.int64)
    n = len(stream) // sequence_length
    if n == 0:
        raise ValueError(
            f"the training split holds {len(stream)} tokens, fewer than one sequence "
            f"of {sequence_length}"
        )
    return stream[: n * sequence_length].reshape(n, sequence_length)


def train_model(
    model_spec: MiniModel,
    setup: TrainingSetup,
    sequences: np.ndarray,
    save_steps: list[int],
    checkpoint_dirs: list[Path],
    threads: int,
    progress_file=None,
) -> pa.Table:
    """Train from scratch for ``max(save_steps)`` steps; save a checkpoint at each save step."""
    from transformers import GPTNeoXForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per job: ours
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(setup.seed)
    model = GPTNeoXForCausalLM(gpt_neox_config(model_spec))
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": setup.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=setup.learning_rate,
        betas=(0.9, 0.95),
    )
    rng = np.random.default_rng(setup.seed)
    total = max(save_steps)
    save_at = dict(zip(save_steps, checkpoint_dirs, strict=True))
    data = torch.from_numpy(np.asarray(sequences, dtype=np.int64))
    order = rng.permutation(len(data))
    cursor = 0
    rows = {f: [] for f in HISTORY_SCHEMA.names}
    tokens_per_step = setup.batch_size * model_spec.sequence_length

    def save(step):
        out = save_at[step]
        model.save_pretrained(out, safe_serialization=True)
        log.info("saved step %d to %s", step, out)

    if 0 in save_at:
        save(0)
    bar = tqdm(range(1, total + 1), desc=model_spec.name, file=progress_file, mininterval=5)
    for step in bar:
        if cursor + setup.batch_size > len(order):
            order, cursor = rng.permutation(len(data)), 0
        batch = data[order[cursor : cursor + setup.batch_size]]
        cursor += setup.batch_size
        lr = learning_rate(step - 1, total, setup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), setup.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for key, value in zip(
            HISTORY_SCHEMA.names,
            (model_spec.name, step, step * tokens_per_step, lr, loss.item()),
            strict=True,
        ):
            rows[key].append(value)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if step in save_at:
            save(step)
    return pa.table(rows, schema=HISTORY_SCHEMA)


def train_minisuite(
    model: dict,
    vocab: dict,
    setup: dict,
    seed: int,
    steps: list[int],
    train_path: str,
    checkpoint_dirs: list[str],
    history_path: str,
    threads: int,
    progress_file=None,
) -> None:
    """Snakemake-facing wrapper: read the training split, train, write the loss history."""
    from saturation.corpus import read_tokens

    vocab_size = vocab["vocab_size"]
    if vocab_size is None:
        from saturation.corpus import load_tokenizer

        vocab_size = len(load_tokenizer(vocab["tokenizer"]))
    hidden = model["hidden_size"]
    spec = MiniModel(
        name=model["name"],
        hidden_size=hidden,
        num_layers=model["num_layers"],
        num_heads=max(1, hidden // model["head_dim"]),
        vocab_size=vocab_size,
        sequence_length=model["sequence_length"],
    )
    sequences = pack_sequences(read_tokens(train_path), spec.sequence_length)
    log.info("%s: %d training sequences of %d tokens", spec.name, *sequences.shape)
    history = train_model(
        spec,
        TrainingSetup(seed=seed, **setup),
        sequences,
        list(steps),
        [Path(d) for d in checkpoint_dirs],
        threads,
        progress_file,
    )
    write_parquet(history, history_path)
