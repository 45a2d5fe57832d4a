"""n-gram next-token matrices: counts against a naive Counter, spectra against dense SVD,
and W-error on planted matrices."""

from collections import Counter

import numpy as np
import pytest

from saturation.ngrams import (
    context_keys,
    next_token_matrix,
    top_singular_values,
    w_error,
)

rng = np.random.default_rng(0)


def random_docs(n_docs=40, vocab=7):
    return [rng.integers(0, vocab, rng.integers(1, 30)).astype(np.int32) for _ in range(n_docs)]


@pytest.mark.parametrize("n, min_count", [(2, 1), (3, 1), (5, 1), (3, 3)])
def test_matrix_equals_a_naive_counter(n, min_count):
    docs = random_docs()
    ctx_counts, pair_counts = Counter(), Counter()
    for doc in docs:  # windows never cross a document boundary
        for i in range(len(doc) - n + 1):
            ctx = tuple(doc[i : i + n - 1])
            ctx_counts[ctx] += 1
            pair_counts[ctx, int(doc[i + n - 1])] += 1
    kept = sorted(c for c, k in ctx_counts.items() if k >= min_count)
    w, totals = next_token_matrix(docs, n, 7, min_count)
    assert w.shape == (len(kept), 7)
    # Rows come in sorted context order (keys sort like the tuples for packed ids).
    assert totals.tolist() == [ctx_counts[c] for c in kept]
    dense = w.toarray()
    for i, ctx in enumerate(kept):
        for v in range(7):
            assert dense[i, v] == pytest.approx(pair_counts[ctx, v] / ctx_counts[ctx], abs=1e-15)
    np.testing.assert_allclose(dense.sum(axis=1), 1.0, atol=1e-12)


def test_lexsort_keys_group_like_packed_keys():
    contexts = rng.integers(0, 5, (500, 4))
    packed = context_keys(contexts, 5)
    general = context_keys(contexts, 2**40)  # too wide to pack: the lexsort path
    # Same partition of rows into contexts, and the same order of the groups.
    _, a = np.unique(packed, return_inverse=True)
    _, b = np.unique(general, return_inverse=True)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("gram_max_dim", [4096, 0])  # exact Gram path, Lanczos path
@pytest.mark.parametrize("shape", [(60, 25), (25, 60)])
def test_singular_values_equal_dense_svd(shape, gram_max_dim):
    import scipy.sparse as sp

    w = sp.random(*shape, density=0.3, random_state=1, format="csr")
    expected = np.linalg.svd(w.toarray(), compute_uv=False)
    sigma, method = top_singular_values(w, 10, gram_max_dim)
    assert method == ("gram-eigh" if gram_max_dim else "lanczos-gram")
    np.testing.assert_allclose(sigma, expected[:10], rtol=1e-8, atol=1e-10)


def test_w_error_endpoints_and_definition():
    import scipy.sparse as sp

    w = sp.random(40, 30, density=0.2, random_state=2, format="csr")
    dense = w.toarray()
    sigma, _ = top_singular_values(w, 100)
    err = w_error(sigma, float((w.data**2).sum()))
    assert err[0] == pytest.approx(1.0)
    rank = np.linalg.matrix_rank(dense)
    assert err[rank] == pytest.approx(0.0, abs=1e-6)
    # Eckart-Young: the truncated SVD's relative error equals W-error(d).
    u, s, vt = np.linalg.svd(dense, full_matrices=False)
    for d in (1, 5, 12):
        approx = (u[:, :d] * s[:d]) @ vt[:d]
        expected = np.linalg.norm(dense - approx) / np.linalg.norm(dense)
        assert err[d] == pytest.approx(expected, rel=1e-8)


def test_planted_rank_k_probability_matrix():
    """Bigram counts that equal a rank-3 row-stochastic matrix exactly: W-error(3) = 0."""
    k, contexts, vocab = 3, 12, 20
    q = np.zeros((k, vocab), dtype=np.int64)  # k distributions in tenths
    for j in range(k):
        np.add.at(q[j], rng.choice(vocab, 10, replace=True), 1)
    lam = np.zeros((contexts, k), dtype=np.int64)  # mixing weights in tenths
    for c in range(contexts):
        np.add.at(lam[c], rng.choice(k, 10, replace=True), 1)
    counts = lam @ q  # P * 100: integers, rank <= 3
    assert np.linalg.matrix_rank(counts) == k
    docs = [
        np.array([c, v], dtype=np.int32)
        for c in range(contexts)
        for v in range(vocab)
        for _ in range(counts[c, v])
    ]
    w, totals = next_token_matrix(docs, 2, vocab)
    np.testing.assert_allclose(w.toarray(), counts / 100, atol=1e-15)
    assert (totals == 100).all()
    sigma, _ = top_singular_values(w, 10)
    err = w_error(sigma, float((w.data**2).sum()))
    assert err[k] < 1e-6
    assert err[k - 1] > 1e-3


def test_errors_are_clear():
    with pytest.raises(ValueError, match="no window of 5 tokens"):
        next_token_matrix([np.array([1, 2], dtype=np.int32)], 5, 10)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        next_token_matrix([np.array([1, 2, 30], dtype=np.int32)], 2, 10)
    with pytest.raises(ValueError, match="no context occurs 100 times"):
        next_token_matrix(random_docs(), 3, 7, min_context_count=100)
