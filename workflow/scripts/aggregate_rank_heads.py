"""Gather the rank-head sweep into results/tables/rank_heads.parquet, and the backbones' own
heads' spectra into results/tables/backbone_spectra.parquet (Snakemake entry point)."""

from saturation import logs
from saturation.rank_table import aggregate_rank_heads

logs.to_file(snakemake.log[0])
aggregate_rank_heads(
    snakemake.input.heads,
    snakemake.input.originals,
    snakemake.output.heads,
    snakemake.output.spectra,
)
