"""Score a backbone's own head on the evaluation split, Fig 6's reference line (Snakemake
entry point)."""

from saturation import logs
from saturation.streamed_heads import score_original_head

logs.to_file(snakemake.log[0])
score_original_head(
    snakemake.input.checkpoint,
    snakemake.input.eval,
    snakemake.output[0],
    backbone=snakemake.wildcards.model,
    step=int(snakemake.wildcards.step),
    stream=snakemake.params.stream,
    allow_pickle=snakemake.params.allow_pickle,
    threads=snakemake.threads,
    hub=snakemake.params.hub,
)
