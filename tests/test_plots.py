"""The figures draw what the analysis defines: Fig 6 and Fig 7 mark the softmax rank bound
R + 1, Fig 7 carries the language's logit-space reference curve, Figs 3, 4 and 8 are the
paper's (checked against direct computations), and every figure returns what it plots."""

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

    def keep(self, fig, png, pdf):  # as Style.save leaves it, before writing
        plots.readable_ticks(fig)
        figures.append(fig)

    monkeypatch.setattr(plots.Style, "save", keep)
    yield figures
    plt.close("all")


def vertical_lines(ax):
    return [
        line.get_xdata()[0]
        for line in ax.get_lines()
        if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2
    ]


HEAD_ROW = {"kind": "linear", "components": 1, "protocol": "cached", "lr": 0.01,
            "select_loss": None, "chosen": True, "eval_accuracy": 0.1}  # fmt: skip


def head_row(**values) -> dict:
    return HEAD_ROW | {"trainable_params": 100 * values.get("r", 1)} | values


def test_fig6_marks_r_plus_one_and_draws_each_kind_against_r_and_its_parameters(drawn):
    heads = pd.DataFrame(
        [head_row(backbone="m", step=10, head="rank", r=r, eval_loss=3 / r) for r in (1, 4, 16, 64)]
        + [
            head_row(
                backbone="m",
                step=10,
                head="rank",
                kind="mixture",
                components=4,
                r=r,
                trainable_params=400 * r,
                eval_loss=2 / r,
            )  # fmt: skip
            for r in (1, 4)
        ]
    )
    style = plots.Style({}, {"m": 1000})
    language = {"rank": 32, "softmax_rank_bound": 33, "entropy_rate": 1.0}
    data = plots.fig6_rank_heads(heads, style, language, "x.png", "x.pdf")
    loss, accuracy, params = drawn[0].axes
    for ax in (loss, accuracy):
        assert vertical_lines(ax) == [33]
    mixture = next(line for line in params.get_lines() if "mixture of 4" in line.get_label())
    assert list(mixture.get_xdata()) == [400, 1600] and list(mixture.get_ydata()) == [2, 0.5]
    assert len(data) == 6 and set(data.kind) == {"linear", "mixture"}


def test_fig6_shows_the_chosen_rate_and_fig9_every_grid_point(drawn):
    """With a grid, Fig 6 shows each rank at its chosen rate; Fig 9 the chosen rates and,
    right, the runner-up's selection loss above the chosen one's."""
    select = {(1, 0.001): 3.0, (1, 0.01): 2.5, (1, 0.05): 2.7, (8, 0.001): 2.9,
              (8, 0.01): 2.2, (8, 0.05): 2.1}  # fmt: skip
    rows = [
        head_row(
            backbone="m",
            step=10,
            head="rank",
            r=r,
            lr=lr,
            select_loss=loss,
            chosen=(r, lr) in ((1, 0.01), (8, 0.05)),
            eval_loss=loss + 0.01,
            protocol="paper",
        )  # fmt: skip
        for (r, lr), loss in select.items()
    ]
    rows.append(head_row(backbone="m", step=10, head="original", r=8, eval_loss=2.0,
                         protocol=None, lr=0.0))  # fmt: skip
    heads = pd.DataFrame(rows)
    style = plots.Style({}, {"m": 1000})
    data6 = plots.fig6_rank_heads(heads, style, None, "x.png", "x.pdf")
    assert sorted(zip(data6.r, data6.lr, strict=True)) == [(1, 0.01), (8, 0.0), (8, 0.05)]
    data9 = plots.fig9_learning_rates(heads, style, "x.png", "x.pdf")
    assert len(data9) == 6 and set(data9.select_loss) == set(select.values())
    chosen_ax, gap_ax = drawn[1].axes
    [line] = chosen_ax.get_lines()
    assert list(line.get_xdata()) == [1, 8] and list(line.get_ydata()) == [0.01, 0.05]
    [gap] = gap_ax.get_lines()
    np.testing.assert_allclose(gap.get_ydata(), [2.7 - 2.5, 2.2 - 2.1])
    with pytest.raises(ValueError, match="no head was trained on a learning-rate grid"):
        plots.fig9_learning_rates(heads.assign(select_loss=None), style, "x.png", "x.pdf")


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
    # W-error 1/d: below 0.05 from d = 21 on; this curve stops at 9, still above
    curve = next(line for line in ax.get_lines() if line.get_label().startswith("synthetic"))
    assert curve.get_label().endswith("≥ 0.05 up to d = 9)")
    assert plots.first_below(np.arange(1, 40), 1 / np.arange(1, 40), 0.05) == 21


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
    plots.fig3_loss_and_anisotropy(metrics, plots.Style({}, sizes), None, "x", "y")
    top, bottom = drawn[1].axes
    assert len(top.collections) == len(bottom.collections) == 1
    assert len(top.get_lines()) == len(bottom.get_lines()) == 2


