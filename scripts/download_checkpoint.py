"""Download one hub revision (Snakemake entry point)."""

from saturation import logs
from saturation.checkpoints import download

logs.to_file(snakemake.log[0])
download(
    snakemake.params.repo_id,
    snakemake.params.revision,
    snakemake.output[0],
    allow_pickle=snakemake.params.allow_pickle,
)
