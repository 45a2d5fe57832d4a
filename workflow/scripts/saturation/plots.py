"""Figures of the study, one function per figure, sharing one style: models coloured by
size on one continuous colormap, log-scaled steps, PNG + PDF."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from saturation.scaling import scaling_law  # noqa: E402

DEFAULT_STYLE = {"colormap": "viridis", "dpi": 150, "font_size": 9, "width": 5.5, "height": 3.6}


class Style:
    """The run's figure style (``figures`` config) and each model's colour by size; its
    matplotlib settings apply inside ``with style.applied():``, never globally."""

    def __init__(self, style: dict, sizes: dict[str, int]):
        self.s = {**DEFAULT_STYLE, **style}
        self.sizes = sizes  # model -> parameter count, for the colour
        self.cmap = plt.get_cmap(self.s["colormap"])
        lo, hi = min(sizes.values()), max(sizes.values())
        self.norm = LogNorm(vmin=lo / 1.5, vmax=hi * 1.5) if lo < hi else None
        self.rc = {
            "font.size": self.s["font_size"],
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
            "savefig.bbox": "tight",
        }

    def applied(self):
        return plt.rc_context(self.rc)

    def color(self, model: str):
        # Stop short of the colormap's pale end so every line stays visible on white.
        x = 0.5 if self.norm is None else float(self.norm(self.sizes[model]))
        return self.cmap(0.9 * x)

    def models(self):
        return sorted(self.sizes, key=lambda m: (self.sizes[m], m))

    def figure(self, nrows=1, ncols=1, height=None, width=None, **kw):
        return plt.subplots(
            nrows,
            ncols,
            figsize=(width or self.s["width"], height or self.s["height"]),
            squeeze=False,
            **kw,
        )

    def save(self, fig, png: str, pdf: str):
        fig.savefig(png, dpi=self.s["dpi"])
        fig.savefig(pdf)
        plt.close(fig)


def human(n: float) -> str:
    for unit, k in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= k:
            return f"{n / k:.3g}{unit}"
    return f"{n:.0f}"


def label(style: Style, model: str) -> str:
    return f"{model} ({human(style.sizes[model])})"


def floor_line(ax, floor: float | None):
    if floor is not None:
        ax.axhline(floor, color="0.3", ls="--", lw=1)
        ax.annotate(
            f"entropy floor {floor:.3f}",
            (0.01, floor),
            xycoords=("axes fraction", "data"),
            ha="left",
            va="bottom",
            fontsize="small",
            color="0.3",
        )


def rank_bound_line(ax, bound: int) -> None:
    """The vertical marker at the synthetic language's softmax rank bound R + 1."""
    ax.axvline(bound, color="0.5", lw=1, ls="-.")
    ax.annotate(
        f"R + 1 = {bound}",
        (bound, 0.98),
        xycoords=("data", "axes fraction"),
        ha="right",
        va="top",
        rotation=90,
        fontsize="small",
        color="0.4",
    )


def metric(metrics: pd.DataFrame, name: str, layer=None) -> pd.DataFrame:
    m = metrics[metrics.metric == name]
    if layer is not None:
        m = m[m.layer == layer]
    return m.sort_values(["model", "step"])


def log_steps(ax):
    ax.set_xscale("log")
    ax.set_xlabel("training step")


def runs_by_size(models: list[str]) -> dict[str, list[str]]:
    """Models grouped by size: ``pythia-160m`` with its seeds ``pythia-160m-seed{k}``."""
    import re

    from saturation.significance import SIZE_SEED

    groups: dict[str, list[str]] = {}
    for model in models:
        groups.setdefault(re.match(SIZE_SEED, model).group("size"), []).append(model)
    return groups


def per_model_over_steps(ax, rows, style, labelled: bool = True):
    """One line per model of a metric over the training steps (step 0 has no place on a
    log axis); a size trained with several seeds as one band, the runs' range at each step
    they all have, around their median."""
    for size, models in runs_by_size(style.models()).items():
        color = style.color(models[0])
        if len(models) == 1:
            g = rows[(rows.model == models[0]) & (rows.step > 0)]
            name = label(style, models[0])
            ax.plot(g.step, g.value, marker="o", ms=2.5, lw=1.3, color=color,
                    label=name if labelled else None)  # fmt: skip
            continue
        g = rows[rows.model.isin(models) & (rows.step > 0)]
        wide = g.pivot_table(index="step", columns="model", values="value").dropna()
        ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=color,
                        alpha=0.25, lw=0)  # fmt: skip
        name = f"{size} ({human(style.sizes[models[0]])}, {len(models)} seeds: median, range)"
        ax.plot(wide.index, wide.median(axis=1), marker="o", ms=2.5, lw=1.3, color=color,
                label=name if labelled else None)  # fmt: skip


