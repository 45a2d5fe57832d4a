# The figures stage's Python (the figure registry (saturation/figures.py) and each figure's inputs), included by rules/figures.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
# The figures and the tables each draws from: saturation/figures.py's registry.
from saturation.figures import FIGURES, head_figures


def figure_inputs(needs):
    inputs = {name: TABLES[name] for name in needs if name in TABLES}
    # The entropy floor is drawn where loss is shown.
    if SYNTHETIC and not SPECTRUM_ONLY:
        inputs["language"] = LANGUAGE_META
        if "language_matrix" in needs:  # Fig 7's reference: the language's true logits
            inputs["language_matrix"] = "results/corpus/synthetic_language.npz"
    return inputs
