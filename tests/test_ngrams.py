"""n-gram next-token matrices: counts against a naive Counter, spectra against dense SVD,
and W-error on planted matrices."""

from collections import Counter

import numpy as np
import pytest

from saturation.ngrams import (
    block_krylov_eigvalsh,
    context_keys,
    next_token_matrix,
    top_singular_values,
    w_error,
)

rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def seeded():
    """Each test draws from the same seed, whichever tests ran before it (xdist splits and
    -k selections alike)."""
    global rng
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


@pytest.mark.parametrize("gram_max_dim", [4096, 0])  # exact Gram path, the reduced path
@pytest.mark.parametrize("shape", [(60, 25), (25, 60)])
def test_singular_values_equal_dense_svd(shape, gram_max_dim):
    import scipy.sparse as sp

    w = sp.random(*shape, density=0.3, random_state=1, format="csr")
    expected = np.linalg.svd(w.toarray(), compute_uv=False)
    sigma, method = top_singular_values(w, 10, gram_max_dim)
    assert method == ("gram-eigh" if gram_max_dim else "reduced-gram-eigh")
    np.testing.assert_allclose(sigma, expected[:10], rtol=1e-8, atol=1e-10)


def corpus_like(n_rows, vocab, seed):
    """A sparse row-stochastic matrix like an n-gram W: most rows have a single non-zero
    (contexts seen once), a Zipf-like column popularity, and some columns that only singleton
    rows touch (decoupled)."""
    import scipy.sparse as sp

    r = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    rows, cols, vals = [], [], []
    for i in range(n_rows):
        width = 1 if r.random() < 0.8 else int(r.integers(2, 6))
        pool = vocab - 20 if width > 1 else vocab  # the last 20 columns: singleton rows only
        c = np.unique(r.choice(pool, width, p=p[:pool] / p[:pool].sum()))
        v = r.random(len(c)) + 0.1
        rows += [i] * len(c)
        cols += c.tolist()
        vals += (v / v.sum()).tolist()
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_rows, vocab))


def captured_share(values, total):
    return np.cumsum(np.square(values)) / total


@pytest.mark.parametrize("transpose", [False, True])
def test_block_krylov_path_equals_dense_svd(transpose):
    w = corpus_like(4000, 1500, seed=3)  # ~1,400 coupled columns: past dense_is_smaller
    w = w.T.tocsr() if transpose else w  # C < V: the reduction works on W^T
    expected = np.linalg.svd(w.toarray(), compute_uv=False)
    total = float((w.data**2).sum())
    # The stopping test's contract: the share of ||W||_F^2 captured by the top d singular
    # values is within tol of the true share at every d, and never above it (Ky Fan).
    for tol in (1e-3, 1e-5):
        sigma, method = top_singular_values(w, 40, gram_max_dim=100, tol=tol)
        assert method == "block-krylov-gram"
        gap = captured_share(expected[:40], total) - captured_share(sigma, total)
        assert gap.min() > -1e-12 and gap.max() <= tol
        assert (sigma <= expected[:40] * (1 + 1e-12)).all()  # Cauchy interlacing
    # Tight: the values themselves, and W-error, to 1e-8.
    sigma, _ = top_singular_values(w, 40, gram_max_dim=100, tol=1e-14)
    np.testing.assert_allclose(sigma, expected[:40], rtol=1e-8)
    err = w_error(sigma, total)
    full = w_error(expected, float((expected**2).sum()))
    np.testing.assert_allclose(err, full[:41], rtol=1e-8)


def test_w_error_past_d_15000_equals_the_exact_spectrum():
    """W-error as far as the paper's Fig 7 reads it (d = 15,000), on a matrix shaped like a
    corpus's: 18,000 columns only contexts seen once reach (their singular values are the
    square roots of their columns' sums of squares, in closed form), 1,000 columns shared by
    contexts with several next tokens (their singular values from a dense SVD of the rows
    that touch them). The solver, told nothing of that, goes past its dense limit
    (gram_max_dim) and must give every value and W-error out to d = 15,000."""
    import scipy.sparse as sp

    r = np.random.default_rng(0)
    alone, shared = 18_000, 1_000
    rows, cols, vals = [], [], []
    row = 0
    for j in range(alone):  # one to three contexts seen once, each followed by token j
        for _ in range(int(r.integers(1, 4))):
            rows.append(row), cols.append(j), vals.append(1.0)
            row += 1
    for _ in range(3 * shared):  # contexts with two to five next tokens among the shared
        c = alone + np.unique(r.integers(0, shared, int(r.integers(2, 6))))
        v = r.random(len(c)) + 0.1
        rows += [row] * len(c)
        cols += c.tolist()
        vals += (v / v.sum()).tolist()
        row += 1
    for j in range(alone, alone + shared, 3):  # and some seen once before a shared token
        rows.append(row), cols.append(j), vals.append(1.0)
        row += 1
    w = sp.csr_matrix((vals, (rows, cols)), shape=(row, alone + shared))
    closed = np.sqrt(np.asarray(w[:, :alone].multiply(w[:, :alone]).sum(axis=0)).ravel())
    touching = np.unique(w[:, alone:].nonzero()[0])
    block = np.linalg.svd(w[touching][:, alone:].toarray(), compute_uv=False)
    expected = np.sort(np.concatenate([closed, block]))[::-1]
    sigma, method = top_singular_values(w, 15_000, gram_max_dim=500)
    assert method == "reduced-gram-eigh" and len(sigma) == 15_000
    np.testing.assert_allclose(sigma, expected[:15_000], rtol=1e-10)
    total = float((w.data**2).sum())
    exact = np.sqrt(np.concatenate([np.cumsum(expected[::-1] ** 2)[::-1], [0.0]]) / total)
    np.testing.assert_allclose(w_error(sigma, total), exact[:15_001], rtol=1e-7, atol=1e-9)
    assert exact[15_000] < 0.5 * exact[1_000]


