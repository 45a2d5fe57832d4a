"""List one hub model's scheduled revisions, commits and weights sha256 (Snakemake entry
point); nothing is downloaded."""

from saturation import logs
from saturation.hub import revision_manifest

logs.to_file(snakemake.log[0])
revision_manifest(out_path=snakemake.output[0], **snakemake.params.manifest)
