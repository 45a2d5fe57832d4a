"""The configuration's defaults that the schema cannot state: those that follow from other
keys or from what is on disk. Applied in order when the workflow is read:

- :func:`expand_shorthands`, before the schema - ``run`` and ``text`` (the common case in two
  command-line keys) into the checkpoint and corpus sections they stand for;
- :func:`fill_derived`, after the schema's own defaults - the corpus's name, the n-gram
  corpus cut from the run's training split, a local run's tokenizer and context lengths.

Every problem is a :class:`saturation.config.ConfigError` naming the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


def error(message: str):
    from saturation.config import ConfigError

    return ConfigError(message)


# --- run= and text= ----------------------------------------------------------------------


def run_models(path: str) -> list[dict]:
    """``checkpoints.local.models`` for ``run``: the folder as one model when it holds
    checkpoint folders (or is one), else each of its subfolders that does, each named after
    its folder."""
    from saturation.local_runs import LocalRunError, list_run

    def holds_run(folder: Path) -> bool:
        try:
            list_run(folder, "run")
        except LocalRunError as exc:
            return "holds no" not in str(exc) and "not a folder" not in str(exc)
        return True

    root = Path(path).expanduser().absolute()  # a relative path: from the study's folder
    if not root.is_dir():
        raise error(f"config key 'run': {root} is not a folder (give the run's absolute path)")
    runs = [root] if holds_run(root) else [f for f in sorted(root.iterdir()) if f.is_dir()]
    runs = [f for f in runs if f == root or holds_run(f)]
    if not runs:
        raise error(
            f"config key 'run': {root} holds no checkpoint folders (checkpoint-N as "
            "transformers.Trainer saves them, or step{N}), nor folders of runs that do"
        )
    return [{"name": safe_name(f.name), "path": str(f)} for f in runs]


def safe_name(folder: str) -> str:
    """A folder's name as a model's name in paths and tables."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", folder).strip("-.") or "run"


def text_files(path: str) -> list[str]:
    """``corpus.local.paths`` for ``text``: the file, or the text files of the folder."""
    p = Path(path).expanduser().absolute()  # a relative path: from the study's folder
    if p.is_file():
        return [str(p)]
    if not p.is_dir():
        raise error(
            f"config key 'text': {p} is neither a file nor a folder (give the text's absolute path)"
        )
    files = sorted(str(f) for f in p.iterdir() if f.suffix in TEXT_SUFFIXES and f.is_file())
    if not files:
        raise error(f"config key 'text': {p} holds no {', '.join(TEXT_SUFFIXES)} files")
    return files


# The common case's keys: what each fills (the section, its local key) and how.
SHORTHANDS = {"run": ("checkpoints", "models", run_models), "text": ("corpus", "paths", text_files)}


def expand_shorthands(config: dict) -> None:
    """``run`` and ``text`` into ``checkpoints.local.models`` and ``corpus.local.paths``, in
    place (each section's source then local); the sections' other keys stay as given."""
    for key, (section, field, expand) in SHORTHANDS.items():
        if config.get(key) is None:
            continue
        part = config.setdefault(section, {})
        if part.get("source", "local") != "local" or (part.get("local") or {}).get(field):
            raise error(
                f"config keys '{key}' and '{section}': give {key}, or {section}.local.{field} "
                f"with {section}.source local, not both"
            )
        part["source"] = "local"
        part.setdefault("local", {})[field] = expand(config[key])


# --- after the schema --------------------------------------------------------------------


def corpus_name(corpus: dict) -> str:
    """corpus.name, or the name a source gives its text."""
    if corpus.get("name"):
        return corpus["name"]
    if corpus["source"] == "local":
        return safe_name(Path(corpus["local"]["paths"][0]).stem)
    if corpus["source"] == "huggingface":
        return safe_name(corpus["huggingface"]["path"].rpartition("/")[2])
    return "synthetic"


def model_context(folder: Path) -> int | None:
    """The positions a checkpoint's config.json gives its model, or None."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    cfg = {**cfg, **(cfg.get("text_config") or {})}
    return next((int(cfg[k]) for k in CONTEXT_KEYS if cfg.get(k)), None)


def fill_context(config: dict, local: dict | None) -> None:
    """metrics.sequence_length and rank_heads.sequence_length given as null: the shortest
    context among a local run's models."""
    sections = [s for s in ("metrics", "rank_heads") if s in config]
    unset = [s for s in sections if config[s].get("sequence_length", 0) is None]
    if not unset:
        return
    if local is None:
        raise error(
            f"config key '{unset[0]}.sequence_length': null (each model's own context) applies "
            "to local runs; give a number"
        )
    contexts = {m: model_context(next(iter(v["steps"].values()))) for m, v in local.items()}
    unknown = sorted(m for m, c in contexts.items() if c is None)
    if unknown:
        raise error(
            f"config key '{unset[0]}.sequence_length': the config.json of {unknown} names no "
            f"context ({', '.join(CONTEXT_KEYS)}); give a number"
        )
    for section in unset:
        config[section]["sequence_length"] = min(contexts.values())


