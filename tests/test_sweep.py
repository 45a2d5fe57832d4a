"""bench/sweep_saturation.py's parts: the k-token context language (its logits have rank at most
R + 1, its floor is the true model's loss), the unbiased best-versus-final comparison, and a
smoke run of one variant."""

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from sweep_saturation import (  # noqa: E402
    Variant,
    checkpoint_steps,
    make_sweep_language,
    run_variant,
    saturation_summary,
)


def test_context_language_has_rank_r_plus_one_logits_and_an_exact_floor():
    v = Variant("c", "", vocab_size=64, rank=5, language="context", context=3)
    lang = make_sweep_language(v, seed=0)
    rng = np.random.default_rng(1)
    histories = rng.integers(0, 64, size=(500, 3))
    logits = lang.context_logits(histories)
    sigma = np.linalg.svd(logits, compute_uv=False)
    assert sigma[6] < 1e-10 * sigma[0] < sigma[5]  # rank R + 1 = 6: tanh-state, then the bias
    tokens = lang.sample(40, 12, rng)
    assert tokens.shape == (40, 12) and tokens.min() >= 0 and tokens.max() < 64
    # The floor by a naive loop: -log softmax of each token's own 3-token context.
    nll = []
    for seq in tokens:
        for t in range(3, len(seq)):
            z = lang.context_logits(seq[None, :t])[0]
            nll.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[seq[t]])
    assert lang.true_loss(tokens) == pytest.approx(np.mean(nll), rel=1e-12)
    # The sampler draws from those logits: on its own samples, the loss of the true model
    # matches the mean entropy of the next-token distributions (a sampler off by a
    # position, or drawing from other logits, would score above it).
    tokens = lang.sample(2000, 8, np.random.default_rng(3))
    nll, ent = [], []
    for t in range(3, 8):
        z = lang.context_logits(tokens[:, :t])
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        nll.append(-logp[np.arange(len(tokens)), tokens[:, t]])
        ent.append(-(np.exp(logp) * logp).sum(1))
    gap = np.concatenate(nll) - np.concatenate(ent)
    assert abs(gap.mean()) < 3 * gap.std() / np.sqrt(len(gap))


def curve(select_losses, report_losses):
    """A curve of checkpoints whose sequence losses interleave: even sequences from
    ``select_losses``, odd from ``report_losses`` (each a checkpoints x n array)."""
    c, n = select_losses.shape
    seq = np.empty((c, 2 * n))
    seq[:, 0::2], seq[:, 1::2] = select_losses, report_losses
    return pd.DataFrame(
        {
            "step": np.arange(1, c + 1) * 100,
            "sequence_loss": list(seq),
            "anisotropy": np.linspace(0.1, 0.5, c),
            "singular_entropy": np.linspace(0.2, 0.3, c),
        }
    )


def test_best_is_chosen_on_one_half_and_reported_on_the_other():
    rng = np.random.default_rng(0)
    base = np.array([3.0, 2.5, 2.2, 2.3, 2.4])[:, None]
    select = base + 0.01 * rng.standard_normal((5, 200))
    report = base + 0.01 * rng.standard_normal((5, 200))
    s = saturation_summary(curve(select, report))
    assert s["best_step"] == 300 and s["final_step"] == 500
    want = (report[4] - report[2]).mean()
    se = (report[4] - report[2]).std(ddof=1) / np.sqrt(200)
    assert s["final_minus_best"] == pytest.approx(want) and s["rise_se"] == pytest.approx(se)
    assert s["z"] > 50  # a planted rise of 0.2 nats
    # The last quarter: from step 400 (the first at or after 0.75 x 500) to the end.
    assert s["last_quarter_change"] == pytest.approx((report[4] - report[3]).mean())
    assert s["anisotropy_best"] == pytest.approx(0.3) and s["anisotropy_final"] == 0.5
    # Pure noise around a flat curve: the best chosen on the report half itself would look
    # below the final; chosen on the other half the rise is within noise.
    flat = np.full((12, 1), 2.0)
    rises = []
    for trial in range(50):
        r = np.random.default_rng(trial)
        sel, rep = flat + 0.05 * r.standard_normal((2, 12, 100))
        rises.append(saturation_summary(curve(sel, rep))["final_minus_best"])
    assert abs(np.mean(rises)) < 0.004


def test_checkpoint_steps_and_a_smoke_run():
    v = Variant("smoke", "", vocab_size=32, rank=4, widths=(4, 8), steps=60, warmup_steps=10,
                batch_size=4, sequence_length=16, checkpoints=6)  # fmt: skip
    steps = checkpoint_steps(v)
    assert steps == sorted(set(steps)) and steps[-1] == 60 and len(steps) <= 6
    curves, table = run_variant(v, seed=0, threads=1, eval_sequences=16)
    assert list(table.width) == [4, 8] and list(table.bottlenecked) == [True, False]
    assert set(curves.step) == set(steps)
    assert (table.final_loss > table.floor).all()  # no model beats the true one
    tied = dataclasses.replace(v, tied=True, widths=(8,), language="context", context=2)
    _, t2 = run_variant(tied, seed=0, threads=1, eval_sequences=16)
    assert t2.tied.item() and np.isfinite(t2.final_minus_best.item())
