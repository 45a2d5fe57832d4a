"""Train one rank-constrained head from the feature cache (Snakemake entry point)."""

from saturation import logs
from saturation.heads import train_rank_head

progress = logs.to_file(snakemake.log[0])
train_rank_head(
    snakemake.input.cache,
    snakemake.input.original,
    rank=snakemake.wildcards.rank,
    backbone=snakemake.wildcards.model,
    step=int(snakemake.wildcards.step),
    setup=snakemake.params.setup,
    device=snakemake.params.device,
    threads=snakemake.threads,
    out_path=snakemake.output[0],
    progress_file=progress,
)
