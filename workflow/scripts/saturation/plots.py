"""Figures of the study, one function per figure, sharing one style: models coloured by
size on one continuous colormap, log-scaled steps, PNG + PDF. Each figure function returns
the numbers it plots as a tidy frame (``plotted``), one row a plotted point or cell, its
columns' units in ``frame.attrs["units"]``; the figure rule writes it beside the figure."""

from __future__ import annotations

import zlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
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
        self.x, self.x_label = X_AXES[self.s.get("x_axis", "step")]  # training's x-axis
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
        """A model's colour by its size on the colormap; a rank-head backbone from outside
        the run's models (no size measured) one of tab10's, the same in every figure."""
        if model not in self.sizes:
            return plt.get_cmap("tab10")(zlib.crc32(model.encode()) % 10)
        # Stop short of the colormap's pale end so every line stays visible on white.
        x = 0.5 if self.norm is None else float(self.norm(self.sizes[model]))
        return self.cmap(0.9 * x)

    def backbone(self, backbone: str, step: int) -> str:
        """A rank-head backbone in a legend: a model of the run at its step; one from
        outside the run's models (its one revision) by its name."""
        return f"{backbone} @ {step}" if backbone in self.sizes else backbone

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
        fig.set_dpi(self.s["dpi"])
        readable_ticks(fig)
        fig.savefig(png, dpi=self.s["dpi"])
        fig.savefig(pdf, metadata={"CreationDate": None})  # no date: the same bytes each run
        plt.close(fig)


def log_tick(value: float, _pos=None) -> str:
    """A log axis's tick as a plain number, never 3 x 10^1: 30, 0.05, 2k, 2.5M where that is
    exact, else the whole number (a base-2 axis's 1,024)."""
    if value < 1000:
        return f"{value:.3g}"
    short = human(value)
    unit = {"k": 1e3, "M": 1e6, "B": 1e9}[short[-1]]
    return short if np.isclose(float(short[:-1]) * unit, value) else f"{value:,.0f}"


def log_minor_tick(value: float, _pos=None) -> str:
    """A minor tick of a log axis labelled at 2 and 5 times a power of ten only."""
    mantissa = value / 10 ** np.floor(np.log10(value) + 1e-9)
    return log_tick(value) if np.isclose(mantissa, 2) or np.isclose(mantissa, 5) else ""


def readable_ticks(fig) -> None:
    """Tick labels that never run into each other: log axes labelled with plain numbers;
    then on every axis a label that would overlap one already kept is left blank, major
    labels kept first, left to right (bottom to top)."""
    from matplotlib.ticker import FuncFormatter

    axes = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    for axis in axes:
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(log_tick))
            lo, hi = sorted(abs(v) for v in axis.get_view_interval())
            few_decades = lo > 0 and hi / lo < 1e3
            axis.set_minor_formatter(
                FuncFormatter(log_minor_tick if few_decades else (lambda *_: ""))
            )
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for axis in axes:
        horizontal = axis.axis_name == "x"
        kept = []  # (low, high) extents of the labels kept
        blanked = {"major": set(), "minor": set()}
        for kind, ticks in (("major", axis.get_major_ticks()), ("minor", axis.get_minor_ticks())):
            shown = [t for t in ticks if t.label1.get_visible() and t.label1.get_text()]
            shown.sort(key=lambda t: t.get_loc())
            for tick in shown:
                box = tick.label1.get_window_extent(renderer)
                span = (box.x0, box.x1) if horizontal else (box.y0, box.y1)
                if any(span[0] < hi + 2 and lo - 2 < span[1] for lo, hi in kept):
                    blanked[kind].add(tick.get_loc())
                else:
                    kept.append(span)
        for kind, locs in blanked.items():
            if locs:
                formatter = (
                    axis.get_major_formatter() if kind == "major" else axis.get_minor_formatter()
                )
                blank = FuncFormatter(
                    lambda v, pos, f=formatter, locs=locs: (
                        "" if any(np.isclose(v, x) for x in locs) else f(v, pos)
                    )
                )
                (axis.set_major_formatter if kind == "major" else axis.set_minor_formatter)(blank)


def plotted(frame: pd.DataFrame, units: dict[str, str]) -> pd.DataFrame:
    """The numbers a figure plots, with each column's unit or meaning."""
    frame = frame.reset_index(drop=True)
    missing = sorted(set(frame.columns) - set(units))
    if missing:
        raise ValueError(f"plotted columns without a unit: {missing}")
    frame.attrs["units"] = {c: units[c] for c in frame.columns}
    return frame


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


X_AXES = {"step": ("step", "training step"), "tokens": ("tokens_seen", "tokens seen")}


def log_steps(ax, style=None):
    """A log x-axis of training steps, or of tokens seen (``figures.x_axis: tokens``)."""
    ax.set_xscale("log")
    ax.set_xlabel(style.x_label if style is not None else "training step")


def runs_by_size(models: list[str]) -> dict[str, list[str]]:
    """Models grouped by size: ``pythia-160m`` with its seeds ``pythia-160m-seed{k}``."""
    import re

    from saturation.significance import SIZE_SEED

    groups: dict[str, list[str]] = {}
    for model in models:
        groups.setdefault(re.match(SIZE_SEED, model).group("size"), []).append(model)
    return groups


