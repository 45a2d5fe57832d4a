"""Best/final checkpoints and the scaling-law fit (Snakemake entry point)."""

from saturation import logs
from saturation.scaling import run_saturation

logs.to_file(snakemake.log[0])
run_saturation(snakemake.input, snakemake.params.scaling, snakemake.output)
