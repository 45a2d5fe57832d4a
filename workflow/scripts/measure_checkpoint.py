"""Measure one model's checkpoints, one or several steps (Snakemake entry point)."""

from saturation import logs
from saturation.tables import measure_revisions

progress = logs.to_file(snakemake.log[0])
measure_revisions(
    checkpoints=snakemake.params.job["checkpoints"],
    steps=snakemake.params.job["steps"],
    tokens_seen=snakemake.params.job["tokens_seen"],
    hub=snakemake.params.hub,
    model_name=snakemake.wildcards.model,
    eval_path=snakemake.input.eval,
    tokenizer=snakemake.params.tokenizer,
    allow_pickle=snakemake.params.allow_pickle,
    out_metrics=snakemake.output.metrics,
    out_spectrum=snakemake.output.spectrum,
    out_checkpoint=snakemake.output.checkpoint,
    threads=snakemake.threads,
    progress_file=progress,
    **snakemake.params.measure,
)
