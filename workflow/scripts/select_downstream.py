"""Pick each model's best and final checkpoints for evaluation (Snakemake entry point)."""

from saturation import logs
from saturation.selection import select_downstream

logs.to_file(snakemake.log[0])
select_downstream(
    snakemake.input.metrics, snakemake.params.models, snakemake.params.steps, snakemake.output[0]
)
