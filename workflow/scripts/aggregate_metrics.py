"""Aggregate per-checkpoint tables into results/tables (Snakemake entry point)."""

from saturation import logs
from saturation.aggregation import aggregate_metrics

logs.to_file(snakemake.log[0])
aggregate_metrics(
    snakemake.input.metrics,
    snakemake.input.spectra,
    snakemake.input.checkpoints,
    snakemake.output.metrics,
    snakemake.output.spectra,
    snakemake.output.checkpoints,
    trusted_steps=snakemake.params.trusted_steps,
    unreadable=snakemake.params.unreadable,
    documents_paths=snakemake.input.documents,
    out_documents=snakemake.output.documents,
    truncation_paths=snakemake.input.truncation,
    out_truncation=snakemake.output.truncation,
)
