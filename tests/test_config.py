"""Config validation: both shipped configs pass; every class of invalid config stops the
workflow before any job runs, with one message naming the key and no traceback."""

import copy
import re

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


SHIPPED = ["config.yaml", "pythia.yaml", "pythia-spectra.yaml", "families.yaml", "polypythia.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate(name):
    check_schema(load_yaml(ROOT / "config" / name), SCHEMA)  # each stands alone


def test_the_mixture_heads_overlay_validates_on_the_default():
    """config/mixture-heads.yaml is given after another config; on the default it trains a
    mixture beside each linear head."""
    overlay = load_yaml(ROOT / "config" / "mixture-heads.yaml")
    config = merged(DEFAULT, overlay)
    validate(config)
    assert config["rank_heads"]["kinds"] == ["linear", "mixture"]


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
    "missing key": (without(DEFAULT, "rank_heads", "ranks"), "rank_heads.ranks"),
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
    "forward alone": (with_value(DEFAULT, ["forward"], "metrics", "parts"), "metrics.parts"),
    "a model named ..": (
        with_value(DEFAULT, "..", "checkpoints", "minisuite", "models", 0, "name"),
        "checkpoints.minisuite.models[0].name",
    ),
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
    "learning-rate grid with the cached protocol": (
        with_value(DEFAULT, [0.01, 0.02], "rank_heads", "lr_grid"),
        "rank_heads.lr_grid",
    ),
    "learning-rate grid with no selection tokens": (
        merged(DEFAULT, {"rank_heads": {"protocol": "paper", "lr_grid": [0.01]}}),
        "rank_heads.select_tokens",
    ),
    "paper protocol's tokens beyond the training split": (
        merged(
            DEFAULT,
            {"rank_heads": {"protocol": "paper", "train_tokens": 10**9, "select_tokens": 5}},
        ),
        "corpus.train_tokens",
    ),
    "paper protocol's heads beyond the job's memory": (
        merged(
            DEFAULT,
            {
                "rank_heads": {
                    "protocol": "paper",
                    "lr_grid": [0.01] * 10**4,
                    "select_tokens": 5,
                    "train_tokens": 5,
                }
            },
        ),  # fmt: skip
        "rank_heads.mem_mb",
    ),
    "rank-head backbone not a model": (
        with_value(DEFAULT, [{"model": "mini-d999", "step": None}], "rank_heads", "backbones"),
        "rank_heads.backbones[0].model",
    ),
    "rank-head backbone from the hub in a mini-suite run": (
        with_value(DEFAULT, [{"repo": "meta-llama/Llama-2-7b-hf"}], "rank_heads", "backbones"),
        "rank_heads.backbones[0].repo",
    ),
    "rank-head backbone named twice over": (
        with_value(
            DEFAULT,
            [{"model": "mini-d64", "repo": "meta-llama/Llama-2-7b-hf"}],
            "rank_heads",
            "backbones",
        ),  # fmt: skip
        "rank_heads.backbones[0]",
    ),
    "a model of the run given a revision": (
        with_value(DEFAULT, [{"model": "mini-d64", "revision": "main"}], "rank_heads", "backbones"),
        "rank_heads.backbones[0]",
    ),
    "a forward pass without the spectrum": (
        with_value(DEFAULT, ["forward", "truncation"], "metrics", "parts"),
        "metrics.parts",
    ),
    "a measurement beyond the paper without the forward pass": (
        with_value(DEFAULT, ["spectrum", "gradient"], "metrics", "parts"),
        "metrics.parts",
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
    """As the workflow does (rules/common.smk): the schema, its defaults, the semantics."""
    from snakemake.utils import validate as fill_defaults

    check_schema(config, SCHEMA)
    config = merged(config, {})
    fill_defaults(config, str(SCHEMA))
    check_semantics(config)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_config_names_the_key(case):
    config, key = INVALID[case]
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert f"'{key}" in str(info.value)


def test_snakemake_stops_before_any_job(tmp_path):
    """Bad configs, each run by Snakemake (at once: each waits on its own start-up): four
    schema errors, a YAML syntax error and a key given twice in config/config.yaml, each
    named by file and line; and whole numbers written as floats, which run."""
    from concurrent.futures import ThreadPoolExecutor

    default_text = (ROOT / "config" / "config.yaml").read_text()
    texts = {case: yaml.safe_dump(INVALID[case][0]) for case in
             ["missing key", "misspelled key", "empty model list", "negative size"]}  # fmt: skip
    texts["yaml syntax"] = default_text.replace("\n  eval_tokens:", "\n   eval_tokens:", 1)
    texts["duplicate key"] = default_text.replace("\nseed:", "\nseed: 1\nseed:", 1)
    floats = copy.deepcopy(DEFAULT)
    floats["checkpoints"]["schedule"]["final_step"] = 2000.0
    floats["corpus"]["eval_tokens"] = 2048.0
    floats["metrics"] = {**floats.get("metrics", {}), "batch_size": 8.0}
    texts["whole floats"] = yaml.safe_dump(floats)
    line = {  # where config.yaml's faults are
        case: next(i for i, t in enumerate(texts[case].splitlines(), 1) if t.startswith(start))
        for case, start in (("yaml syntax", "   eval_tokens:"), ("duplicate key", "seed:"))
    }
    line["duplicate key"] += 1
    expected = {case: f"'{INVALID[case][1]}" for case in texts if case in INVALID}
    expected["yaml syntax"] = (
        f"config/config.yaml, line {line['yaml syntax']}, column 4: not valid YAML: expected <block end>"
    )
    expected["duplicate key"] = (
        f"config/config.yaml, line {line['duplicate key']}: key 'seed' is given twice in one "
        f"mapping (first at line {line['duplicate key'] - 1})"
    )
    # A study's config file stands alone: the demo's keys are not taken, and the message says
    # so; a folder without config/config.yaml and no --configfile is told that.
    texts["partial study"] = default_text
    expected["partial study"] = (
        "config key 'corpus' is missing (config files given with --configfile stand alone: "
        "config/config.yaml, the demo, is not read under them"
    )
    texts["elsewhere"] = default_text
    expected["elsewhere"] = "Workflow defines configfile config/config.yaml but it is not present"
    args = {
        "partial study": ("--configfile", "config/study.yaml"),
        "elsewhere": ("--directory", str(tmp_path / "elsewhere-study")),
    }

    workdirs = {}
    for case, text in texts.items():
        (tmp_path / case).mkdir()
        workdirs[case] = copy_workflow(tmp_path / case)
        (workdirs[case] / "config" / "config.yaml").write_text(text)

    (workdirs["partial study"] / "config" / "study.yaml").write_text("metrics: {batch_size: 4}\n")

    def run(case):
        extra = args.get(case, ())
        return case, run_snakemake(workdirs[case], "--cores", "1", "-n", *extra, timeout=180)

    with ThreadPoolExecutor(len(texts)) as pool:
        results = dict(pool.map(run, texts))
    ok = results.pop("whole floats")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "measure_checkpoint" in ok.stdout
    for case, result in results.items():
        assert result.returncode != 0, case
        out = result.stdout + result.stderr
        assert expected[case] in out, (case, out[-2000:])
        assert "Invalid configuration" in out or case == "elsewhere", case
        assert "Traceback" not in out, case
        assert not (workdirs[case] / "results").exists()  # nothing ran


def test_rank_head_memory_check_says_what_to_lower():
    """Pythia backbones with a 4M-token shard in bfloat16 against 16 GB: pythia-1b
    (d = 2048) is the first that cannot fit (15.6 GB of shard alone)."""
    from saturation.config import ConfigError
    from saturation.head_memory import rank_head_memory_mb

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
    config["rank_heads"] |= {"protocol": "cached", "lr_grid": None, "shard_tokens": 4_000_000,
                             "cache_dtype": "bfloat16", "chunk_tokens": 1024}  # fmt: skip
    config["rank_heads"]["mem_mb"] = 16000
    with pytest.raises(
        ConfigError,
        match="pythia-1b \\(d = 2048\\).*the cache shard \\(rank_heads.shard_tokens\\) takes 15625 MB",
    ):
        check_semantics(config)


PYTHIA = merged(DEFAULT, load_yaml(ROOT / "config" / "pythia.yaml"))
LLAMA = PYTHIA["rank_heads"]["backbones"][-1]


@pytest.mark.parametrize(
    "entry, key, says",
    [
        ({"repo": "EleutherAI/pythia-1b"}, "[4].repo", "'pythia-1b' is a model of this run"),
        (LLAMA | {"step": 143000}, "[4].step", "one revision"),
        (LLAMA | {"revision": "../main"}, "[4].revision", "cannot name a branch"),
        (LLAMA | {"mem_mb": 20000}, "[4].mem_mb", "Llama-2-7b-hf (d = 4096)"),
    ],
)
def test_a_backbone_from_outside_the_suite_is_checked_before_any_job(entry, key, says):
    """The paper config's Llama-2-7B backbone (a hub repo outside the run's models) as given
    passes; each way of getting it wrong names its key."""
    validate(copy.deepcopy(PYTHIA))
    config = copy.deepcopy(PYTHIA)
    config["rank_heads"]["backbones"][-1] = entry
    with pytest.raises(ConfigError, match=re.escape(says)) as info:
        validate(config)
    assert f"'rank_heads.backbones{key}'" in str(info.value)


def test_the_paper_protocols_memory_check_counts_every_head_at_every_rate():
    """pythia.yaml's paper protocol against 16 GB: pythia-410m (d = 1024) trains ranks 1 to
    1,024 (2,047 in all) and the full-rank control at 6 rates, each weight with its gradient
    and two AdamW moments (16 bytes)."""
    from snakemake.utils import validate as fill_defaults

    config = merged(DEFAULT, load_yaml(ROOT / "config" / "pythia.yaml"))
    fill_defaults(config, str(SCHEMA))
    config["rank_heads"]["mem_mb"] = 16000
    params = 2047 * (50304 + 1024) + 50304 * 1024
    with pytest.raises(ConfigError, match="pythia-410m") as info:
        check_semantics(config)
    assert (
        f"AdamW state (rank_heads.ranks, kinds, lr_grid) takes {params * 6 * 16 / 2**20:.0f} MB"
        in str(info.value)
    )


# --- whole numbers written as floats --------------------------------------------------------


def integer_keys(schema) -> list[tuple]:
    """Every place the schema asks for an integer, as a path of keys, ``[]`` (an item of a
    list) and ``*`` (any key of a mapping): walked here by hand, apart from the code's use
    of the validator."""
    defs = schema.get("$defs", {})
    found = []

    def walk(node, path):
        if "$ref" in node:
            node = {**defs[node["$ref"].rpartition("/")[2]], **node}
            node.pop("$ref")
        types = node.get("type")
        if types == "integer" or (isinstance(types, list) and "integer" in types):
            found.append(path)
        for key, sub in node.get("properties", {}).items():
            walk(sub, (*path, key))
        if isinstance(node.get("items"), dict):
            walk(node["items"], (*path, "[]"))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], (*path, "*"))
        for branch in node.get("anyOf", []) + node.get("oneOf", []):
            walk(branch, path)

    walk(schema, ())
    return sorted(set(found))


