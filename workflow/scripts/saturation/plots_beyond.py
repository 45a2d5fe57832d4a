"""The figures beyond the paper (``saturation.bottleneck``'s measurements over training),
one drawing function per figure, named as it is; each returns the numbers it plots."""

from __future__ import annotations

import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm

from saturation.plots import (
    log_steps,
    metric,
    over_steps_units,
    per_model_over_steps,
    plotted,
    shown_heads,
)


def panel_grid(style, n: int, columns: int = 4, height=None):
    """``n`` panels in rows of at most ``columns``, the spare ones hidden."""
    cols = min(n, columns)
    rows = -(-n // cols)
    fig, axes = style.figure(
        rows,
        cols,
        width=style.s["width"] * 0.62 * cols + 0.8,
        height=(height or 3.2) * rows,
        layout="constrained",
    )
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def legend_below(fig, ax) -> None:
    """One legend of ``ax``'s models for the whole figure, below its panels."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5),
               fontsize="small")  # fmt: skip


def trained_gaps(heads: pd.DataFrame | None, truncated: pd.DataFrame) -> pd.DataFrame:
    """Each trained linear rank-r head's gap to its backbone's own head (the rank-head
    table's original row, on the rank heads' evaluation split) beside the truncated head's
    gap at d = r of the same checkpoint, where one was measured."""
    columns = ["model", "step", "d", "trained_gap", "truncated_gap", "w_error"]
    if heads is None or heads.empty:
        return pd.DataFrame(columns=columns)
    heads = shown_heads(heads)
    rows = []
    for (backbone, step), g in heads.groupby(["backbone", "step"]):
        original = g[g["head"] == "original"].eval_loss
        at = truncated[(truncated.model == backbone) & (truncated.step == step)].set_index("d")
        if original.empty or at.empty:
            continue
        for r in g[(g["head"] == "rank") & (g.kind == "linear")].itertuples():
            if r.r in at.index:
                rows.append({"model": backbone, "step": step, "d": r.r,
                             "trained_gap": r.eval_loss - original.item(),
                             "truncated_gap": at.gap[r.r], "w_error": at.w_error[r.r]})  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def fig10_truncated_heads(truncated, heads, style, png, pdf):
    """Theorem 5.3 measured: per model, the loss gap of the head truncated to rank d by its
    SVD against the head's W-error at d, one curve per checkpoint coloured by its step; the
    trained rank-d heads' gaps (where the run trains them) as stars. Last panel: the largest
    gap / T(d) over d of each checkpoint, the theorem's constant as observed, over training."""
    truncated = truncated[truncated.step > 0]
    models = [m for m in style.models() if m in set(truncated.model)]
    fig, axes = panel_grid(style, len(models) + 1)
    steps = truncated.step
    norm = LogNorm(vmin=steps.min(), vmax=max(steps.max(), steps.min() + 1))
    cmap = style.cmap
    trained = trained_gaps(heads, truncated)
    for ax, model in zip(axes, models, strict=False):
        own = truncated[truncated.model == model]
        for step, g in own.groupby("step"):
            g = g.sort_values("d")
            ax.plot(g.w_error, g.gap, lw=0.9, color=cmap(0.9 * norm(step)), alpha=0.85)
        mine = trained[trained.model == model]
        if len(mine):
            ax.plot(mine.w_error, mine.trained_gap, ls="none", marker="*", ms=9, color="k",
                    label="trained rank-d heads")  # fmt: skip
            ax.legend(fontsize="x-small")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_title(model, fontsize="medium")
        ax.set_xlabel("W-error of the head at d")
    for ax in axes[:: min(len(axes), 4)]:
        ax.set_ylabel("ΔL(d): truncated − full head (nats)")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[:-1]), label="training step",
                 shrink=0.8)  # fmt: skip
    ax = axes[-1]
    ratio = truncated.dropna(subset=["gap_over_tail"])
    constant = ratio.groupby(["model", "step", "tokens_seen"]).gap_over_tail.max().reset_index()
    drawn = per_model_over_steps(ax, constant.rename(columns={"gap_over_tail": "value"}), style)
    log_steps(ax, style)
    ax.set_ylabel("max over d of ΔL(d) / T(d)")
    ax.set_title("The bound's constant, observed", fontsize="medium")
    ax.legend(fontsize="x-small")
    fig.suptitle("The head truncated to rank d by its SVD (Theorem 5.3, measured)")
    style.save(fig, png, pdf)
    data = truncated[["model", "step", "d", "w_error", "gap", "tail_norm", "gap_over_tail"]]
    data = data.merge(trained[["model", "step", "d", "trained_gap"]], how="left")
    units = {
        "model": "the model",
        "step": "its checkpoint's training step",
        "d": "the rank the head is truncated to",
        "w_error": "sqrt(sum_{i>d} sigma_i^2) / ||W||_F",
        "gap": "the truncated head's evaluation loss minus the full head's (nats / token)",
        "tail_norm": "T(d) = sqrt(sum_{i>d} sigma_i^2)",
        "gap_over_tail": "gap / T(d) (empty at full rank); the last panel: its max over d",
        "trained_gap": "a trained rank-d head's loss minus the backbone's own head's (empty "
        "where none was trained)",
    }
    del drawn  # the last panel's points are the max of gap_over_tail per (model, step)
    return plotted(data.sort_values(["model", "step", "d"]), units)


