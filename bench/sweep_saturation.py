"""Search for a mini-suite that saturates.

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
import logging
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))  # saturation, imported where used

# A search for a mini-suite that saturates: train small GPT-NeoX models on synthetic
# languages of known softmax rank under variants of vocabulary, tail, schedule, context,
# head tying and depth, and report whether the late-training loss rises, the way the paper's
# small Pythia models do, together with the last layer's anisotropy and the head's spectrum.
#
# Two languages:
#
# - ``markov``: the workflow's own (:mod:`saturation.synthetic`), the next token depends on
#   the previous one through logits of rank at most R + 1;
# - ``context``: the next token depends on the last ``k`` tokens,
#   ``logits = scale * tanh(sum_j P_j[x_{t-j}]) E^T / sqrt(R) + b``, with fixed random
#   projections ``P_j`` (V x R): the backbone must combine ``k`` positions (attention, not an
#   embedding lookup) into an R-dimensional state, and the logits still have rank <= R + 1.
#   Its entropy floor is measured exactly on the evaluation text: the true model's loss there.
#
# Saturation is judged without selection bias: the best checkpoint is chosen on one half of the
# evaluation sequences and compared with the final one on the other half, as a paired
# difference over sequences with its standard error.

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    name: str
    hypothesis: str
    vocab_size: int = 256
    rank: int = 32
    zipf_exponent: float = 1.0
    logit_scale: float = 3.0
    language: str = "markov"  # markov | context
    context: int = 1  # k, for the context language
    steps: int = 2000
    schedule: str = "cosine"  # cosine (to min_lr_ratio) | constant (after warm-up)
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.01
    tied: bool = False
    layers: int = 2
    widths: tuple[int, ...] = (16, 64)
    batch_size: int = 32
    sequence_length: int = 64
    checkpoints: int = 16


@dataclass
class Language:
    """Sampler and exact per-token log-probabilities of a synthetic language."""

    vocab_size: int
    rank: int
    kind: str
    context: int
    transition: np.ndarray | None = None  # markov: (V, V)
    stationary: np.ndarray | None = None
    projections: np.ndarray | None = None  # context: (k, V, R)
    out: np.ndarray | None = None  # context: (V, R) = scale * E / sqrt(R)
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def context_logits(self, history: np.ndarray) -> np.ndarray:
        """Logits of the next token after each row of ``history`` (n, >= k), context kind."""
        k = self.context
        state = sum(self.projections[j][history[:, -1 - j]] for j in range(k))
        return np.tanh(state) @ self.out.T + self.bias

    def sample(self, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "markov":
            from saturation.synthetic import SyntheticLanguage

            lang = SyntheticLanguage(self.transition, self.stationary, self.rank)
            return lang.sample(n, length, rng)
        k = self.context
        # A burn-in of k unigram-drawn tokens, dropped, starts every sequence in context.
        tokens = np.empty((n, length + k), dtype=np.int64)
        p0 = np.exp(self.bias - self.bias.max())
        tokens[:, :k] = rng.choice(self.vocab_size, size=(n, k), p=p0 / p0.sum())
        for t in range(k, length + k):
            logits = self.context_logits(tokens[:, :t])
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            cdf = np.cumsum(p, axis=1)
            u = rng.random((n, 1)) * cdf[:, -1:]
            tokens[:, t] = np.minimum((cdf <= u).sum(axis=1), self.vocab_size - 1)
        return tokens[:, k:].astype(np.int32)

    def true_loss(self, tokens: np.ndarray) -> float | None:
        """The true model's cross-entropy on ``tokens`` (positions with a full context):
        the floor of any model on this text; None for the markov kind (its entropy rate is
        in closed form, see :mod:`saturation.synthetic`)."""
        if self.kind == "markov":
            lp = np.log(self.transition)
            return float(-lp[tokens[:, :-1], tokens[:, 1:]].mean())
        k, total, count = self.context, 0.0, 0
        for t in range(k, tokens.shape[1]):
            logits = self.context_logits(tokens[:, :t])
            m = logits.max(axis=1, keepdims=True)
            lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
            total += float((lse - logits[np.arange(len(tokens)), tokens[:, t]]).sum())
            count += len(tokens)
        return total / count


def make_sweep_language(v: Variant, seed: int) -> Language:
    rng = np.random.default_rng(seed)
    bias = -v.zipf_exponent * np.log(np.arange(1, v.vocab_size + 1))
    if v.language == "markov":
        from saturation.synthetic import make_language

        lang = make_language(v.vocab_size, v.rank, v.logit_scale, v.zipf_exponent, seed)
        return Language(
            v.vocab_size, v.rank, "markov", 1, lang.transition, lang.stationary, bias=bias
        )
    projections = rng.standard_normal((v.context, v.vocab_size, v.rank)) / math.sqrt(v.context)
    out = v.logit_scale * rng.standard_normal((v.vocab_size, v.rank)) / math.sqrt(v.rank)
    return Language(
        v.vocab_size, v.rank, "context", v.context, projections=projections, out=out, bias=bias
    )


def lr_multiplier(step: int, v: Variant) -> float:
    from saturation.training import warmup_cosine

    if v.schedule == "constant":
        return min(1.0, (step + 1) / v.warmup_steps)
    return warmup_cosine(step, v.steps, v.warmup_steps, v.min_lr_ratio)


def build_model(v: Variant, width: int):
    from transformers import GPTNeoXForCausalLM

    from saturation.training import MiniModel, gpt_neox_config

    spec = MiniModel("m", width, v.layers, max(1, width // 16), v.vocab_size, v.sequence_length)
    config = gpt_neox_config(spec)
    config.tie_word_embeddings = v.tied
    model = GPTNeoXForCausalLM(config)
    if v.tied:
        model.tie_weights()
    return model


@torch.no_grad()
def evaluate(model, eval_tokens: torch.Tensor, batch: int = 256) -> dict:
    """Per-sequence mean loss, last-layer (head input) anisotropy, head spectrum."""
    from saturation.metrics import anisotropy, singular_values, spectrum_metrics

    model.eval()
    head = model.get_output_embeddings()
    feats = []
    hook = head.register_forward_pre_hook(
        lambda m, a: feats.append(a[0].reshape(-1, a[0].shape[-1]))
    )
    losses = []
    try:
        for i in range(0, len(eval_tokens), batch):
            x = eval_tokens[i : i + batch]
            logits = model(input_ids=x).logits[:, :-1].double()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
            )
            losses.append(nll.reshape(len(x), -1).mean(dim=1))
    finally:
        hook.remove()
    model.train()
    spec = spectrum_metrics(singular_values(head.weight))
    return {
        "sequence_loss": torch.cat(losses).numpy(),
        "anisotropy": anisotropy(torch.cat(feats).double()),
        "singular_entropy": spec["singular_entropy"],
        "effective_rank": spec["effective_rank"],
    }


def checkpoint_steps(v: Variant) -> list[int]:
    """``v.checkpoints`` steps, log-spaced to a quarter of training, then evenly spaced."""
    early = np.unique(np.geomspace(v.warmup_steps, v.steps // 4, 5).astype(int))
    late = np.linspace(v.steps // 4, v.steps, v.checkpoints - len(early) + 1).astype(int)[1:]
    return sorted(set(early.tolist()) | set(late.tolist()))


def train_and_measure(v: Variant, width: int, train, eval_tokens, seed: int) -> pd.DataFrame:
    """Train one model of the variant, measuring it at its checkpoint steps."""
    torch.manual_seed(seed)
    model = build_model(v, width)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": v.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=v.learning_rate,
        betas=(0.9, 0.95),
    )
    rng = np.random.default_rng(seed)
    save = set(checkpoint_steps(v))
    rows = []
    model.train()
    start = time.perf_counter()
    for step in range(1, v.steps + 1):
        idx = torch.from_numpy(rng.integers(0, len(train), v.batch_size))
        batch = train[idx]
        for g in opt.param_groups:
            g["lr"] = v.learning_rate * lr_multiplier(step - 1, v)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step in save:
            m = evaluate(model, eval_tokens)
            rows.append({"step": step, "train_loss": loss.item(), **m})
    log.info("%s d=%d: %d steps in %.0f s", v.name, width, v.steps, time.perf_counter() - start)
    out = pd.DataFrame(rows)
    out.insert(0, "width", width)
    out.insert(0, "variant", v.name)
    return out


def saturation_summary(curve: pd.DataFrame) -> dict:
    """Best (chosen on even sequences) against final (both on odd sequences): the rise, its
    paired standard error over sequences (``significance.ratio_test``, every sequence one
    unit), and the metrics at the two checkpoints."""
    from saturation.significance import ratio_test

    losses = np.stack(curve.sequence_loss.to_numpy())  # (checkpoints, sequences)
    select, report = losses[:, 0::2], losses[:, 1::2]
    best = int(np.argmin(select.mean(axis=1)))
    final = len(curve) - 1
    rise, se, _ = ratio_test(report[final] - report[best], np.ones(report.shape[1]))
    row = curve.iloc[[best, final]]
    # Still falling at the end? The change over the last quarter of training, paired.
    quarter = int(np.searchsorted(curve.step.to_numpy(), 0.75 * curve.step.iloc[-1]))
    late, late_se, _ = ratio_test(report[final] - report[quarter], np.ones(report.shape[1]))
    return {
        "last_quarter_change": late,
        "last_quarter_se": late_se,
        "best_step": int(curve.step.iloc[best]),
        "final_step": int(curve.step.iloc[final]),
        "best_loss": float(report[best].mean()),
        "final_loss": float(report[final].mean()),
        "final_minus_best": rise,
        "rise_se": se,
        "z": rise / se if se > 0 else 0.0,
        "anisotropy_best": float(row.anisotropy.iloc[0]),
        "anisotropy_final": float(row.anisotropy.iloc[1]),
        "singular_entropy_best": float(row.singular_entropy.iloc[0]),
        "singular_entropy_final": float(row.singular_entropy.iloc[1]),
    }


def run_variant(v: Variant, seed: int, threads: int = 2, eval_sequences: int = 512):
    """Curves and a summary row per width of one variant."""
    torch.set_num_threads(threads)
    lang = make_sweep_language(v, seed)
    rng = np.random.default_rng([seed, 1])
    # Fresh data, one pass: a late rise is not over-fitting to repeated sequences.
    n_train, chunk = v.steps * v.batch_size, 8192
    train = torch.from_numpy(
        np.concatenate(
            [
                lang.sample(min(chunk, n_train - i), v.sequence_length, rng)
                for i in range(0, n_train, chunk)
            ]
        ).astype(np.int64)
    )
    eval_np = lang.sample(eval_sequences, v.sequence_length, np.random.default_rng([seed, 2]))
    floor = lang.true_loss(eval_np)
    eval_tokens = torch.from_numpy(eval_np.astype(np.int64))
    curves, rows = [], []
    for width in v.widths:
        start = time.process_time()
        curve = train_and_measure(v, width, train, eval_tokens, seed)
        curves.append(curve)
        rows.append(
            {
                "variant": v.name,
                **{k: val for k, val in asdict(v).items() if k not in ("name", "widths")},
                "width": width,
                "bottlenecked": width < v.rank + 1,
                "floor": floor,
                "cpu_seconds": time.process_time() - start,
                **saturation_summary(curve),
            }
        )
    return pd.concat(curves, ignore_index=True), pd.DataFrame(rows)


def draw_sweep(table: pd.DataFrame, curves: pd.DataFrame, png: str) -> None:
    """Two figures: the summary (``png``: the rise of final over best with 2 standard
    errors, last-layer anisotropy and singular entropy at best and final, per variant and
    width) and the curves (``*_curves.png``: held-out loss over training, per variant)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    variants = list(dict.fromkeys(table.variant))
    widths = sorted(table.width.unique())
    colors = {w: c for w, c in zip(widths, ("#b2182b", "#2166ac", "#4d9221"), strict=False)}
    fig, axes = plt.subplots(1, 4, figsize=(16, 0.42 * len(variants) + 1.6), sharey=True)
    y = np.arange(len(variants))
    for j, w in enumerate(widths):
        t = table[table.width == w].set_index("variant").reindex(variants)
        off = (j - (len(widths) - 1) / 2) * 0.3
        label = f"d = {w}" + (" (< R + 1)" if t.bottlenecked.iloc[0] else "")
        intervals = [(axes[0], "final_minus_best", "rise_se", "o")]
        if "last_quarter_change" in t:  # sweeps summarised before this column lack it
            intervals.append((axes[1], "last_quarter_change", "last_quarter_se", "s"))
        for ax, value, se, marker in intervals:
            ax.errorbar(
                t[value],
                y + off,
                xerr=2 * t[se],
                fmt=marker,
                color=colors[w],
                ms=4,
                capsize=2,
                label=label,
            )
        for ax, col in ((axes[2], "anisotropy"), (axes[3], "singular_entropy")):
            for k, v in enumerate(variants):
                a, b = t.loc[v, f"{col}_best"], t.loc[v, f"{col}_final"]
                ax.annotate(
                    "",
                    (b, k + off),
                    (a, k + off),
                    arrowprops={"arrowstyle": "->", "color": colors[w], "lw": 1.2},
                )
            ax.plot(t[f"{col}_best"], y + off, "o", color=colors[w], ms=3, mfc="white")
            ax.plot(t[f"{col}_final"], y + off, "o", color=colors[w], ms=3)
    axes[0].axvline(0, color="0.3", lw=0.8)
    axes[0].set_yticks(y, variants)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("final − best held-out loss (nats), ± 2 SE")
    axes[0].legend(fontsize="small", loc="lower right")
    axes[1].axvline(0, color="0.3", lw=0.8)
    axes[1].set_xlabel("loss change over the last quarter of training, ± 2 SE")
    axes[2].set_xlabel("last-layer anisotropy: best (open) → final")
    axes[3].set_xlabel("head singular entropy: best (open) → final")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(
        "Does a mini-suite saturate? Best chosen on half the sequences, reported on the other"
    )
    fig.tight_layout()
    fig.savefig(png, dpi=150)
    plt.close(fig)

    ncols = min(5, len(variants))
    nrows = -(-len(variants) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 2.3 * nrows + 0.6), squeeze=False)
    for ax, v in zip(axes.flat, variants, strict=False):
        floor = table[table.variant == v].floor.iloc[0]
        for w in widths:
            c = curves[(curves.variant == v) & (curves.width == w)]
            loss = np.array([np.mean(s[1::2]) for s in c.sequence_loss])
            ax.plot(c.step, loss - floor, "o-", ms=2, lw=1, color=colors[w], label=f"d = {w}")
            ax.plot(c.step.iloc[-1], loss[-1] - floor, "o", ms=4, color=colors[w])
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_title(v, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    for ax in axes.flat[len(variants) :]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize="x-small")
    fig.supxlabel("step")
    fig.supylabel("held-out loss − the language's floor (nats)")
    fig.tight_layout()
    fig.savefig(png.replace(".png", "_curves.png"), dpi=150)
    plt.close(fig)


# --- the sweep: its variants and the command line


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
    draw_sweep(table, curves, f"{out}.png")
    cols = COLUMNS
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[cols].round(4).to_string(index=False))
    print(f"sweep: {len(chosen)} variants in {time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