def fig1a_loss(metrics, style, floor, png, pdf, saturated=None):
    """Loss over training, per token (``figures.loss_unit: token``) or in bits per byte
    (``byte``: comparable across tokenizers; text corpora only). ``saturated``: {model: best
    step} of the models whose final loss is significantly above their best, each marked
    with a star at its best checkpoint."""
    saturated = saturated or {}
    fig, axes = style.figure()
    ax = axes[0, 0]
    if style.s.get("loss_unit", "token") == "byte":
        rows = metric(metrics, "bits_per_byte")
        if rows.empty:
            raise ValueError(
                "figures.loss_unit: byte needs bits per byte, which only text corpora have"
            )
        per_model_over_steps(ax, rows, style)
        ax.set_ylabel("cross-entropy (bits / byte)")
    else:
        rows = metric(metrics, "loss")
        per_model_over_steps(ax, rows, style)
        floor_line(ax, floor)
        ax.set_ylabel("cross-entropy (nats / token)")
    for model, step in sorted(saturated.items()):
        at = rows[(rows.model == model) & (rows.step == step)]
        ax.plot(at.step, at.value, marker="*", ms=11, ls="none", color=style.color(model),
                markeredgecolor="black", markeredgewidth=0.6)  # fmt: skip
    if saturated:
        ax.plot([], [], marker="*", ms=9, ls="none", color="0.5", markeredgecolor="black",
                label="best checkpoint of a saturating model")  # fmt: skip
    log_steps(ax)
    ax.set_title("Evaluation loss over training")
    ax.legend(fontsize="small", loc="upper right")
    style.save(fig, png, pdf)


def fig1b_scaling(saturation, fit, style, floor, png, pdf):
    """Left: best and final checkpoints against the law, each at its own T (the curve is the
    law at the final T; a dash marks each checkpoint's own prediction). Right: the relative
    gap loss / prediction - 1 by model, with its mean over the models below the fit."""
    count = fit[fit.selected].parameters.iloc[0]
    fit = fit[fit.parameters == count]
    sat = saturation[saturation.parameters == count]
    law = dict(zip(fit.parameter, fit.value, strict=True))
    fitted = [p for p, f in zip(fit.parameter, fit.fitted, strict=True) if f]
    note = fit.note.dropna().iloc[0] if fit.note.notna().any() else None
    fig, axes = style.figure(1, 2, width=style.s["width"] * 1.8)
    ax, ax_gap = axes[0]
    final = sat[sat.role == "final"]
    best = sat[sat.role == "best"]
    if fitted:
        t_final = float(final.tokens_seen.max())
        n = np.geomspace(sat.n_params.min() / 1.5, sat.n_params.max() * 1.5, 200)
        params = {k: law[k] for k in ("E", "A", "alpha", "B", "beta")}
        ax.plot(
            n,
            scaling_law(n, t_final, **params),
            color="0.2",
            lw=1.2,
            label=f"law at the final T = {human(t_final)} tokens",
        )
    for role, rows in (("final", final), ("best", best)):
        for r in rows.itertuples():
            c = style.color(r.model)
            face = c if role == "final" else "none"
            edge = "k" if role == "final" and r.in_fit else c
            ax.scatter(r.n_params, r.loss, facecolor=face, edgecolor=edge, s=36, zorder=3, lw=1.3)
            ax.scatter(r.n_params, r.extrapolated_loss, marker="_", color=c, s=90, zorder=3)
            ax.plot([r.n_params] * 2, [r.loss, r.extrapolated_loss], color=c, lw=0.8, zorder=2)
            ax_gap.scatter(
                r.n_params, 100 * r.relative_gap, facecolor=face, edgecolor=edge, s=36, lw=1.3
            )
    ax.scatter([], [], color="0.5", s=36, label="final checkpoint")
    ax.scatter([], [], facecolor="none", edgecolor="0.5", s=36, label="best checkpoint")
    ax.scatter([], [], color="0.5", edgecolor="k", s=36, label="in the fit")
    ax.scatter([], [], marker="_", color="0.5", s=90, label="law at the checkpoint's own T")
    floor_line(ax, floor)
    ax.set_xscale("log")
    ax.set_xlabel(f"parameters N ({count.replace('_', '-')})")
    ax.set_ylabel("cross-entropy on the report half (nats / token)")
    ax.legend(fontsize="x-small")
    title = (
        "Scaling-law fit skipped"
        if not fitted
        else "Scaling-law fit: " + ", ".join(f"{p} = {law[p]:.4g}" for p in fitted)
    )
    if fitted:
        held = [p for p in ("E", "A", "alpha", "B", "beta") if p not in fitted]
        title += "; held: " + ", ".join(f"{p} = {law[p]:.4g}" for p in held) if held else ""
        title += f"\nRMSE {law['rmse']:.3g} over {int(law['n_points'])} points"
    if note:
        title += f"\n{note}"
    ax.set_title(title, fontsize="small")

    ax_gap.axhline(0, color="0.3", lw=0.8)
    means = {r: law.get(f"mean_relative_gap_{r}", np.nan) for r in ("final", "best")}
    if np.isclose(means["final"], means["best"], atol=5e-4):  # best = final: one line
        means = {"best = final": means["final"]}
    for (role, mean), ls, va in zip(means.items(), ("-", "--"), ("bottom", "top"), strict=False):
        if np.isfinite(mean):
            ax_gap.axhline(100 * mean, color="0.45", lw=1, ls=ls)
            ax_gap.annotate(
                f"mean {role}, below the fit: {100 * mean:+.1f}%",
                (0.99, 100 * mean),
                xycoords=("axes fraction", "data"),
                ha="right",
                va=va,
                fontsize="x-small",
                color="0.3",
            )
    for r in final.itertuples():
        ax_gap.annotate(
            r.model,
            (r.n_params, 100 * r.relative_gap),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize="x-small",
            color="0.25",
        )
    below = sat[sat.below_fit]
    if len(below):
        ax_gap.axvspan(
            sat.n_params.min() / 1.5,
            np.sqrt(below.n_params.max() * sat[~sat.below_fit].n_params.min())
            if (~sat.below_fit).any()
            else sat.n_params.max() * 1.5,
            color="0.92",
            zorder=0,
            lw=0,
        )
    ax_gap.set_xscale("log")
    ax_gap.set_xlabel(f"parameters N ({count.replace('_', '-')})")
    ax_gap.set_ylabel("relative gap: loss / law − 1 (%)")
    ax_gap.set_title(
        "Gap to the law at each checkpoint's own T\n(shaded: models below the fitted range)",
        fontsize="small",
    )
    style.save(fig, png, pdf)


