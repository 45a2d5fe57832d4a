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


def top_singular_values(w: sp.spmatrix, k: int, gram_max_dim: int = 4096) -> tuple[np.ndarray, str]:
    """The top min(k, rank bound) singular values of a sparse W, descending.

    - When the smaller side m = min(C, V) is at most ``gram_max_dim``: all m singular values,
      exactly, as square roots of the eigenvalues of the m x m Gram matrix (formed sparsely,
      densified only at m x m), with a float64 symmetric eigensolver. Cheap for small V.
    - Otherwise: Lanczos (ARPACK's ``eigsh``) for the top k eigenvalues of the m x m Gram
      operator x -> W^T (W x) (or W (W^T x)), applied through two sparse products and never
      formed: memory O(nnz + k m), with m the *smaller* side (``svds`` would keep Lanczos
      vectors of the larger one: ~16 GB for 10M contexts). Lanczos converges to the extreme
      eigenvalues to machine precision.
    As with any Gram method, sigma_i carries an absolute error of ~eps * sigma_1^2 / sigma_i,
    far below what W-error can resolve. Randomized SVD is not used: its error on the k-th
    value depends on the spectral decay, and W-error needs the top values exactly.
    """
    c, v = w.shape
    m = min(c, v)
    if m <= gram_max_dim:
        gram = (w.T @ w) if v <= c else (w @ w.T)
        eig = np.linalg.eigvalsh(gram.toarray())
        sigma = np.sqrt(np.clip(eig, 0, None))[::-1]
        return sigma[: min(k, m)].copy(), "gram-eigh"
    from scipy.sparse.linalg import LinearOperator, eigsh

    w = w.astype(np.float64).tocsr()
    wt = w.T.tocsr()
    if v <= c:
        op = LinearOperator((v, v), matvec=lambda x: wt @ (w @ x), dtype=np.float64)
    else:
        op = LinearOperator((c, c), matvec=lambda x: w @ (wt @ x), dtype=np.float64)
    k = min(k, m - 1)
    start = np.random.default_rng(0).standard_normal(m)
    eig = eigsh(op, k=k, which="LA", return_eigenvectors=False, v0=start)
    return np.sqrt(np.clip(np.sort(eig)[::-1], 0, None)), "lanczos-gram"


def w_error(sigma: np.ndarray, frobenius_sq: float) -> np.ndarray:
    """W-error(d) for d = 0 .. len(sigma): sqrt(||W||_F^2 - sum_{i<=d} sigma_i^2) / ||W||_F."""
    captured = np.concatenate([[0.0], np.cumsum(sigma.astype(np.float64) ** 2)])
    return np.sqrt(np.clip(frobenius_sq - captured, 0.0, None) / frobenius_sq)


SPECTRA_SCHEMA = pa.schema(
    [
        ("corpus", pa.string()),
        ("tokenizer", pa.string()),
        ("n", pa.int64()),
        ("C", pa.int64()),
        ("V", pa.int64()),
        ("nnz", pa.int64()),
        ("d", pa.int64()),
        ("singular_value", pa.float64()),  # sigma_d; null at d = 0
        ("w_error", pa.float64()),
    ]
)


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
) -> dict:
    from saturation.corpus import read_tokens

    t0 = time.perf_counter()
    docs = read_tokens(corpus_path)
    n_tokens = sum(len(d) for d in docs)
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
    sigma, method = top_singular_values(w, top_k, gram_max_dim)
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
        schema=SPECTRA_SCHEMA,
    )
    write_parquet(table, out_path)
    return {
        "build_seconds": t_build,
        "tokens": n_tokens,
        "C": w.shape[0],
        "nnz": w.nnz,
        "method": method,
    }


def aggregate_spectra(paths: list[str], out_path: str) -> None:
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, schema=SPECTRA_SCHEMA) for p in paths]
    write_parquet(pa.concat_tables(tables), out_path)
