"""n-gram next-token matrices and their spectra (the paper's Fig 7).

For a token corpus, W in R^{C x V} has one row per observed (n-1)-token context: the
empirical distribution of the token that follows it. W-error(d) is the smallest relative
Frobenius error of any rank-d approximation, sqrt(sum_{i>d} sigma_i^2) / ||W||_F
(Eckart-Young-Mirsky), computed from the top singular values and ||W||_F from the non-zeros.
Everything is vectorised numpy over sorted integer keys; W is a scipy.sparse CSR matrix and
no dense C x V array exists.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from saturation.io import write_parquet
from saturation.tables import NGRAM_SPECTRA_SCHEMA

log = logging.getLogger(__name__)


def ngram_windows(docs: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """All (context, next token) windows of n tokens that lie inside one document.

    Returns ``contexts`` (windows x (n-1), int64) and ``next_tokens`` (windows,).
    """
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    stream = np.concatenate(docs).astype(np.int64) if docs else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # A window starting at position p is valid when p + n - 1 is in the same document.
    doc_end = np.repeat(starts + lengths, lengths)
    positions = np.flatnonzero(np.arange(len(stream)) + n - 1 < doc_end)
    contexts = np.stack([stream[positions + j] for j in range(n - 1)], axis=1)
    return contexts, stream[positions + n - 1]


def context_keys(contexts: np.ndarray, vocab_size: int) -> np.ndarray:
    """One sortable integer per context: the tokens packed into an int64 when they fit,
    else row ids from a lexicographic sort (any n, any V)."""
    width = contexts.shape[1]
    bits = max(1, math.ceil(math.log2(max(vocab_size, 2))))
    if bits * width <= 63:
        keys = np.zeros(len(contexts), dtype=np.int64)
        for j in range(width):
            keys = (keys << bits) | contexts[:, j]
        return keys
    order = np.lexsort(contexts.T[::-1])
    sorted_ctx = contexts[order]
    new = np.ones(len(contexts), dtype=bool)
    new[1:] = (sorted_ctx[1:] != sorted_ctx[:-1]).any(axis=1)
    keys = np.empty(len(contexts), dtype=np.int64)
    keys[order] = np.cumsum(new) - 1
    return keys


def next_token_matrix(
    docs: list[np.ndarray], n: int, vocab_size: int, min_context_count: int = 1
) -> tuple[sp.csr_matrix, np.ndarray]:
    """W (C x V, CSR, rows sum to 1) and the count of each kept context.

    Contexts are the distinct (n-1)-grams seen at least ``min_context_count`` times.
    """
    contexts, nxt = ngram_windows(docs, n)
    if len(nxt) == 0:
        raise ValueError(f"the corpus has no window of {n} tokens inside one document")
    if nxt.max() >= vocab_size:
        raise ValueError(f"token id {int(nxt.max())} is outside the vocabulary of {vocab_size}")
    keys = context_keys(contexts, vocab_size)
    del contexts
    _, row = np.unique(keys, return_inverse=True)
    del keys
    pair, counts = np.unique(row * vocab_size + nxt, return_counts=True)
    rows, cols = pair // vocab_size, pair % vocab_size
    totals = np.bincount(rows, weights=counts)
    keep = totals >= min_context_count
    if not keep.any():
        raise ValueError(f"no context occurs {min_context_count} times or more")
    new_id = np.cumsum(keep) - 1
    sel = keep[rows]
    rows, cols, counts = new_id[rows[sel]], cols[sel], counts[sel]
    totals = totals[keep]
    data = counts / totals[rows]
    w = sp.csr_matrix((data, (rows, cols)), shape=(int(keep.sum()), vocab_size))
    return w, totals.astype(np.int64)


def top_singular_values(
    w: sp.spmatrix,
    k: int,
    gram_max_dim: int = 4096,
    tol: float = 1e-5,
    max_iter: int = 200,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """The top min(k, rank bound) singular values of a sparse W, descending.

    - When the smaller side m = min(C, V) is at most ``gram_max_dim``: all m singular values,
      exactly, as square roots of the eigenvalues of the m x m Gram matrix (formed sparsely,
      densified only at m x m), with a float64 symmetric eigensolver. Cheap for small V.
    - Otherwise: the top k eigenvalues of the m x m Gram matrix G = A^T A (A = W, or W^T when
      C < V), by a restarted block Krylov method (``block_krylov_eigvalsh``) on an operator
      that is never formed, with two exact reductions first:

      * a row of A with a single non-zero a contributes a^2 e_j e_j^T, so all such rows
        (most contexts of a real corpus are seen once, ~92% in the benchmark) collapse into a
        diagonal D, and G = D + M^T M with M the remaining rows;
      * a column that no row of M touches is an exact eigenvector, with eigenvalue D_jj.

      When the remaining Gram, dense, takes less memory than the Krylov blocks would
      (``dense_is_smaller``: k from about a seventh of its size on, as W-error out to
      d = 15,000 asks at V = 50,304), all its eigenvalues are computed exactly instead.

      ``tol`` is the accuracy W-error needs, stated on what it is computed from: the share of
      ||W||_F^2 that the top d singular values capture, for every d <= k (see
      ``block_krylov_eigvalsh``). An error e in that share moves W-error(d) by about
      e / (2 W-error(d)): at the default 1e-5, below 1e-4 wherever W-error exceeds 0.05,
      far under a pixel of Fig 7.
    Memory: O(nnz + m * k) beyond the m x m dense Gram of the exact path
    (``spectrum_memory_mb`` gives the figure).
    """
    c, v = w.shape
    m = min(c, v)
    if m <= gram_max_dim:
        gram = (w.T @ w) if v <= c else (w @ w.T)
        eig = dense_eigvalsh(gram.toarray())
        sigma = np.sqrt(np.clip(eig, 0, None))[::-1]
        return sigma[: min(k, m)].copy(), "gram-eigh"
    a = (w if v <= c else w.T).astype(np.float64).tocsr()
    k = min(k, m)
    per_row = np.diff(a.indptr)
    single = np.repeat(per_row == 1, per_row)
    diag = np.bincount(a.indices[single], weights=a.data[single] ** 2, minlength=m)
    multi = a[per_row > 1]
    coupled = np.unique(multi.indices)
    isolated = np.setdiff1d(np.arange(m), coupled)
    eig = [diag[isolated]]
    method = "reduced-gram-eigh"  # every eigenvalue, exactly
    log.info(
        "Gram %d x %d: %d of %d rows have one non-zero (diagonal part); %d columns are "
        "decoupled (exact eigenvalues), %d coupled",
        m,
        m,
        int((per_row == 1).sum()),
        a.shape[0],
        len(isolated),
        len(coupled),
    )
    if len(coupled):
        mc = multi[:, coupled].tocsr()
        kc = min(k, len(coupled))
        if len(coupled) <= gram_max_dim or dense_is_smaller(len(coupled), kc):
            # small enough, or the Krylov blocks would hold more than the Gram: exact
            gram = (mc.T @ mc).toarray()
            gram[np.diag_indices_from(gram)] += diag[coupled]
            eig.append(dense_eigvalsh(gram))
        else:
            total = float(np.square(a.data).sum())
            eig.append(block_krylov_eigvalsh(mc, diag[coupled], kc, total, tol, max_iter, seed))
            method = "block-krylov-gram"
    eig = np.sort(np.concatenate(eig))[::-1][:k]
    return np.sqrt(np.clip(eig, 0, None)), method


def dense_eigvalsh(gram: np.ndarray) -> np.ndarray:
    """Every eigenvalue of a dense symmetric float64 matrix, ascending, computed in its own
    memory: LAPACK's divide and conquer without eigenvectors (``?syevd``, jobz N) overwrites
    the matrix and needs O(m) more, where ``numpy.linalg.eigvalsh`` first copies it (at
    m = 50,304: 20 GB, not 40)."""
    from scipy.linalg import eigh

    # the transpose of a C-ordered symmetric matrix is itself, in Fortran order: no copy
    return eigh(gram.T, eigvals_only=True, overwrite_a=True, check_finite=False, driver="evd")


def dense_is_smaller(m: int, k: int) -> bool:
    """Whether the m x m Gram held dense takes less memory than the block Krylov solver's
    blocks for the top k (``spectrum_memory_mb``): from k of about m / 7 on, the whole
    spectrum, exactly, is the cheaper answer."""
    return m * m * 8 / 2**20 <= spectrum_memory_mb(m, k)


def block_size(k: int) -> int:
    """The block of ``block_krylov_eigvalsh``: k vectors and a quarter more (at least 16)."""
    return k + max(k // 4, 16)


def spectrum_memory_mb(m: int, k: int) -> float:
    """The block Krylov solver's dense memory for the top k of an m x m Gram, in MB: four
    m x b float64 blocks (X, G X, the residual block and its image), two more while a block
    is orthonormalised (QR's working copy and its Q), and the 2b x 2b projected problem
    three times (T, its symmetric copy, its eigenvectors), b = ``block_size(k)``."""
    b = min(block_size(k), m)
    return (6 * m * b + 3 * (2 * b) ** 2) * 8 / 2**20


BUILD_BYTES_PER_TOKEN = 100  # the windows, their packed keys and sorts (bench_paper_jobs.py)
W_BYTES_PER_TOKEN = 40  # W in CSR and the rows of M the solver keeps, at most one entry a window


def spectrum_job_memory_mb(n_tokens: int, vocab_size: int, top_k: int, gram_max_dim: int):
    """An n-gram job's peak memory by part, in MB: building W, then W with the eigensolver
    (``spectrum_memory_mb``; the dense Gram, overwritten by its eigenvalues, where
    min(C, V) <= gram_max_dim or it is the smaller, ``dense_is_smaller``). C is at most the
    number of windows, so min(C, V) <= min(n_tokens, V)."""
    m = min(n_tokens, vocab_size)
    dense = m <= gram_max_dim or dense_is_smaller(m, top_k)
    solver = m * m * 8 / 2**20 if dense else spectrum_memory_mb(m, top_k)
    return {
        "building W (ngrams n_tokens)": n_tokens * BUILD_BYTES_PER_TOKEN / 2**20,
        "the eigensolver's blocks (ngrams.top_k)": n_tokens * W_BYTES_PER_TOKEN / 2**20 + solver,
    }


def check_memory(corpus, n_tokens, vocab_size, top_k, gram_max_dim, mem_mb) -> None:
    """Stop before the work when the job's memory cannot hold it, naming the key to change."""
    parts = spectrum_job_memory_mb(n_tokens, vocab_size, top_k, gram_max_dim)
    largest = max(parts, key=parts.get)
    log.info(
        "memory: about %.0f MB at peak (%s) of the job's %d MB",
        parts[largest],
        largest,
        mem_mb,
    )
    if parts[largest] > mem_mb:
        raise MemoryError(
            f"config key 'ngrams.mem_mb': {mem_mb} MB cannot hold the n-gram spectrum of "
            f"corpus {corpus} ({n_tokens} tokens, V = {vocab_size}, top_k {top_k}): about "
            f"{parts[largest]:.0f} MB for {largest}; raise ngrams.mem_mb, or lower "
            "ngrams.top_k or the corpus's n_tokens"
        )


def block_krylov_eigvalsh(
    m: sp.csr_matrix,
    diag: np.ndarray,
    k: int,
    total: float | None = None,
    tol: float = 1e-5,
    max_iter: int = 200,
    seed: int = 0,
    chunk: int = 256,
    rows: int = 4096,
) -> np.ndarray:
    """Top k eigenvalues of G = diag(d) + M^T M (n x n, never formed), descending.

    Restarted block Krylov of depth one with Rayleigh-Ritz: from b = ``block_size(k)``
    orthonormal Ritz vectors X with images G X and values Theta, the residual block
    R = G X - X Theta is orthonormalised against X (``orthonormalise_against``), G is
    projected on [X, R], and its top b Ritz vectors are the next X; G X comes from the
    projection, so each iteration applies G once, to R. Since span[X, R] contains X, the sum
    of the top d Ritz values never falls from one iteration to the next, and by Ky Fan's
    principle never exceeds the sum of the top d eigenvalues.

    Stopping test, on the quantity W-error is made of: s_t(d) = (theta_1 + .. + theta_d) /
    ``total`` at iteration t (``total`` = ||W||_F^2; trace(G) by default). With delta_t the
    largest rise of s_t over d <= k and rho = delta_t / delta_{t-1} its rate, the rise still
    to come is estimated as delta_t * max(1, rho / (1 - rho)) (geometric convergence, never
    less than the last step); the solver stops when that is at most ``tol``.

    Memory (``spectrum_memory_mb``): four n x b float64 blocks (six during a QR) and the 2b x 2b
    projection;
    the blocks are updated in place, ``rows`` rows at a time, and sparse products go through
    scipy ``chunk`` columns at a time. Dense level-3 work runs in torch's BLAS, float64.
    """
    import torch

    n = len(diag)
    mt = m.T.tocsr()
    d = torch.from_numpy(np.ascontiguousarray(diag, dtype=np.float64))
    if total is None:
        total = float(diag.sum() + np.square(m.data).sum())

    def apply(x: torch.Tensor, out: torch.Tensor) -> None:
        xs = x.numpy()
        for s in range(0, xs.shape[1], chunk):
            block = np.ascontiguousarray(xs[:, s : s + chunk])
            out[:, s : s + chunk] = torch.from_numpy(mt @ (m @ block))
        out.addcmul_(d[:, None], x)

    def rotate(a: torch.Tensor, z1: torch.Tensor, b_=None, z2=None) -> None:
        """a <- a z1 (+ b_ z2), in place, a block of rows at a time."""
        for s in range(0, n, rows):
            new = a[s : s + rows] @ z1
            if b_ is not None:
                new.addmm_(b_[s : s + rows], z2)
            a[s : s + rows] = new

    b = min(n // 2, block_size(k))
    rng = np.random.default_rng(seed)
    x = torch.linalg.qr(torch.from_numpy(rng.standard_normal((n, b))))[0]
    gx = torch.empty_like(x)
    apply(x, gx)
    theta, z = torch.linalg.eigh(symmetric(x.T @ gx))
    theta, z = theta.flip(0), z.flip(1).contiguous()
    rotate(x, z)
    rotate(gx, z)
    r = torch.empty_like(x)
    gr = torch.empty_like(x)
    share = torch.cumsum(theta[:k], 0) / total
    last = None
    t0 = time.perf_counter()
    for it in range(1, max_iter + 1):
        r.copy_(x).mul_(-theta).add_(gx)  # R = G X - X Theta, with no block of temporaries
        orthonormalise_against(x, r, rng, rows)
        apply(r, gr)
        cross = x.T @ gr
        t = torch.cat([torch.cat([x.T @ gx, cross], 1), torch.cat([cross.T, r.T @ gr], 1)], 0)
        del cross
        theta, z = torch.linalg.eigh(symmetric(t))
        del t
        theta, z = theta.flip(0)[:b], z.flip(1)[:, :b]
        z1, z2 = z[:b].contiguous(), z[b:].contiguous()
        rotate(x, z1, r, z2)
        rotate(gx, z1, gr, z2)
        new_share = torch.cumsum(theta[:k], 0) / total
        delta = float((new_share - share).max())
        share = new_share
        rho = delta / last if last else math.inf
        last = delta
        ahead = delta * max(1.0, rho / (1 - rho)) if rho < 1 else math.inf
        log.info(
            "block Krylov iteration %d: the captured share rose by at most %.2e (rate %.2f; "
            "about %.1e still to come, tol %.0e); theta_1 = %.6g, theta_%d = %.6g, %.0f s",
            it,
            delta,
            rho,
            ahead,
            tol,
            float(theta[0]),
            k,
            float(theta[k - 1]),
            time.perf_counter() - t0,
        )
        if ahead <= tol:
            return theta[:k].numpy().copy()
    raise RuntimeError(
        f"block Krylov did not settle the captured share of ||W||_F^2 to {tol:g} in {max_iter} "
        f"iterations (the last one still moved it by {delta:.2e}); raise ngrams.max_iter or "
        "ngrams.tol"
    )


def symmetric(t):
    return (t + t.T) / 2


def orthonormalise_against(prev, y, rng: np.random.Generator, rows: int = 4096, rel_tol=1e-10):
    """Make ``y`` (in place) an orthonormal block spanning what it adds to the orthonormal
    columns ``prev``.

    Two passes of block Gram-Schmidt against ``prev`` (in place, ``rows`` rows at a time),
    then a QR. Where ``y`` adds less than it has columns (residuals of converged Ritz pairs
    are rounding noise; a rank-deficient block: G's image of the block lies mostly in the
    span already found), QR still returns unit columns, but those of the deflated directions
    are not orthogonal to ``prev``; they are replaced by fresh random vectors orthogonalised
    twice against ``prev`` and the kept columns.
    """
    import torch

    n = y.shape[0]
    scale = torch.linalg.vector_norm(y, dim=0).max().clamp_min(torch.finfo(y.dtype).tiny)
    for _ in range(2):
        c = prev.T @ y
        for s in range(0, n, rows):
            y[s : s + rows].addmm_(prev[s : s + rows], c, alpha=-1)
    q, r = torch.linalg.qr(y)
    kept = torch.abs(torch.diagonal(r)) > rel_tol * scale
    y.copy_(q)
    del q
    for j in torch.nonzero(~kept).flatten().tolist():
        v = torch.from_numpy(rng.standard_normal(n))
        for _ in range(2):
            v = v - prev @ (prev.T @ v)
            v = v - y[:, :j] @ (y[:, :j].T @ v)
            later = y[:, j + 1 :][:, kept[j + 1 :]]
            v = v - later @ (later.T @ v)
        y[:, j] = v / torch.linalg.vector_norm(v)
    return y


def w_error(sigma: np.ndarray, frobenius_sq: float) -> np.ndarray:
    """W-error(d) for d = 0 .. len(sigma): sqrt(||W||_F^2 - sum_{i<=d} sigma_i^2) / ||W||_F."""
    captured = np.concatenate([[0.0], np.cumsum(sigma.astype(np.float64) ** 2)])
    return np.sqrt(np.clip(frobenius_sq - captured, 0.0, None) / frobenius_sq)


def tail_norms(sigma: np.ndarray) -> np.ndarray:
    """T(d) = sqrt(sum_{i>d} sigma_i^2) for d = 0 .. len(sigma) of a matrix whose every
    singular value is given, each tail summed from the smallest up, so that a small tail is
    not lost to cancellation; T(0) = ||W||_F."""
    sq = np.sort(np.asarray(sigma, dtype=np.float64))[::-1] ** 2
    return np.sqrt(np.concatenate([np.cumsum(sq[::-1])[::-1], [0.0]]))


def head_w_error(sigma: np.ndarray) -> np.ndarray:
    """W-error(d) for d = 0 .. len(sigma) of a matrix whose every singular value is given
    (an LM head's d of them): T(d) / ||W||_F (``tail_norms``)."""
    tails = tail_norms(sigma)
    return tails / tails[0] if tails[0] > 0 else np.zeros_like(tails)


def ngram_spectrum(
    corpus_path: str,
    corpus: str,
    tokenizer: str,
    vocab_size: int,
    n: int,
    min_context_count: int,
    top_k: int,
    gram_max_dim: int,
    out_path: str,
    tol: float = 1e-5,
    max_iter: int = 200,
    mem_mb: float | None = None,
) -> dict:
    """One corpus's W and its spectrum, written to ``out_path``; with ``mem_mb`` (the job's
    memory), first checks that the job fits it (``check_memory``)."""
    from saturation.corpus import read_tokens

    t0 = time.perf_counter()
    docs = read_tokens(corpus_path)
    n_tokens = sum(len(d) for d in docs)
    if mem_mb is not None:
        check_memory(corpus, n_tokens, vocab_size, top_k, gram_max_dim, mem_mb)
    w, _ = next_token_matrix(docs, n, vocab_size, min_context_count)
    t_build = time.perf_counter() - t0
    log.info(
        "%s: %d tokens -> W %d x %d with %d non-zeros in %.1f s (%.2fM tokens/s)",
        corpus,
        n_tokens,
        *w.shape,
        w.nnz,
        t_build,
        n_tokens / t_build / 1e6,
    )
    t1 = time.perf_counter()
    sigma, method = top_singular_values(w, top_k, gram_max_dim, tol=tol, max_iter=max_iter)
    log.info("top %d singular values by %s in %.1f s", len(sigma), method, time.perf_counter() - t1)
    fro_sq = float(np.square(w.data).sum())
    err = w_error(sigma, fro_sq)
    rows = len(err)
    table = pa.table(
        {
            "corpus": [corpus] * rows,
            "tokenizer": [tokenizer] * rows,
            "n": [n] * rows,
            "C": [w.shape[0]] * rows,
            "V": [w.shape[1]] * rows,
            "nnz": [w.nnz] * rows,
            "d": np.arange(rows),
            "singular_value": [None, *sigma.tolist()],
            "w_error": err,
        },
        schema=NGRAM_SPECTRA_SCHEMA,
    )
    write_parquet(table, out_path)
    return {
        "build_seconds": t_build,
        "tokens": n_tokens,
        "C": w.shape[0],
        "nnz": w.nnz,
        "method": method,
    }


def aggregate_ngrams(paths: list[str], out_path: str) -> None:
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, schema=NGRAM_SPECTRA_SCHEMA) for p in paths]
    write_parquet(pa.concat_tables(tables), out_path)
