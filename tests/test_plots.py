"""The figures draw what the analysis defines: Fig 6 and Fig 7 mark the softmax rank bound
R + 1 and Fig 7 carries the language's logit-space reference curve."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from saturation import plots
from saturation.synthetic import logit_w_error, make_language


@pytest.fixture
def drawn(monkeypatch):
    """The figures drawn, kept open instead of saved."""
    figures = []
    monkeypatch.setattr(plots.Style, "save", lambda self, fig, png, pdf: figures.append(fig))
    yield figures
    plt.close("all")


def vertical_lines(ax):
    return [
        line.get_xdata()[0]
        for line in ax.get_lines()
        if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2
    ]


def test_fig6_marks_r_plus_one(drawn):
    heads = pd.DataFrame(
        [
            {
                "backbone": "m",
                "step": 10,
                "head": "rank",
                "r": r,
                "eval_loss": 3 / r,
                "eval_accuracy": 0.1,
            }
            for r in (1, 4, 16, 64)
        ]
    )
    style = plots.Style({}, {"m": 1000})
    language = {"rank": 32, "softmax_rank_bound": 33, "entropy_rate": 1.0}
    plots.fig6_rank_heads(heads, style, language, "x.png", "x.pdf")
    for ax in drawn[0].axes:
        assert vertical_lines(ax) == [33]


def test_fig7_draws_the_logit_reference_with_its_knee(drawn):
    lang = make_language(vocab_size=64, rank=5, logit_scale=3.0, zipf_exponent=1.0, seed=3)
    spectra = pd.DataFrame(
        {
            "corpus": "synthetic",
            "tokenizer": "none",
            "n": 5,
            "d": np.arange(1, 10),
            "C": 100,
            "V": 64,
        }
    ).assign(w_error=lambda t: 1 / t.d)
    plots.fig7_w_error(spectra, plots.Style({}, {"m": 1}), "x.png", "x.pdf", logit_w_error(lang), 6)
    ax = drawn[0].axes[0]
    assert vertical_lines(ax) == [6]
    ref = next(line for line in ax.get_lines() if "true logits" in line.get_label())
    x, y = ref.get_xdata(), ref.get_ydata()
    assert y[x == 5][0] > 1e-3 and y[x == 6][0] < 1e-10