def random_head(rng, v, d, decay):
    """A V x d head whose singular values fall off as ``decay`` ** i."""
    u, _ = np.linalg.qr(rng.standard_normal((v, d)))
    w, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (u * decay ** np.arange(d)) @ w.T


def test_fig8_x_is_the_backbones_own_head_w_error_from_a_direct_svd(drawn):
    """Fig 8's x at rank r: ||W - W_r||_F / ||W||_F with W_r the truncated SVD of the
    backbone's head at the heads' step, computed here from the matrix itself."""
    rng = np.random.default_rng(1)
    heads_w = {("a", 100): random_head(rng, 40, 16, 0.8), ("b", 50): random_head(rng, 40, 8, 0.5)}
    heads_w[("a", 10)] = random_head(rng, 40, 16, 0.99)  # another step of a: not the heads'
    spectra = pd.DataFrame(
        [
            {"backbone": m, "step": s, "index": i, "singular_value": v}
            for (m, s), w in heads_w.items()
            for i, v in enumerate(np.linalg.svd(w, compute_uv=False))
        ]
    )
    ranks = {"a": [1, 2, 4, 8, 16], "b": [1, 4, 8]}
    rows = [
        head_row(backbone=m, step=s, head="rank", r=r, eval_loss=5 - np.log(r))
        for (m, s) in (("a", 100), ("b", 50))
        for r in ranks[m]
    ]
    rows.append(head_row(backbone="a", step=100, head="full", r=16, eval_loss=1.0))
    # a mixture head and a grid point not chosen: neither is Fig 8's
    rows.append(head_row(backbone="a", step=100, head="rank", kind="mixture", r=2, eval_loss=0.1))
    rows.append(head_row(backbone="a", step=100, head="rank", r=2, chosen=False, eval_loss=0.1))
    ngram = pd.DataFrame({"corpus": "c", "d": np.arange(0, 20), "w_error": np.linspace(1, 0, 20)})
    style = plots.Style({}, {"a": 2e6, "b": 1e6})
    data = plots.fig8_loss_vs_w_error(pd.DataFrame(rows), spectra, ngram, "c", style, "x", "y")
    for (m, s), g in data.groupby(["backbone", "step"]):
        w = heads_w[(m, s)]
        u, sig, vt = np.linalg.svd(w, full_matrices=False)
        for r, x in zip(g.r, g.head_w_error, strict=True):
            w_r = (u[:, :r] * sig[:r]) @ vt[:r]
            assert x == pytest.approx(np.linalg.norm(w - w_r) / np.linalg.norm(w), abs=1e-12)
    assert sorted(data.ngram_w_error) == sorted(
        np.linspace(1, 0, 20)[r] for r in [1, 2, 4, 8, 16, 1, 4, 8]
    )
    left, right = drawn[0].axes
    assert vertical_lines(left) == [0.6]
    a = next(line for line in left.get_lines() if line.get_label() == "a @ 100")
    np.testing.assert_allclose(a.get_xdata(), data[data.backbone == "a"].head_w_error)
    assert "not in the paper" in right.get_title()
    # A backbone from outside the run's models (no size measured): a colour of its own, the
    # same in every figure, and its name alone in the legend (its one revision).
    rows.append(head_row(backbone="llama", step=0, head="rank", r=4, eval_loss=3.0))
    heads_w[("llama", 0)] = random_head(rng, 40, 8, 0.7)
    spectra = pd.concat([spectra, pd.DataFrame(
        [{"backbone": "llama", "step": 0, "index": i, "singular_value": v}
         for i, v in enumerate(np.linalg.svd(heads_w[("llama", 0)], compute_uv=False))]
    )])  # fmt: skip
    plots.fig8_loss_vs_w_error(pd.DataFrame(rows), spectra, ngram, "c", style, "x", "y")
    left = drawn[-1].axes[0]
    llama = next(line for line in left.get_lines() if line.get_label() == "llama")
    assert llama.get_color() == style.color("llama") != style.color("a")
    assert style.color("llama") == plots.Style({}, {"z": 1}).color("llama")
    with pytest.raises(ValueError, match="no head spectrum of b at step 50"):
        plots.fig8_loss_vs_w_error(pd.DataFrame(rows), spectra[spectra.backbone == "a"], ngram, "c",
                                   style, "x", "y")  # fmt: skip


