"""The harness's bootstrap standard errors, recomputed without its process pool: the same
resamples as Python's random.choices and the same numbers as the harness's own function."""

import random

import pytest
from lm_eval.api import metrics

from saturation.bootstrap import bootstrap_stderr, exact_bootstrap, resample_indices


@pytest.mark.parametrize("seed", [0, 1, 57, 2**31 + 5])
@pytest.mark.parametrize("n", [1, 7, 2000])
def test_resamples_are_the_ones_random_choices_draws(seed, n):
    rnd = random.Random(seed)
    expected = [rnd.choices(range(n), k=n) for _ in range(3)]
    assert resample_indices(seed, 3, n).tolist() == expected


@pytest.mark.parametrize("statistic", [metrics.perplexity, metrics.mean, metrics.median])
def test_standard_errors_are_the_harness_s_to_the_bit(statistic, monkeypatch):
    monkeypatch.setenv("DISABLE_MULTIPROC", "1")  # the harness's single-process path
    rnd = random.Random(11)
    loglikelihoods = [-rnd.expovariate(0.4) for _ in range(501)]
    ours = bootstrap_stderr(statistic, loglikelihoods, 3000)
    assert ours == metrics.bootstrap_stderr(statistic, loglikelihoods, 3000)
    assert ours > 0


def test_the_harness_s_function_is_used_for_other_items_and_restored(monkeypatch):
    monkeypatch.setenv("DISABLE_MULTIPROC", "1")
    harness = metrics.bootstrap_stderr
    pairs = [(i % 3, (i * 7) % 3) for i in range(40)]  # items that are not numbers

    def first_agreement(items):
        return sum(a == b for a, b in items) / len(items)

    with exact_bootstrap():
        assert metrics.bootstrap_stderr is bootstrap_stderr
        ours = metrics.bootstrap_stderr(first_agreement, pairs, 2000)
    assert metrics.bootstrap_stderr is harness
    assert ours == harness(first_agreement, pairs, 2000)
