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


def test_fig1b_draws_each_checkpoint_against_the_law_at_its_own_tokens(drawn):
    """The dashes of Fig 1b are the table's predictions at each checkpoint's own T, and the
    gap panel plots the table's relative gaps: one definition for both."""
    rows = []
    for count, scale in (("total", 1.0), ("non_embedding", 0.5)):
        for model, n in (("small", 1e6), ("big", 1e8)):
            for role, step, loss, pred in (("best", 500, 3.1, 3.0), ("final", 1000, 3.3, 2.9)):
                rows.append(
                    dict(
                        parameters=count,
                        selected=count == "total",
                        model=model,
                        n_params=int(n * scale),
                        in_fit=model == "big",
                        below_fit=model == "small",
                        role=role,
                        step=step,
                        tokens_seen=step * 100,
                        loss=loss,
                        loss_whole=loss,
                        extrapolated_loss=pred,
                        relative_gap=loss / pred - 1,
                        relative_gap_whole=loss / pred - 1,
                    )
                )
    sat = pd.DataFrame(rows)
    law = {"E": 1.0, "A": 10.0, "alpha": 0.3, "B": 5.0, "beta": 0.3, "rmse": 0.01, "n_points": 4}
    law |= {"mean_relative_gap_best": 0.033, "mean_relative_gap_final": 0.138}
    fit = pd.DataFrame(
        [
            dict(
                parameters=c,
                selected=c == "total",
                parameter=k,
                value=v,
                fitted=k in ("A", "alpha"),
                note=None,
            )
            for c in ("total", "non_embedding")
            for k, v in law.items()
        ]
    )
    plots.fig1b_scaling(sat, fit, plots.Style({}, {"small": 1e6, "big": 1e8}), None, "x", "y")
    ax, ax_gap = drawn[0].axes
    total = sat[sat.selected]
    dashes = sorted(
        (float(c.get_offsets()[0][0]), float(c.get_offsets()[0][1]))
        for c in ax.collections
        if c.get_offsets().shape[0] == 1
    )
    expected = sorted(zip(total.n_params.astype(float), total.extrapolated_loss, strict=True))
    assert set(expected) <= set(dashes)  # each checkpoint's own prediction is drawn
    gaps = sorted(tuple(map(float, c.get_offsets()[0])) for c in ax_gap.collections)
    assert gaps == sorted(zip(total.n_params.astype(float), 100 * total.relative_gap, strict=True))
    means = sorted(line.get_ydata()[0] for line in ax_gap.get_lines() if line.get_ydata()[0] != 0)
    assert means == pytest.approx([3.3, 13.8])


def test_fig1a_in_bits_per_byte(drawn):
    rows = [
        {"model": m, "step": s, "metric": k, "layer": None, "value": v}
        for m in ("a", "b")
        for s in (1, 10, 100)
        for k, v in (("loss", 3.0 + 1 / s), ("bits_per_byte", 1.0 + 1 / s + (m == "b")))
    ]
    metrics = pd.DataFrame(rows)
    style = plots.Style({"loss_unit": "byte"}, {"a": 10, "b": 20})
    plots.fig1a_loss(metrics, style, None, "x", "y")
    ax = drawn[0].axes[0]
    ys = sorted(tuple(line.get_ydata()) for line in ax.get_lines())
    assert ys == [(2.0, 1.1, 1.01), (3.0, 2.1, 2.01)]
    assert "bits / byte" in ax.get_ylabel()
    with pytest.raises(ValueError, match="only text corpora"):
        plots.fig1a_loss(metrics[metrics.metric == "loss"], style, None, "x", "y")


