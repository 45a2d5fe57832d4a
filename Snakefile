from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/checkpoints.smk"
include: "rules/metrics.smk"
include: "rules/rank_heads.smk"
include: "rules/ngrams.smk"
include: "rules/downstream.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),


rule prefetch:
    # On a machine with the network: fill the Hugging Face cache with every revision and
    # sample the corpora, so that the rest can run with HF_HUB_OFFLINE=1 (compute nodes).
    input:
        prefetch_targets(),
