"""Pick each model's best and final checkpoints for evaluation (Snakemake entry point)."""

from saturation import logs
from saturation.selection import run_selection

logs.to_file(snakemake.log[0])
run_selection(
    snakemake.input.metrics, snakemake.params.models, snakemake.params.steps, snakemake.output[0]
)
