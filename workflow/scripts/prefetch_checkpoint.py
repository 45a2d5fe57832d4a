"""Fill the Hugging Face cache with one hub revision, or (metrics.parts: [spectrum]) the head
store with its LM head read by range (Snakemake entry point)."""

from saturation import logs
from saturation.hub import prefetch_checkpoint

logs.to_file(snakemake.log[0])
prefetch_checkpoint(
    snakemake.input.manifest,
    int(snakemake.wildcards.step),
    allow_pickle=snakemake.params.allow_pickle,
    retry=snakemake.params.retry,
    heads=snakemake.params.heads,
    out_path=snakemake.output[0],
)
