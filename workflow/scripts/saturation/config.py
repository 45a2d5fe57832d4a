"""Configuration checks that run before any job: JSON Schema plus the rules a schema cannot say.

Every problem is reported as one line that names the offending key, e.g.
``config key 'corpus.synthetic.rank': -3 is less than the minimum of 1``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import extend

from saturation.defaults import check_local_sizes
from saturation.head_memory import (
    KNOWN_SHAPES,
    known_shape,
    rank_head_memory_mb,
    streamed_head_memory_mb,
)
from saturation.suites import (
    SuiteError,
    backbone_models,
    backbone_name,
    local_models,
    model_steps,
    schedule_steps,
)


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


def key_path(path) -> str:
    parts = []
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def describe_error(error) -> str:
    where = key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        prefix = f"{where}." if error.absolute_path else ""
        return f"config key '{prefix}{extra[0]}' is not a known setting (known here: {allowed})"
    if error.validator == "required":
        missing = error.message.split("'")[1]
        prefix = f"{where}." if error.absolute_path else ""
        return f"config key '{prefix}{missing}' is missing"
    if error.validator == "enum":
        options = ", ".join(map(str, error.validator_value))
        return f"config key '{where}': {error.instance!r} is not one of: {options}"
    if error.validator == "oneOf" and all(
        set(s) == {"required"} for s in error.validator_value
    ):  # alternative keys: exactly one of them
        keys = [s["required"][0] for s in error.validator_value]
        given = [k for k in keys if k in error.instance]
        return f"config key '{where}': give one of {', '.join(keys)}" + (
            f", not {' and '.join(given)} together" if len(given) > 1 else ""
        )
    if error.validator == "minItems" and error.validator_value == 1:
        return f"config key '{where}': the list is empty; give at least one entry"
    numeric_text = isinstance(error.instance, str) and is_number(error.instance)
    if error.validator in ("type", "anyOf") and numeric_text:
        return (
            f"config key '{where}': {error.instance!r} is a string to YAML, not a number "
            f"(YAML reads 1e6 as text: write {number_hint(error.instance)})"
        )
    return f"config key '{where}': {error.message}"


def is_number(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True


def number_hint(text: str) -> str:
    value = float(text.replace("_", ""))
    return str(int(value)) if value.is_integer() else repr(value)


# A validator for which only ints are integers: JSON Schema counts 8.0 as one, but range(),
# numpy shapes and slicing do not.
StrictIntegers = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, x: isinstance(x, int) and not isinstance(x, bool)
    ),
)


def integral_floats(config: dict, schema: dict) -> list[tuple]:
    """Paths of the floats with a whole value (8.0) where the schema asks for an integer,
    in branches of anyOf/oneOf too."""
    found = []

    def visit(errors):
        for e in errors:
            types = (
                e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
            )
            if (
                e.validator == "type"
                and "integer" in types
                and isinstance(e.instance, float)
                and e.instance.is_integer()
            ):
                found.append(tuple(e.absolute_path))
            visit(e.context or ())

    visit(StrictIntegers(schema).iter_errors(config))
    return sorted(set(found), key=str)


def convert_integral_floats(config: dict, schema: dict) -> list[str]:
    """Turn each whole-valued float the schema wants as an integer into that int, in place,
    exactly (8.0 -> 8); returns the keys converted. Other floats are left to the schema's
    check, which names the key."""
    converted = []
    for _ in range(8):  # a conversion can reveal another inside an anyOf branch
        paths = integral_floats(config, schema)
        if not paths:
            break
        for path in paths:
            node = config
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = int(node[path[-1]])
            converted.append(key_path(path))
    return converted


def check_schema(config: dict, schema_path: str | Path) -> None:
    """Validate ``config`` against the schema, one message naming the key; whole numbers
    written as floats (``batch_size: 8.0``) where an integer is wanted are made ints first,
    in place."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    convert_integral_floats(config, schema)
    validator = Draft202012Validator(schema)
    error = best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(describe_error(error))


