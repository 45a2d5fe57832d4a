"""The measurements beyond the paper (saturation.bottleneck), each against a naive numpy
computation (explicit SVDs, projections and covariances) and closed forms; then streamed
through the measuring pass of a real model, against the same quantities from its stored
head inputs."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp

from conftest import tiny_gpt_neox
from saturation.bottleneck import (
    GRADIENT_BATCH_TOKENS,
    BeyondPaper,
    GradientAccumulator,
    RepresentationAccumulator,
    TruncationAccumulator,
    alpha_req,
    frequency_metrics,
    head_basis,
    rankme,
    truncation_ranks,
)
from saturation.metrics import chunk_documents, forward_metrics

rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def seeded():
    """Each test draws from the same seed, whichever tests ran before it (xdist splits and
    -k selections alike)."""
    global rng
    rng = np.random.default_rng(0)


def linear_head(w, bias=None):
    head = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w))
        if bias is not None:
            head.bias.copy_(torch.from_numpy(bias))
    return head


def naive_loss(w, h, y, bias=0.0):
    z = h @ w.T + bias
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def decaying_head(v, d, decay, seed=1):
    g = np.random.default_rng(seed)
    u, _ = np.linalg.qr(g.standard_normal((v, d)))
    r, _ = np.linalg.qr(g.standard_normal((d, d)))
    w = (u * 3 * decay ** np.arange(d)) @ r.T
    return w.astype(np.float32).astype(np.float64)  # as a float32 head holds it


@pytest.mark.parametrize("with_bias", [False, True])
def test_the_truncated_heads_losses_equal_explicit_rank_k_heads(with_bias):
    """Each rank k of 1, 2, 4, 8 and the head's 12: the loss of U_k S_k V_k^T h (numpy's
    SVD) on the same states, streamed in uneven batches; the gap, T(k) = ||W - W_k||_F and
    the W-error from the matrices themselves."""
    v, d, n = 40, 12, 500
    w = decaying_head(v, d, 0.8)
    bias = rng.standard_normal(v).astype(np.float32).astype(float) if with_bias else None
    h = rng.standard_normal((n, d))
    y = rng.integers(0, v, n)
    acc = TruncationAccumulator(head_basis(linear_head(w, bias), "cpu"))
    assert acc.ranks == truncation_ranks(12) == [1, 2, 4, 8, 12]
    for part in np.array_split(np.arange(n), [7, 300]):
        acc.update(torch.from_numpy(h[part]).float(), torch.from_numpy(y[part]))
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    full = naive_loss(w, h, y, 0.0 if bias is None else bias)
    for row in acc.rows():
        k = row["d"]
        w_k = (u[:, :k] * s[:k]) @ vt[:k]
        want = naive_loss(w_k, h, y, 0.0 if bias is None else bias)
        assert row["loss"] == pytest.approx(want, abs=2e-5)
        assert row["gap"] == pytest.approx(want - full, abs=4e-5)
        assert row["tail_norm"] == pytest.approx(np.linalg.norm(w - w_k), abs=1e-10)
        assert row["w_error"] == pytest.approx(
            np.linalg.norm(w - w_k) / np.linalg.norm(w), abs=1e-12
        )
        assert row["head_rank"] == 12
    last = acc.rows()[-1]
    assert last["gap"] == 0 and last["tail_norm"] == 0 and last["gap_over_tail"] is None
    first = acc.rows()[0]
    assert first["gap_over_tail"] == pytest.approx(first["gap"] / first["tail_norm"])


def naive_gradient_shares(w, h, y):
    z = h @ w.T
    p = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    g = p.copy()
    g[np.arange(len(y)), y] -= 1
    u, s, _ = np.linalg.svd(w, full_matrices=False)
    u = u[:, s > 1e-6 * s[0]]
    proj = g @ u @ u.T  # the explicit projection onto W's column space
    kept, total = (proj**2).sum(1), (g**2).sum(1)
    return kept.sum() / total.sum(), np.mean(kept / total), g


def gradient_values(w, h, y):
    acc = GradientAccumulator(head_basis(linear_head(w), "cpu"))
    z = torch.from_numpy(h @ w.T).float()
    for part in np.array_split(np.arange(len(y)), 3):
        acc.update(torch.log_softmax(z[part], 1), torch.from_numpy(y[part]))
    return acc.values()


@pytest.mark.parametrize("v", [50, 10])  # G's Gram over its tokens (32 < 50) or its vocabulary
def test_the_gradient_share_equals_an_explicit_projection(v):
    d, n = 8, 400
    w = decaying_head(v, d, 0.7)
    h = rng.standard_normal((n, d))
    y = rng.integers(0, v, n)
    pooled, mean, g = naive_gradient_shares(w, h, y)
    got = gradient_values(w, h, y)
    assert got["gradient_share_pooled"] == pytest.approx(pooled, rel=1e-5)
    assert got["gradient_share_mean"] == pytest.approx(mean, rel=1e-5)
    assert got["gradient_share_chance"] == d / v
    # The first batch's G: the shares of its top r and 2r singular values, from numpy's SVD.
    first = g[: min(4 * d, len(np.array_split(np.arange(n), 3)[0]))]
    s2 = np.linalg.svd(first, compute_uv=False) ** 2
    assert got["gradient_batch_tokens"] == len(first)
    assert got["gradient_batch_share_rank_r"] == pytest.approx(s2[:d].sum() / s2.sum(), rel=1e-6)
    assert got["gradient_batch_share_rank_2r"] == pytest.approx(
        s2[: 2 * d].sum() / s2.sum(), rel=1e-6
    )


def test_the_gradient_share_closed_forms():
    """An orthonormal head of rank V keeps the whole gradient; the share depends on the
    column space alone (W -> W R, R invertible, keeps it)."""
    v, n = 16, 200
    q, _ = np.linalg.qr(rng.standard_normal((v, v)))
    h = rng.standard_normal((n, v))
    y = rng.integers(0, v, n)
    whole = gradient_values(q, h, y)
    assert whole["gradient_share_pooled"] == pytest.approx(1.0, abs=1e-6)
    assert whole["gradient_share_mean"] == pytest.approx(1.0, abs=1e-6)
    w = decaying_head(40, 6, 0.9)
    r = rng.standard_normal((6, 6)) + 3 * np.eye(6)
    h = rng.standard_normal((n, 6))
    y = rng.integers(0, 40, n)
    # the same logits either way: W R applied to R^-1 h
    a = gradient_values(w, h, y)
    b = gradient_values(w @ r, h @ np.linalg.inv(r).T, y)
    for key in ("gradient_share_pooled", "gradient_share_mean", "gradient_batch_share_rank_r"):
        assert a[key] == pytest.approx(b[key], rel=1e-4)
    # A head of rank 3 in 8 dimensions: its column space is 3-dimensional.
    low = (rng.standard_normal((40, 3)) @ rng.standard_normal((3, 8))).astype(np.float32)
    low = low.astype(float)
    assert head_basis(linear_head(low), "cpu").rank == 3
    h = rng.standard_normal((n, 8))
    pooled, mean, _ = naive_gradient_shares(low, h, y)
    got = gradient_values(low, h, y)
    assert got["gradient_share_chance"] == 3 / 40
    assert got["gradient_share_pooled"] == pytest.approx(pooled, rel=1e-4)
    assert got["gradient_share_mean"] == pytest.approx(mean, rel=1e-4)
    # A head wider than tall (V < d, LAPACK's SVD of W itself), of rank 3.
    wide = (rng.standard_normal((6, 3)) @ rng.standard_normal((3, 10))).astype(np.float32)
    wide = wide.astype(float)
    assert head_basis(linear_head(wide), "cpu").rank == 3
    h, y6 = rng.standard_normal((n, 10)), rng.integers(0, 6, n)
    pooled, mean, _ = naive_gradient_shares(wide, h, y6)
    got = gradient_values(wide, h, y6)
    assert got["gradient_share_pooled"] == pytest.approx(pooled, rel=1e-4)
    assert got["gradient_share_mean"] == pytest.approx(mean, rel=1e-4)


def naive_spearman(a, b):
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    return np.corrcoef(ra, rb)[0, 1]


def test_the_top_components_against_token_frequency():
    """A head whose top component loads on log(1 + count) (a planted frequency direction)
    has |rho_1| near 1; every |rho_i| equals a rank correlation computed by hand on numpy's
    singular vectors; the top share is sigma_1^2 / ||W||_F^2."""
    v, d = 300, 16
    counts = rng.zipf(1.5, v).clip(max=10**6)
    counts[:20] = 0  # ids the sample never holds: ties
    counts[-7:] = 0  # ids above the sample's largest: the counts table stops before them
    f = np.log1p(counts)
    f = (f - f.mean()) / np.linalg.norm(f - f.mean())
    w = 0.01 * rng.standard_normal((v, d)) + 10 * np.outer(f, rng.standard_normal(d))
    w = w.astype(np.float32).astype(float)
    got = frequency_metrics(head_basis(linear_head(w), "cpu"), counts[:-7])
    assert got["frequency_rho_1"] > 0.95  # below 1 only by the counts' ties
    unrelated = rng.standard_normal((v, d)).astype(np.float32).astype(float)
    assert (
        frequency_metrics(head_basis(linear_head(unrelated), "cpu"), counts)["frequency_rho_1"]
        < 0.3
    )
    padded = counts
    u, s, _ = np.linalg.svd(w, full_matrices=False)
    for i in range(5):
        want = abs(naive_spearman(u[:, i], np.log1p(padded)))
        assert got[f"frequency_rho_{i + 1}"] == pytest.approx(want, abs=1e-6)
    assert got["top_component_share"] == pytest.approx(s[0] ** 2 / (s**2).sum(), rel=1e-9)


def test_rankme_and_alpha_req_against_closed_forms_and_a_direct_computation():
    n, d, alpha = 400, 24, 1.5
    # States with planted covariance eigenvalues i^-alpha: orthonormal columns, orthogonal
    # to the ones vector (mean zero), scaled.
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.standard_normal((n, d))]))
    lam = np.arange(1, d + 1, dtype=float) ** -alpha
    h = q[:, 1:] * np.sqrt((n - 1) * lam) @ np.linalg.qr(rng.standard_normal((d, d)))[0]
    acc = RepresentationAccumulator(d)
    for part in np.array_split(h, 5):
        acc.update(torch.from_numpy(part))
    got = acc.values()
    assert got["alpha_req"] == pytest.approx(alpha, abs=1e-8)
    # RankMe from numpy's singular values of the stored states
    sigma = np.linalg.svd(h, compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    assert got["rankme"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    # Equal singular values: RankMe is d (up to the epsilon).
    assert rankme(np.ones(d)) == pytest.approx(d, rel=1e-5)
    # alpha-ReQ leaves numerically zero eigenvalues out of the fit
    assert alpha_req(np.concatenate([lam, [0.0, 1e-30]])) == pytest.approx(alpha, abs=1e-9)
    # Offset states: the covariance is centred, RankMe's singular values are not.
    shifted = RepresentationAccumulator(d)
    shifted.update(torch.from_numpy(h + 5.0))
    assert shifted.values()["alpha_req"] == pytest.approx(alpha, abs=1e-6)
    assert shifted.values()["rankme"] < got["rankme"]


def test_the_measuring_pass_streams_them_like_its_stored_head_inputs():
    """Through forward_metrics on a GPT-NeoX: the full-rank truncation's loss is the pass's
    loss; the truncated losses, gradient shares and representation spectrum equal the same
    quantities computed from the head inputs the model produces, collected by a hook."""
    model = tiny_gpt_neox(hidden=16, layers=2, heads=2, vocab=20, context=12, seed=3)
    docs = [rng.integers(0, 20, k).astype(np.int32) for k in (12, 30, 5, 9, 17)]
    counts = np.bincount(rng.integers(0, 20, 1000), minlength=20)
    head = model.get_output_embeddings()
    extras = BeyondPaper(
        ["truncation", "gradient", "frequency", "representation"], head, "cpu", counts
    )
    out = forward_metrics(model, docs, sequence_length=12, batch_size=2, extras=extras)
    states, preds, targets = [], [], []
    grab = head.register_forward_pre_hook(lambda m, a: states.append(a[0][0].double().numpy()))
    with torch.no_grad():
        for s in chunk_documents(docs, 12):
            model(input_ids=torch.from_numpy(s.astype(np.int64))[None])
            preds.append(states[-1][:-1])
            targets.append(s[1:])
    grab.remove()
    h_all, h, y = np.concatenate(states), np.concatenate(preds), np.concatenate(targets)
    w = head.weight.detach().double().numpy()
    rows = {r["d"]: r for r in extras.truncation_rows()}
    assert sorted(rows) == [1, 2, 4, 8, 16]
    assert rows[16]["loss"] == pytest.approx(out["loss"], abs=1e-5)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    for k in (1, 4):
        want = naive_loss((u[:, :k] * s[:k]) @ vt[:k], h, y)
        assert rows[k]["loss"] == pytest.approx(want, abs=1e-5)
    metrics = extras.metrics()
    pooled, mean, _ = naive_gradient_shares(w, h, y)
    assert metrics["gradient_share_pooled"] == pytest.approx(pooled, rel=1e-5)
    assert metrics["gradient_share_mean"] == pytest.approx(mean, rel=1e-5)
    # the first batch's predicted tokens (two pieces of 12), at most 4r = 64
    assert metrics["gradient_batch_tokens"] == min(GRADIENT_BATCH_TOKENS, 4 * 16, 11 + 11)
    sigma = np.linalg.svd(h_all, compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    assert metrics["rankme"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-7)
    eig = np.linalg.eigvalsh(np.cov(h_all.T))[::-1]
    assert metrics["alpha_req"] == pytest.approx(alpha_req(eig), rel=1e-6)
    assert set(metrics) >= {"frequency_rho_1", "top_component_share"}
