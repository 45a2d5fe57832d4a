"""Fill the datasets cache with the data of the harness's tasks (Snakemake entry point)."""

from saturation import logs
from saturation.downstream import prefetch_tasks

logs.to_file(snakemake.log[0])
prefetch_tasks(
    snakemake.params.tasks,
    snakemake.params.include_path,
    snakemake.params.retry,
    snakemake.output[0],
    missing=snakemake.params.missing,
)
