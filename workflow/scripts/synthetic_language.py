"""Generate the synthetic language (Snakemake entry point)."""

from saturation import logs
from saturation.synthetic import make_language, synthetic_language

logs.to_file(snakemake.log[0])
settings, seed = snakemake.params.synthetic, snakemake.params.seed
synthetic_language(
    make_language(**settings, seed=seed),
    snakemake.output.language,
    snakemake.output.meta,
    seed=seed,
    **settings,
)
