"""StoryCloze's distributed CSV files as the harness's task (Snakemake entry point)."""

from saturation import logs
from saturation.story_cloze import story_cloze_task

logs.to_file(snakemake.log[0])
story_cloze_task(snakemake.params.folder, snakemake.output[0])
