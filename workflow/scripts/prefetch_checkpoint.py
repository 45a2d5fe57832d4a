"""Fill the Hugging Face cache with one hub revision (Snakemake entry point)."""

from saturation import logs
from saturation.hub import manifest_row, prefetch

logs.to_file(snakemake.log[0])
prefetch(
    manifest_row(snakemake.input.manifest, int(snakemake.wildcards.step)),
    allow_pickle=snakemake.params.allow_pickle,
    retry=snakemake.params.retry,
    out_path=snakemake.output[0],
)
