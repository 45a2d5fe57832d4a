"""Aggregate per-checkpoint tables into results/tables (Snakemake entry point)."""

from saturation import logs
from saturation.aggregation import aggregate_metrics

logs.to_file(snakemake.log[0])
aggregate_metrics(
    dict(snakemake.input),
    dict(snakemake.output),
    trusted_steps=snakemake.params.trusted_steps,
    unreadable=snakemake.params.unreadable,
)