OVER_STEPS_UNITS = {
    "series": "the model, or a size trained with several seeds",
    "runs": "runs drawn (several: the band's runs)",
    "step": "training step",
    "tokens_seen": "tokens seen (the x-axis with figures.x_axis: tokens)",
    "value": "the plotted value (its unit: the figure's y-axis); the median of several runs",
    "low": "the band's lower edge: the runs' minimum (empty for one run)",
    "high": "the band's upper edge: the runs' maximum (empty for one run)",
}


def per_model_over_steps(
    ax, rows, style, labelled: bool = True, dashed: bool = False
) -> pd.DataFrame:
    """One line per model of a metric over training, against its steps or the tokens it
    had seen (``figures.x_axis``; step 0 has no place on a log axis); a size trained with
    several seeds as one band, the runs' range at each step they all have, around their
    median (``dashed``: a second metric beside the first, thin and dashed, without markers).
    Returns what it drew (``OVER_STEPS_UNITS``; tokens_seen where plotted)."""
    x = style.x
    index = ["step"] if x == "step" else ["step", x]
    drawn = []
    for size, models in runs_by_size(style.models()).items():
        color = style.color(models[0])
        g = rows[rows.model.isin(models) & (rows.step > 0)]
        if g.empty:  # nothing of this size to draw (e.g. every head a duplicate)
            continue
        wide = g.pivot_table(index=index, columns="model", values="value").dropna()
        at = wide.index.get_level_values(x)
        if wide.shape[1] == 1:
            median, low, high = wide.iloc[:, 0], np.nan, np.nan
            name = label(style, wide.columns[0])
        else:
            low, high, median = wide.min(axis=1), wide.max(axis=1), wide.median(axis=1)
            ax.fill_between(at, low, high, color=color, alpha=0.25, lw=0)
            name = f"{size} ({human(style.sizes[models[0]])}, {wide.shape[1]} seeds: median, range)"
        line = dict(ls="--", lw=1.0) if dashed else dict(marker="o", ms=2.5, lw=1.3)
        ax.plot(at, median, color=color, label=name if labelled else None, **line)
        frame = pd.DataFrame({"series": wide.columns[0] if wide.shape[1] == 1 else size,
                              "runs": wide.shape[1], "value": median.to_numpy(),
                              "low": low, "high": high}, index=wide.index)  # fmt: skip
        drawn.append(frame.reset_index())
    columns = ["series", "runs", *index, "value", "low", "high"]
    if not drawn:
        return pd.DataFrame(columns=columns)
    return pd.concat(drawn, ignore_index=True)[columns]


def over_steps_units(data: pd.DataFrame, **changes) -> dict:
    """``OVER_STEPS_UNITS`` for the columns a figure drew, with ``changes``."""
    units = {**OVER_STEPS_UNITS, **changes}
    return {c: units[c] for c in data.columns}


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
        data = per_model_over_steps(ax, rows, style)
        unit = "bits / byte"
    else:
        rows = metric(metrics, "loss")
        data = per_model_over_steps(ax, rows, style)
        floor_line(ax, floor)
        unit = "nats / token"
    ax.set_ylabel(f"cross-entropy ({unit})")
    data["best_of_saturating"] = [
        saturated.get(m) == s for m, s in zip(data.series, data.step, strict=True)
    ]
    for model, step in sorted(saturated.items()):
        at = rows[(rows.model == model) & (rows.step == step)]
        ax.plot(at[style.x], at.value, marker="*", ms=11, ls="none", color=style.color(model),
                markeredgecolor="black", markeredgewidth=0.6)  # fmt: skip
    if saturated:
        ax.plot([], [], marker="*", ms=9, ls="none", color="0.5", markeredgecolor="black",
                label="best checkpoint of a saturating model")  # fmt: skip
    log_steps(ax, style)
    ax.set_title("Evaluation loss over training")
    ax.legend(fontsize="small", loc="upper right")
    style.save(fig, png, pdf)
    units = over_steps_units(data, value=f"cross-entropy on the evaluation sample ({unit})",
                             best_of_saturating="the best checkpoint of a saturating model")  # fmt: skip
    return plotted(data, units)


def fig1b_scaling(saturation, fit, style, floor, png, pdf):
    """Left: best and final checkpoints against the law, each at its own T (the curve is the
    law at the final T; a dash marks each checkpoint's own prediction). Right: the relative
    gap loss / prediction - 1 by model, with its mean over the models below the fit.
    The models drawn: ``figures.fig1b_models`` (None: every model measured)."""
    models = style.s.get("fig1b_models")
    count = fit[fit.selected].parameters.iloc[0]
    fit = fit[fit.parameters == count]
    sat = saturation[saturation.parameters == count]
    if models is not None:
        unknown = sorted(set(models) - set(sat.model))
        if unknown:
            raise ValueError(f"figures.fig1b_models: {unknown} are not in the saturation table")
        sat = sat[sat.model.isin(models)]
    law = dict(zip(fit.parameter, fit.value, strict=True))
    reference = dict(zip(fit.parameter, fit.reference, strict=True)) if "reference" in fit else {}
    fitted = [p for p, f in zip(fit.parameter, fit.fitted, strict=True) if f]
    note = fit.note.dropna().iloc[0] if fit.note.notna().any() else None
    fig, axes = style.figure(1, 2, width=style.s["width"] * 1.8)
    ax, ax_gap = axes[0]
    drawn = [sat.assign(series="checkpoint", relative_gap_percent=100 * sat.relative_gap)]
    drawn += fig1b_law_panel(ax, sat, law, fitted, style, floor, count)
    ax.set_title(fig1b_title(law, reference, fitted, note), fontsize="small")
    fig1b_gap_panel(ax_gap, sat, law, style, count)
    if not fitted:  # no law, no gap to it: the panel says so
        ax_gap.cla()
        ax_gap.set_axis_off()
        ax_gap.text(0.5, 0.5, "No law was fitted:\nno gap to draw", ha="center", va="center",
                    transform=ax_gap.transAxes, color="0.4")  # fmt: skip
    style.save(fig, png, pdf)
    columns = ["series", "model", "role", "step", "n_params", "tokens_seen", "in_fit"]
    columns += ["loss", "extrapolated_loss", "relative_gap_percent"]
    data = pd.concat(drawn, ignore_index=True).reindex(columns=columns)
    n_params = f"parameters N ({count.replace('_', '-')})"
    return plotted(data, {**FIG1B_UNITS, "n_params": n_params})