# --- reading config files ----------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the
    last silently)."""

    source = "the config"

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in first:
                    raise ConfigError(
                        f"{self.source}, line {line}: key {key!r} is given twice in one "
                        f"mapping (first at line {first[key]}); YAML would keep the last one "
                        "silently: delete one"
                    )
                first[key] = line
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | Path) -> dict:
    """A config file (YAML or JSON) read strictly: a syntax error or a duplicated key is
    reported with the file and line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":

        def pairs(items):
            keys = [k for k, _ in items]
            dup = sorted({k for k in keys if keys.count(k) > 1})
            if dup:
                raise ConfigError(f"{path}: key {dup[0]!r} is given twice in one object")
            return dict(items)

        try:
            return json.loads(text, object_pairs_hook=pairs)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
            ) from None
    loader = StrictLoader(text)
    loader.source = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        context = (
            f" ({exc.context}, line {exc.context_mark.line + 1})"
            if exc.context_mark and exc.context
            else ""
        )
        hint = (
            "; check the indentation there (spaces only, the keys of one mapping in one column)"
            if "mapping" in str(exc.problem) or "block" in str(exc.problem)
            else ""
        )
        raise ConfigError(
            f"{path}, {where}: not valid YAML: {exc.problem}{context}{hint}"
        ) from None
    finally:
        loader.dispose()


def read_config_files(paths) -> None:
    """Read each config file that exists strictly (:func:`read_config_file`), before any
    job; raises ConfigError naming the first problem's file and line."""
    for path in paths:
        if Path(path).is_file():
            read_config_file(path)


def check_semantics(config: dict) -> None:
    """Rules across keys, checked after defaults are filled in."""
    corpus, ckpt = config["corpus"], config["checkpoints"]
    parts = config["metrics"].get("parts", ["forward", "spectrum"])  # the default where unfilled
    check_metrics(config, parts)
    if corpus["source"] == "synthetic":
        syn = corpus["synthetic"]
        if syn["rank"] > syn["vocab_size"]:
            raise ConfigError(
                f"config key 'corpus.synthetic.rank': {syn['rank']} exceeds "
                f"corpus.synthetic.vocab_size {syn['vocab_size']}"
            )
    try:
        schedule_steps(config)
    except ValueError as exc:
        raise ConfigError(f"config key {exc}") from None
    models = checked_models(config, parts)
    if (config.get("figures") or {}).get("loss_unit") == "byte" and corpus["source"] == "synthetic":
        raise ConfigError(
            "config key 'figures.loss_unit': byte needs a text corpus; the synthetic "
            "language's tokens have no bytes"
        )
    check_local_sizes(config)
    if "forward" in parts:  # the head alone runs none of the stages after the metrics
        check_scaling(config, models)
        if "rank_heads" in config:
            check_rank_heads(config, models)
            check_rank_head_memory(config)
        check_ngrams(config)
        check_downstream(config, models)
    unknown = sorted(set(ckpt.get("trusted_steps") or {}) - set(models))
    if unknown:
        raise ConfigError(
            f"config key 'checkpoints.trusted_steps': {unknown} are not models of this run"
        )


def check_metrics(config: dict, parts: list[str]) -> None:
    """metrics.parts (what a measurement can be) and metrics.eval_corpora."""
    if "forward" in parts and "spectrum" not in parts:
        raise ConfigError(
            f"config key 'metrics.parts': {parts} without spectrum is not a measurement this "
            "workflow makes: a forward pass measures the head's spectrum too (it costs little "
            "beside it); add spectrum, or give [spectrum] for the head alone"
        )
    beyond = [p for p in parts if p not in ("forward", "spectrum")]
    if beyond and "forward" not in parts:
        raise ConfigError(
            f"config key 'metrics.parts': {beyond} are measured in the forward pass; add "
            "forward, or give [spectrum] alone for the head read by range"
        )
    source = config["checkpoints"]["source"]
    if "forward" not in parts and source != "hub":
        raise ConfigError(
            f"config key 'metrics.parts': {parts} (the head alone, read by range) needs "
            f"checkpoints.source: hub, not {source}"
        )
    corpora = [c["name"] for c in config["metrics"].get("eval_corpora", [])]
    if corpora and config["corpus"]["source"] == "synthetic":
        raise ConfigError(
            f"config key 'metrics.eval_corpora': {corpora} are text; corpus.source: synthetic "
            "has token ids only"
        )
    if len(set(corpora)) < len(corpora):
        raise ConfigError(f"config key 'metrics.eval_corpora': duplicate names in {corpora}")


