"""Measure one checkpoint (Snakemake entry point)."""

from saturation import logs
from saturation.tables import measure_checkpoint

progress = logs.to_file(snakemake.log[0])
measure_checkpoint(
    model_name=snakemake.wildcards.model,
    step=int(snakemake.wildcards.step),
    tokens_per_step=snakemake.params.tokens_per_step,
    checkpoint_dir=snakemake.input.checkpoint,
    eval_path=snakemake.input.eval,
    allow_pickle=snakemake.params.allow_pickle,
    out_metrics=snakemake.output.metrics,
    out_spectrum=snakemake.output.spectrum,
    out_checkpoint=snakemake.output.checkpoint,
    threads=snakemake.threads,
    progress_file=progress,
    **snakemake.params.measure,
)
