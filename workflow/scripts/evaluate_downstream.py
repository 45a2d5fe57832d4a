"""Evaluate one checkpoint with lm-evaluation-harness (Snakemake entry point)."""

from saturation import logs
from saturation.downstream import run_evaluation

logs.to_file(snakemake.log[0])
run_evaluation(
    model=snakemake.wildcards.model,
    step=int(snakemake.wildcards.step),
    out_table=snakemake.output.table,
    out_json=snakemake.output.raw,
    threads=snakemake.threads,
    checkpoint_dir=snakemake.input.checkpoint,
    tokenizer=snakemake.params.tokenizer,
    include_path=snakemake.params.include_path or snakemake.input.get("tasks"),
    hub=snakemake.params.hub,
    allow_pickle=snakemake.params.allow_pickle,
    seed=snakemake.params.seed,
    **snakemake.params.harness,
)