FIG1B_UNITS = {
    "series": "a checkpoint, or a point of the law's curve",
    "model": "the model",
    "role": "best | final checkpoint",
    "step": "training step",
    "n_params": "parameters N",
    "tokens_seen": "training tokens T",
    "in_fit": "the checkpoint's model is in the fit",
    "loss": "cross-entropy on the report half (nats / token); the law's value on its curve",
    "extrapolated_loss": "the law at the checkpoint's own (N, T) (nats / token)",
    "relative_gap_percent": "loss / extrapolated_loss - 1 (%)",
}


def checkpoint_marker(r, style) -> tuple:
    """A best or final checkpoint's face and edge colours: filled for the final, ringed in
    black where its model is in the fit."""
    c = style.color(r.model)
    face = c if r.role == "final" else "none"
    edge = "k" if r.role == "final" and r.in_fit else c
    return c, face, edge


def fig1b_law_panel(ax, sat, law, fitted, style, floor, count) -> list[pd.DataFrame]:
    """Fig 1b's left panel: the law's curve at the final T (where one was fitted) and each
    best and final checkpoint against the law at its own T; returns the curve drawn."""
    final, best = sat[sat.role == "final"], sat[sat.role == "best"]
    drawn = []
    if fitted:
        t_final = float(final.tokens_seen.max())
        n = np.geomspace(sat.n_params.min() / 1.5, sat.n_params.max() * 1.5, 200)
        params = {k: law[k] for k in ("E", "A", "alpha", "B", "beta")}
        curve = scaling_law(n, t_final, **params)
        collapsed = law.get("collapsed", 0) > 0  # flagged by the fit: drawn as suspect
        ax.plot(n, curve, color="tab:red" if collapsed else "0.2", lw=1.2, ls="--" if collapsed else "-",
                label=("COLLAPSED " if collapsed else "") + f"law at the final T = {human(t_final)} tokens")  # fmt: skip
        drawn.append(pd.DataFrame({"series": "law at the final T", "n_params": n,
                                   "tokens_seen": t_final, "loss": curve}))  # fmt: skip
    for rows in (final, best):
        for r in rows.itertuples():
            c, face, edge = checkpoint_marker(r, style)
            ax.scatter(r.n_params, r.loss, facecolor=face, edgecolor=edge, s=36, zorder=3, lw=1.3)
            ax.scatter(r.n_params, r.extrapolated_loss, marker="_", color=c, s=90, zorder=3)
            ax.plot([r.n_params] * 2, [r.loss, r.extrapolated_loss], color=c, lw=0.8, zorder=2)
    ax.scatter([], [], color="0.5", s=36, label="final checkpoint")
    ax.scatter([], [], facecolor="none", edgecolor="0.5", s=36, label="best checkpoint")
    ax.scatter([], [], color="0.5", edgecolor="k", s=36, label="in the fit")
    ax.scatter([], [], marker="_", color="0.5", s=90, label="law at the checkpoint's own T")
    floor_line(ax, floor)
    ax.set_xscale("log")
    ax.set_xlabel(f"parameters N ({count.replace('_', '-')})")
    ax.set_ylabel("cross-entropy on the report half (nats / token)")
    ax.legend(fontsize="x-small")
    return drawn


def fig1b_title(law, reference, fitted, note) -> str:
    """The fitted parameters (beside the paper's), those held, the RMSE and the fit's note."""
    if not fitted:
        title = "Scaling-law fit skipped"
    else:
        title = "Scaling-law fit: " + ", ".join(fitted_value(p, law, reference) for p in fitted)
        held = [p for p in ("E", "A", "alpha", "B", "beta") if p not in fitted]
        title += "; held: " + ", ".join(f"{p} = {law[p]:.4g}" for p in held) if held else ""
        title += f"\nRMSE {law['rmse']:.3g} over {int(law['n_points'])} points"
    if note:  # wrapped to the panel: a long note must not run into the next panel's title
        import textwrap

        title += "\n" + textwrap.fill(note, 75)
    return title