def checked_models(config: dict, parts: list[str]) -> list[str]:
    """The run's models, after the checks of their source: the mini-suite's names and
    shapes, the hub's models and revisions, a local run's folders (a missing one stops the
    run here)."""
    corpus, ckpt = config["corpus"], config["checkpoints"]
    if ckpt["source"] == "minisuite":
        check_minisuite(config)
        return [m["name"] for m in ckpt["minisuite"]["models"]]
    if ckpt["source"] == "hub":
        try:
            models = list(model_steps(config))
        except SuiteError as exc:
            raise ConfigError(str(exc)) from None
        if corpus["source"] == "synthetic" and "forward" in parts:
            raise ConfigError(
                "config key 'corpus.source': hub checkpoints need a text corpus and their "
                "tokenizer (huggingface or local), not the synthetic language"
            )
        return models
    try:
        local = local_models(config)
    except SuiteError as exc:
        raise ConfigError(str(exc)) from None
    check_tokens_known(config, local)
    return list(local)


def check_minisuite(config: dict) -> None:
    """The mini-suite's names, widths, batch and context against the corpus and metrics."""
    corpus, suite = config["corpus"], config["checkpoints"]["minisuite"]
    names = [m["name"] for m in suite["models"]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config key 'checkpoints.minisuite.models': duplicate names {dup}")
    for i, m in enumerate(suite["models"]):
        if m["hidden_size"] % min(suite["head_dim"], m["hidden_size"]):
            raise ConfigError(
                f"config key 'checkpoints.minisuite.models[{i}].hidden_size': "
                f"{m['hidden_size']} is not a multiple of head_dim {suite['head_dim']}"
            )
    if (
        corpus["source"] == "synthetic"
        and corpus["train_tokens"] < suite["sequence_length"] * suite["batch_size"]
    ):
        raise ConfigError("config key 'corpus.train_tokens': fewer tokens than one training batch")
    if config["metrics"]["sequence_length"] > suite["sequence_length"]:
        raise ConfigError(
            f"config key 'metrics.sequence_length': {config['metrics']['sequence_length']} "
            f"exceeds the mini-suite's context checkpoints.minisuite.sequence_length "
            f"{suite['sequence_length']}"
        )


def check_tokens_known(config: dict, local: dict) -> None:
    """What needs the tokens each checkpoint had seen (Figs over tokens, the scaling law's T)
    refused where a local run neither logged them nor gives tokens_per_step."""
    needs = []
    if (config.get("figures") or {}).get("x_axis") == "tokens":
        needs.append("figures.x_axis: tokens")
    if config["scaling"].get("models"):
        needs.append("scaling.models (the law's T)")
    unknown = {m: v["tokens_unknown"] for m, v in local.items() if v["tokens_unknown"]}
    if needs and unknown:
        model, steps = next(iter(unknown.items()))
        raise ConfigError(
            "config key 'checkpoints.local.tokens_per_step' is missing: "
            f"{' and '.join(needs)} need the tokens each checkpoint had seen, and {model}'s "
            f"steps {steps[:5]} have no num_input_tokens_seen in their trainer_state.json "
            "(Trainer logs it with include_num_input_tokens_seen=True); give the tokens one "
            "optimiser step consumed"
        )


def check_scaling(config: dict, models: list[str]) -> None:
    scaling = config["scaling"]
    unknown = sorted(set(scaling["models"] or []) - set(models))
    if unknown:
        raise ConfigError(
            f"config key 'scaling.models': {unknown} are not models of this run ({models})"
        )
    if scaling["fixed"].get("E") == "entropy_rate" and config["corpus"]["source"] != "synthetic":
        raise ConfigError(
            "config key 'scaling.fixed.E': 'entropy_rate' is known only for the synthetic corpus"
        )
    if scaling.get("max_step") is not None and scaling["max_step"] < scaling["min_step"]:
        raise ConfigError(
            f"config key 'scaling.max_step' ({scaling['max_step']}) is below "
            f"'scaling.min_step' ({scaling['min_step']}): no checkpoint would be fitted"
        )
    free = [p for p in ("E", "A", "alpha", "B", "beta") if p not in scaling["fixed"]]
    missing = [p for p in free if p not in scaling["initial"]]
    if missing:
        raise ConfigError(
            f"config key 'scaling.initial': no starting value for the fitted parameters {missing}"
        )


def check_rank_heads(config: dict, models: list[str]) -> None:
    """Backbones must be models and steps of this run; ranks at most min(d, V) where the
    config says d and V (the mini-suite on the synthetic corpus); hub models are checked
    when their head is read."""
    heads, ckpt = config["rank_heads"], config["checkpoints"]
    steps_of = model_steps(config)
    for i, b in enumerate(heads["backbones"]):
        key = f"rank_heads.backbones[{i}]"
        if b.get("repo"):
            check_outside_backbone(config, b, key, models)
            continue
        given = sorted(k for k in ("revision", "name", "tokenizer") if b.get(k))
        if given:
            raise ConfigError(
                f"config key '{key}': {given} belong to a backbone from outside the run's models "
                f"(given by repo); {b['model']!r} is a model of the run, read as the run reads it"
            )
        if b["model"] not in models:
            raise ConfigError(
                f"config key 'rank_heads.backbones[{i}].model': {b['model']!r} is not a model "
                f"of this run ({models})"
            )
        if b.get("step") is not None and b["step"] not in steps_of[b["model"]]:
            raise ConfigError(
                f"config key 'rank_heads.backbones[{i}].step': {b['step']} is not a "
                "checkpoint step of this run"
            )
    check_head_protocol(config)
    if ckpt["source"] != "minisuite":
        return
    hidden = {m["name"]: m["hidden_size"] for m in ckpt["minisuite"]["models"]}
    vocab = (
        config["corpus"]["synthetic"]["vocab_size"]
        if config["corpus"]["source"] == "synthetic"
        else None
    )
    limits = {
        b["model"]: min(hidden[b["model"]], vocab or hidden[b["model"]]) for b in heads["backbones"]
    }
    too_big = sorted(r for r in heads["ranks"] if r > max(limits.values()))
    if too_big:  # a backbone trains the ranks up to its own limit; these no backbone has
        raise ConfigError(
            f"config key 'rank_heads.ranks': {too_big} exceed min(d, V) of every backbone "
            f"({limits}{', vocabulary ' + str(vocab) if vocab else ''})"
        )


def check_outside_backbone(config: dict, b: dict, key: str, models: list[str]) -> None:
    """A backbone from outside the run's models: a hub repo, in a hub run, under a name no
    model of the run has, at its one revision."""
    name = backbone_name(b)
    if config["checkpoints"]["source"] != "hub":
        raise ConfigError(
            f"config key '{key}.repo': {b['repo']} is read from the hub, and this run's "
            f"checkpoints.source is {config['checkpoints']['source']}; give a model of the run "
            "(model) or run from the hub"
        )
    if name in models:
        raise ConfigError(
            f"config key '{key}.repo': its name {name!r} is a model of this run already; give "
            "the backbone as model, or another name (name)"
        )
    if b.get("step") is not None:
        raise ConfigError(
            f"config key '{key}.step': a backbone from outside the run's models is read at one "
            "revision (revision), not at a step"
        )
    try:
        backbone_models(config)
    except SuiteError as exc:
        raise ConfigError(str(exc)) from None


def check_head_protocol(config: dict) -> None:
    """The paper's protocol: a rate grid needs a selection split, and the training split
    must hold the training and selection tokens; the grid is the paper protocol's."""
    heads = config["rank_heads"]
    if heads["protocol"] != "paper":
        if heads.get("lr_grid"):
            raise ConfigError(
                "config key 'rank_heads.lr_grid': a learning-rate grid is searched with "
                "rank_heads.protocol: paper (the cached protocol takes one rate a head, from "
                "lr_base)"
            )
        return
    if heads.get("lr_grid") and heads["select_tokens"] == 0:
        raise ConfigError(
            "config key 'rank_heads.select_tokens': 0, but rank_heads.lr_grid needs held-out "
            "training tokens to choose each rank's rate on; give e.g. 1000000"
        )
    needed = heads["train_tokens"] + heads["select_tokens"]
    have = config["corpus"].get("train_tokens")
    if have is not None and have < needed:
        raise ConfigError(
            f"config key 'corpus.train_tokens': {have} tokens cannot hold the rank heads' "
            f"rank_heads.train_tokens ({heads['train_tokens']}) and select_tokens "
            f"({heads['select_tokens']}), each seen once; raise it to {needed}"
        )


def check_rank_head_memory(config: dict) -> None:
    """Each rank-head job's memory against its backbone's mem_mb (else rank_heads.mem_mb),
    before any job runs."""
    heads = config["rank_heads"]
    for i, b in enumerate(heads["backbones"]):
        repo = b.get("repo")
        shape = KNOWN_SHAPES.get(repo) if repo else known_shape(config, b["model"])
        if shape is None:
            continue
        mem_key = f"rank_heads.backbones[{i}].mem_mb" if b.get("mem_mb") else "rank_heads.mem_mb"
        mem_mb = b.get("mem_mb") or heads["mem_mb"]
        if heads["protocol"] == "paper":
            parts = streamed_head_memory_mb(heads, *shape)
        else:
            parts = rank_head_memory_mb(heads, config["corpus"]["eval_tokens"], *shape)
        total = sum(parts.values())
        if total > mem_mb:
            largest = max(parts, key=parts.get)
            raise ConfigError(
                f"config key '{mem_key}': {mem_mb} MB cannot hold a rank-head job of backbone "
                f"{backbone_name(b)} (d = {shape[0]}): about {total:.0f} MB, of which the "
                f"{largest} takes {parts[largest]:.0f} MB; lower that setting or raise "
                f"{mem_key}"
            )
        if heads["protocol"] == "cached" and heads["shard_tokens"] < heads["batch_tokens"]:
            raise ConfigError(
                f"config key 'rank_heads.shard_tokens': {heads['shard_tokens']} is smaller than "
                f"a batch (rank_heads.batch_tokens {heads['batch_tokens']}); batches are drawn "
                "from one shard"
            )


def check_ngrams(config: dict) -> None:
    ngrams = config["ngrams"]
    names = [c["name"] for c in ngrams["corpora"]]
    held = [c["name"] for c in ngrams["corpora"] if (c.get("local") or {}).get("eval_files")]
    if held:
        raise ConfigError(
            f"config key 'ngrams.corpora': {held} give local.eval_files; an n-gram corpus is "
            "one sample (its paths)"
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config key 'ngrams.corpora': duplicate names {dup}")
    if ngrams["link"] not in names:
        raise ConfigError(
            f"config key 'ngrams.link': {ngrams['link']!r} is not one of ngrams.corpora {names}"
        )


LOCAL_TASKS = ("synthetic_next_token", "synthetic_choice")


def check_downstream(config: dict, models: list[str]) -> None:
    down = config.get("downstream") or {}
    if not down.get("activate"):
        return
    unknown = sorted(set(down["models"] or []) - set(models))
    if unknown:
        raise ConfigError(
            f"config key 'downstream.models': {unknown} are not among the checkpoints' models "
            f"{models}"
        )
    steps_of = model_steps(config)
    for model in down["models"] or models:
        missing = sorted(set(down["steps"]) - set(steps_of[model]))
        if missing:
            raise ConfigError(
                f"config key 'downstream.steps': {missing} are not checkpoints of {model}"
            )
    local = [t for t in down["tasks"] if t in LOCAL_TASKS]
    if local and config["corpus"]["source"] != "synthetic":
        raise ConfigError(
            f"config key 'downstream.tasks': the local tasks {local} are built from the "
            "synthetic language and need corpus.source: synthetic"
        )
    if local:
        need = down["context_tokens"] + 1
        doc = config["corpus"]["synthetic"]["document_length"]
        if need > doc:
            raise ConfigError(
                f"config key 'downstream.context_tokens': an item needs {need} tokens of one "
                f"document, longer than corpus.synthetic.document_length {doc}"
            )
        if config["checkpoints"]["source"] == "minisuite":
            ctx = config["checkpoints"]["minisuite"]["sequence_length"]
            if need > ctx:
                raise ConfigError(
                    f"config key 'downstream.context_tokens': an item needs {need} positions, "
                    f"more than the mini-suite's context {ctx}"
                )
        if down["choices"] > config["corpus"]["synthetic"]["vocab_size"]:
            raise ConfigError(
                "config key 'downstream.choices': more candidates than the vocabulary has tokens"
            )
