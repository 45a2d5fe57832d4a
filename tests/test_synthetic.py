"""The synthetic language: planted distribution, entropy rate and softmax rank."""

import numpy as np
import pytest
from scipy import stats

from saturation.synthetic import make_language, row_entropy


@pytest.fixture(scope="module")
def language():
    return make_language(vocab_size=24, rank=3, logit_scale=2.0, zipf_exponent=1.0, seed=11)


def test_rows_are_distributions_and_stationary(language):
    p, pi = language.transition, language.stationary
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(pi @ p, pi, atol=1e-12)
    assert pi.min() > 0


def test_empirical_next_token_frequencies_match_planted(language):
    """G-test per sampled bigram table against the planted transition matrix."""
    tokens = language.sample(400, 500, np.random.default_rng(0))
    prev, nxt = tokens[:, :-1].ravel(), tokens[:, 1:].ravel()
    v = language.vocab_size
    counts = np.zeros((v, v))
    np.add.at(counts, (prev, nxt), 1)
    expected = counts.sum(axis=1, keepdims=True) * language.transition
    mask = expected > 5  # the chi-square approximation needs populated cells
    g = 2 * np.sum(
        counts[mask] * np.log(np.where(counts[mask] > 0, counts[mask], 1) / expected[mask])
    )
    dof = mask.sum() - v
    assert stats.chi2.sf(g, dof) > 1e-3, (g, dof)
    # And the first token of each chain follows the stationary distribution.
    first = np.bincount(tokens[:, 0], minlength=v)
    assert stats.chisquare(first, 400 * language.stationary).pvalue > 1e-3


def test_sampler_detects_a_wrong_distribution(language):
    """The frequency test above has power: samples of another language fail it."""
    other = make_language(vocab_size=24, rank=3, logit_scale=2.0, zipf_exponent=1.0, seed=12)
    tokens = other.sample(400, 500, np.random.default_rng(0))
    prev, nxt = tokens[:, :-1].ravel(), tokens[:, 1:].ravel()
    counts = np.zeros((24, 24))
    np.add.at(counts, (prev, nxt), 1)
    expected = counts.sum(axis=1, keepdims=True) * language.transition
    mask = expected > 5
    chi2 = np.sum((counts[mask] - expected[mask]) ** 2 / expected[mask])
    assert stats.chi2.sf(chi2, mask.sum() - 24) < 1e-6


def test_entropy_rate_matches_monte_carlo(language):
    tokens = language.sample(2000, 200, np.random.default_rng(1))
    nll = -np.log(language.transition[tokens[:, :-1], tokens[:, 1:]])
    se = nll.std() / np.sqrt(nll.size) * 5  # generous: the draws are correlated in time
    assert abs(nll.mean() - language.entropy_rate) < max(se, 5e-3)
    # Closed form by hand: sum_c pi_c * -sum_v P log P
    by_hand = sum(
        language.stationary[c] * -sum(q * np.log(q) for q in language.transition[c])
        for c in range(24)
    )
    assert language.entropy_rate == pytest.approx(by_hand, rel=1e-12)


def test_softmax_rank_is_at_most_r_plus_one():
    lang = make_language(vocab_size=64, rank=5, logit_scale=3.0, zipf_exponent=1.0, seed=3)
    log_p = np.log(lang.transition)
    centred = log_p - log_p.mean(axis=1, keepdims=True)  # drop the per-row normaliser
    s = np.linalg.svd(centred, compute_uv=False)
    assert s[5] > 1e-3 * s[0]  # rank R + 1 = 6 is used ...
    assert s[6] < 1e-10 * s[0]  # ... and no more
    assert lang.softmax_rank == 6


def test_row_entropy_edge_cases():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(row_entropy(p), [0.0, np.log(2)])


def test_rank_above_vocab_is_rejected():
    with pytest.raises(ValueError, match="rank 9 exceeds vocab_size 8"):
        make_language(vocab_size=8, rank=9, logit_scale=1.0, zipf_exponent=1.0, seed=0)


def test_logit_w_error_is_eckart_young_and_vanishes_at_r_plus_one():
    from saturation.synthetic import logit_w_error

    lang = make_language(vocab_size=64, rank=5, logit_scale=3.0, zipf_exponent=1.0, seed=3)
    d, err = logit_w_error(lang)
    assert d[0] == 0 and err[0] == 1.0 and len(d) == 65
    log_p = np.log(lang.transition)
    centred = log_p - log_p.mean(axis=1, keepdims=True)
    u, s, vt = np.linalg.svd(centred)
    for k in (1, 3, 5):  # the naive way: build the best rank-k matrix and measure the error
        approx = (u[:, :k] * s[:k]) @ vt[:k]
        naive = np.linalg.norm(centred - approx) / np.linalg.norm(centred)
        assert err[k] == pytest.approx(naive, rel=1e-9)
    assert err[5] > 1e-3 and err[6] < 1e-10  # the knee at R + 1
    # The probabilities themselves have full rank: their W-error at R + 1 is far from zero.
    sp = np.linalg.svd(lang.transition, compute_uv=False)
    assert np.sqrt((sp[6:] ** 2).sum() / (sp**2).sum()) > 0.05