def planted(config, path, value):
    """``config`` with ``value`` at ``path``: lists and mappings on the way are made (or
    their first entry taken), an object entry of a list of strings replaced by one."""
    config = copy.deepcopy(config)
    node, concrete = config, []
    for part, after in zip(path, (*path[1:], None), strict=True):
        fresh = [] if after == "[]" else {}
        if part == "[]":
            if not node or not isinstance(node[0], type(fresh)):
                node[:] = [fresh]
            node, key = node, 0
        elif part == "*":
            key = next(iter(node), "model-a")
        else:
            key = part
        concrete.append(key)
        if after is None:
            node[key] = value
        else:
            if not isinstance(node.get(key) if isinstance(node, dict) else node[key], (list, dict)):
                node[key] = fresh
            node = node[key]
    return config, concrete


def test_every_integer_key_takes_a_whole_float_exactly():
    """Each integer key of the schema, planted as a float with a whole value, is an int of
    that value after the check; one with a fraction is named by the check."""
    from saturation.config import convert_integral_floats, key_path

    schema = yaml.safe_load(SCHEMA.read_text())
    keys = integer_keys(schema)
    assert len(keys) >= 60, keys  # the walk reaches the nested lists and mappings
    for path in keys:
        config, concrete = planted(DEFAULT, path, 6.0)
        assert convert_integral_floats(config, schema) == [key_path(concrete)], path
        node = config
        for part in concrete:
            node = node[part]
        assert node == 6 and type(node) is int, path
        config, concrete = planted(DEFAULT, path, 6.5)
        assert convert_integral_floats(config, schema) == [], path


