"""Build one corpus's n-gram next-token matrix and its spectrum (Snakemake entry point)."""

from saturation import logs
from saturation.io import read_json
from saturation.ngrams import ngram_spectrum

logs.to_file(snakemake.log[0])
ngram_spectrum(
    snakemake.input.tokens,
    corpus=snakemake.wildcards.corpus,
    tokenizer=snakemake.params.tokenizer,
    vocab_size=read_json(snakemake.input.meta)["vocab_size"],
    out_path=snakemake.output[0],
    **snakemake.params.spectrum,
)
