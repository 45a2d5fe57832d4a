"""What a named evaluation corpus adds to a measurement: the harness-style rolling pass over
WikiText-2's test set (62 pages, about 290k Pythia tokens) beside the measurement's own
forward pass over the 50k-token evaluation sample, on a Pythia-shaped model (random weights,
its context length 2,048), with the machine's float32 matmul rate measured in the same run.

    python bench/bench_eval_corpora.py [--model pythia-14m] [--wikitext-tokens 290000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

SHAPES = {  # d, layers, heads (Pythia's configs)
    "pythia-14m": (128, 6, 4),
    "pythia-70m": (512, 6, 8),
}


def matmul_rate(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def documents(total: int, n_docs: int, vocab: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.multinomial(total - n_docs, np.ones(n_docs) / n_docs) + 1
    return [rng.integers(1, vocab, size=n).astype(np.int32) for n in lengths]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="pythia-14m", choices=sorted(SHAPES))
    parser.add_argument("--wikitext-tokens", type=int, default=290_000)
    parser.add_argument("--eval-tokens", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from saturation.eval_corpora import rolling_loglikelihoods
    from saturation.metrics import forward_metrics

    d, layers, heads = SHAPES[args.model]
    config = GPTNeoXConfig(
        vocab_size=50304, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * d, max_position_embeddings=2048, rotary_pct=0.25,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(config).eval()
    rate = matmul_rate()
    sample = documents(args.eval_tokens, 60, 50277, seed=1)
    wikitext = documents(args.wikitext_tokens, 62, 50277, seed=2)
    start = time.perf_counter()
    forward_metrics(model, sample, 2048, 8, "cpu", None)
    own = time.perf_counter() - start
    start = time.perf_counter()
    rolling_loglikelihoods(model, wikitext, prefix=0, batch_size=8, device="cpu")
    rolling = time.perf_counter() - start
    print(f"float32 matmul: {rate:.0f} GFLOP/s on {args.threads} threads")
    print(f"{args.model}: the evaluation sample's pass ({args.eval_tokens} tokens) {own:.1f} s")
    print(f"{args.model}: WikiText's rolling pass ({args.wikitext_tokens} tokens) {rolling:.1f} s")
    print(f"ratio: {rolling / own:.2f} (tokens: {args.wikitext_tokens / args.eval_tokens:.2f})")


if __name__ == "__main__":
    main()
