"""downstream.parquet and Table 1 (Snakemake entry point)."""

from saturation import logs
from saturation.table1 import aggregate_downstream

logs.to_file(snakemake.log[0])
aggregate_downstream(
    snakemake.input.selection,
    list(snakemake.input.evaluations),
    snakemake.params.models,
    raws=list(snakemake.input.raw),
    level=snakemake.params.level,
    missing=snakemake.params.missing,
    out_table=snakemake.output.table,
    out_md=snakemake.output.md,
    out_tex=snakemake.output.tex,
    out_html=snakemake.output.html,
)
