"""Benchmark of the n-gram stage: build throughput, peak memory and the time for the top
1,000 singular values, on a 10M-token corpus; with ``--exact``, the solver's error against
the exact spectrum (a vocabulary small enough for a dense Gram).

    python bench/bench_ngrams.py [--tokens 10000000] [--vocab 32000] [--k 1000]
                                 [--corpus textlike|zipf-markov] [--tol 1e-5] [--exact]
    python bench/bench_ngrams.py --dense 4096,8192 [--at 32000,50304]

``--dense`` times the exact path W-error needs out to d = 15,000 (every eigenvalue of the
coupled columns' dense Gram, ``dense_eigvalsh``) at the given sizes, on Gram matrices of a
text-like corpus's W (their own coupled part, cut to the size), with the peak RSS the
eigensolver adds to the matrix, fits the time's growth in m and states it at ``--at``.

The corpus is generated here (no network):

- ``textlike`` (default): documents of 1,000 tokens whose unigram distribution is Zipf(1.05)
  over the vocabulary, as in text; each token has 16 collocates (drawn from that Zipf
  distribution, used with Zipf(1.5) preferences) that follow it 60% of the time, and an
  independent unigram draw follows otherwise. Contexts repeat like text: a heavy head of
  frequent 4-grams and a long tail seen once.
- ``zipf-markov``: next = (a * prev + z) mod V with z Zipf(2)-distributed. Its unigram
  distribution is nearly uniform, so the spectrum is nearly flat (sigma_1 / sigma_1000 ~ 1.1):
  a worst case for any iterative eigensolver, kept to show it.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from saturation.ngrams import next_token_matrix, top_singular_values, w_error  # noqa: E402


def zipf_markov(n_tokens, vocab, doc_len=1000, seed=0):
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, vocab + 1)
    p = ranks**-2.0 / (ranks**-2.0).sum()
    z = rng.choice(vocab, size=n_tokens, p=p)
    # A first-order chain, vectorised per document position.
    docs = z.reshape(-1, doc_len).copy()
    for t in range(1, doc_len):
        docs[:, t] = (7919 * docs[:, t - 1] + z.reshape(-1, doc_len)[:, t]) % vocab
    return [d.astype(np.int32) for d in docs]


def textlike(n_tokens, vocab, doc_len=1000, seed=0, followers=16, p_unigram=0.4):
    rng = np.random.default_rng(seed)
    unigram = np.arange(1, vocab + 1) ** -1.05
    unigram /= unigram.sum()
    collocates = rng.choice(vocab, size=(vocab, followers), p=unigram)
    preference = np.arange(1, followers + 1) ** -1.5
    preference /= preference.sum()
    n_docs = n_tokens // doc_len
    docs = np.empty((n_docs, doc_len), dtype=np.int64)
    docs[:, 0] = rng.choice(vocab, size=n_docs, p=unigram)
    for t in range(1, doc_len):  # vectorised over documents
        independent = rng.random(n_docs) < p_unigram
        fresh = rng.choice(vocab, size=n_docs, p=unigram)
        follow = collocates[docs[:, t - 1], rng.choice(followers, size=n_docs, p=preference)]
        docs[:, t] = np.where(independent, fresh, follow)
    return [d.astype(np.int32) for d in docs]


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n))
    a @ a
    t = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def dense_growth(sizes: list[int], at: list[int]) -> None:
    """Time ``dense_eigvalsh`` on Gram matrices of a text-like W (its most frequent columns,
    the coupled part's core), each size in a fresh process for its peak RSS."""
    import json
    import subprocess

    print(f"float64 matmul: {matmul_gflops():.0f} GFLOP/s")
    times = []
    for m in sizes:
        out = subprocess.run([sys.executable, __file__, "--dense-child", str(m)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(r["seconds"])
        print(f"m = {m}: every eigenvalue in {r['seconds']:.1f} s; the Gram {m * m * 8 / 2**20:.0f} "
              f"MB, the process's peak RSS {r['peak_mb']:.0f} MB (at the solve's start "
              f"{r['before_mb']:.0f} MB)")  # fmt: skip
    slope = np.polyfit(np.log(sizes), np.log(times), 1)[0] if len(sizes) > 1 else 3.0
    print(f"time grows as m^{slope:.2f}")
    for m in at:
        seconds = times[-1] * (m / sizes[-1]) ** max(slope, 3.0)
        print(f"  at m = {m}: about {seconds / 3600:.1f} hours on this machine (m^3 from the "
              f"largest measured), the Gram {m * m * 8 / 2**30:.1f} GiB")  # fmt: skip


def dense_child(m: int) -> None:
    import json

    from saturation.ngrams import dense_eigvalsh

    docs = textlike(2_000_000, 4 * m)
    w, _ = next_token_matrix(docs, 5, 4 * m)
    popular = np.argsort(-np.asarray((w.multiply(w)).sum(axis=0)).ravel())[:m]
    part = w[:, np.sort(popular)]
    gram = (part.T @ part).toarray()
    gram[np.diag_indices_from(gram)] += 1e-3  # the singleton rows' diagonal, kept positive
    del docs, w, part
    before = rss_mb()
    t = time.perf_counter()
    eig = dense_eigvalsh(gram)
    seconds = time.perf_counter() - t
    assert eig.shape == (m,) and np.all(np.diff(eig) >= 0)
    print(json.dumps({"seconds": seconds, "peak_mb": rss_mb(), "before_mb": before}))


def main():
    if sys.argv[1:2] == ["--dense-child"]:
        return dense_child(int(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=10_000_000)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--corpus", choices=["textlike", "zipf-markov"], default="textlike")
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument(
        "--exact",
        action="store_true",
        help="also the exact spectrum (dense eigvalsh of the V x V Gram; V up to ~12,000), "
        "and the solver's largest error in the captured share and in W-error",
    )
    parser.add_argument("--dense", help="sizes m of the exact path to time, e.g. 4096,8192")
    parser.add_argument("--at", default="32000,50304", help="sizes to state the time at")
    args = parser.parse_args()
    if args.dense:
        return dense_growth([int(x) for x in args.dense.split(",")],
                            [int(x) for x in args.at.split(",")])  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    make = textlike if args.corpus == "textlike" else zipf_markov
    docs = make(args.tokens, args.vocab)
    base = rss_mb()
    print(
        f"corpus ({args.corpus}): {args.tokens} tokens, V = {args.vocab}, {len(docs)} documents "
        f"(peak RSS so far {base:.0f} MB)"
    )
    t0 = time.perf_counter()
    w, totals = next_token_matrix(docs, args.n, args.vocab)
    t_build = time.perf_counter() - t0
    print(
        f"build: W {w.shape[0]} x {w.shape[1]}, {w.nnz} non-zeros, "
        f"{t_build:.2f} s = {args.tokens / t_build / 1e6:.2f}M tokens/s; "
        f"peak RSS {rss_mb():.0f} MB; W itself {(w.data.nbytes + w.indices.nbytes + w.indptr.nbytes) / 2**20:.0f} MB"
    )
    t1 = time.perf_counter()
    sigma, method = top_singular_values(w, args.k, tol=args.tol)
    t_svd = time.perf_counter() - t1
    err = w_error(sigma, float((w.data**2).sum()))
    print(
        f"top {len(sigma)} singular values by {method}: {t_svd:.1f} s; peak RSS {rss_mb():.0f} MB"
    )
    if args.exact:
        t2 = time.perf_counter()
        exact, _ = top_singular_values(w, args.k, gram_max_dim=w.shape[1])  # the dense path
        fro_sq = float((w.data**2).sum())
        share = np.cumsum(exact**2 - sigma**2) / fro_sq
        print(
            f"exact spectrum (dense Gram, {time.perf_counter() - t2:.0f} s): the captured share "
            f"is short by at most {share.max():.1e} (tol {args.tol:g}), never over "
            f"({share.min():.1e}); W-error off by at most "
            f"{np.abs(w_error(exact, fro_sq) - err).max():.1e}"
        )
    print(
        f"sigma_1 = {sigma[0]:.3f}, sigma_{len(sigma)} = {sigma[-1]:.4f}; "
        f"W-error(10) = {err[10]:.4f}, W-error(100) = {err[100]:.4f}, W-error({len(sigma)}) = {err[-1]:.4f}"
    )


if __name__ == "__main__":
    main()
