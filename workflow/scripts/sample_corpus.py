"""Sample one split of the corpus to Parquet (Snakemake entry point)."""

from saturation import logs
from saturation.corpus import sample_split
from saturation.suites import hub_retry

logs.to_file(snakemake.log[0])
sample_split(
    snakemake.params.corpus,
    snakemake.input,
    snakemake.output.tokens,
    snakemake.output.meta,
    # The hub's retry settings are not a parameter of the sample: editing them re-runs nothing.
    retry=hub_retry(snakemake.config["checkpoints"].get("hub")),
)
