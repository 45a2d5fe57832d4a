"""Generate the synthetic language (Snakemake entry point)."""

from saturation import logs
from saturation.synthetic import synthetic_language

logs.to_file(snakemake.log[0])
synthetic_language(
    snakemake.params.synthetic,
    snakemake.params.seed,
    snakemake.output.language,
    snakemake.output.meta,
)
