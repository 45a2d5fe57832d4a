# The scaling-fit stage's Python (the fit's inputs), included by rules/scaling.smk above its
# rules (Snakemake's linter keeps functions out of files with rules).
def scaling_fit_inputs(wildcards):
    inputs = {
        "checkpoint_metrics": TABLES["checkpoint_metrics"],
        "document_losses": TABLES["document_losses"],
    }
    if SYNTHETIC:
        inputs["language"] = LANGUAGE_META
    return inputs
