"""Train a backbone's rank-constrained heads on its stream, as the paper's Appendix B.1 does
(Snakemake entry point)."""

from saturation import logs
from saturation.streamed_heads import stream_rank_heads

progress = logs.to_file(snakemake.log[0])
stream_rank_heads(
    snakemake.input.checkpoint,
    snakemake.input.train,
    snakemake.input.eval,
    snakemake.output[0],
    backbone=snakemake.wildcards.model,
    step=int(snakemake.wildcards.step),
    ranks=snakemake.params.ranks,
    kinds=snakemake.params.kinds,
    setup=snakemake.params.setup,
    stream=snakemake.params.stream,
    allow_pickle=snakemake.params.allow_pickle,
    threads=snakemake.threads,
    hub=snakemake.params.hub,
    progress_file=progress,
)
