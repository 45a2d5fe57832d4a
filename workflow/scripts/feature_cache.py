"""Cache a frozen backbone's head inputs (Snakemake entry point)."""

from saturation import logs
from saturation.heads import feature_cache

progress = logs.to_file(snakemake.log[0])
feature_cache(
    snakemake.input.checkpoint,
    snakemake.input.train,
    snakemake.input.eval,
    snakemake.output.cache,
    snakemake.output.original,
    backbone=snakemake.wildcards.model,
    step=int(snakemake.wildcards.step),
    cache=snakemake.params.cache,
    allow_pickle=snakemake.params.allow_pickle,
    threads=snakemake.threads,
    hub=snakemake.params.hub,
)
