# The metrics stage's Python (the checkpoints each measuring job reads and where from), included by rules/metrics.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
def measure_job(wildcards):
    """The (model, step) checkpoints one measuring job reads (its ``job`` wildcard names
    them)."""
    try:
        return MEASURE_JOBS[wildcards.job]
    except KeyError:
        raise WorkflowError(
            f"results/metrics/{wildcards.job} is not a measuring job of this run: with "
            f"metrics.checkpoints_per_job = {METRICS['checkpoints_per_job']}, its jobs are "
            + ", ".join(MEASURE_JOBS)
        ) from None


def measure_params(wildcards):
    """Each checkpoint a measuring job reads: its model and step, the tokens it was trained
    on, where it is read from (a folder, or the revision manifest), the eval sample tokenized
    the model's way and the model's tokenizer."""
    return [
        {
            "model": m,
            "step": s,
            "tokens_seen": tokens_seen(m, s),
            "checkpoint": checkpoint_source(m, s),
            "eval": model_sample(m, "eval"),
            "tokenizer": MODEL_TOKENIZER[m],
            "eval_corpora": model_eval_corpora(m),
            "counts": token_counts(m) if "frequency" in METRICS["parts"] else None,
        }
        for m, s in measure_job(wildcards)
    ]


def measure_inputs(wildcards):
    """What a measuring job reads: each checkpoint's folder or its model's revision manifest,
    and each model's eval sample."""
    read = measure_params(wildcards)
    inputs = {
        "checkpoints": list(dict.fromkeys(c["checkpoint"] for c in read)),
        "weights": [
            f for m, s in measure_job(wildcards) for f in checkpoint_files(m, s)
        ],
    }
    if not SPECTRUM_ONLY:  # the head alone reads no text
        inputs["eval"] = list(dict.fromkeys(c["eval"] for c in read))
        inputs["counts"] = list(dict.fromkeys(c["counts"] for c in read if c["counts"]))
        inputs["eval_corpora"] = list(
            dict.fromkeys(
                p for c in read for paths in c["eval_corpora"].values() for p in paths
            )
        )
    return inputs


def for_each_measure_job(pattern):
    """``pattern`` formatted for every measuring job of the run (``{job}``: its name)."""
    return [pattern.format(job=j) for j in MEASURE_JOBS]
