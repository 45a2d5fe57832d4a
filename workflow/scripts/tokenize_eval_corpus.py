"""A named evaluation corpus encoded with one tokenizer (Snakemake entry point)."""

from saturation import logs
from saturation.eval_corpora import tokenize_eval_corpus

logs.to_file(snakemake.log[0])
tokenize_eval_corpus(
    snakemake.input.text, snakemake.params.tokenizer, snakemake.output.tokens, snakemake.output.meta
)
