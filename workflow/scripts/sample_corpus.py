"""Sample one split of the corpus to Parquet (Snakemake entry point)."""

from saturation import logs
from saturation.corpus import sample_split

logs.to_file(snakemake.log[0])
sample_split(
    snakemake.params.corpus,
    snakemake.input,
    snakemake.output.tokens,
    snakemake.output.meta,
)
