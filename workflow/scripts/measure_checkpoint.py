"""Measure one checkpoint (Snakemake entry point)."""

from saturation import logs
from saturation.tables import measure_revision

progress = logs.to_file(snakemake.log[0])
measure_revision(
    checkpoint=snakemake.input.checkpoint,
    hub=snakemake.params.hub,
    model_name=snakemake.wildcards.model,
    step=int(snakemake.wildcards.step),
    tokens_seen=snakemake.params.tokens_seen,
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
