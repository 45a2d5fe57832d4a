"""A named evaluation corpus's documents (Snakemake entry point)."""

from saturation import logs
from saturation.eval_corpora import eval_corpus

logs.to_file(snakemake.log[0])
eval_corpus(
    snakemake.params.entry,
    snakemake.params.include_path,
    snakemake.params.retry,
    snakemake.output.text,
    snakemake.output.meta,
)
