"""The study's figures as a registry: for each, the tables it draws from, its group in the
report, and the loader that reads them into the drawing function's arguments. The figure
rules are built from it (rules/figures.smk); the drawing functions, one per figure and
named as it is, are in ``saturation.plots``. This module imports nothing heavy: the workflow
reads it while building the DAG."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    needs: tuple[str, ...]  # the run's tables (rules/common.smk's TABLES) and extra inputs
    group: str  # the report's subcategory
    load: Callable[[dict, dict], dict]  # (inputs, shared) -> the drawing function's data
    optional: tuple[str, ...] = ()  # tables read where the run makes them
    part: str | None = None  # the metrics.parts it is drawn from, drawn where it is on
    module: str = "plots"  # the saturation module of its drawing function


def head_metrics(inputs, shared) -> dict:
    """The metrics of checkpoints with a head of their own (head duplicates left out)."""
    from saturation.aggregation import distinct_heads

    return {"metrics": distinct_heads(shared["metrics"])}


def measured(inputs, shared) -> dict:
    """The metrics of every checkpoint the analysis trusts."""
    return {"metrics": shared["metrics"]}


def with_floor(inputs, shared) -> dict:
    return {"metrics": shared["metrics"], "floor": shared["floor"]}


def loss_and_saturated(inputs, shared) -> dict:
    """The loss, and each saturating model's best step (the count Fig 1b shows)."""
    import pandas as pd

    sat = pd.read_parquet(inputs["saturation"])
    sat = sat[sat.selected & (sat.role == "best") & sat.saturated.fillna(False).astype(bool)]
    return {
        "metrics": shared["metrics"],
        "floor": shared["floor"],
        "saturated": dict(zip(sat.model, sat.step.astype(int), strict=True)),
    }


def scaling_tables(inputs, shared) -> dict:
    import pandas as pd

    return {
        "saturation": pd.read_parquet(inputs["saturation"]),
        "fit": pd.read_parquet(inputs["scaling_fit"]),
        "floor": shared["floor"],
    }


def layers_by_family(inputs, shared) -> dict:
    """Each model's family (model_type) where every model's is known, for Fig 2's panels."""
    import pandas as pd

    checkpoints = pd.read_parquet(inputs["checkpoints"])
    families = None
    if "model_type" in checkpoints:  # measured before the column: one family
        known = checkpoints.dropna(subset=["model_type"])
        models = list(shared["sizes"])
        families = known.groupby("model").model_type.first().reindex(models).to_dict()
        families = None if any(pd.isna(v) for v in families.values()) else families
    return {"metrics": shared["metrics"], "families": families}


def trusted_head_spectra(inputs, shared) -> dict:
    """The head spectra of the checkpoints the analysis uses (duplicates of the weights or of
    the head left out)."""
    import pandas as pd

    from saturation.aggregation import distinct_heads

    spectra = pd.read_parquet(inputs["head_spectra"])
    kept = distinct_heads(shared["metrics"])[["model", "step", "tokens_seen"]].drop_duplicates()
    return {"head_spectra": spectra.merge(kept, on=["model", "step"])}


def rank_heads(inputs, shared) -> dict:
    import pandas as pd

    return {"heads": pd.read_parquet(inputs["rank_heads"]), "language": shared["language"]}


def rank_head_grid(inputs, shared) -> dict:
    import pandas as pd

    return {"heads": pd.read_parquet(inputs["rank_heads"])}


def w_errors(inputs, shared) -> dict:
    """The n-gram spectra's W-errors; on the synthetic language also its true logits'."""
    import pandas as pd

    logits = None
    if inputs.get("language_matrix"):
        from saturation.synthetic import load_language, logit_w_error

        logits = logit_w_error(load_language(inputs["language_matrix"]))
    language = shared["language"]
    return {
        "ngram_spectra": pd.read_parquet(inputs["ngram_spectra"]),
        "logits": logits,
        "bound": language["softmax_rank_bound"] if language else None,
    }


def heads_and_w_errors(inputs, shared) -> dict:
    """The rank heads, their backbones' own head spectra and the linked n-gram spectrum."""
    import pandas as pd

    return {
        "heads": pd.read_parquet(inputs["rank_heads"]),
        "backbone_spectra": pd.read_parquet(inputs["backbone_spectra"]),
        "ngram_spectra": pd.read_parquet(inputs["ngram_spectra"]),
        "link": shared["link"],
    }


def truncated_and_trained(inputs, shared) -> dict:
    """The truncated heads of checkpoints with a head of their own, and the trained rank
    heads where the run trains them."""
    import pandas as pd

    from saturation.aggregation import distinct_heads

    kept = distinct_heads(shared["metrics"])[["model", "step", "tokens_seen"]].drop_duplicates()
    truncated = pd.read_parquet(inputs["truncated_heads"]).merge(kept, on=["model", "step"])
    heads = pd.read_parquet(inputs["rank_heads"]) if inputs.get("rank_heads") else None
    return {"truncated": truncated, "heads": heads}


