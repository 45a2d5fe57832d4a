"""Benchmark of the rank-head sweep: training 8 ranks from the feature cache vs re-running
the frozen backbone for every rank, at the same number of training tokens.

    python bench/bench_rank_heads.py [--checkpoint DIR] [--steps N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from saturation.corpus import read_tokens  # noqa: E402
from saturation.head_settings import HeadTraining  # noqa: E402
from saturation.heads import (  # noqa: E402
    RankHead,
    build_cache,
    chunked_cross_entropy,
    head_inputs,
    load_cache,
    train_heads,
)
from saturation.loading import load_model  # noqa: E402

RANKS = [1, 2, 4, 8, 16, 32, 64, 128]  # clipped to d below


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "results/checkpoints/mini-d128/step2000"
    )
    parser.add_argument("--train", type=Path, default=ROOT / "results/corpus/train.parquet")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument(
        "--shape",
        help="layers,hidden: time a randomly initialised GPT-NeoX body of this shape "
        "(V and context of the mini-suite) instead of --checkpoint",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.shape:
        from transformers import GPTNeoXForCausalLM

        from saturation.training import MiniModel, gpt_neox_config

        layers, hidden = map(int, args.shape.split(","))
        spec = MiniModel("bench", hidden, layers, hidden // 64, 256, 64)
        model = GPTNeoXForCausalLM(gpt_neox_config(spec)).eval()
        args.checkpoint = Path(f"random GPT-NeoX {layers} layers x d={hidden}")
    else:
        model = load_model(args.checkpoint)
    seq = model.config.max_position_embeddings
    vocab, d = model.get_output_embeddings().weight.shape
    tokens_needed = args.steps * args.batch_tokens
    docs = [d_ for d_ in read_tokens(args.train)]
    stream = np.concatenate(docs)[: tokens_needed + tokens_needed // (seq - 1) + seq]
    seqs = [stream[i : i + seq] for i in range(0, len(stream) - seq + 1, seq)]
    setup = HeadTraining(
        steps=args.steps,
        batch_tokens=args.batch_tokens,
        lr_base=0.01,
        lr_reference_params=10000,
        lr_exponent=0.5,
        warmup_steps=10,
        min_lr_ratio=0.1,
        weight_decay=0.0,
        chunk_tokens=8192,
        seed=0,
    )
    body = sum(p.numel() for p in model.parameters()) - 2 * vocab * d
    print(
        f"backbone {args.checkpoint} ({body / 1e6:.2f}M non-embedding params, d={d}, V={vocab}), {len(RANKS)} ranks, "
        f"{args.steps} steps x {args.batch_tokens} tokens = {tokens_needed} training tokens per rank"
    )

    # From the cache: one backbone pass over the training tokens, then every rank.
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        counts = build_cache(model, {"train": seqs}, tmp, seq, 64, 1 << 20, "float32")
        t_cache = time.perf_counter() - t0
        train = load_cache(tmp, "train")
        held_out = (train[0][:4096], train[1][:4096])
        for r in RANKS:
            train_heads([min(r, d)], vocab, train, held_out, setup)
    t_cached = time.perf_counter() - t0

    # Re-running the backbone: every rank's every batch goes through the frozen model.
    t0 = time.perf_counter()
    per_batch = args.batch_tokens // (seq - 1) + 1
    for r in RANKS:
        g = torch.Generator().manual_seed(0)
        head = RankHead(d, vocab, min(r, d), g)
        opt = torch.optim.AdamW(
            head.parameters(), lr=setup.learning_rate(sum(p.numel() for p in head.parameters()))
        )
        for step in range(args.steps):
            batch = seqs[(step * per_batch) % (len(seqs) - per_batch) :][:per_batch]
            h, t = next(head_inputs(model, batch, per_batch, "cpu"))
            h, t = h[: args.batch_tokens].clone(), t[: args.batch_tokens].clone()
            chunked_cross_entropy(head, h, t, setup.chunk_tokens, 1 / len(t), count_correct=False)
            opt.step()
            opt.zero_grad()
    t_rerun = time.perf_counter() - t0
    print(f"cache build: {t_cache:.1f} s for {counts['train']} tokens")
    print(f"sweep from the cache (build included): {t_cached:.1f} s")
    print(f"sweep re-running the backbone per rank: {t_rerun:.1f} s")
    print(f"speed-up: {t_rerun / t_cached:.1f}x")


if __name__ == "__main__":
    main()
