"""The documentation generated from code is current: the configuration reference is what
docs/make_config_reference.py writes from the schema, and every key has a description."""

import importlib.util

import yaml

from conftest import ROOT


def generator():
    spec = importlib.util.spec_from_file_location(
        "make_config_reference", ROOT / "docs" / "make_config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_is_current_and_describes_every_key():
    make = generator()
    schema = yaml.safe_load(make.SCHEMA.read_text())
    assert make.undescribed(schema) == []
    page = make.PAGE.read_text()
    assert page == make.reference(schema), (
        "docs/configuration.md is stale: run python docs/make_config_reference.py"
    )
    # Every key of the schema is on the page, nested ones by their dotted path.
    for key in ("corpus.synthetic.rank", "checkpoints.hub.models[].revisions[].step",
                "metrics.unreadable", "ngrams.corpora[].huggingface.shuffle_buffer"):  # fmt: skip
        assert f"| `{key}` |" in page
