"""Gather every corpus's spectrum into results/tables (Snakemake entry point)."""

from saturation import logs
from saturation.ngrams import aggregate_ngrams

logs.to_file(snakemake.log[0])
aggregate_ngrams(list(snakemake.input), snakemake.output[0])
