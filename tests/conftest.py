import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def load_yaml(path):
    return yaml.safe_load(Path(path).read_text())


@pytest.fixture
def workflow_copy(tmp_path):
    """A copy of the workflow in a temporary directory, whose config/config.yaml a test writes.

    Returns a function (config dict) -> directory.
    """

    def make(config: dict) -> Path:
        for name in ("Snakefile", "rules", "scripts", "envs"):
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
        (tmp_path / "config").mkdir(exist_ok=True)
        shutil.copy(ROOT / "config" / "schema.yaml", tmp_path / "config" / "schema.yaml")
        (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        return tmp_path

    return make


def run_snakemake(workdir, *args, timeout=900, env=None):
    return subprocess.run(
        [SNAKEMAKE, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
