"""Write docs/configuration.md, the configuration reference, from the descriptions, types and
defaults in workflow/schemas/config.schema.yaml: `python docs/make_config_reference.py`.
tests/test_docs.py fails when the committed page is not what this writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
PAGE = ROOT / "docs" / "configuration.md"

INTRO = """# Configuration reference

Every key of the workflow's configuration: its type, its default and what it does. Use it
when you write or edit a configuration (start from one of `config/`, see
[config/README.md](../config/README.md)).

**Which files are read.** Without `--configfile`, `config/config.yaml` (the synthetic demo).
With `--configfile`, only the files it names, in order, each later one overriding the ones
before key by key; `config/config.yaml` is not read, so a study never takes the demo's
values. Keys no file sets take the defaults below; a few follow from other keys or from the
disk (the corpus's name, the n-gram corpus, a local run's tokenizer and context: their rows
say so). `--config key=value` then overrides any of them (a section as a YAML mapping,
`--config 'corpus={eval_tokens: 20000}'`, merges into it). `run` and `text` are the common
case's shorthand ([your models](your-models.md)).

The configuration is validated against `workflow/schemas/config.schema.yaml` before any job
runs, and the defaults below are filled in. An unknown, misspelled, missing or ill-typed key
stops the run with one message naming it, e.g. `Invalid configuration: config key
'corpus.synthetic.rnak' is not a known setting`. A whole number written as a float
(`batch_size: 8.0`) where an integer is wanted is taken as that integer; `8.5` is refused,
naming the key. Before Snakemake reads them, the config files are read again with a strict
loader. It reports a YAML syntax error in `config/config.yaml`, and a key given twice in one
mapping of any config file (YAML would keep the last one silently), by file and line, e.g.
`config/config.yaml, line 4: key 'batch_size' is given twice in one mapping (first at line
2)`. Snakemake parses a file given with `--configfile` before the workflow starts, so a
syntax error there gets Snakemake's own message, which gives no line. A device that the
machine or its torch build lacks (`metrics.device: cuda` on a CPU build) stops the job,
naming the key.

This page is generated from the schema by `python docs/make_config_reference.py`; edit the
schema's descriptions, not this page.
"""


def resolve(node: dict, defs: dict) -> dict:
    if "$ref" in node:
        base = defs[node["$ref"].rpartition("/")[2]]
        node = {**resolve(base, defs), **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def type_of(node: dict, defs: dict) -> str:
    node = resolve(node, defs)
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    kinds = node.get("type")
    if kinds is None and ("anyOf" in node or "oneOf" in node):
        return " or ".join(type_of(b, defs) for b in node.get("anyOf", node.get("oneOf", [])))
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = []
    for kind in kinds:
        if kind == "array" and isinstance(node.get("items"), dict):
            words.append(f"list of {type_of(node['items'], defs)}")
        elif kind == "object" and "properties" not in node:
            words.append("mapping")
        else:
            words.append({"null": "null", "number": "number"}.get(kind, kind or "any"))
    bounds = [
        f"{sign} {node[key]}"
        for key, sign in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        )
        if key in node
    ]
    return " or ".join(words) + (f", {', '.join(bounds)}" if bounds else "")


def describe(node: dict, defs: dict) -> str:
    return " ".join(str(resolve(node, defs).get("description", "")).split())


def default_of(node: dict, defs: dict) -> str:
    node = resolve(node, defs)
    if "default" not in node:
        return "required" if node.get("_required") else ""
    return f"`{json.dumps(node['default'])}`"


def rows(node: dict, defs: dict, path: str, required: bool = False):
    """(key, type, default, description) of ``node`` and every key below it."""
    node = resolve(node, defs)
    yield (
        path,
        type_of(node, defs),
        default_of({**node, "_required": required}, defs),
        describe(node, defs),
    )
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        branch = resolve(branch, defs)
        for key, sub in branch.get("properties", {}).items():
            yield from rows(sub, defs, f"{path}.{key}", key in branch.get("required", []))
    for key, sub in node.get("properties", {}).items():
        yield from rows(sub, defs, f"{path}.{key}", key in node.get("required", []))
    items = node.get("items")
    if isinstance(items, dict):
        items = resolve(items, defs)
        for branch in [items] + items.get("anyOf", []) + items.get("oneOf", []):
            branch = resolve(branch, defs)
            for key, sub in branch.get("properties", {}).items():
                yield from rows(sub, defs, f"{path}[].{key}", key in branch.get("required", []))


def reference(schema: dict) -> str:
    defs = schema.get("$defs", {})
    parts = [INTRO]
    for section, node in schema["properties"].items():
        parts.append(f"\n## `{section}`\n")
        text = describe(node, defs)
        if text:
            parts.append(text + "\n")
        parts.append("| key | type | default | what it does |\n|---|---|---|---|")
        for key, kind, default, text in rows(node, defs, section, section in schema["required"]):
            if key == section and "properties" in resolve(node, defs):
                continue  # the section's own description stands above its table
            cell = text.replace("|", "\\|")
            parts.append(f"| `{key}` | {kind} | {default} | {cell} |")
    return "\n".join(parts) + "\n"


def undescribed(schema: dict) -> list[str]:
    defs = schema.get("$defs", {})
    return [
        key
        for section, node in schema["properties"].items()
        for key, _, _, text in rows(node, defs, section)
        if not text
    ]


if __name__ == "__main__":
    schema = yaml.safe_load(SCHEMA.read_text())
    PAGE.write_text(reference(schema))
    missing = undescribed(schema)
    if missing:
        print(f"{len(missing)} keys have no description: {', '.join(missing)}", file=sys.stderr)
        sys.exit(1)
