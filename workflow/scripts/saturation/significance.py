"""Whether a model saturates, as a tested claim: its final checkpoint's loss minus its best
checkpoint's, on the same documents of the report half, with a paired standard error and a
seeded bootstrap interval.

The loss is token-weighted: a checkpoint's loss on a set of documents is the sum of their
summed losses over the sum of their predicted tokens. The difference is therefore a ratio
of sums, D = sum(d_i) / sum(n_i) with d_i = nll_final_i - nll_best_i, and its standard
error the ratio estimator's over documents (the documents are the sampled units, their
tokens are not independent): SE^2 = m / (m - 1) * sum((d_i - D n_i)^2) / (sum n_i)^2 for m
documents. ``saturated``: D > 0 with a one-sided p-value below the level, from Student's t
with m - 1 degrees of freedom at D / SE.
The bootstrap resamples documents with replacement; its interval is the (level, 1 - level)
percentiles, so its lower bound is above 0 when the bootstrap's one-sided test at the same
level rejects.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

# What paired_difference returns: the saturation table's columns of the test.
TEST_COLUMNS = (
    "final_minus_best",
    "final_minus_best_se",
    "final_minus_best_p",
    "final_minus_best_low",
    "final_minus_best_high",
    "saturated",
)


def ratio_test(d, n) -> tuple[float, float, float]:
    """The ratio D = sum(d) / sum(n) over m paired units, its standard error
    sqrt(m / (m - 1) * sum((d - D n)^2)) / sum(n), and the one-sided p-value that it is above
    0 (Student's t with m - 1 degrees of freedom: the SE is itself estimated). With every
    n = 1, D is the mean difference and SE = sd(d) / sqrt(m), the paired t-test."""
    d, n = np.asarray(d, dtype=np.float64), np.asarray(n, dtype=np.float64)
    m = len(d)
    diff = float(d.sum() / n.sum())
    se = float(math.sqrt(m / (m - 1) * np.sum((d - diff * n) ** 2)) / n.sum()) if m > 1 else 0.0
    if se > 0:
        from scipy.stats import t as student

        p = float(student.sf(diff / se, m - 1))
    else:
        p = 0.0 if diff > 0 else 1.0
    return diff, se, p


def paired_difference(
    best_nll, best_n, final_nll, final_n, level: float, resamples: int, seed
) -> dict:
    """final - best on the same documents (arrays aligned by document): the difference, its
    paired standard error, the one-sided p-value, the bootstrap interval and the verdict
    (TEST_COLUMNS). ``seed``: the bootstrap's, an int or a sequence of ints."""
    best_n, final_n = np.asarray(best_n, dtype=np.int64), np.asarray(final_n, dtype=np.int64)
    if not np.array_equal(best_n, final_n):
        raise ValueError("the two checkpoints were measured on different documents or tokens")
    d = np.asarray(final_nll, dtype=np.float64) - np.asarray(best_nll, dtype=np.float64)
    n = best_n.astype(np.float64)
    m = len(d)
    diff, se, p = ratio_test(d, n)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, m, size=(resamples, m))
    boot = d[picks].sum(axis=1) / n[picks].sum(axis=1)
    low, high = np.quantile(boot, [level, 1 - level])
    return {
        "final_minus_best": diff,
        "final_minus_best_se": se,
        "final_minus_best_p": float(p),
        "final_minus_best_low": float(low),
        "final_minus_best_high": float(high),
        "saturated": bool(diff > 0 and p < level),
    }


def saturation_tests(
    documents: pd.DataFrame, choices: dict, level: float, resamples: int, seed: int
) -> dict:
    """{model: paired_difference(...)} for each model's (best step, final step) in
    ``choices``, on the report half of ``documents`` (the per-document losses table). Each
    model's bootstrap is seeded by ``seed`` and its name, so adding a model to the run
    leaves the others' intervals as they were."""
    report = documents[documents.half == "report"]
    out = {}
    for model, (best, final) in sorted(choices.items()):
        rows = report[report.model == model]
        b = rows[rows.step == best].sort_values("document")
        f = rows[rows.step == final].sort_values("document")
        if b.empty or f.empty or not np.array_equal(b.document.values, f.document.values):
            raise ValueError(
                f"{model}: no per-document losses of steps {best} and {final} on the same "
                "documents (results/tables/document_losses.parquet); re-run the measurements"
            )
        out[model] = paired_difference(
            b.nll.values, b.n_predicted.values, f.nll.values, f.n_predicted.values,
            level, resamples, [seed, zlib.crc32(model.encode())],
        )  # fmt: skip
    return out


SIZE_SEED = r"^(?P<size>.+?)(?:-seed(?P<seed>\d+))?$"  # pythia-160m-seed3: 160m's seed 3


def by_size(saturation: pd.DataFrame) -> pd.DataFrame:
    """Runs of one size with different seeds (a model named ``{size}-seed{k}``; the unnamed
    run is seed 0) side by side: per size, the runs, the share that saturate, the spread of
    final - best and of the best step. From ``saturation.parquet``'s rows of the selected
    parameter count."""
    rows = saturation[saturation.selected].copy()
    parts = rows.model.str.extract(SIZE_SEED)
    rows["size"] = parts["size"]
    rows["seed"] = parts["seed"].fillna("0").astype(int)
    final = rows[rows.role == "final"].set_index("model")
    best = rows[rows.role == "best"].set_index("model").step
    out = []
    for size, g in final.groupby("size", sort=False):
        steps = best.loc[g.index]
        diff = g.final_minus_best.astype(float)
        out.append(
            {
                "size": size,
                "n_params": int(g.n_params.iloc[0]),
                "runs": len(g),
                "seeds": sorted(int(s) for s in g.seed),
                "saturated": int(g.saturated.fillna(False).astype(bool).sum()),
                "share_saturated": float(g.saturated.fillna(False).astype(bool).mean()),
                "final_minus_best_mean": float(diff.mean()),
                "final_minus_best_min": float(diff.min()),
                "final_minus_best_max": float(diff.max()),
                "best_step_min": int(steps.min()),
                "best_step_median": float(steps.median()),
                "best_step_max": int(steps.max()),
            }
        )
    return pd.DataFrame(out).sort_values(["n_params", "size"]).reset_index(drop=True)