def final_rows(metrics):
    last = metrics.groupby("model").step.transform("max")
    return metrics[metrics.step == last]


# Families in Fig 2: their names, and a sequential colormap each (shade: size in family).
FAMILY_NAMES = {
    "gpt2": "GPT-2",
    "opt": "OPT",
    "gpt_neox": "Pythia (GPT-NeoX)",
    "gemma": "Gemma",
    "gemma2": "Gemma 2",
    "llama": "Llama",
    "mistral": "Mistral",
    "olmo": "OLMo",
    "qwen2": "Qwen2",
}
FAMILY_COLORMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys", "YlOrBr")


def family_groups(families: dict[str, str], sizes: dict[str, int]) -> list[tuple[str, list]]:
    """[(family, models by size)], families ordered by their smallest model."""
    groups = {}
    for model in sorted(families, key=lambda m: (sizes[m], m)):
        groups.setdefault(families[model], []).append(model)
    return list(groups.items())


def anisotropy_by_depth(ax, aniso, models, color, style):
    for model in models:
        g = aniso[aniso.model == model].sort_values("layer")
        ax.plot(
            g.layer / g.layer.max(),
            g.value,
            marker="o",
            ms=3,
            lw=1.3,
            color=color(model),
            label=label(style, model),
        )


def fig2_anisotropy_layers(metrics, style, png, pdf, families=None):
    """Anisotropy by relative depth at the final checkpoints; with several families (the
    paper's GPT-2, OPT, Pythia, Gemma), one panel a family, its models shaded by size."""
    aniso = final_rows(metric(metrics, "anisotropy"))
    xlabel = "relative depth (0 = embeddings, 1 = final norm, the head's input)"
    groups = family_groups(families, style.sizes) if families else []
    if len(groups) < 2:
        fig, axes = style.figure()
        ax = axes[0, 0]
        anisotropy_by_depth(ax, aniso, style.models(), style.color, style)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("anisotropy (mean pairwise cosine)")
        ax.set_title("Anisotropy across layers, final checkpoints")
        ax.legend(fontsize="small", ncol=2)
        style.save(fig, png, pdf)
        return
    ncols = 2 if len(groups) == 4 else min(len(groups), 3)
    nrows = -(-len(groups) // ncols)
    fig, axes = style.figure(
        nrows,
        ncols,
        width=style.s["width"] * ncols / 1.6,
        height=style.s["height"] * nrows * 0.9,
        sharex=True,
        sharey=True,
    )
    for i, (family, models) in enumerate(groups):
        ax = axes.flat[i]
        cmap = plt.get_cmap(FAMILY_COLORMAPS[i % len(FAMILY_COLORMAPS)])
        steps = max(len(models) - 1, 1)  # one model alone: a mid-dark shade
        shade = {
            m: 0.45 + 0.5 * j / steps if len(models) > 1 else 0.75 for j, m in enumerate(models)
        }
        anisotropy_by_depth(ax, aniso, models, lambda m, c=cmap, s=shade: c(s[m]), style)
        ax.set_title(FAMILY_NAMES.get(family, family))
        ax.legend(fontsize="x-small", loc="best")
    for i in range(len(groups), nrows * ncols):  # an empty cell: ticks on the panel above
        axes.flat[i].set_visible(False)
        axes.flat[i - ncols].xaxis.set_tick_params(labelbottom=True)
    fig.supxlabel(xlabel, fontsize=style.s["font_size"])
    fig.supylabel("anisotropy (mean pairwise cosine)", fontsize=style.s["font_size"])
    fig.suptitle("Anisotropy across layers, final checkpoints, by family")
    style.save(fig, png, pdf)


def fig3_anisotropy_training(metrics, style, floor, png, pdf):
    fig, axes = style.figure(2, 1, height=style.s["height"] * 1.6, sharex=True)
    loss = metric(metrics, "loss")
    aniso = metric(metrics, "anisotropy")
    last = aniso.groupby("model").layer.transform("max")
    aniso = aniso[aniso.layer == last]
    per_model_over_steps(axes[0, 0], loss, style)
    per_model_over_steps(axes[1, 0], aniso, style, labelled=False)
    floor_line(axes[0, 0], floor)
    axes[0, 0].set_ylabel("cross-entropy")
    axes[0, 0].set_title("Loss and last-layer anisotropy over training")
    axes[0, 0].legend(fontsize="small", loc="upper right")
    axes[1, 0].set_ylabel("last-layer anisotropy")
    log_steps(axes[1, 0])
    style.save(fig, png, pdf)


def compact_step(step: int) -> str:
    """A step for a narrow axis: 512, 42k, 143k."""
    return str(step) if step < 1000 else f"{step / 1000:g}k"


def fig4_head_spectrum(head_spectra, style, png, pdf):
    models = style.models()
    ncols = min(3, len(models))
    nrows = -(-len(models) // ncols)
    fig, axes = style.figure(
        nrows,
        ncols,
        height=2.4 * nrows,
        width=style.s["width"] * ncols / 2.2,
        constrained_layout=True,
    )
    vmin, vmax = 1e-4, 1.0
    image = None
    for ax, model in zip(axes.flat, models, strict=False):
        g = head_spectra[head_spectra.model == model]
        steps = sorted(g.step.unique())
        d = g["index"].max() + 1
        grid = np.zeros((d, len(steps)))
        for j, s in enumerate(steps):
            sigma = g[g.step == s].sort_values("index").singular_value.to_numpy()
            grid[:, j] = sigma / sigma.sum() if sigma.sum() > 0 else 0
        image = ax.imshow(
            np.clip(grid, vmin, vmax),
            aspect="auto",
            origin="upper",
            cmap="magma",
            norm=LogNorm(vmin=vmin, vmax=vmax),
            interpolation="nearest",
            extent=(-0.5, len(steps) - 0.5, 1, 0),
        )
        ticks = np.unique(np.linspace(0, len(steps) - 1, 4).round().astype(int))
        ax.set_xticks(ticks, [compact_step(steps[t]) for t in ticks])
        ax.set_title(label(style, model), fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel("rank / d")
        ax.grid(False)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    fig.colorbar(  # a two-line label: one row of panels is too short for it on one line
        image,
        ax=axes,
        label="normalised singular value\n" + r"$\sigma_i / \sum \sigma$",
        shrink=0.8,
    )
    fig.suptitle("LM-head singular value distribution over training")
    style.save(fig, png, pdf)


def fig5_singular_entropy(metrics, style, png, pdf):
    fig, axes = style.figure()
    ax = axes[0, 0]
    per_model_over_steps(ax, metric(metrics, "singular_entropy"), style)
    log_steps(ax)
    ax.set_ylabel(r"singular entropy KL($\hat\sigma$ ‖ uniform)")
    ax.set_title("Singular entropy of the LM head over training")
    ax.legend(fontsize="small", ncol=2)
    style.save(fig, png, pdf)


def fig6_rank_heads(heads, style, language, png, pdf):
    fig, axes = style.figure(1, 2, width=style.s["width"] * 1.7)
    ax_loss, ax_acc = axes[0]
    for (backbone, step), g in heads.groupby(["backbone", "step"], sort=True):
        c = style.color(backbone)
        ranks = g[g["head"] == "rank"].sort_values("r")
        name = f"{backbone} @ {step}"
        for ax, col in ((ax_loss, "eval_loss"), (ax_acc, "eval_accuracy")):
            ax.plot(
                ranks.r,
                ranks[col],
                marker="o",
                ms=3.5,
                lw=1.4,
                color=c,
                label=f"{name}, rank-r head",
            )
            for kind, ls in (("full", "--"), ("original", ":")):
                ref = g[g["head"] == kind]
                if len(ref):
                    ax.axhline(
                        ref[col].iloc[0],
                        color=c,
                        ls=ls,
                        lw=1,
                        label=f"{name}, {kind} head"
                        if kind == "full"
                        else f"{name}, original head",
                    )
    if language is not None:
        floor_line(ax_loss, language["entropy_rate"])
        for ax in (ax_loss, ax_acc):
            rank_bound_line(ax, language["softmax_rank_bound"])  # R + 1: the bias adds one
    for ax in (ax_loss, ax_acc):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.set_xlabel("head rank r")
    ax_loss.set_ylabel("evaluation loss (nats / token)")
    ax_acc.set_ylabel("next-token accuracy")
    ax_loss.legend(fontsize="x-small")
    fig.suptitle("Rank-constrained heads on frozen backbones")
    style.save(fig, png, pdf)


def fig7_w_error(ngram_spectra, style, png, pdf, logits=None, bound=None):
    """W-error of every n-gram matrix; on the synthetic language also the reference: the
    W-error of its true logit matrix (``logits``: (d, w_error)), zero from d = R + 1."""
    fig, axes = style.figure()
    ax = axes[0, 0]
    if logits is not None:
        d, err = logits
        keep = d > 0
        ax.plot(
            d[keep],
            err[keep],
            color="k",
            lw=1.3,
            ls="--",
            label="true logits of the language (centred log-probabilities)",
        )
        rank_bound_line(ax, bound)
    groups = list(ngram_spectra.groupby(["corpus", "tokenizer", "n"], sort=True))
    cmap = plt.get_cmap("tab10")
    for i, ((corpus, tokenizer, _n), g) in enumerate(groups):
        g = g[g.d > 0].sort_values("d")
        first = g.iloc[0]
        ax.plot(
            g.d,
            g.w_error,
            lw=1.5,
            color=cmap(i % 10),
            label=f"{corpus} ({tokenizer}; C = {human(first.C)}, V = {first.V})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("rank d")
    ax.set_ylabel(r"W-error $\|W - W_d\|_F / \|W\|_F$")
    ax.set_ylim(0, 1.02)
    n = groups[0][0][2] if groups else 0
    ax.set_title(f"Best rank-d approximation of {n}-gram next-token matrices")
    ax.legend(fontsize="small")
    style.save(fig, png, pdf)


def fig8_loss_vs_w_error(heads, ngram_spectra, link, style, png, pdf):
    fig, axes = style.figure()
    ax = axes[0, 0]
    err = ngram_spectra[ngram_spectra.corpus == link].set_index("d").w_error
    for (backbone, step), g in heads.groupby(["backbone", "step"], sort=True):
        g = g[(g["head"] == "rank") & g.r.isin(err.index)].sort_values("r")
        x = err.loc[g.r].to_numpy()
        ax.plot(
            x,
            g.eval_loss,
            marker="o",
            ms=4,
            lw=1.3,
            color=style.color(backbone),
            label=f"{backbone} @ {step}",
        )
        for xi, yi, r in zip(x, g.eval_loss, g.r, strict=True):
            ax.annotate(
                f"r={r}",
                (xi, yi),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize="x-small",
                color="0.35",
            )
    ax.set_xlabel(f"W-error at d = r ({link})")
    ax.set_ylabel("rank-r head evaluation loss")
    ax.set_title("Rank-constrained head loss against the n-gram W-error")
    ax.legend(fontsize="small")
    style.save(fig, png, pdf)
