"""Fill the Hugging Face cache with one hub revision, or (metrics.parts: [spectrum]) the head
store with its LM head read by range (Snakemake entry point)."""

from saturation import logs
from saturation.hub import manifest_row, prefetch
from saturation.ranged import prefetch_head

logs.to_file(snakemake.log[0])
row = manifest_row(snakemake.input.manifest, int(snakemake.wildcards.step))
if snakemake.params.heads:
    prefetch_head(
        row,
        snakemake.params.retry,
        snakemake.params.heads,
        snakemake.output[0],
        allow_pickle=snakemake.params.allow_pickle,
    )
else:
    prefetch(
        row,
        allow_pickle=snakemake.params.allow_pickle,
        retry=snakemake.params.retry,
        out_path=snakemake.output[0],
    )
