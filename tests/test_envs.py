"""Every rule names a conda env under envs/, every env parses, and its pins agree with the
requirements the README installs."""

import re

import pytest

from conftest import ROOT, load_yaml

# A named rule, or an anonymous one (the figure rules, built in a loop, name themselves).
RULE = re.compile(r"^\s*(?:rule|checkpoint)(?: (\w+))?:\s*$", re.M)


def requirements():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def rule_blocks():
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m.start() for m in RULE.finditer(text)] + [len(text)]
        for start, end in zip(starts, starts[1:], strict=False):
            block = text[start:end]
            name = RULE.match(text, start).group(1)
            if name is None:  # name: <expression>
                name = re.search(r"name:\s*\n\s*(\S+)", block).group(1)
            yield smk.name, name, block


def test_rules_exist():
    names = [name for _, name, _ in rule_blocks()]
    assert {
        "synthetic_language",
        "sample_corpus",
        "train_minisuite",
        "revision_manifest",
        "prefetch_checkpoint",
        "fig",  # rules/figures.smk: one rule a figure of saturation.figures' registry
    } <= set(names)


@pytest.mark.parametrize(
    "smk, name, block",
    list(rule_blocks()),
    ids=lambda x: x if isinstance(x, str) and "\n" not in x else "",
)
def test_every_rule_has_a_conda_env_log_and_resources(smk, name, block):
    env = re.search(r'conda:\s*\n\s*"\.\./(envs/[\w.-]+\.yaml)"', block)
    assert env, f"rule {name} in {smk} names no conda env"
    assert (ROOT / "workflow" / env.group(1)).is_file(), (
        f"rule {name}: {env.group(1)} does not exist"
    )
    assert "log:" in block and "resources:" in block and "threads:" in block


@pytest.mark.parametrize(
    "env", sorted((ROOT / "workflow" / "envs").glob("*.yaml")), ids=lambda p: p.name
)
def test_env_pins_agree_with_requirements(env):
    spec = load_yaml(env)
    assert spec["channels"] and "dependencies" in spec
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    pins = requirements()
    assert pip, f"{env.name} pins nothing"
    for line in pip:
        name, version = line.split("==")
        assert pins.get(name.lower()) == version, f"{env.name}: {line} vs requirements.txt"