LOSS, ANISOTROPY, SPECTRUM = "Loss and saturation", "Anisotropy", "LM-head spectrum"
BEYOND = "Beyond the paper"
RANK_HEADS, NGRAMS = "Rank-constrained heads", "n-gram spectra"
FIGURES = {
    "fig1a_loss": Figure(("checkpoint_metrics", "saturation"), LOSS, loss_and_saturated),
    "fig1b_scaling": Figure(
        ("checkpoint_metrics", "saturation", "scaling_fit"), LOSS, scaling_tables
    ),
    "fig2_anisotropy_layers": Figure(
        ("checkpoint_metrics", "checkpoints"), ANISOTROPY, layers_by_family
    ),
    "fig3_anisotropy_training": Figure(("checkpoint_metrics",), ANISOTROPY, with_floor),
    "fig3_loss_and_anisotropy": Figure(("checkpoint_metrics",), ANISOTROPY, with_floor),
    "fig4_head_spectrum": Figure(
        ("checkpoint_metrics", "head_spectra"), SPECTRUM, trusted_head_spectra
    ),
    "fig5_singular_entropy": Figure(("checkpoint_metrics",), SPECTRUM, head_metrics),
    "fig6_rank_heads": Figure(("checkpoint_metrics", "rank_heads"), RANK_HEADS, rank_heads),
    "fig7_w_error": Figure(
        ("checkpoint_metrics", "ngram_spectra", "language_matrix"), NGRAMS, w_errors
    ),
    "fig8_loss_vs_w_error": Figure(
        ("checkpoint_metrics", "rank_heads", "backbone_spectra", "ngram_spectra"),
        RANK_HEADS,
        heads_and_w_errors,
    ),
    # drawn where rank_heads.lr_grid is set (rules/figures_inputs.smk)
    "fig9_learning_rates": Figure(("checkpoint_metrics", "rank_heads"), RANK_HEADS, rank_head_grid),
    # beyond the paper (saturation.bottleneck), each drawn where its metrics.parts is on
    "fig10_truncated_heads": Figure(
        ("checkpoint_metrics", "truncated_heads"),
        BEYOND,
        truncated_and_trained,
        optional=("rank_heads",),
        part="truncation",
        module="plots_beyond",
    ),
    "fig11_gradient_bottleneck": Figure(
        ("checkpoint_metrics",), BEYOND, head_metrics, part="gradient", module="plots_beyond"
    ),
    "fig12_head_frequency": Figure(
        ("checkpoint_metrics",), BEYOND, head_metrics, part="frequency", module="plots_beyond"
    ),
    "fig13_representation_rank": Figure(
        ("checkpoint_metrics",),
        BEYOND,
        measured,
        part="representation",
        module="plots_beyond",
    ),
}


def head_figures() -> list[str]:
    """The figures of the LM head alone (a run with metrics.parts: [spectrum])."""
    return [name for name, f in FIGURES.items() if f.group == SPECTRUM]


def render(
    figure: str,
    inputs: dict,
    style: dict,
    png: str,
    pdf: str,
    csv: str,
    link: str | None = None,
) -> None:
    """Read the tables ``figure`` needs, draw it in the run's style and write the numbers it
    plots beside it (``csv``: tidy, its columns' units in its leading ``#`` lines;
    ``read_plotted`` reads it back) (Snakemake-facing)."""
    import pandas as pd

    from saturation import plots
    from saturation.aggregation import trusted_metrics
    from saturation.io import read_json

    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure}; the figures are {', '.join(FIGURES)}")
    metrics = trusted_metrics(pd.read_parquet(inputs["checkpoint_metrics"]))
    sizes = metrics.groupby("model").n_params.first().to_dict()
    language = read_json(inputs["language"]) if inputs.get("language") else None
    shared = {
        "metrics": metrics,
        "sizes": sizes,
        "language": language,
        "floor": language["entropy_rate"] if language else None,
        "link": link,
    }
    from saturation import plots_beyond

    spec = FIGURES[figure]
    data = spec.load(inputs, shared)
    st = plots.Style(style, sizes)
    with st.applied():
        module = {"plots": plots, "plots_beyond": plots_beyond}[spec.module]
        drawn = getattr(module, figure)(style=st, png=png, pdf=pdf, **data)
    write_plotted(drawn, figure, csv)


def write_plotted(frame, figure: str, path: str) -> None:
    """A figure's plotted numbers as CSV: a ``# column: unit`` line for each column, then
    the rows."""
    from pathlib import Path

    header = [f"# {figure}: the numbers the figure plots, one row a point or cell"]
    header += [f"# {c}: {u}" for c, u in frame.attrs["units"].items()]
    Path(path).write_text("\n".join(header) + "\n" + frame.to_csv(index=False))


def read_plotted(path: str):
    """A figure's CSV (``write_plotted``) as a frame, its units in ``attrs["units"]``."""
    import pandas as pd

    units = {}
    with open(path) as f:
        lines = [line for line in f if line.startswith("# ")]
    for line in lines[1:]:
        column, _, unit = line[2:].rstrip("\n").partition(": ")
        units[column] = unit
    frame = pd.read_csv(path, skiprows=len(lines))
    frame.attrs["units"] = units
    return frame