def fig1b_gap_panel(ax_gap, sat, law, style, count) -> None:
    """Fig 1b's right panel: each checkpoint's relative gap to the law, the mean gaps of the
    models below the fit, the models named, the range below the fit shaded."""
    final, best = sat[sat.role == "final"], sat[sat.role == "best"]
    for rows in (final, best):
        for r in rows.itertuples():
            _, face, edge = checkpoint_marker(r, style)
            ax_gap.scatter(
                r.n_params, 100 * r.relative_gap, facecolor=face, edgecolor=edge, s=36, lw=1.3
            )
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


def fitted_value(parameter: str, law: dict, reference: dict) -> str:
    """A fitted parameter for a title, with the paper's value where the config gives one."""
    ref = reference.get(parameter)
    paper = f" (paper {ref:.4g})" if ref is not None and np.isfinite(ref) else ""
    return f"{parameter} = {law[parameter]:.4g}{paper}"


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


def anisotropy_by_depth(ax, aniso, models, color, style) -> pd.DataFrame:
    drawn = []
    for model in models:
        g = aniso[aniso.model == model].sort_values("layer")
        depth = g.layer / g.layer.max()
        step = int(g.step.iloc[0])  # each model's own final step, in its label
        ax.plot(depth, g.value, marker="o", ms=3, lw=1.3, color=color(model),
                label=f"{label(style, model)}, step {human(step)}")  # fmt: skip
        drawn.append(pd.DataFrame({"model": model, "step": g.step, "layer": g.layer,
                                   "relative_depth": depth, "anisotropy": g.value}))  # fmt: skip
    return pd.concat(drawn, ignore_index=True)


FIG2_UNITS = {
    "family": "the model's architecture (model_type)",
    "model": "the model",
    "step": "its final checkpoint's training step",
    "layer": "hidden state index (0 = embeddings; the last = after the final norm)",
    "relative_depth": "layer / the last layer",
    "anisotropy": "mean pairwise cosine similarity of the layer's hidden states",
}


def fig2_anisotropy_layers(metrics, style, png, pdf, families=None):
    """Anisotropy by relative depth at the final checkpoints; with several families (the
    paper's GPT-2, OPT, Pythia, Gemma), one panel a family, its models shaded by size."""
    aniso = final_rows(metric(metrics, "anisotropy"))
    xlabel = "relative depth (0 = embeddings, 1 = final norm, the head's input)"
    groups = family_groups(families, style.sizes) if families else []
    if len(groups) < 2:
        fig, axes = style.figure()
        ax = axes[0, 0]
        data = anisotropy_by_depth(ax, aniso, style.models(), style.color, style)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("anisotropy (mean pairwise cosine)")
        ax.set_title("Anisotropy across layers, each model's last checkpoint")
        ax.legend(fontsize="small", ncol=2)
        style.save(fig, png, pdf)
        family = (families or {}).get
        return plotted(data.assign(family=data.model.map(family)), FIG2_UNITS)
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
    drawn = []
    for i, (family, models) in enumerate(groups):
        ax = axes.flat[i]
        cmap = plt.get_cmap(FAMILY_COLORMAPS[i % len(FAMILY_COLORMAPS)])
        steps = max(len(models) - 1, 1)  # one model alone: a mid-dark shade
        shade = {
            m: 0.45 + 0.5 * j / steps if len(models) > 1 else 0.75 for j, m in enumerate(models)
        }
        rows = anisotropy_by_depth(ax, aniso, models, lambda m, c=cmap, s=shade: c(s[m]), style)
        drawn.append(rows.assign(family=family))
        ax.set_title(FAMILY_NAMES.get(family, family))
        ax.legend(fontsize="x-small", loc="best")
    for i in range(len(groups), nrows * ncols):  # an empty cell: ticks on the panel above
        axes.flat[i].set_visible(False)
        axes.flat[i - ncols].xaxis.set_tick_params(labelbottom=True)
    fig.supxlabel(xlabel, fontsize=style.s["font_size"])
    fig.supylabel("anisotropy (mean pairwise cosine)", fontsize=style.s["font_size"])
    fig.suptitle("Anisotropy across layers, each model's last checkpoint, by family")
    style.save(fig, png, pdf)
    return plotted(pd.concat(drawn, ignore_index=True), FIG2_UNITS)


def last_layer_anisotropy(metrics) -> pd.DataFrame:
    aniso = metric(metrics, "anisotropy")
    return aniso[aniso.layer == aniso.groupby("model").layer.transform("max")]


def fig3_loss(metrics, loss_metric: str) -> tuple[pd.DataFrame, str]:
    """Fig 3's loss rows (``figures.fig3_loss``: a metric of the metrics table, e.g.
    ``loss`` on the run's evaluation sample or ``wikitext/loss``) and its axis label."""
    rows = metric(metrics, loss_metric)
    if rows.empty:
        known = sorted(m for m in metrics.metric.unique() if "loss" in m or "perplexity" in m)
        raise ValueError(
            f"figures.fig3_loss: no metric {loss_metric!r} was measured; measured: {known}"
        )
    corpus, _, name = loss_metric.rpartition("/")
    text = {"loss": "cross-entropy (nats / token)", "bits_per_byte": "bits per byte"}
    text = text.get(name, name.replace("_", " "))
    return rows, f"{corpus}: {text}" if corpus else text


