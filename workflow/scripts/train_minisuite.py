"""Train one mini-suite model and save its checkpoints (Snakemake entry point)."""

from saturation import logs
from saturation.training import train_minisuite

progress = logs.to_file(snakemake.log[0])
train_minisuite(
    model=snakemake.params.model,
    vocab=snakemake.params.vocab,
    setup=snakemake.params.setup,
    seed=snakemake.params.seed,
    steps=snakemake.params.steps,
    train_path=snakemake.input.train,
    checkpoint_dirs=snakemake.output.checkpoints,
    history_path=snakemake.output.history,
    threads=snakemake.threads,
    progress_file=progress,
)
