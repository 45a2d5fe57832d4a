"""Build one corpus's n-gram next-token matrix and its spectrum (Snakemake entry point)."""

import torch

from saturation import logs
from saturation.io import read_json
from saturation.ngrams import ngram_spectrum

logs.to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the block Krylov solver's dense BLAS
ngram_spectrum(
    snakemake.input.tokens,
    corpus=snakemake.wildcards.corpus,
    tokenizer=snakemake.params.tokenizer,
    vocab_size=read_json(snakemake.input.meta)["vocab_size"],
    out_path=snakemake.output[0],
    mem_mb=snakemake.resources.mem_mb,
    **snakemake.params.spectrum,
)
