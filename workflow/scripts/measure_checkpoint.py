"""Measure one or several checkpoints, of one model or several (Snakemake entry point)."""

from saturation import logs
from saturation.measuring import measure_checkpoint

progress = logs.to_file(snakemake.log[0])
measure_checkpoint(
    snakemake.params.checkpoints,
    hub=snakemake.params.hub,
    outputs=dict(snakemake.output),
    allow_pickle=snakemake.params.allow_pickle,
    threads=snakemake.threads,
    mem_mb=snakemake.resources.mem_mb,
    progress_file=progress,
    **snakemake.params.measure,
)
