"""Write the local lm-eval tasks and tokenizer of the synthetic language (Snakemake entry point)."""

from saturation import logs
from saturation.tasks import downstream_tasks

logs.to_file(snakemake.log[0])
downstream_tasks(snakemake.input.eval, out_dir=snakemake.output[0], **snakemake.params.tasks)