def fill_tokenizer(config: dict, local: dict | None) -> None:
    """corpus.tokenizer of a text corpus, where not given: a local run's own (the first
    model's, saved in its checkpoints)."""
    corpus = config["corpus"]
    if corpus["source"] == "synthetic" or corpus.get("tokenizer"):
        return
    own = [v["tokenizer"] for v in (local or {}).values() if v["tokenizer"]]
    if not own:
        where = " (the run's checkpoints hold no tokenizer files)" if local else ""
        raise error(
            f"config key 'corpus.tokenizer' is missing: the tokenizer the text is sampled with, "
            f"a hub repo id or a folder{where}"
        )
    corpus["tokenizer"] = own[0]


def fill_derived(config: dict, schema_path: str | Path) -> None:
    """The defaults that follow from other keys and from the disk, in place (after the
    schema's), and ``checkpoints.retry``: how every hub request of the run is retried
    (``suites.hub_retry``; the corpus and the harness's data sets come from the hub whatever
    the checkpoints' source), from checkpoints.hub or, without one, the schema's defaults."""
    from saturation.suites import RETRY_KEYS, SuiteError, hub_retry, local_models, located

    checkpoints = config["checkpoints"]
    hub = checkpoints.get("hub")
    if hub is None:
        schema = yaml.safe_load(Path(schema_path).read_text())
        spec = schema["properties"]["checkpoints"]["properties"]["hub"]["properties"]
        hub = {k: spec[k]["default"] for k in RETRY_KEYS}
    checkpoints["retry"] = hub_retry(hub)

    corpus = config["corpus"]
    corpus["name"] = corpus_name(corpus)
    ngrams = config.setdefault("ngrams", {})
    ngrams.setdefault("corpora", [{"name": corpus["name"], "source": "workflow"}])
    ngrams.setdefault("link", ngrams["corpora"][0]["name"])
    local = None
    if config["checkpoints"]["source"] == "local":
        try:
            local = local_models(config)
        except SuiteError as exc:
            raise error(str(exc)) from None
    fill_tokenizer(config, local)
    corpus["tokenizer"] = located(corpus.get("tokenizer"))
    fill_context(config, local)
    if corpus["source"] != "local" and corpus.get("train_tokens", 0) is None:
        raise error(
            "config key 'corpus.train_tokens': null (every training document) applies to local "
            f"files; corpus.source {corpus['source']} needs a number"
        )


def text_bytes(paths: list[str]) -> int:
    return sum(Path(p).expanduser().stat().st_size for p in paths if Path(p).expanduser().is_file())


EXACT_BYTES = 8 * 2**20  # local text up to this size is tokenized when the plan is made (~3 CPU s)


def check_local_sizes(config: dict) -> None:
    """Samples larger than local files hold refused before any job, naming the key: the files
    tokenized as the samples are (up to EXACT_BYTES of text; above, a token is at least a
    byte of text)."""
    corpus = config["corpus"]
    if corpus["source"] != "local":
        return
    local = corpus["local"]
    files = {"train": local["paths"], "eval": local.get("eval_files") or local["paths"]}
    n_bytes = {split: text_bytes(paths) for split, paths in files.items()}
    wanted = {s: corpus[f"{s}_tokens"] for s in ("eval", "train") if corpus[f"{s}_tokens"]}
    if max(n_bytes.values()) <= EXACT_BYTES:
        from saturation.corpus import CorpusError, local_capacity

        params = {k: corpus[k] for k in ("eval_fraction", "max_document_tokens",
                                         "document_separator", "tokenizer", "local")}  # fmt: skip
        params["seed"] = config["seed"]
        try:
            held = local_capacity(params, tuple(wanted))
        except CorpusError as exc:
            raise error(str(exc)) from None
        unit = "tokens"
    else:
        held, unit = n_bytes, "bytes"
    for split, tokens in wanted.items():
        if tokens > held[split]:
            shown = files[split][0] + (", ..." if len(files[split]) > 1 else "")
            raise error(
                f"config key 'corpus.{split}_tokens': {tokens:,} tokens asked, and the "
                f"{split} split of the text ({shown}) holds {held[split]:,} {unit}; lower it"
                + (" (null: every training document)" if split == "train" else "")
                + (" or give more text" if unit == "tokens" else "")
            )
