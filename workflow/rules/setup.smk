# Before Snakemake reads config/config.yaml: this workflow's Python package on sys.path, and
# every config file of the run read strictly, so that a YAML syntax error or a key given
# twice is reported with its file and line.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# This workflow's own files, found from this file wherever the workflow is run from: its
# checkout, or another workflow that uses it as a `module` (snakedeploy writes one). A
# module read from a git host gets each file through Snakemake's source cache, and the
# `saturation` package from `pip install` of this repository (pyproject.toml).
RULES_DIR = Path(workflow.current_basedir.get_path_or_uri(secret_free=True))


def workflow_file(relative):
    """A file of this workflow, relative to rules/: in place when the workflow is on this
    disk, else Snakemake's cached copy of it."""
    if RULES_DIR.is_dir():
        return str((RULES_DIR / relative).resolve())
    return workflow.source_path(relative)


SCRIPTS = RULES_DIR.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
try:
    import saturation
except ModuleNotFoundError:
    raise WorkflowError(
        f"The workflow's Python package `saturation` is neither in {SCRIPTS / 'saturation'} "
        "nor installed: for a module read from a git host, `pip install` this repository "
        "(its pyproject.toml installs the package)."
    ) from None
PACKAGE = Path(saturation.__file__).parent

from saturation.config import ConfigError, read_config_files

try:
    read_config_files(
        [*workflow.overwrite_configfiles]
        or ([] if workflow.modifier.skip_configfile else ["config/config.yaml"])
    )
except ConfigError as exc:
    raise WorkflowError(f"Invalid configuration: {exc}") from None
