# What `snakemake` (rule all) and `snakemake prefetch` build, from every stage's definitions
# (rules/common.smk's and each stage's *_inputs.smk's), read when the Snakefile's two target
# rules call these functions, after every stage's file is included.


def all_targets():
    if SPECTRUM_ONLY:  # metrics.parts: [spectrum]
        tables = [TABLES[k] for k in ("metrics", "head_spectra", "checkpoints")]
        return tables + expand(
            "results/figures/{fig}.{ext}", fig=head_figures(), ext=("png", "pdf")
        )
    targets = list(TABLES.values()) + ["results/tables/scaling_points.parquet"]
    targets.append("results/tables/saturation_by_size.parquet")
    targets += expand(
        "results/figures/{fig}.{ext}", fig=RUN_FIGURES, ext=("png", "pdf")
    )
    if SOURCE == "minisuite":
        targets += expand("results/training/{model}.parquet", model=MODELS)
    if DOWNSTREAM["activate"]:
        targets += [
            "results/tables/downstream.parquet",
            "results/tables/table1.md",
            "results/tables/table1.tex",
            "results/tables/table1.html",
        ]
    return targets


def prefetch_targets():
    """What a machine with the network fetches before an offline run: every revision into
    the Hugging Face cache, the corpus samples, the hub n-gram corpora and the data sets of
    the harness's tasks; with metrics.parts [spectrum], each revision's head alone."""
    targets = []
    if SOURCE == "hub":
        targets += for_each_checkpoint("results/prefetch/{model}/step{step}.json")
    if SPECTRUM_ONLY:  # each revision's head, into the head store; nothing else is read
        return targets
    # Rank-head backbones from outside the run's models: their one revision.
    targets += [
        f"results/prefetch/{m}/step{BACKBONE_STEP}.json" for m in OUTSIDE_BACKBONES
    ]
    targets += expand("results/corpus/{split}.parquet", split=("train", "eval"))
    targets += sorted(
        {
            model_sample(m, s)
            for m in [*MODELS, *OUTSIDE_BACKBONES]
            for s in ("train", "eval")
        }
    )
    targets += [
        f"results/ngrams/{name}/tokens.parquet"
        for name, entry in NGRAM_ENTRIES.items()
        if entry["source"] != "workflow"
    ]
    targets += [
        path
        for m in MODELS
        for paths in model_eval_corpora(m).values()
        for path in paths
    ]
    if config["downstream"]["activate"] and not SYNTHETIC:
        targets.append("results/prefetch/tasks.json")  # the harness's tasks' data sets
    return targets