def fig3_anisotropy_training(metrics, style, floor, png, pdf):
    """The paper's Fig 3: one panel per model (a size's seeds in one panel), its loss over
    training (``figures.fig3_loss``), the curve coloured by the last layer's anisotropy at
    each checkpoint on one scale for every panel."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    loss_metric = style.s.get("fig3_loss", "loss")
    loss, ylabel = fig3_loss(metrics, loss_metric)
    aniso = last_layer_anisotropy(metrics)[["model", "step", "value"]]
    both = loss.merge(aniso, on=["model", "step"], suffixes=("", "_anisotropy"))
    x = style.x
    both = both[both.step > 0].rename(columns={"value_anisotropy": "anisotropy"})
    groups = runs_by_size(style.models())
    ncols = min(len(groups), 5)
    nrows = -(-len(groups) // ncols)
    fig, axes = style.figure(nrows, ncols, width=min(2.3 * ncols + 1, 13),
                             height=2.5 * nrows + 0.4, sharex=True,
                             constrained_layout=True)  # fmt: skip
    cmap = plt.get_cmap("plasma")
    norm = Normalize(vmin=both.anisotropy.min(), vmax=both.anisotropy.max())
    for ax, (size, models) in zip(axes.flat, groups.items(), strict=False):
        for model in models:
            g = both[both.model == model].sort_values("step")
            points = np.column_stack([g[x], g.value])
            segments = np.stack([points[:-1], points[1:]], axis=1)
            middle = (g.anisotropy.to_numpy()[:-1] + g.anisotropy.to_numpy()[1:]) / 2
            ax.add_collection(LineCollection(segments, colors=cmap(norm(middle)), lw=1.6))
            ax.scatter(g[x], g.value, c=g.anisotropy, cmap=cmap, norm=norm, s=7, zorder=3,
                       lw=0)  # fmt: skip
        ax.set_xscale("log")
        ax.autoscale_view()
        title = label(style, models[0]) if len(models) == 1 else f"{size} ({len(models)} seeds)"
        ax.set_title(title, fontsize="medium")
        if loss_metric == "loss":
            floor_line(ax, floor)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.supxlabel(style.x_label, fontsize=style.s["font_size"])
    fig.supylabel(ylabel, fontsize=style.s["font_size"])
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes,
                 label="last-layer anisotropy", shrink=0.9)  # fmt: skip
    fig.suptitle("Loss over training, coloured by last-layer anisotropy")
    style.save(fig, png, pdf)
    columns = ["model", "step"] + ([x] if x != "step" else []) + ["value", "anisotropy"]
    data = both[columns].rename(columns={"value": "loss"})
    return plotted(
        data,
        {
            "model": "the model",
            "step": "training step",
            "tokens_seen": "tokens seen (the x-axis)",
            "loss": f"{loss_metric}: {ylabel}",
            "anisotropy": "the last layer's anisotropy (mean pairwise cosine): the colour",
        },
    )


def fig3_loss_and_anisotropy(metrics, style, floor, png, pdf):
    """Loss and last-layer anisotropy over training, every model in two shared panels."""
    fig, axes = style.figure(2, 1, height=style.s["height"] * 1.6, sharex=True)
    loss = metric(metrics, "loss")
    top = per_model_over_steps(axes[0, 0], loss, style)
    bottom = per_model_over_steps(axes[1, 0], last_layer_anisotropy(metrics), style, False)
    floor_line(axes[0, 0], floor)
    axes[0, 0].set_ylabel("cross-entropy")
    axes[0, 0].set_title("Loss and last-layer anisotropy over training")
    axes[0, 0].legend(fontsize="small", loc="upper right")
    axes[1, 0].set_ylabel("last-layer anisotropy")
    log_steps(axes[1, 0], style)
    style.save(fig, png, pdf)
    data = pd.concat([top.assign(panel="loss"), bottom.assign(panel="anisotropy")])
    return plotted(data, over_steps_units(data, panel="loss (nats / token) | anisotropy"))


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
    # sigma_i / sigma_1 runs from 1 down: a log scale shows both the near-uniform phase (most
    # values near 1) and the spike (all but a few far below); its floor the data's 1st
    # percentile, so no colour is spent on a few near-null directions.
    largest = head_spectra.groupby(["model", "step"]).singular_value.transform("max")
    spectra = head_spectra.assign(sigma_over_sigma1=(head_spectra.singular_value / largest)
                                  .where(largest > 0, 0.0))  # fmt: skip
    positive = spectra.sigma_over_sigma1[spectra.sigma_over_sigma1 > 0]
    vmin = float(np.clip(np.quantile(positive, 0.01), 1e-6, 0.5)) if len(positive) else 1e-4
    vmax = 1.0
    image = None
    for ax, model in zip(axes.flat, models, strict=False):
        wide = spectra[spectra.model == model].pivot(
            index="index", columns="step", values="sigma_over_sigma1"
        )
        steps, grid = list(wide.columns), wide.fillna(0.0).to_numpy()
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
        label="singular value relative\nto the largest " + r"$\sigma_i / \sigma_1$",
        shrink=0.8,
    )
    fig.suptitle("LM-head singular values over training, normalised by the largest")
    style.save(fig, png, pdf)
    d = spectra.groupby(["model", "step"])["index"].transform("max") + 1
    drawn = spectra.assign(relative_rank=spectra["index"] / d)
    drawn = drawn[drawn.model.isin(models)].sort_values(["model", "step", "index"])
    return plotted(
        drawn[["model", "step", "index", "relative_rank", "sigma_over_sigma1"]],
        {
            "model": "the model",
            "step": "training step (a column of the panel)",
            "index": "i - 1: the singular value's place, largest first",
            "relative_rank": "(i - 1) / d: the panel's vertical axis",
            "sigma_over_sigma1": "sigma_i / sigma_1: the colour (log scale)",
        },
    )


def fig5_singular_entropy(metrics, style, png, pdf):
    fig, axes = style.figure()
    ax = axes[0, 0]
    data = per_model_over_steps(ax, metric(metrics, "singular_entropy"), style)
    log_steps(ax, style)
    ax.set_ylabel(r"singular entropy KL($\sigma / \Sigma\sigma$ ‖ uniform) (nats)")
    ax.set_title("Singular entropy of the LM head over training")
    ax.legend(fontsize="small", ncol=2)
    style.save(fig, png, pdf)
    return plotted(data, over_steps_units(data, value="KL(sigma / sum sigma || uniform), nats"))


def shown_heads(heads: pd.DataFrame) -> pd.DataFrame:
    """The heads the figures show: with a learning-rate grid, each (kind, rank)'s chosen
    rate (every grid point stays in the table and in Fig 9's data)."""
    return heads[heads["chosen"].fillna(True).astype(bool)]


def kind_style(kind: str, color, ms: float, lw: float) -> dict:
    """How a head kind is drawn: linear heads as filled circles, mixtures as hollow squares."""
    what = dict(marker="o" if kind == "linear" else "s", ms=ms, lw=lw, ls="-", color=color)
    if kind == "mixture":
        what["mfc"] = "white"
    return what


def kind_label(kind: str, components: int) -> str:
    return "rank-r head" if kind == "linear" else f"mixture of {components} rank-r softmaxes"


def fig6_rank_heads(heads, style, language, png, pdf):
    """The paper's Fig 6 (loss and accuracy against r), and the loss against each head's
    trainable parameters, where the mixture heads (when trained) meet the linear ones."""
    heads = shown_heads(heads)
    fig, axes = style.figure(1, 3, width=style.s["width"] * 2.4)
    ax_loss, ax_acc, ax_params = axes[0]
    for (backbone, step), g in heads.groupby(["backbone", "step"], sort=True):
        c = style.color(backbone)
        name = style.backbone(backbone, step)
        trained = g[g["head"] == "rank"]
        for (kind, components), k in trained.groupby(["kind", "components"], sort=True):
            k = k.sort_values("r")
            what = kind_style(kind, c, ms=3.5, lw=1.4)
            what["label"] = f"{name}, {kind_label(kind, components)}"
            for ax, col in ((ax_loss, "eval_loss"), (ax_acc, "eval_accuracy")):
                ax.plot(k.r, k[col], **what)
            ax_params.plot(k.trainable_params, k.eval_loss, **what)
        for kind, ls in (("full", "--"), ("original", ":")):
            ref = g[g["head"] == kind]
            if len(ref):
                label = f"{name}, {kind} head"
                for ax, col in ((ax_loss, "eval_loss"), (ax_acc, "eval_accuracy")):
                    ax.axhline(ref[col].iloc[0], color=c, ls=ls, lw=1, label=label)
                if kind == "full":
                    ax_params.plot(ref.trainable_params, ref.eval_loss, marker="*", ms=8,
                                   ls="none", color=c, label=label)  # fmt: skip
                else:
                    ax_params.axhline(ref.eval_loss.iloc[0], color=c, ls=ls, lw=1, label=label)
    if language is not None:
        for ax in (ax_loss, ax_params):
            floor_line(ax, language["entropy_rate"])
        for ax in (ax_loss, ax_acc):
            rank_bound_line(ax, language["softmax_rank_bound"])  # R + 1: the bias adds one
    for ax in (ax_loss, ax_acc):
        ax.set_xscale("log", base=2)  # labelled as every log axis is (readable_ticks)
        ax.set_xlabel("head rank r")
    ax_params.set_xscale("log")
    ax_params.set_xlabel("trainable parameters of the head")
    for ax in (ax_loss, ax_params):
        ax.set_ylabel("evaluation loss (nats / token)")
    ax_acc.set_ylabel("next-token accuracy")
    ax_params.legend(fontsize="x-small")  # the r panels carry R + 1's label at their top
    protocol = heads.protocol.dropna().unique()
    how = " (the paper's protocol, each rank at its chosen rate)" if "paper" in protocol else ""
    fig.suptitle("Rank-constrained heads on frozen backbones" + how)
    style.save(fig, png, pdf)
    columns = ["backbone", "step", "head", "kind", "components", "r", "trainable_params", "lr",
               "eval_loss", "eval_accuracy"]  # fmt: skip
    return plotted(
        heads[columns].sort_values(["backbone", "step", "head", "kind", "r"]),
        {
            "backbone": "the frozen model",
            "step": "its checkpoint's training step",
            "head": "rank (a rank-r head) | full (a trained full-rank head) | original",
            "kind": "linear (W = A B) | mixture (of `components` rank-r softmaxes)",
            "components": "softmaxes in the mixture (1: linear)",
            "r": "the head's rank r",
            "trainable_params": "the head's trainable parameters (the right panel's x)",
            "lr": "its peak learning rate (the chosen one, with a grid)",
            "eval_loss": "evaluation loss (nats / token)",
            "eval_accuracy": "next-token accuracy (fraction)",
        },
    )


def fig9_learning_rates(heads, style, png, pdf):
    """The paper's Fig 9: the peak learning rate chosen for each rank and backbone (a star:
    the full-rank control); right, how decisive each choice was: the selection loss of the
    runner-up rate above the chosen one's. The data beside it holds every grid point's
    selection loss."""
    grid = heads[heads["head"].isin(["rank", "full"]) & heads.select_loss.notna()].copy()
    if grid.empty:
        raise ValueError("Fig 9: no head was trained on a learning-rate grid (rank_heads.lr_grid)")
    fig, axes = style.figure(1, 2, width=style.s["width"] * 1.7)
    ax_lr, ax_gap = axes[0]

    def runner_up_gap(losses):
        finite = np.sort(losses[np.isfinite(losses)].to_numpy())
        return finite[1] - finite[0] if len(finite) > 1 else np.nan

    for (backbone, step, kind, components), g in grid.groupby(
        ["backbone", "step", "kind", "components"], sort=True
    ):
        what = kind_style(kind, style.color(backbone), ms=4, lw=1.3)
        what["label"] = style.backbone(backbone, step) + (
            "" if kind == "linear" else f", mixture of {components}"
        )
        for head, h in g.groupby("head"):
            chosen = h[h.chosen].sort_values("r")
            gaps = h.groupby("r").select_loss.apply(runner_up_gap)
            if head == "full":
                star = dict(marker="*", ms=9, ls="none", color=what["color"])
                ax_lr.plot(chosen.r, chosen.lr, **star)
                ax_gap.plot(gaps.index, gaps.to_numpy(), **star)
                continue
            ax_lr.plot(chosen.r, chosen.lr, **what)
            ax_gap.plot(gaps.index, gaps.to_numpy(), **(what | {"label": None}))
    lrs = np.sort(grid.lr.unique())
    for ax in (ax_lr, ax_gap):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("head rank r (star: the full-rank control)")
    ax_lr.set_yscale("log")
    ax_lr.set_yticks(lrs)
    ax_lr.set_yticks([], minor=True)
    ax_lr.set_yticklabels([f"{lr:g}" for lr in lrs])
    ax_lr.set_ylabel("chosen peak learning rate (ticks: the grid)")
    ax_gap.set_yscale("log")
    ax_gap.set_ylabel("runner-up's selection loss − chosen's (nats)")
    ax_lr.legend(fontsize="x-small")
    fig.suptitle("Peak learning rate chosen per rank on the held-out selection split")
    style.save(fig, png, pdf)
    columns = ["backbone", "step", "head", "kind", "components", "r", "lr", "select_loss",
               "chosen", "eval_loss"]  # fmt: skip
    return plotted(
        grid[columns].sort_values(["backbone", "step", "kind", "head", "r", "lr"]),
        {
            "backbone": "the frozen model",
            "step": "its checkpoint's training step",
            "head": "rank | full (the full-rank control, r = min(d, V))",
            "kind": "linear | mixture",
            "components": "softmaxes in the mixture (1: linear)",
            "r": "the head's rank r",
            "lr": "the grid point's peak learning rate",
            "select_loss": "loss on the selection split (nats / token), the choice's criterion",
            "chosen": "the rate of least selection loss at this (kind, r)",
            "eval_loss": "loss on the evaluation split (nats / token), what Fig 6 reports",
        },
    )


NEGLIGIBLE_W_ERROR = 0.05  # Fig 7: where W-error is read as negligible


def first_below(d, err, level: float):
    """The least d whose W-error is below ``level``, or None where the curve never is."""
    below = np.flatnonzero(np.asarray(err) < level)
    return int(np.asarray(d)[below[0]]) if len(below) else None


def fig7_w_error(ngram_spectra, style, png, pdf, logits=None, bound=None):
    """W-error of every n-gram matrix; on the synthetic language also the reference: the
    W-error of its true logit matrix (``logits``: (d, w_error)), zero from d = R + 1. A
    dotted line marks W-error 0.05, and each curve's legend says from which d it is below
    (the paper: "negligible only after 10,000-15,000" dimensions)."""
    fig, axes = style.figure()
    ax = axes[0, 0]
    drawn = []
    if logits is not None:
        d, err = logits
        keep = d > 0
        drawn.append(pd.DataFrame({"series": "true logits", "d": d[keep], "w_error": err[keep]}))
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
        drawn.append(pd.DataFrame({"series": corpus, "tokenizer": tokenizer, "C": first.C,
                                   "V": first.V, "d": g.d, "w_error": g.w_error}))  # fmt: skip
        small = first_below(g.d, g.w_error, NEGLIGIBLE_W_ERROR)
        reach = (f"< {NEGLIGIBLE_W_ERROR:g} from d = {small:,}" if small is not None
                 else f"≥ {NEGLIGIBLE_W_ERROR:g} up to d = {int(g.d.max()):,}")  # fmt: skip
        ax.plot(
            g.d,
            g.w_error,
            lw=1.5,
            color=cmap(i % 10),
            label=f"{corpus} ({tokenizer}; C = {human(first.C)}, V = {first.V}; {reach})",
        )
        if small is not None:
            ax.plot([small], [g.w_error[g.d == small].iloc[0]], "o", ms=4, color=cmap(i % 10))
    ax.axhline(NEGLIGIBLE_W_ERROR, color="0.5", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("rank d")
    ax.set_ylabel(r"W-error $\|W - W_d\|_F / \|W\|_F$")
    ax.set_ylim(0, 1.02)
    n = groups[0][0][2] if groups else 0
    ax.set_title(f"Best rank-d approximation of {n}-gram next-token matrices")
    # an opaque box: the 0.05 line runs under it
    ax.legend(fontsize="small", frameon=True, framealpha=1, edgecolor="none")
    style.save(fig, png, pdf)
    columns = ["series", "tokenizer", "C", "V", "d", "w_error"]
    return plotted(
        pd.concat(drawn, ignore_index=True).reindex(columns=columns),
        {
            "series": "the n-gram corpus, or the synthetic language's true logits",
            "tokenizer": "the corpus's tokenizer",
            "C": "contexts: the matrix's rows",
            "V": "vocabulary: the matrix's columns",
            "d": "rank d",
            "w_error": "||W - W_d||_F / ||W||_F of the best rank-d W_d",
        },
    )


PAPER_W_ERROR_THRESHOLD = 0.6  # Fig 8: the rank-d heads' loss rises past this W-error


def fig8_loss_vs_w_error(heads, backbone_spectra, ngram_spectra, link, style, png, pdf):
    """Left, the paper's Fig 8: each backbone's trained rank-r heads' final evaluation loss
    against the W-error at d = r of the backbone's own LM head (its singular values at the
    checkpoint the heads were trained on), the paper's threshold of ~0.6 marked. Right, the
    workflow's own link: the same losses against the W-error of the ``link`` n-gram matrix."""
    from saturation.ngrams import head_w_error

    panels = 2 if link is not None else 1
    fig, axes = style.figure(1, panels, width=style.s["width"] * (1.8 if panels == 2 else 1))
    ax = axes[0, 0]
    drawn = []
    heads = shown_heads(heads)
    for (backbone, step), g in heads.groupby(["backbone", "step"], sort=True):
        g = g[(g["head"] == "rank") & (g["kind"] == "linear")].sort_values("r")
        spectrum = backbone_spectra[
            (backbone_spectra.backbone == backbone) & (backbone_spectra.step == step)
        ]
        if spectrum.empty:
            raise ValueError(
                f"Fig 8: no head spectrum of {backbone} at step {step} in the backbones' "
                "spectra (its rank heads' original.json)"
            )
        sigma = spectrum.sort_values("index").singular_value.to_numpy()
        own = head_w_error(sigma)
        r = g.r.to_numpy()
        x = own[np.minimum(r, len(sigma))]
        drawn.append(pd.DataFrame({"backbone": backbone, "step": step, "r": r,
                                   "eval_loss": g.eval_loss, "head_w_error": x}))  # fmt: skip
        ax.plot(x, g.eval_loss, marker="o", ms=4, lw=1.3, color=style.color(backbone),
                label=style.backbone(backbone, step))  # fmt: skip
        annotate_ranks(ax, x, g.eval_loss, r)
    ax.axvline(PAPER_W_ERROR_THRESHOLD, color="0.5", lw=1, ls="--")
    ax.annotate(f"paper: loss rises past {PAPER_W_ERROR_THRESHOLD}",
                (PAPER_W_ERROR_THRESHOLD, 0.98), xycoords=("data", "axes fraction"),
                ha="right", va="top", rotation=90, fontsize="x-small", color="0.4")  # fmt: skip
    ax.set_xlabel("W-error of the backbone's own head at d = r")
    ax.set_ylabel("rank-r head evaluation loss (nats / token)")
    ax.set_title("Rank-r head loss against the backbone head's W-error", fontsize="medium")
    ax.legend(fontsize="small")
    data = pd.concat(drawn, ignore_index=True)
    if link is not None:
        err = ngram_spectra[ngram_spectra.corpus == link].set_index("d").w_error
        data["ngram_w_error"] = data.r.map(err)
        ax_n = axes[0, 1]
        for (backbone, step), g in data.dropna(subset=["ngram_w_error"]).groupby(
            ["backbone", "step"], sort=True
        ):
            ax_n.plot(g.ngram_w_error, g.eval_loss, marker="o", ms=4, lw=1.3,
                      color=style.color(backbone), label=style.backbone(backbone, step))  # fmt: skip
            annotate_ranks(ax_n, g.ngram_w_error, g.eval_loss, g.r)
        ax_n.set_xlabel(f"W-error of the {link} n-gram matrix at d = r")
        ax_n.set_title("… against an n-gram matrix's W-error (not in the paper)",
                       fontsize="medium")  # fmt: skip
    style.save(fig, png, pdf)
    units = {
        "backbone": "the frozen model",
        "step": "its checkpoint's training step",
        "r": "the head's rank r (= d)",
        "eval_loss": "the rank-r head's final evaluation loss (nats / token)",
        "head_w_error": "sqrt(sum_{i>r} sigma_i^2) / ||W||_F of the backbone's own head",
        "ngram_w_error": f"the W-error at d = r of the {link} n-gram matrix",
    }
    return plotted(data, units)


def annotate_ranks(ax, x, y, ranks):
    for xi, yi, r in zip(x, y, ranks, strict=True):
        ax.annotate(f"r={r}", (xi, yi), textcoords="offset points", xytext=(4, 3),
                    fontsize="x-small", color="0.35")  # fmt: skip
