"""Train rank-constrained heads, one or several ranks, from the feature cache (Snakemake
entry point)."""

from saturation import logs
from saturation.heads import rank_head

progress = logs.to_file(snakemake.log[0])
rank_head(
    snakemake.input.cache,
    snakemake.input.original,
    ranks=snakemake.params.ranks,
    backbone=snakemake.wildcards.model,
    step=int(snakemake.wildcards.step),
    setup=snakemake.params.setup,
    kinds=snakemake.params.kinds,
    device=snakemake.params.device,
    threads=snakemake.threads,
    out_path=snakemake.output[0],
    progress_file=progress,
)
