"""Best/final checkpoints and the scaling-law fit (Snakemake entry point)."""

from saturation import logs
from saturation.scaling import scaling_fit

logs.to_file(snakemake.log[0])
scaling_fit(snakemake.input, snakemake.params.scaling, snakemake.output, snakemake.params.seed)