def test_fig2_has_a_panel_per_family_its_models_by_size(drawn):
    sizes = {"gpt2": 124, "gpt2-xl": 1558, "opt-125m": 125, "opt-1.3b": 1300, "pythia-14m": 14}
    families = {"gpt2": "gpt2", "gpt2-xl": "gpt2", "opt-125m": "opt", "opt-1.3b": "opt"}
    families["pythia-14m"] = "gpt_neox"
    rows = []
    for i, (model, n) in enumerate(sizes.items()):
        for layer in range(4 + i):  # each model its own depth
            rows.append(
                {
                    "model": model,
                    "step": 0,
                    "metric": "anisotropy",
                    "layer": layer,
                    "value": 0.1 * i + 0.01 * layer,
                    "n_params": n,
                }
            )
    metrics = pd.DataFrame(rows)
    plots.fig2_anisotropy_layers(metrics, plots.Style({}, sizes), "x.png", "x.pdf", families)
    panels = [ax for ax in drawn[0].axes if ax.get_visible()]
    # Families ordered by their smallest model; each panel's models by size.
    assert [ax.get_title() for ax in panels] == ["Pythia (GPT-NeoX)", "GPT-2", "OPT"]
    labels = [[line.get_label().split(" ")[0] for line in ax.get_lines()] for ax in panels]
    assert labels == [["pythia-14m"], ["gpt2", "gpt2-xl"], ["opt-125m", "opt-1.3b"]]
    for ax in panels:
        lines = ax.get_lines()
        for line in lines:  # relative depth from 0 to 1, the model's own values
            model = line.get_label().split(" ")[0]
            want = metrics[metrics.model == model].sort_values("layer").value.to_numpy()
            np.testing.assert_allclose(line.get_ydata(), want)
            assert line.get_xdata()[0] == 0 and line.get_xdata()[-1] == 1
        # One hue a family, darker for the larger model.
        lum = [np.dot(line.get_color()[:3], [0.299, 0.587, 0.114]) for line in lines]
        assert lum == sorted(lum, reverse=True)
    hues = {tuple(np.round(ax.get_lines()[0].get_color(), 3)) for ax in panels}
    assert len(hues) == 3


def test_fig4_step_labels_do_not_overlap_at_pythias_154_revisions(drawn):
    """Pythia's schedule on a third of the page width: the step ticks' labels (0, 41k, 92k,
    143k) must not run into each other, as full numbers did."""
    steps = [0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000))
    rng = np.random.default_rng(0)
    rows = [
        {"model": m, "step": s, "index": i, "singular_value": v}
        for m in ("a", "b", "c")
        for s in steps
        for i, v in enumerate(np.sort(rng.random(16))[::-1])
    ]
    style = plots.Style({}, {"a": 1e6, "b": 2e6, "c": 3e6})
    plots.fig4_head_spectrum(pd.DataFrame(rows), style, "x.png", "x.pdf")
    fig = drawn[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:3]:
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in labels]
        for left, right in zip(boxes, boxes[1:], strict=False):
            assert left.x1 < right.x0, [t.get_text() for t in labels]
        assert labels[-1].get_text() == "143k"


def test_a_sizes_seeds_are_drawn_as_one_band(drawn):
    """Figs 1a and 3: a size trained with three seeds is its runs' range at each step with
    their median; a size with one run stays a line."""
    rows = []
    for model, shift in (
        ("p-160m", 0.0),
        ("p-160m-seed1", 0.2),
        ("p-160m-seed2", -0.1),
        ("q", 1.0),
    ):
        for s in (1, 10, 100):
            rows.append({"model": model, "step": s, "metric": "loss", "layer": None,
                         "value": 3.0 + shift + 1 / s})  # fmt: skip
            rows.append({"model": model, "step": s, "metric": "anisotropy", "layer": 2,
                         "value": 0.1 * s ** 0.1 + shift})  # fmt: skip
    metrics = pd.DataFrame(rows)
    sizes = {"p-160m": 160, "p-160m-seed1": 160, "p-160m-seed2": 160, "q": 20}
    plots.fig1a_loss(metrics, plots.Style({}, sizes), None, "x", "y")
    ax = drawn[0].axes[0]
    lines = sorted(tuple(np.round(line.get_ydata(), 6)) for line in ax.get_lines())
    assert lines == [(3.0 + 1, 3.0 + 0.1, 3.0 + 0.01), (4.0 + 1, 4.0 + 0.1, 4.0 + 0.01)]
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.min(), 2.9 + 0.01) and np.isclose(ys.max(), 3.2 + 1)
    assert any("3 seeds" in t.get_text() for t in ax.get_legend().get_texts())
    plots.fig3_anisotropy_training(metrics, plots.Style({}, sizes), None, "x", "y")
    top, bottom = drawn[1].axes
    assert len(top.collections) == len(bottom.collections) == 1
    assert len(top.get_lines()) == len(bottom.get_lines()) == 2
