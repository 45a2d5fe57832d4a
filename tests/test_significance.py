"""The saturation test: final - best on the same documents, paired. Its standard error
equals a direct computation; a planted rise is found at the rate its standard error
implies, and checkpoints that differ only by noise are flagged at the test's level."""

import math

import numpy as np
import pandas as pd
import pytest

from saturation.significance import paired_difference, saturation_tests


def direct_se(d, n):
    """The ratio estimator's standard error, term by term."""
    m, total = len(d), sum(n)
    ratio = sum(d) / total
    squares = 0.0
    for di, ni in zip(d, n, strict=True):
        squares += (di - ratio * ni) ** 2
    return math.sqrt(m / (m - 1) * squares) / total


def test_the_paired_standard_error_is_a_direct_computation():
    rng = np.random.default_rng(0)
    n = rng.integers(5, 300, 80)
    best = rng.gamma(2.0, 1.0, 80) * n
    final = best + rng.normal(0.01, 0.3, 80) * np.sqrt(n)
    out = paired_difference(best, n, final, n, level=0.01, resamples=500, seed=1)
    assert out["final_minus_best"] == pytest.approx((final - best).sum() / n.sum(), rel=1e-12)
    assert out["final_minus_best_se"] == pytest.approx(direct_se(final - best, n), rel=1e-12)
    # Documents of equal length: the standard error of the mean per-token difference.
    n = np.full(50, 40)
    d = rng.normal(0.02, 0.1, 50) * 40
    out = paired_difference(np.zeros(50), n, d, n, level=0.01, resamples=500, seed=1)
    assert out["final_minus_best_se"] == pytest.approx(
        np.std(d / 40, ddof=1) / math.sqrt(50), rel=1e-12
    )
    # The bootstrap interval holds the difference and is seeded.
    again = paired_difference(np.zeros(50), n, d, n, level=0.01, resamples=500, seed=1)
    assert out == again and out["final_minus_best_low"] < out["final_minus_best"]
    assert out["final_minus_best"] < out["final_minus_best_high"]
    with pytest.raises(ValueError, match="different documents"):
        paired_difference(np.zeros(50), n, d, n + 1, level=0.01, resamples=10, seed=1)


def trials(delta, level, count, seed, sigma=0.5, m=120):
    """Share of ``count`` simulated evaluations flagged as saturated, and the true standard
    error of the difference, for a planted per-token rise ``delta``."""
    rng = np.random.default_rng(seed)
    n = rng.integers(20, 400, m)  # fixed documents, as the sample is
    true_se = sigma * math.sqrt(n.sum()) / n.sum()
    flagged = 0
    for t in range(count):
        best = rng.gamma(3.0, 1.0, m) * n  # each document's own difficulty
        final = best + delta * n + rng.normal(0.0, sigma, m) * np.sqrt(n)
        out = paired_difference(best, n, final, n, level=level, resamples=50, seed=t)
        flagged += out["saturated"]
    return flagged / count, true_se


def normal_cdf(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def z_quantile(q):
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if normal_cdf(mid) < q else (lo, mid)
    return lo


def test_a_planted_rise_is_found_at_the_rate_its_standard_error_implies():
    level, count = 0.01, 2000
    _, se = trials(0.0, level, 1, seed=3)
    delta = 3.0 * se  # a rise of three standard errors
    rate, se = trials(delta, level, count, seed=3)
    expected = 1 - normal_cdf(z_quantile(1 - level) - delta / se)
    tolerance = 4 * math.sqrt(expected * (1 - expected) / count)
    print(f"planted rise of 3 SE: detected {rate:.3f}, expected {expected:.3f}")
    assert abs(rate - expected) < tolerance


def test_checkpoints_that_differ_only_by_noise_are_flagged_at_the_level():
    level, count = 0.05, 2000
    rate, _ = trials(0.0, level, count, seed=4)
    tolerance = 4 * math.sqrt(level * (1 - level) / count)
    print(f"noise only: flagged {rate:.3f} at level {level}")
    assert abs(rate - level) < tolerance


def test_saturation_tests_pair_each_models_best_and_final_on_the_report_half():
    rows = []
    for step, shift in ((10, 0.0), (20, 0.5)):
        for doc in range(6):
            rows.append(("m", step, doc, ("select", "report")[doc % 2], 10.0 + shift * 5 + doc, 5))
    documents = pd.DataFrame(
        rows, columns=["model", "step", "document", "half", "nll", "n_predicted"]
    )
    out = saturation_tests(documents, {"m": (10, 20)}, level=0.01, resamples=100, seed=0)
    assert out["m"]["final_minus_best"] == pytest.approx(0.5)  # 2.5 nats over 5 tokens
    assert out["m"]["final_minus_best_se"] == pytest.approx(0.0, abs=1e-12)
    assert out["m"]["saturated"]
    with pytest.raises(ValueError, match="m: no per-document losses of steps 10 and 30"):
        saturation_tests(documents, {"m": (10, 30)}, level=0.01, resamples=100, seed=0)


def test_runs_of_one_size_are_summed_up_across_seeds():
    rows = []
    for model, n, best, diff, sat in [
        ("pythia-14m", 14, 60000, 0.05, True),
        ("pythia-14m-seed1", 14, 143000, 0.0, False),
        ("pythia-14m-seed2", 14, 90000, 0.02, True),
        ("pythia-160m", 160, 143000, 0.0, False),
    ]:
        for role, step in (("best", best), ("final", 143000)):
            rows.append({"parameters": "total", "selected": True, "model": model,
                         "n_params": n, "role": role, "step": step,
                         "final_minus_best": diff, "saturated": sat})  # fmt: skip
            rows.append({**rows[-1], "parameters": "non_embedding", "selected": False})
    from saturation.significance import by_size

    out = by_size(pd.DataFrame(rows)).set_index("size")
    assert out.loc["pythia-14m", "runs"] == 3 and out.loc["pythia-14m", "seeds"] == [0, 1, 2]
    assert out.loc["pythia-14m", "share_saturated"] == pytest.approx(2 / 3)
    assert out.loc["pythia-14m", "final_minus_best_max"] == 0.05
    assert out.loc["pythia-14m", "best_step_min"] == 60000
    assert out.loc["pythia-14m", "best_step_median"] == 90000
    assert out.loc["pythia-160m", "runs"] == 1 and out.loc["pythia-160m", "saturated"] == 0
    assert list(out.index) == ["pythia-14m", "pythia-160m"]
