"""Peak memory of rank-head training against the size of the feature cache.

Writes bfloat16 feature caches of two sizes (``--tokens`` and 4x that, d = ``--d``, shards of
``--shard-tokens``), then trains one rank-constrained head for a few steps from each, in a
fresh process per run, reading the cache two ways:

- streamed: ``FeatureShards``, one shard in memory in its stored dtype (the workflow's way);
- whole: every shard loaded and upcast to float32 (the way before streaming), for contrast.

Prints each run's peak RSS: streamed, it must not grow with the cache.

    python bench/bench_head_cache_memory.py [--tokens 262144 --d 512]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {scripts!r})
import torch
from saturation.head_settings import HeadTraining
from saturation.heads import FeatureShards, load_cache, train_heads
torch.set_num_threads(2)
cache, mode, vocab = {cache!r}, {mode!r}, {vocab}
train = FeatureShards(cache) if mode == "streamed" else load_cache(cache, "train")
x = torch.randn(2048, {d})
held_out = (x, torch.randint(0, vocab, (2048,)))
setup = HeadTraining(steps=30, batch_tokens=4096, lr_base=1e-3, lr_reference_params=10**6,
    lr_exponent=0.5, warmup_steps=2, min_lr_ratio=0.1, weight_decay=0.0, chunk_tokens=2048, seed=0)
t0 = time.perf_counter()
train_heads([16], vocab, train, held_out, setup)
print(json.dumps({{"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def write_cache(folder: Path, tokens: int, d: int, shard_tokens: int, vocab: int) -> int:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    for i, start in enumerate(range(0, tokens, shard_tokens)):
        n = min(shard_tokens, tokens - start)
        save_file(
            {
                "features": torch.randn(n, d, generator=g).to(torch.bfloat16),
                "targets": torch.randint(0, vocab, (n,), generator=g, dtype=torch.int32),
            },
            str(folder / f"train_{i:05d}.safetensors"),
        )
    return sum(f.stat().st_size for f in folder.iterdir())


def matmul_gflops() -> float:
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=262144)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--shard-tokens", type=int, default=65536)
    parser.add_argument("--vocab", type=int, default=8192)
    args = parser.parse_args()
    print(f"float32 matmul on 2 threads: {matmul_gflops():.0f} GFLOP/s")
    for tokens in (args.tokens, 4 * args.tokens):
        with tempfile.TemporaryDirectory() as tmp:
            size = write_cache(Path(tmp), tokens, args.d, args.shard_tokens, args.vocab)
            for mode in ("streamed", "whole"):
                code = CHILD.format(
                    scripts=str(ROOT / "workflow" / "scripts"),
                    cache=tmp,
                    mode=mode,
                    vocab=args.vocab,
                    d=args.d,
                )
                out = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"cache {tokens:>8} tokens x d={args.d} bf16 ({size / 2**20:6.0f} MiB on disk), "
                    f"{mode:>8}: peak RSS {r['peak_rss_mb']:6.0f} MB, 30 steps in {r['seconds']:.1f} s"
                )


if __name__ == "__main__":
    main()
