"""Benchmarks of the metrics stage (issue: checkpoint metrics). Run from the repo root:

    python bench/bench_metrics.py [--checkpoint DIR]

Prints: exact vs naive anisotropy, Gram-eigenvalue vs SVD head spectrum, peak RSS of
measuring one checkpoint at two sample sizes, and the measure pass's FLOP/s next to this
machine's matmul FLOP/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from saturation.metrics import AnisotropyAccumulator, singular_values  # noqa: E402


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def bench_anisotropy(n=8192, d=512, batch=1024):
    rng = np.random.default_rng(0)
    h = torch.from_numpy((rng.standard_normal((n, d)) + 0.3).astype(np.float32))

    def exact():
        acc = AnisotropyAccumulator(d)
        for i in range(0, n, batch):
            acc.update(h[i : i + batch])
        return acc.value

    def naive():
        u = torch.nn.functional.normalize(h.double(), dim=1)
        cos = u @ u.T
        return float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1)))

    t_exact, a = best_of(exact)
    t_naive, b = best_of(naive, repeat=1)
    print(
        f"anisotropy n={n} d={d}: exact {t_exact * 1e3:.1f} ms, naive pairwise {t_naive * 1e3:.0f} ms, "
        f"speed-up {t_naive / t_exact:.0f}x, |difference| {abs(a - b):.2e}"
    )


def bench_spectrum(v=50304, d=512):
    torch.manual_seed(0)
    w = torch.randn(v, d) / d**0.5
    w[:, :8] *= 20  # a few dominant directions, like a trained head
    t_ours, ours = best_of(lambda: singular_values(w))
    w64 = w.double()
    t_svd, ref = best_of(lambda: torch.linalg.svdvals(w64).numpy(), repeat=2)
    t_svd32, _ = best_of(lambda: torch.linalg.svdvals(w), repeat=2)
    err = np.max(np.abs(ours - ref) / ref)
    print(
        f"head spectrum V={v} d={d}: Gram+eigvalsh (float64) {t_ours:.2f} s, "
        f"torch.linalg.svdvals float64 {t_svd:.2f} s ({t_svd / t_ours:.1f}x), "
        f"float32 {t_svd32:.2f} s ({t_svd32 / t_ours:.1f}x); max relative error {err:.1e}"
    )


def matmul_flops(n=2048):
    a, b = torch.randn(n, n), torch.randn(n, n)
    t, _ = best_of(lambda: a @ b, repeat=5)
    return 2 * n**3 / t


MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {scripts!r})
from saturation.measuring import checkpoint_tables, write_tables
t = time.perf_counter()
tables = checkpoint_tables("bench", 0, 1, {ckpt!r}, {eval!r}, {seq}, {batch}, "float32", "cpu",
                           False, threads=2)
write_tables(tables, {{k: {out!r} + f"/{{k}}.parquet" for k in tables}})
print(json.dumps({{"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def bench_measure(checkpoint: Path, seq=64, batch=128):
    from transformers import AutoConfig

    from saturation.corpus import corpus_table
    from saturation.io import write_parquet

    config = AutoConfig.from_pretrained(checkpoint)
    v, d, layers = config.vocab_size, config.hidden_size, config.num_hidden_layers
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for n_tokens in (32_768, 262_144):
            rng = np.random.default_rng(0)
            docs = [rng.integers(0, v, seq).astype(np.int32) for _ in range(n_tokens // seq)]
            eval_path = f"{tmp}/eval{n_tokens}.parquet"
            write_parquet(corpus_table(list(range(len(docs))), "eval", docs), eval_path)
            code = MEASURE.format(
                scripts=str(ROOT / "workflow" / "scripts"),
                ckpt=str(checkpoint),
                eval=eval_path,
                seq=seq,
                batch=batch,
                out=tmp,
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            results[n_tokens] = json.loads(out.stdout.strip().splitlines()[-1])
    from saturation.loading import load_model

    model = load_model(checkpoint)
    n_params = (
        sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    )
    for n_tokens, r in results.items():
        # forward FLOPs: 2 per weight per token (embedding lookups are free) plus attention
        # scores and values, 4 * seq * d per layer per token (causal: half of that).
        flops = n_tokens * (2 * n_params + 2 * layers * seq * d)
        print(
            f"measure {checkpoint.name} ({n_params / 1e3:.0f}k params, d={d}, V={v}) on {n_tokens} tokens: "
            f"{r['seconds']:.2f} s incl. load, peak RSS {r['peak_rss_mb']:.0f} MB, "
            f"{flops / r['seconds'] / 1e9:.2f} GFLOP/s"
        )
    print(
        f"this machine's float32 matmul (2048^2, {torch.get_num_threads()} threads): "
        f"{matmul_flops() / 1e9:.1f} GFLOP/s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "results/checkpoints/mini-d128/step2000"
    )
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_anisotropy()
    bench_spectrum()
    if args.checkpoint.exists():
        bench_measure(args.checkpoint)
    else:
        print(
            f"no checkpoint at {args.checkpoint}: run `snakemake --cores 2` first for the measure benchmark"
        )


if __name__ == "__main__":
    main()