@pytest.mark.parametrize(
    "path",
    [
        ("checkpoints", "schedule", "final_step"),
        ("corpus", "eval_tokens"),
        ("rank_heads", "ranks", 0),
        ("checkpoints", "minisuite", "models", 1, "hidden_size"),
    ],
)
def test_integer_keys_with_a_fraction_are_named(path):
    config = copy.deepcopy(DEFAULT)
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] += 0.5
    with pytest.raises(ConfigError) as info:
        validate(config)
    from saturation.config import key_path

    assert f"config key '{key_path(path)}': " in str(info.value)
    assert "is not of type 'integer'" in str(info.value)


def test_a_number_yaml_reads_as_text_is_explained():
    config = with_value(DEFAULT, "1e6", "corpus", "train_tokens")
    with pytest.raises(
        ConfigError, match=r"'corpus.train_tokens': '1e6' is a string to YAML.*write 1000000"
    ):
        validate(config)


# --- config files read strictly --------------------------------------------------------------


def test_a_duplicated_key_and_a_syntax_error_name_the_file_and_line(tmp_path):
    from saturation.config import read_config_file

    path = tmp_path / "c.yaml"
    path.write_text("metrics:\n  batch_size: 8\n  dtype: float32\n  batch_size: 4\n")
    with pytest.raises(
        ConfigError,
        match=rf"^{path}, line 4: key 'batch_size' is given twice in one mapping \(first at line 2\)",
    ):
        read_config_file(path)
    path.write_text("corpus:\n  source: synthetic\n   eval_tokens: 10\n")
    with pytest.raises(
        ConfigError,
        match=rf"^{path}, line 3, column 15: not valid YAML: mapping values are not allowed here",
    ):
        read_config_file(path)
    # YAML's merge keys are not duplicates; a key that follows one overrides it, as YAML says.
    path.write_text("a: &x {b: 1, c: 2}\nd:\n  <<: *x\n  b: 3\n")
    assert read_config_file(path) == {"a": {"b": 1, "c": 2}, "d": {"b": 3, "c": 2}}
    json_path = tmp_path / "c.json"
    json_path.write_text('{"seed": 1,\n "seed": 2}')
    with pytest.raises(ConfigError, match=rf"^{json_path}: key 'seed' is given twice"):
        read_config_file(json_path)
    for name in SHIPPED:
        assert read_config_file(ROOT / "config" / name) == load_yaml(ROOT / "config" / name)
