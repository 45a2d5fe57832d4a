"""Tokenize the sample's documents with one more tokenizer of the run (Snakemake entry point)."""

from saturation import logs
from saturation.retokenize import tokenize_corpus

logs.to_file(snakemake.log[0])
tokenize_corpus(
    snakemake.input.reference,
    snakemake.params.tokenizer,
    snakemake.params.document_separator,
    snakemake.output.tokens,
    snakemake.output.meta,
)
