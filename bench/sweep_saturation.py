"""Search for a mini-suite that saturates (the saturation issue's sweep).

Trains a narrow model (hidden size below the language's softmax rank R + 1) and a wide one
for each variant, measures them at 16 checkpoints on held-out text, and reports per variant
and width: final minus best loss (best chosen on one half of the evaluation sequences,
both reported on the other, with the paired standard error), the best step, and last-layer
anisotropy and singular entropy at best and final. Writes the table and the curves to
Parquet and draws the sweep.

    python bench/sweep_saturation.py                       # every variant (about 38 min, 2 cores)
    python bench/sweep_saturation.py --variants tied --merge   # one variant again, the rest kept
    python bench/sweep_saturation.py --quick               # a smoke run: 200 steps each,
                                                           # to results/sweep/
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from saturation.sweep import Variant, run_variant  # noqa: E402

# Each hypothesis alone, then combined. Narrow d = 16 against wide d = 48 (> R + 1 = 33).
BASE = dict(rank=32, widths=(16, 48))
VARIANTS = [
    Variant("base", "today's default language and schedule", **BASE),
    Variant(
        "vocab-1k-zipf1.2",
        "larger vocabulary, heavier tail",
        vocab_size=1024,
        zipf_exponent=1.2,
        **BASE,
    ),
    Variant(
        "vocab-4k-zipf1.5",
        "larger vocabulary, heaviest tail",
        vocab_size=4096,
        zipf_exponent=1.5,
        **BASE,
    ),
    Variant("long-cosine", "4x the steps, cosine to 10%", steps=8000, **BASE),
    Variant(
        "long-constant", "4x the steps at a constant rate", steps=8000, schedule="constant", **BASE
    ),
    Variant(
        "long-constant-wd0",
        "4x the steps, constant rate, no weight decay",
        steps=8000,
        schedule="constant",
        weight_decay=0.0,
        **BASE,
    ),
    Variant(
        "long-constant-wd0.1",
        "4x the steps, constant rate, weight decay 0.1",
        steps=8000,
        schedule="constant",
        weight_decay=0.1,
        **BASE,
    ),
    Variant(
        "context-3", "next token from the last 3 tokens", language="context", context=3, **BASE
    ),
    Variant("tied", "tied input and output embeddings", tied=True, **BASE),
    Variant("deep-4", "4 blocks instead of 2", layers=4, **BASE),
    Variant(
        "combined",
        "1k vocabulary, Zipf 1.5, 3-token context, tied, 3x steps at a constant rate",
        vocab_size=1024,
        zipf_exponent=1.5,
        language="context",
        context=3,
        tied=True,
        steps=6000,
        schedule="constant",
        **BASE,
    ),
]


def matmul_gflops(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048)
    a @ a
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    return 10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def one(args):
    variant, seed, threads = args
    return run_variant(variant, seed, threads)


COLUMNS = [
    "variant",
    "width",
    "best_step",
    "final_minus_best",
    "rise_se",
    "last_quarter_change",
    "last_quarter_se",
    "anisotropy_best",
    "anisotropy_final",
    "singular_entropy_best",
    "singular_entropy_final",
    "floor",
    "final_loss",
    "cpu_seconds",
]


def redraw(out: str) -> None:
    """The summary recomputed from the saved curves (new summary columns, no training)."""
    import numpy as np
    import pandas as pd

    from saturation.sweep import draw_sweep, saturation_summary

    table = pd.read_parquet(f"{out}.parquet")
    curves = pd.read_parquet(f"{out}_curves.parquet")
    curves["sequence_loss"] = curves.sequence_loss.map(np.asarray)
    for i, r in table.iterrows():
        c = curves[(curves.variant == r.variant) & (curves.width == r.width)]
        for k, v in saturation_summary(c.reset_index(drop=True)).items():
            table.loc[i, k] = v
    table.to_parquet(f"{out}.parquet", index=False)
    draw_sweep(table, curves, f"{out}.png")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table[COLUMNS].round(4).to_string(index=False))


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="*", help="names (default: all)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--quick", action="store_true", help="200 steps a variant")
    parser.add_argument(
        "--out",
        help="path prefix of the outputs (default: docs/saturation_sweep; with --quick, "
        "results/sweep/saturation_sweep_quick, leaving the recorded sweep alone)",
    )
    parser.add_argument(
        "--merge", action="store_true", help="keep the other variants of the sweep at --out"
    )
    parser.add_argument(
        "--redraw", action="store_true", help="summarise and draw a finished sweep's curves again"
    )
    args = parser.parse_args()
    if args.out is None:
        quick = ROOT / "results" / "sweep" / "saturation_sweep_quick"
        args.out = str(quick if args.quick else ROOT / "docs" / "saturation_sweep")
    if args.redraw:
        redraw(args.out)
        return
    chosen = [v for v in VARIANTS if not args.variants or v.name in args.variants]
    if args.quick:
        chosen = [dataclasses.replace(v, steps=200, warmup_steps=20) for v in chosen]
    print(f"float32 matmul: {matmul_gflops(2):.0f} GFLOP/s on 2 threads")
    start = time.perf_counter()
    # The longest first, so that the pool's workers finish together.
    cost = {v.name: v.steps * (1 + v.vocab_size / 512) * v.layers for v in chosen}
    ordered = sorted(chosen, key=lambda v: -cost[v.name])
    work = [(v, args.seed, max(1, 2 // args.jobs)) for v in ordered]
    # Spawned, not forked: a fork after torch has started its thread pool can deadlock.
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(one, work))
    order = {v.name: i for i, v in enumerate(chosen)}  # back in the listed order
    results.sort(key=lambda r: order[r[1].variant.iloc[0]])
    curves = pd.concat([c for c, _ in results], ignore_index=True)
    table = pd.concat([t for _, t in results], ignore_index=True)
    out = Path(args.out)
    if args.merge and Path(f"{out}.parquet").is_file():  # the other variants, as they were
        import numpy as np

        names = {v.name for v in chosen}
        old = pd.read_parquet(f"{out}.parquet")
        old_curves = pd.read_parquet(f"{out}_curves.parquet")
        old_curves["sequence_loss"] = old_curves.sequence_loss.map(np.asarray)
        listed = {v.name: i for i, v in enumerate(VARIANTS)}
        table = pd.concat([old[~old.variant.isin(names)], table], ignore_index=True)
        table = table.sort_values(["variant", "width"], key=lambda c: c.map(listed).fillna(c))
        curves = pd.concat([old_curves[~old_curves.variant.isin(names)], curves])
        table, curves = table.reset_index(drop=True), curves.reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(f"{out}.parquet", index=False)
    curves.assign(sequence_loss=curves.sequence_loss.map(list)).to_parquet(
        f"{out}_curves.parquet", index=False
    )
    from saturation.sweep import draw_sweep

    draw_sweep(table, curves, f"{out}.png")
    cols = COLUMNS
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[cols].round(4).to_string(index=False))
    print(f"sweep: {len(chosen)} variants in {time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
