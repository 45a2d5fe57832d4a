"""Count each token id of the training sample, for metrics.parts frequency (Snakemake entry
point)."""

from saturation import logs
from saturation.corpus import count_tokens

logs.to_file(snakemake.log[0])
count_tokens(snakemake.input[0], snakemake.output[0])