def test_fig4_colours_sigma_over_the_largest(drawn):
    """Fig 4's cells are sigma_i / sigma_1 of the head (the paper's normalisation), not
    sigma_i / sum(sigma), on a log scale that reaches the spike's small values."""
    rng = np.random.default_rng(2)
    heads_w = {s: random_head(rng, 30, 12, decay) for s, decay in ((1, 0.97), (2, 0.3))}
    sigma = {s: np.linalg.svd(w, compute_uv=False) for s, w in heads_w.items()}
    rows = [
        {"model": "m", "step": s, "index": i, "singular_value": v}
        for s, sig in sigma.items()
        for i, v in enumerate(sig)
    ]
    data = plots.fig4_head_spectrum(pd.DataFrame(rows), plots.Style({}, {"m": 1}), "x", "y")
    for s, sig in sigma.items():
        np.testing.assert_allclose(data[data.step == s].sigma_over_sigma1, sig / sig[0])
    image = drawn[0].axes[0].get_images()[0]
    np.testing.assert_allclose(np.asarray(image.get_array())[:, 0], sigma[1] / sigma[1][0])
    assert image.norm.vmax == 1 and image.norm.vmin < (sigma[2] / sigma[2][0])[3]
    assert "sigma_1" in drawn[0].axes[-1].get_ylabel()


def test_fig3_is_a_panel_per_model_coloured_by_anisotropy(drawn):
    """The paper's Fig 3: a panel a model, its loss (here a named corpus's) over training,
    each point's colour the last layer's anisotropy at that step."""
    rows = []
    for model, n in (("s", 1), ("l", 2)):
        for step in (1, 10, 100, 1000):
            rows.append({"model": model, "step": step, "metric": "wikitext/loss", "layer": None,
                         "value": 4 - n * np.log10(step) / 10})  # fmt: skip
            rows.append({"model": model, "step": step, "metric": "loss", "layer": None,
                         "value": 9.0})  # fmt: skip
            for layer in (0, 1, 2):
                rows.append({"model": model, "step": step, "metric": "anisotropy",
                             "layer": layer, "value": step / 2000 + layer / 10 + n})  # fmt: skip
    metrics = pd.DataFrame(rows)
    style = plots.Style({"fig3_loss": "wikitext/loss"}, {"s": 10, "l": 20})
    data = plots.fig3_anisotropy_training(metrics, style, None, "x", "y")
    panels = [ax for ax in drawn[0].axes if ax.get_title()]
    assert [ax.get_title().split(" ")[0] for ax in panels] == ["s", "l"]
    for ax, model in zip(panels, ("s", "l"), strict=True):
        points = ax.collections[-1]
        want = metrics[(metrics.model == model) & (metrics.metric == "wikitext/loss")]
        np.testing.assert_allclose(points.get_offsets()[:, 1], want.value)
        np.testing.assert_allclose(points.get_array(), want.step / 2000 + 0.2 + (model == "l") + 1)
    assert data.loss.max() == 4 and set(data.columns) == {"model", "step", "loss", "anisotropy"}
    with pytest.raises(ValueError, match="figures.fig3_loss: no metric 'lambada/loss'"):
        plots.fig3_anisotropy_training(metrics, plots.Style({"fig3_loss": "lambada/loss"},
                                       {"s": 10, "l": 20}), None, "x", "y")  # fmt: skip


