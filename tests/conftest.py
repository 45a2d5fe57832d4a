import atexit
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from slurm.cluster import PROFILE_ARGS, submissions  # noqa: F401 (re-exported to tests)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


# pytest runs on two workers (pyproject.toml: -n 2). The tests that share a session's
# workflow run or server go to one worker together, so that it is made once: the tiny run's
# readers, the loopback hub's Pythia repos with the SLURM cluster, the families' run. Every
# other test is sent on its own, the largest groups first.
SHARED_RUN_GROUPS = {
    "test_module": "tiny-run",
    "test_reruns": "tiny-run",
    "test_workflow": "tiny-run",
    "test_hub": "paper-hub",
    "test_paper_path": "paper-hub",
    "test_harness_offline": "paper-hub",
    "test_ranged": "paper-hub",
    "test_family_suite": "families",
}


# Modules whose every test runs the workflow end to end or a hub-backed run of it: left out
# of the fast command (docs/development.md), each with pytest.mark.slow.
SLOW_MODULES = {
    "test_paper_path", "test_family_suite", "test_module", "test_harness_offline",
    "test_gpu_check", "test_workflow", "test_reruns", "test_eval_corpora",
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """``slow`` on the SLOW_MODULES' tests, ``slurm`` on those that use the cluster."""
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0].rpartition("/")[2].removesuffix(".py")
            return SHARED_RUN_GROUPS.get(module, nodeid)

    return SharedRunScheduling(config, log)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The hub clients read their endpoint and cache when first imported: point them at the
# loopback hub (started on first use) and at a cache of the test session's own.
HUB_PORT = _free_port()
HF_ENDPOINT = f"http://127.0.0.1:{HUB_PORT}"
HF_HOME = tempfile.mkdtemp(prefix="hf-home-")
atexit.register(shutil.rmtree, HF_HOME, ignore_errors=True)
os.environ.update(HF_ENDPOINT=HF_ENDPOINT, HF_HOME=HF_HOME, HF_HUB_DISABLE_TELEMETRY="1")
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_HUB_CACHE", None)


@pytest.fixture(scope="session")
def loopback_hub(tmp_path_factory):
    """The loopback hub with Pythia-shaped repos (tests/hub/repos.py), served on
    127.0.0.1 for the whole session. Yields (hub, facts)."""
    from hub import repos
    from hub.server import LoopbackHub

    hub = LoopbackHub(tmp_path_factory.mktemp("hub"))
    facts = repos.build(hub)
    hub.serve(HUB_PORT)
    yield hub, facts
    hub.shutdown()


@pytest.fixture
def hub(loopback_hub):
    """The loopback hub with an empty request log and no faults."""
    server, facts = loopback_hub
    server.clear()
    yield server, facts
    server.clear()


def load_yaml(path):
    return yaml.safe_load(Path(path).read_text())


def run_snakemake(workdir, *args, timeout=900, env=None):
    return subprocess.run(
        [SNAKEMAKE, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_python(code: str, *args, timeout=900, **env) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with the package importable, ``args`` as its argv and
    ``env`` over this process's environment (HF_HUB_OFFLINE and the like)."""
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts"), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_stats(stdout: str) -> dict[str, int]:
    """Job counts by rule from a run's or a dry run's "Job stats" table ({} if nothing to do)."""
    if "Nothing to be done" in stdout:
        return {}
    block = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", block, re.M) if m[0] != "total"}


def copy_workflow(workdir: Path, config: Path | None = None) -> Path:
    """A runnable copy of the workflow; ``config`` (a path) becomes its config/config.yaml."""
    for name in ("workflow", "config", "profiles"):
        shutil.copytree(ROOT / name, workdir / name)
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
    "fig3_loss_and_anisotropy",
    "fig4_head_spectrum",
    "fig5_singular_entropy",
    "fig6_rank_heads",
    "fig7_w_error",
    "fig8_loss_vs_w_error",
    "fig10_truncated_heads",
    "fig11_gradient_bottleneck",
    "fig12_head_frequency",
    "fig13_representation_rank",
]


# The shipped profile on the one-node test cluster, a few jobs at once, groups as wide as the
# node's 2 CPUs.
SLURM_ARGS = (*PROFILE_ARGS, "--jobs", "4", "--cores", "2", "--latency-wait", "30")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM cluster on this machine: tests/slurm/up.sh starts munged,
    slurmctld and slurmd (as root); they are stopped by their pids at the end. Where SLURM
    cannot be brought up the test fails with the reason, never skips."""
    state = tmp_path_factory.mktemp("slurm-state")
    up = subprocess.run(
        [str(ROOT / "tests/slurm/up.sh"), str(state)], capture_output=True, text=True
    )
    if up.returncode != 0:
        subprocess.run([str(ROOT / "tests/slurm/down.sh"), str(state)])
        pytest.fail(f"could not bring up SLURM: {up.stderr.strip()}")
    yield state
    subprocess.run([str(ROOT / "tests/slurm/down.sh"), str(state)])
