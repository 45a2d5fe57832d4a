"""Sample one split of the corpus to Parquet (Snakemake entry point)."""

from saturation import logs
from saturation.corpus import sample_corpus

logs.to_file(snakemake.log[0])
sample_corpus(
    snakemake.params.corpus,
    snakemake.input,
    snakemake.output.tokens,
    snakemake.output.meta,
    # The hub's retry settings are not a parameter of the sample: editing them re-runs nothing.
    retry=snakemake.config["checkpoints"]["retry"],
)