def test_plotted_numbers_read_back_with_their_units(tmp_path):
    from saturation.figures import read_plotted, write_plotted

    frame = plots.plotted(
        pd.DataFrame({"model": ["a", "b"], "step": [1, 2], "value": [0.5, np.nan]}),
        {"model": "the model", "step": "training step", "value": "loss: nats / token"},
    )
    write_plotted(frame, "figx", tmp_path / "figx.csv")
    back = read_plotted(tmp_path / "figx.csv")
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs["units"]["value"] == "loss: nats / token"
    with pytest.raises(ValueError, match=r"without a unit: \['step'\]"):
        plots.plotted(frame, {"model": "m", "value": "v"})


def test_figures_over_training_against_tokens_seen(drawn, tmp_path):
    """figures.x_axis: tokens: Figs 1a, 3 and 5 draw each checkpoint at the tokens it had
    seen (two runs with different batch sizes line up), and write them beside the steps."""
    rows = []
    for model, per_step in (("a", 100), ("b", 400)):
        for s in (1, 10, 100):
            for name, value in (("loss", 3 + 1 / s), ("singular_entropy", 0.1 * s)):
                rows.append({"model": model, "step": s, "tokens_seen": s * per_step,
                             "metric": name, "layer": None, "value": value})  # fmt: skip
            rows.append({"model": model, "step": s, "tokens_seen": s * per_step,
                         "metric": "anisotropy", "layer": 1, "value": 0.5})  # fmt: skip
    metrics = pd.DataFrame(rows)
    style = plots.Style({"x_axis": "tokens"}, {"a": 10, "b": 20})
    data = plots.fig1a_loss(metrics, style, None, "x", "y")
    ax = drawn[0].axes[0]
    xs = sorted(tuple(line.get_xdata()) for line in ax.get_lines())
    assert xs == [(100, 1000, 10000), (400, 4000, 40000)] and ax.get_xlabel() == "tokens seen"
    assert list(data.columns[:4]) == ["series", "runs", "step", "tokens_seen"]
    assert "tokens seen" in data.attrs["units"]["tokens_seen"]
    fig3 = plots.fig3_anisotropy_training(metrics, style, None, "x", "y")
    offsets = sorted(
        float(x) for c in drawn[1].axes[0].collections[-1:] for x, _ in c.get_offsets()
    )
    assert offsets == [100, 1000, 10000] and set(fig3.tokens_seen) == {
        100,
        400,
        1000,
        4000,
        10000,
        40000,
    }
    plots.fig5_singular_entropy(metrics, style, "x", "y")
    assert drawn[2].axes[0].get_xlabel() == "tokens seen"


def test_a_model_with_nothing_to_draw_is_left_out(drawn):
    """A model of the run with no rows in a figure (every head a duplicate, say) draws
    nothing; the others are drawn."""
    rows = [{"model": "a", "step": s, "metric": "singular_entropy", "layer": None, "value": s}
            for s in (1, 10)]  # fmt: skip
    data = plots.fig5_singular_entropy(
        pd.DataFrame(rows), plots.Style({}, {"a": 10, "b": 20}), "x", "y"
    )
    assert set(data.series) == {"a"} and len(drawn[0].axes[0].get_lines()) == 1


def test_a_figure_drawn_twice_is_the_same_png_and_pdf_to_the_byte(tmp_path):
    """The PDF carries no creation date (matplotlib writes one unless told not to), so a
    re-run's figures equal the first run's."""
    import time

    metrics = pd.DataFrame(
        {"model": "a", "step": [1, 2, 4], "tokens_seen": [10, 20, 40], "metric": "loss",
         "layer": None, "value": [3.0, 2.5, 2.4], "n_params": 10, "hidden_size": 8}
    )  # fmt: skip
    files = []
    for run in ("first", "second"):
        png, pdf = tmp_path / f"{run}.png", tmp_path / f"{run}.pdf"
        plots.fig1a_loss(metrics, plots.Style({}, {"a": 10}), None, str(png), str(pdf))
        files.append((png.read_bytes(), pdf.read_bytes()))
        time.sleep(1.1)  # a creation date in seconds would differ
    assert files[0] == files[1]
