"""Reproduce and extend Godey et al. (2024), "Why do small language models underperform?".

The science of the workflow, organised by concept; the scripts next to this package are thin
entry points that Snakemake runs.
"""
