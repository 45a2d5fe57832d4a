"""Measure one or several checkpoints, of one model or several (Snakemake entry point)."""

from saturation import logs
from saturation.measuring import measure_revisions

progress = logs.to_file(snakemake.log[0])
measure_revisions(
    snakemake.params.checkpoints,
    hub=snakemake.params.hub,
    allow_pickle=snakemake.params.allow_pickle,
    out_metrics=snakemake.output.metrics,
    out_spectrum=snakemake.output.spectrum,
    out_checkpoint=snakemake.output.checkpoint,
    out_documents=snakemake.output.documents,
    out_truncation=snakemake.output.truncation,
    threads=snakemake.threads,
    mem_mb=snakemake.resources.mem_mb,
    progress_file=progress,
    **snakemake.params.measure,
)
