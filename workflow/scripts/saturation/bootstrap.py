"""The harness's bootstrap standard errors, the same numbers in a fraction of the time.

lm-evaluation-harness estimates the standard error of metrics without a closed form
(perplexity among them) from 100,000 resamples drawn in chunks of 1,000, chunk ``i`` from
``random.Random(i).choices``: 2·10⁸ Python-level draws on a task of 2,000 documents, most of
a small model's evaluation. Python's ``random`` and NumPy's legacy ``RandomState`` are the
same Mersenne Twister: seeded with the array ``[i]`` they share ``init_by_array``, and both
make a float from two 32-bit words the same way, so ``floor(u · n)`` picks the very indices
``choices`` picks. The statistic still runs on Python lists of the same floats, so every
replicate, and the standard error, is the harness's own to the last bit (tests/
test_bootstrap.py checks it against the harness's function).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np


def resample_indices(seed: int, rows: int, n: int) -> np.ndarray:
    """The indices ``random.Random(seed).choices(range(n), k=n)`` draws, ``rows`` times."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed {seed} is not a 32-bit word")
    uniform = np.random.RandomState([seed]).random_sample((rows, n))
    return (uniform * float(n)).astype(np.int64)  # floor: the products are >= 0


def bootstrap_stderr(f: Callable[[Sequence], float], xs: Sequence, iters: int) -> float:
    """``lm_eval.api.metrics.bootstrap_stderr(f, xs, iters)``, without its process pool:
    the same resamples, the same replicates, the same sample standard deviation."""
    from lm_eval.api import metrics

    if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in xs):
        return (_harness or metrics.bootstrap_stderr)(f, xs, iters)  # not plain numbers
    values = np.asarray(xs, dtype=np.float64)
    n, chunk = len(values), min(1000, iters)
    # Statistics of a mean: the sum as Python's sum makes it, one addition after another
    # (before 3.12; 3.12's sum compensates, so it takes the general path), vectorized over
    # a chunk's resamples.
    of_mean = {metrics.mean: float, metrics.perplexity: lambda m: math.exp(-m)}
    sequential = sys.version_info < (3, 12) and f in of_mean
    replicates = []
    for i in range(iters // chunk):
        resamples = values[resample_indices(i, chunk, n)]
        if sequential:
            sums = np.cumsum(resamples, axis=1)[:, -1].tolist()
            replicates += [of_mean[f](s / n) for s in sums]
        else:
            replicates += [f(row) for row in resamples.tolist()]
    return metrics.sample_stddev(replicates)


_harness: Callable | None = None  # the harness's own function while exact_bootstrap() runs


@contextlib.contextmanager
def exact_bootstrap() -> Iterator[None]:
    """Within this block the harness computes its bootstrap standard errors here."""
    global _harness
    from lm_eval.api import metrics

    _harness, metrics.bootstrap_stderr = metrics.bootstrap_stderr, bootstrap_stderr
    try:
        yield
    finally:
        metrics.bootstrap_stderr, _harness = _harness, None
