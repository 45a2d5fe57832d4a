"""Config validation: both shipped configs pass; every class of invalid config stops the
workflow before any job runs, with one message naming the key and no traceback."""

import copy

import pytest
import yaml

from conftest import ROOT, copy_workflow, load_yaml, run_snakemake
from saturation.config import ConfigError, check_schema, check_semantics

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = load_yaml(ROOT / "config" / "config.yaml")


def merged(base, overlay):
    """Snakemake's --configfile semantics: nested dicts merge, other values replace."""
    out = copy.deepcopy(base)
    for k, v in overlay.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("name", ["config.yaml", "pythia.yaml", "families.yaml"])
def test_shipped_configs_validate(name):
    config = merged(DEFAULT, load_yaml(ROOT / "config" / name))
    check_schema(config, SCHEMA)


def test_tiny_test_config_validates():
    check_schema(load_yaml(ROOT / "tests" / "config" / "tiny.yaml"), SCHEMA)


def without(config, *path):
    config = copy.deepcopy(config)
    node = config
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return config


def with_value(config, value, *path):
    config = copy.deepcopy(config)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


INVALID = {
    "missing key": (without(DEFAULT, "corpus", "eval_tokens"), "corpus.eval_tokens"),
    "wrong type": (with_value(DEFAULT, "many", "corpus", "eval_tokens"), "corpus.eval_tokens"),
    "negative size": (
        with_value(DEFAULT, -3, "corpus", "synthetic", "rank"),
        "corpus.synthetic.rank",
    ),
    "zero size": (
        with_value(DEFAULT, 0, "checkpoints", "minisuite", "models", 0, "hidden_size"),
        "checkpoints.minisuite.models[0].hidden_size",
    ),
    "empty model list": (
        with_value(DEFAULT, [], "checkpoints", "minisuite", "models"),
        "checkpoints.minisuite.models",
    ),
    "unknown source kind": (with_value(DEFAULT, "wikipedia", "corpus", "source"), "corpus.source"),
    "misspelled key": (
        with_value(
            without(DEFAULT, "corpus", "synthetic", "rank"), 32, "corpus", "synthetic", "rnak"
        ),
        "corpus.synthetic.rnak",
    ),
    "rank above vocabulary": (
        with_value(DEFAULT, 999, "corpus", "synthetic", "rank"),
        "corpus.synthetic.rank",
    ),
    "rank above the hidden size": (
        with_value(DEFAULT, [1, 4, 129], "rank_heads", "ranks"),
        "rank_heads.ranks",
    ),
    "rank-head backbone not a model": (
        with_value(DEFAULT, [{"model": "mini-d999", "step": None}], "rank_heads", "backbones"),
        "rank_heads.backbones[0].model",
    ),
    "scaling model not a model": (
        with_value(DEFAULT, ["nope"], "scaling", "models"),
        "scaling.models",
    ),
    "rank-head cache shard beyond the job's memory": (
        with_value(DEFAULT, 10**9, "rank_heads", "shard_tokens"),
        "rank_heads.mem_mb",
    ),
    "trusted steps of an unknown model": (
        with_value(DEFAULT, {"mini-d999": [0]}, "checkpoints", "trusted_steps"),
        "checkpoints.trusted_steps",
    ),
    "step off the schedule": (
        with_value(DEFAULT, [0, 333], "checkpoints", "schedule", "subset"),
        "checkpoints.schedule.subset",
    ),
}


def validate(config):
    check_schema(config, SCHEMA)
    check_semantics(merged(config, {}))


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_config_names_the_key(case):
    config, key = INVALID[case]
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert f"'{key}" in str(info.value)


def test_snakemake_stops_before_any_job(tmp_path):
    """Four bad configs, each run by Snakemake (at once: each waits on its own start-up)."""
    from concurrent.futures import ThreadPoolExecutor

    cases = ["missing key", "misspelled key", "empty model list", "negative size"]
    workdirs = {}
    for case in cases:
        (tmp_path / case).mkdir()
        workdirs[case] = copy_workflow(tmp_path / case)
        (workdirs[case] / "config" / "config.yaml").write_text(yaml.safe_dump(INVALID[case][0]))

    def run(case):
        return case, run_snakemake(workdirs[case], "--cores", "1", timeout=180)

    with ThreadPoolExecutor(len(cases)) as pool:
        results = dict(pool.map(run, cases))
    for case, result in results.items():
        key = INVALID[case][1]
        assert result.returncode != 0, case
        out = result.stdout + result.stderr
        assert "Invalid configuration" in out and f"'{key}" in out, case
        assert "Traceback" not in out, case
        assert not (workdirs[case] / "results").exists()  # nothing ran


def test_rank_head_memory_check_says_what_to_lower():
    """Pythia backbones with a 4M-token shard in bfloat16 against 16 GB: pythia-1b
    (d = 2048) is the first that cannot fit (15.6 GB of shard alone)."""
    from saturation.config import ConfigError, rank_head_memory_mb

    parts = rank_head_memory_mb(
        {"shard_tokens": 4_000_000, "cache_dtype": "bfloat16", "batch_tokens": 4096,
         "chunk_tokens": 1024},
        50_000,
        2560,
        50304,
    )  # fmt: skip
    assert parts["cache shard (rank_heads.shard_tokens)"] == 4_000_000 * 2560 * 2 / 2**20
    assert parts["full-rank head and AdamW state"] == 50304 * 2560 * 16 / 2**20
    pythia = load_yaml(ROOT / "config" / "pythia.yaml")
    config = merged(DEFAULT, pythia)
    config["rank_heads"]["shard_tokens"] = 4_000_000
    config["rank_heads"]["mem_mb"] = 16000
    with pytest.raises(
        ConfigError,
        match="pythia-1b \\(d = 2048\\).*the cache shard \\(rank_heads.shard_tokens\\) takes 15625 MB",
    ):
        check_semantics(config)
