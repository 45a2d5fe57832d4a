"""Draw one figure (Snakemake entry point)."""

from saturation import logs
from saturation.figures import render

logs.to_file(snakemake.log[0])
render(
    snakemake.params.figure,
    dict(snakemake.input),
    snakemake.params.style,
    snakemake.output.png,
    snakemake.output.pdf,
    snakemake.output.csv,
    link=snakemake.params.link,
)
