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


def copy_workflow(workdir: Path, config: Path | None = None) -> Path:
    """A runnable copy of the workflow; ``config`` (a path) becomes its config/config.yaml."""
    for name in ("Snakefile", "rules", "scripts", "envs", "config", "report", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    if config is not None:
        shutil.copy(config, workdir / "config" / "config.yaml")
    return workdir


TINY = ROOT / "tests" / "config" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A complete local run of the tiny configuration, shared by the tests that read it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"), TINY)
    result = run_snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def parquet_digests(workdir: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((workdir / "results").rglob("*.parquet"))
    }


def tiny_gpt_neox(hidden=16, layers=1, heads=2, vocab=20, context=16, seed=0):
    """A small randomly initialised GPT-NeoX causal LM (untied head), in eval mode."""
    import torch
    from transformers import GPTNeoXForCausalLM

    from saturation.training import MiniModel, gpt_neox_config

    torch.manual_seed(seed)
    spec = MiniModel("t", hidden, layers, heads, vocab, context)
    return GPTNeoXForCausalLM(gpt_neox_config(spec)).eval()


FIGURES = [
    "fig1a_loss",
    "fig1b_scaling",
    "fig2_anisotropy_layers",
    "fig3_anisotropy_training",
    "fig4_head_spectrum",
    "fig5_singular_entropy",
    "fig6_rank_heads",
    "fig7_w_error",
    "fig8_loss_vs_w_error",
]