def test_the_job_memory_counts_the_dense_gram_where_it_is_the_smaller():
    """At Pythia's vocabulary, top_k 3,000 keeps the Krylov blocks (six m x 1.25 k and the
    projection); 15,000 would need more than the m x m Gram, which is then held instead."""
    from saturation.ngrams import spectrum_job_memory_mb

    m, tokens, mb = 50_304, 20_000_000, 2**20
    w = tokens * 40 / mb
    solver = "the eigensolver's blocks (ngrams.top_k)"
    krylov = (6 * m * 3750 + 3 * 7500**2) * 8 / mb
    assert spectrum_job_memory_mb(tokens, m, 3_000, 4096)[solver] == pytest.approx(w + krylov)
    assert spectrum_job_memory_mb(tokens, m, 15_000, 4096)[solver] == pytest.approx(
        w + m * m * 8 / mb
    )


def test_block_krylov_eigenvalues_and_non_convergence():
    import scipy.sparse as sp

    m = sp.random(3000, 400, density=0.004, random_state=4, format="csr")
    d = np.random.default_rng(5).random(400) * 3
    dense = np.diag(d) + (m.T @ m).toarray()
    expected = np.linalg.eigvalsh(dense)[::-1][:30]
    np.testing.assert_allclose(block_krylov_eigvalsh(m, d, 30, tol=1e-15), expected, rtol=1e-8)
    share = np.cumsum(block_krylov_eigvalsh(m, d, 30)) / np.trace(dense)  # default tol 1e-5
    assert np.abs(share - np.cumsum(expected) / np.trace(dense)).max() <= 1e-5
    with pytest.raises(RuntimeError, match=r"did not settle the captured share .* to 1e-14 in 1 "):
        block_krylov_eigvalsh(m, d, 30, tol=1e-14, max_iter=1)


def test_block_krylov_keeps_an_orthonormal_basis_when_blocks_are_rank_deficient():
    """G = 2 I + M^T M with M of rank 71 on 330 columns: the residual block of 46 Ritz
    vectors adds at most 71 - 46 new directions once the span of M^T is nearly found, so it
    is rank-deficient; the deflated columns must be replaced by fresh orthogonal ones or
    Rayleigh-Ritz on a basis that is not orthonormal over-estimates the eigenvalues."""
    import scipy.sparse as sp
    import torch

    from saturation.ngrams import orthonormalise_against

    rng = np.random.default_rng(0)
    a = rng.standard_normal((524, 71))
    b = rng.standard_normal((71, 330)) * (rng.random((71, 330)) < 0.3)
    m = sp.csr_matrix(a @ b)
    d = np.full(330, 2.0)
    expected = np.linalg.eigvalsh(np.diag(d) + (m.T @ m).toarray())[::-1][:30]
    np.testing.assert_allclose(block_krylov_eigvalsh(m, d, 30, tol=1e-15), expected, rtol=1e-8)
    # The extension of a block whose new part has rank 3 of 8 columns.
    prev = torch.linalg.qr(torch.from_numpy(rng.standard_normal((50, 10))))[0]
    y = prev @ torch.from_numpy(rng.standard_normal((10, 8)))
    y[:, :3] += torch.from_numpy(rng.standard_normal((50, 3)))
    q = orthonormalise_against(prev, y.clone(), np.random.default_rng(1), rows=7)
    basis = torch.cat([prev, q], dim=1)
    assert float((basis.T @ basis - torch.eye(18, dtype=basis.dtype)).abs().max()) < 1e-12
    # The three directions y adds are spanned by q (its projection off prev is kept).
    added = y[:, :3] - prev @ (prev.T @ y[:, :3])
    assert float(torch.linalg.vector_norm(added - q @ (q.T @ added))) < 1e-10


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


def test_a_job_too_large_for_its_memory_stops_before_the_work(tmp_path):
    """The paper's largest corpus (20M tokens, V = 50,304, top 3,000) needs about 10.5 GB for
    the eigensolver's blocks; a job given 1 MB stops at once, naming the key, and writes
    nothing."""
    from saturation.corpus import corpus_table
    from saturation.io import write_parquet
    from saturation.ngrams import ngram_spectrum, spectrum_job_memory_mb

    parts = spectrum_job_memory_mb(20_000_000, 50304, 3000, 4096)
    blocks = 6 * 50304 * 3750 * 8 / 2**20  # four m x b float64 blocks, two more in a QR
    assert blocks < parts["the eigensolver's blocks (ngrams.top_k)"] < blocks + 2500
    path = tmp_path / "tokens.parquet"
    docs = random_docs(n_docs=40, vocab=7)
    write_parquet(corpus_table(list(range(len(docs))), "train", docs), path)
    out = tmp_path / "spectrum.parquet"
    args = dict(corpus="c", tokenizer="t", n=3, min_context_count=1, gram_max_dim=4096)
    with pytest.raises(MemoryError, match=r"'ngrams.mem_mb': 1 MB cannot hold .* corpus c"):
        ngram_spectrum(str(path), vocab_size=5000, top_k=3000, out_path=str(out), mem_mb=1, **args)
    assert not out.exists()
    ngram_spectrum(str(path), vocab_size=7, top_k=7, out_path=str(out), mem_mb=100, **args)
    assert out.exists()
