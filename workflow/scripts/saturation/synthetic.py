"""A synthetic language whose next-token distribution has a known softmax rank.

The language is a stationary first-order Markov chain over ``V`` tokens. Given the previous
token ``c`` the next-token logits are

    logits[c] = scale * U[c] @ E.T / sqrt(R) + b,   U in R^{V x R}, E in R^{V x R} Gaussian,

with ``b[v] = -zipf_exponent * log(v + 1)`` a Zipf-like unigram bias. The logit matrix has rank
at most ``R + 1``, so a softmax head needs about ``R + 1`` dimensions to fit the language
exactly; its entropy rate (the irreducible cross-entropy per token) is known in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticLanguage:
    transition: np.ndarray  # (V, V) float64, rows are next-token distributions
    stationary: np.ndarray  # (V,) float64, the chain's stationary distribution
    rank: int

    @property
    def vocab_size(self) -> int:
        return self.transition.shape[0]

    @property
    def softmax_rank(self) -> int:
        """Upper bound on the rank of a logit matrix that reproduces the language."""
        return self.rank + 1

    @property
    def entropy_rate(self) -> float:
        """H = sum_c pi(c) H(P[c, :]) in nats per token: the loss of the true model."""
        return float(self.stationary @ row_entropy(self.transition))

    @property
    def unigram_entropy(self) -> float:
        pi = self.stationary[self.stationary > 0]
        return float(-(pi * np.log(pi)).sum())

    def sample(self, n_sequences: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """Sample ``n_sequences`` stationary chains of ``length`` tokens, vectorised over chains."""
        cdf = np.cumsum(self.transition, axis=1)
        cdf[:, -1] = 1.0  # guard against round-off leaving a gap above the last token
        tokens = np.empty((n_sequences, length), dtype=np.int32)
        pi_cdf = np.cumsum(self.stationary)
        pi_cdf[-1] = 1.0
        tokens[:, 0] = np.searchsorted(pi_cdf, rng.random(n_sequences), side="right")
        for t in range(1, length):
            rows = cdf[tokens[:, t - 1]]
            u = rng.random((n_sequences, 1))
            tokens[:, t] = (rows <= u).sum(axis=1)
        return tokens


def logit_w_error(language: SyntheticLanguage) -> tuple[np.ndarray, np.ndarray]:
    """The W-error of the language's true logit matrix: its log-probabilities, each row
    centred (which removes the row's log-normaliser and leaves ``U E^T + b`` centred, of rank
    at most R + 1), against the rank d of the approximation, d = 0 .. V.

    W-error on probabilities cannot show the bottleneck (the transition matrix has full
    rank); in logit space it falls to zero at d = R + 1.
    """
    p = language.transition
    if not (p > 0).all():
        raise ValueError("the transition matrix has zero probabilities: no finite logits")
    logits = np.log(p)
    logits -= logits.mean(axis=1, keepdims=True)
    sigma = np.linalg.svd(logits, compute_uv=False)
    tail = np.sqrt(np.maximum(np.cumsum((sigma**2)[::-1])[::-1], 0.0))  # tail[d] = ||s[d:]||
    w_error = np.append(tail, 0.0) / tail[0]
    return np.arange(len(sigma) + 1), w_error


def row_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of a row-stochastic matrix (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def stationary_distribution(transition: np.ndarray, tol: float = 1e-14) -> np.ndarray:
    """Left Perron vector of a strictly positive stochastic matrix, by power iteration."""
    v = transition.shape[0]
    pi = np.full(v, 1.0 / v)
    for _ in range(100_000):
        nxt = pi @ transition
        nxt /= nxt.sum()
        if np.abs(nxt - pi).max() < tol:
            return nxt
        pi = nxt
    raise RuntimeError("stationary distribution did not converge")


def make_language(
    vocab_size: int, rank: int, logit_scale: float, zipf_exponent: float, seed: int
) -> SyntheticLanguage:
    if rank > vocab_size:
        raise ValueError(f"rank {rank} exceeds vocab_size {vocab_size}")
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((vocab_size, rank))
    e = rng.standard_normal((vocab_size, rank))
    bias = -zipf_exponent * np.log(np.arange(1, vocab_size + 1))
    logits = logit_scale * (u @ e.T) / np.sqrt(rank) + bias
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return SyntheticLanguage(transition=p, stationary=stationary_distribution(p), rank=rank)


def synthetic_language(settings: dict, seed: int, npz_path, json_path) -> None:
    """The run's synthetic language (corpus.synthetic's settings), drawn and saved."""
    save_language(make_language(**settings, seed=seed), npz_path, json_path, seed, **settings)


def save_language(language: SyntheticLanguage, npz_path, json_path, seed: int, **settings) -> None:
    from saturation.io import write_json

    np.savez(
        npz_path,
        transition=language.transition,
        stationary=language.stationary,
        rank=np.int64(language.rank),
    )
    write_json(
        {
            "source": "synthetic",
            "vocab_size": language.vocab_size,
            "rank": language.rank,
            "softmax_rank_bound": language.softmax_rank,
            "entropy_rate": language.entropy_rate,
            "unigram_entropy": language.unigram_entropy,
            "uniform_entropy": float(np.log(language.vocab_size)),
            "seed": seed,
            **{k: v for k, v in settings.items() if k not in ("vocab_size", "rank")},
        },
        json_path,
    )


def load_language(npz_path) -> SyntheticLanguage:
    with np.load(npz_path) as f:
        return SyntheticLanguage(
            transition=f["transition"], stationary=f["stationary"], rank=int(f["rank"])
        )
