# What `snakemake` (rule all) and `snakemake prefetch` build, from every stage's definitions
# (rules/common.smk's and each stage's *_inputs.smk's), read when the Snakefile's two target
# rules call these functions, after every stage's file is included.


def figure_files(figures):
    return [
        PATH[f"figure_{ext}"].format(fig=f) for f in figures for ext in ("png", "pdf")
    ]


def all_targets():
    if SPECTRUM_ONLY:  # metrics.parts: [spectrum]
        tables = [
            TABLES[k] for k in ("checkpoint_metrics", "head_spectra", "checkpoints")
        ]
        return tables + figure_files(head_figures())
    targets = list(TABLES.values()) + figure_files(RUN_FIGURES)
    if SOURCE == "minisuite":
        targets += expand(PATH["training_history"], model=MODELS)
    if DOWNSTREAM["activate"]:
        targets += [
            PATH[t] for t in ("downstream", "table1_md", "table1_tex", "table1_html")
        ]
    return targets


def prefetch_targets():
    """What a machine with the network fetches before an offline run: every revision into
    the Hugging Face cache, the corpus samples, the hub n-gram corpora and the data sets of
    the harness's tasks; with metrics.parts [spectrum], each revision's head alone."""
    targets = []
    if SOURCE == "hub":
        targets += for_each_checkpoint(PATH["prefetched"])
    if SPECTRUM_ONLY:  # each revision's head, into the head store; nothing else is read
        return targets
    # Rank-head backbones from outside the run's models: their one revision.
    targets += [
        PATH["prefetched"].format(model=m, step=BACKBONE_STEP)
        for m in OUTSIDE_BACKBONES
    ]
    targets += expand(PATH["corpus"], split=("train", "eval"))
    targets += sorted(
        {
            model_sample(m, s)
            for m in [*MODELS, *OUTSIDE_BACKBONES]
            for s in ("train", "eval")
        }
    )
    targets += [
        PATH["ngram_corpus"].format(corpus=name)
        for name, entry in NGRAM_ENTRIES.items()
        if entry["source"] != "workflow"
    ]
    targets += [
        path
        for m in MODELS
        for paths in model_eval_corpora(m).values()
        for path in paths
    ]
    if DOWNSTREAM["activate"] and not SYNTHETIC:
        targets.append(PATH["prefetched_tasks"])  # the harness's tasks' data sets
    return targets
