"""Evaluate selected checkpoints, one or several, of one model or several, with
lm-evaluation-harness (Snakemake entry point)."""

from saturation import logs
from saturation.downstream import evaluate_downstream

logs.to_file(snakemake.log[0])
evaluate_downstream(
    snakemake.params.evaluations,
    out_table=snakemake.output.table,
    out_json=snakemake.output.raw,
    threads=snakemake.threads,
    include_path=snakemake.params.include_path or snakemake.input.get("tasks"),
    hub=snakemake.params.hub,
    allow_pickle=snakemake.params.allow_pickle,
    seed=snakemake.params.seed,
    **snakemake.params.harness,
)