def metrics_over_training(fig, axes, metrics, style, panels) -> pd.DataFrame:
    """Each panel's metrics over training, one line per model (its first metric solid, a
    second dashed), on log steps, with one legend below the figure; ``panels``: (metric
    names, y label, title) per axis. Returns the drawn rows, tidy, with a ``metric``
    column."""
    drawn = []
    for ax, (names, ylabel, title) in zip(axes, panels, strict=True):
        for i, name in enumerate(names):
            rows = metric(metrics, name)
            first = ax is axes[0] and i == 0
            line = per_model_over_steps(ax, rows, style, labelled=first, dashed=i > 0)
            drawn.append(line.assign(metric=name))
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize="medium")
        log_steps(ax, style)
    legend_below(fig, axes[0])
    return pd.concat(drawn, ignore_index=True)


NAMED = "the metric's name in checkpoint_metrics.parquet"


def fig11_gradient_bottleneck(metrics, style, png, pdf):
    """The head as a gradient bottleneck over training: the share of the logit gradient's
    squared norm in the head's column space (pooled, solid; per-token mean, dashed; chance
    rank / V, dotted), the share its best rank-r approximation keeps of one batch's gradient
    matrix, and the head's singular entropy beside them."""
    fig, axes = style.figure(1, 3, width=style.s["width"] * 2.4, layout="constrained")
    panels = [
        (
            ["gradient_share_pooled", "gradient_share_mean"],
            "‖P_W g‖² / ‖g‖²",
            "Gradient kept by the head's column space\n(pooled —, per token --, chance r/V ···)",
        ),
        (
            ["gradient_batch_share_rank_r"],
            "share of ‖G‖²_F in its top r singular values",
            "One batch's gradient matrix G (tokens × V)",
        ),
        (["singular_entropy"], "singular entropy (nats)", "The head's singular entropy (Fig 5)"),
    ]
    data = metrics_over_training(fig, axes[0], metrics, style, panels)
    chance = metric(metrics, "gradient_share_chance").groupby("model").value.first()
    for model, level in chance.items():
        axes[0, 0].axhline(level, color=style.color(model), ls=":", lw=1)
    style.save(fig, png, pdf)
    data["chance"] = data.series.map(chance)
    units = over_steps_units(
        data,
        value="the metric's value (a share, or nats)",
        metric=NAMED,
        chance="rank(W) / V of the model's head",
    )
    return plotted(data, units)


def fig12_head_frequency(metrics, style, png, pdf):
    """The head's dominant components against token frequency over training: |Spearman
    rho| of the top left singular vector's loadings (solid) and the second's (dashed) with
    log(1 + count) in the training sample; the top component's share of ||W||_F^2."""
    fig, axes = style.figure(1, 2, width=style.s["width"] * 1.7, layout="constrained")
    panels = [
        (
            ["frequency_rho_1", "frequency_rho_2"],
            "|Spearman ρ| with log(1 + token count)",
            "Top singular vectors against frequency\n(1st —, 2nd --)",
        ),
        (["top_component_share"], "σ₁² / ‖W‖²_F", "The top component's share of the head"),
    ]
    data = metrics_over_training(fig, axes[0], metrics, style, panels)
    style.save(fig, png, pdf)
    units = over_steps_units(data, value="|rho| or sigma_1^2 / ||W||_F^2", metric=NAMED)
    return plotted(data, units)


def fig13_representation_rank(metrics, style, png, pdf):
    """The head input's own spectrum over training: RankMe, its effective rank, and
    alpha-ReQ, the power-law decay of its covariance's eigenvalues."""
    fig, axes = style.figure(1, 2, width=style.s["width"] * 1.7, layout="constrained")
    panels = [
        (
            ["rankme"],
            "RankMe (effective dimensions)",
            "Effective rank of the head's inputs (RankMe)",
        ),
        (["alpha_req"], "α of λᵢ ∝ i^−α", "Covariance eigenvalue decay (α-ReQ)"),
    ]
    data = metrics_over_training(fig, axes[0], metrics, style, panels)
    axes[0, 0].set_yscale("log")
    style.save(fig, png, pdf)
    units = over_steps_units(data, value="RankMe (dimensions), or alpha", metric=NAMED)
    return plotted(data, units)
