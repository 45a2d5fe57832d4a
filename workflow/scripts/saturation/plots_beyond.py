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


def fig11_gradient_bottleneck(metrics, style, png, pdf):
    """The head as a gradient bottleneck over training: the share of the logit gradient's
    squared norm in the head's column space (pooled, solid; per-token mean, dashed; chance
    rank / V, dotted), the share its best rank-r approximation keeps of one batch's gradient
    matrix, and the head's singular entropy beside them."""
    fig, axes = style.figure(1, 3, width=style.s["width"] * 2.4, layout="constrained")
    ax_share, ax_batch, ax_entropy = axes[0]
    pooled = per_model_over_steps(ax_share, metric(metrics, "gradient_share_pooled"), style)
    mean = per_model_over_steps(ax_share, metric(metrics, "gradient_share_mean"), style,
                                labelled=False, dashed=True)  # fmt: skip
    chance = metric(metrics, "gradient_share_chance").groupby("model").value.first()
    for model, level in chance.items():
        ax_share.axhline(level, color=style.color(model), ls=":", lw=1)
    ax_share.set_ylabel("‖P_W g‖² / ‖g‖²")
    ax_share.set_title("Gradient kept by the head's column space\n(pooled —, per token --, "
                       "chance r/V ···)", fontsize="medium")  # fmt: skip
    batch = per_model_over_steps(ax_batch, metric(metrics, "gradient_batch_share_rank_r"), style,
                                 labelled=False)  # fmt: skip
    ax_batch.set_ylabel("share of ‖G‖²_F in its top r singular values")
    ax_batch.set_title("One batch's gradient matrix G (tokens × V)", fontsize="medium")
    entropy = per_model_over_steps(ax_entropy, metric(metrics, "singular_entropy"), style,
                                   labelled=False)  # fmt: skip
    ax_entropy.set_ylabel("singular entropy (nats)")
    ax_entropy.set_title("The head's singular entropy (Fig 5)", fontsize="medium")
    for ax in axes[0]:
        log_steps(ax, style)
    legend_below(fig, ax_share)
    style.save(fig, png, pdf)
    data = pd.concat(
        [
            d.assign(metric=name)
            for name, d in (
                ("gradient_share_pooled", pooled),
                ("gradient_share_mean", mean),
                ("gradient_batch_share_rank_r", batch),
                ("singular_entropy", entropy),
            )
        ],  # fmt: skip
        ignore_index=True,
    )
    data["chance"] = data.series.map(chance)
    units = over_steps_units(
        data,
        value="the metric's value (a share, or nats)",
        metric="the metric's name in checkpoint_metrics.parquet",
        chance="rank(W) / V of the model's head",
    )
    return plotted(data, units)


def fig12_head_frequency(metrics, style, png, pdf):
    """The head's dominant components against token frequency over training: |Spearman
    rho| of the top left singular vector's loadings (solid) and the second's (dashed) with
    log(1 + count) in the training sample; the top component's share of ||W||_F^2."""
    fig, axes = style.figure(1, 2, width=style.s["width"] * 1.7, layout="constrained")
    ax_rho, ax_share = axes[0]
    first = per_model_over_steps(ax_rho, metric(metrics, "frequency_rho_1"), style)
    second = per_model_over_steps(ax_rho, metric(metrics, "frequency_rho_2"), style,
                                  labelled=False, dashed=True)  # fmt: skip
    ax_rho.set_ylabel("|Spearman ρ| with log(1 + token count)")
    ax_rho.set_title("Top singular vectors against frequency\n(1st —, 2nd --)",
                     fontsize="medium")  # fmt: skip
    share = per_model_over_steps(ax_share, metric(metrics, "top_component_share"), style,
                                 labelled=False)  # fmt: skip
    ax_share.set_ylabel("σ₁² / ‖W‖²_F")
    ax_share.set_title("The top component's share of the head", fontsize="medium")
    for ax in axes[0]:
        log_steps(ax, style)
    legend_below(fig, ax_rho)
    style.save(fig, png, pdf)
    data = pd.concat(
        [
            first.assign(metric="frequency_rho_1"),
            second.assign(metric="frequency_rho_2"),
            share.assign(metric="top_component_share"),
        ],  # fmt: skip
        ignore_index=True,
    )
    units = over_steps_units(
        data,
        value="|rho| or sigma_1^2 / ||W||_F^2",
        metric="the metric's name in checkpoint_metrics.parquet",
    )
    return plotted(data, units)


def fig13_representation_rank(metrics, style, png, pdf):
    """The head input's own spectrum over training: RankMe, its effective rank, and
    alpha-ReQ, the power-law decay of its covariance's eigenvalues."""
    fig, axes = style.figure(1, 2, width=style.s["width"] * 1.7, layout="constrained")
    ax_rank, ax_alpha = axes[0]
    ranked = per_model_over_steps(ax_rank, metric(metrics, "rankme"), style)
    ax_rank.set_yscale("log")
    ax_rank.set_ylabel("RankMe (effective dimensions)")
    ax_rank.set_title("Effective rank of the head's inputs (RankMe)", fontsize="medium")
    alpha = per_model_over_steps(ax_alpha, metric(metrics, "alpha_req"), style, labelled=False)
    ax_alpha.set_ylabel("α of λᵢ ∝ i^−α")
    ax_alpha.set_title("Covariance eigenvalue decay (α-ReQ)", fontsize="medium")
    for ax in axes[0]:
        log_steps(ax, style)
    legend_below(fig, ax_rank)
    style.save(fig, png, pdf)
    data = pd.concat(
        [ranked.assign(metric="rankme"), alpha.assign(metric="alpha_req")], ignore_index=True
    )
    units = over_steps_units(
        data, value="RankMe (dimensions), or alpha", metric="rankme or alpha_req"
    )
    return plotted(data, units)
