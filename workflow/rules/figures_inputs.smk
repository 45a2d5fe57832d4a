# The figures stage's Python (the figure registry (saturation/figures.py) and each figure's inputs), included by rules/figures.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
# The figures and the tables each draws from: saturation/figures.py's registry.
from saturation.figures import FIGURES, head_figures
from saturation.scaling import fit_plan

# Why Fig 1b is not drawn (no fit to draw, as the config tells), or None.
FIT_SKIPPED = fit_plan(config["scaling"])
if FIT_SKIPPED and not SPECTRUM_ONLY:
    logger.info(f"Fig 1b is not drawn: {FIT_SKIPPED} ({PATH['scaling_fit']})")
# The figures this run draws: those whose tables it makes.
RUN_FIGURES = {
    fig: spec
    for fig, spec in FIGURES.items()
    if all(n in TABLES for n in spec.needs if n != "language_matrix")
    and not (fig == "fig1b_scaling" and FIT_SKIPPED)
    and not (fig == "fig9_learning_rates" and not RANK_HEADS.get("lr_grid"))
    and (spec.part is None or spec.part in METRICS["parts"])
}


def figure_inputs(spec):
    needs = (*spec.needs, *spec.optional)
    inputs = {name: TABLES[name] for name in needs if name in TABLES}
    # The entropy floor is drawn where loss is shown.
    if SYNTHETIC and not SPECTRUM_ONLY:
        inputs["language"] = LANGUAGE_META
        if "language_matrix" in needs:  # Fig 7's reference: the language's true logits
            inputs["language_matrix"] = PATH["synthetic_language"]
    return inputs
