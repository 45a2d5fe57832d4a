"""Which checkpoints a run measures, per model: the schedule's steps for the mini-suite and
hub revisions, or the ``step{N}`` folders found on disk for a local training run.

A local run is read in place: the workflow lists it when the DAG is built and never writes,
moves or deletes anything under it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from saturation.branches import BranchError, listed_branches, pattern_revisions
from saturation.schedule import checkpoint_steps, select_steps

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class SuiteError(ValueError):
    """A checkpoint suite that cannot be listed; the message names the config key."""


def schedule_steps(config: dict) -> list[int]:
    """The run's checkpoint steps, from checkpoints.schedule ([] where it is not given)."""
    sched = config["checkpoints"].get("schedule")
    if sched is None:
        return []
    return select_steps(
        checkpoint_steps(sched["final_step"], sched["log_spaced_until"], sched["every"]),
        sched.get("subset"),
    )


def local_revisions(path: str | Path, key: str, step: int | None = None) -> dict[int, Path]:
    """A local model's whole checkpoints: {step: folder} (``saturation.local_runs``)."""
    from saturation.local_runs import LocalRunError, list_run

    try:
        return list_run(path, key, step).steps
    except LocalRunError as exc:
        raise SuiteError(str(exc)) from None


def loaded_files(folder: str | Path, allow_pickle: bool) -> list[str]:
    """The files of a checkpoint folder that loading it reads (config.json and the weights
    with their index), sorted: a job's inputs, so that weights rewritten in place re-run what
    read them (a folder's own time changes only when files are added or removed)."""
    from saturation.loading import CONFIG_PATTERNS, PICKLE_PATTERNS, SAFETENSORS_PATTERNS

    patterns = CONFIG_PATTERNS + SAFETENSORS_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    folder = Path(folder)
    return sorted({str(f) for pattern in patterns for f in folder.glob(pattern) if f.is_file()})


def local_models(config: dict) -> dict[str, dict]:
    """{name: {"steps": {step: folder}, "tokens": {step: tokens seen}, "pending": {step:
    why}, "tokens_per_step": int | None, "tokenizer": str | None}} of checkpoints.local.
    Tokens seen are Trainer's count where it logged one, else step x tokens_per_step;
    ``pending``: checkpoints still being written, left out. A model's tokenizer is its
    entry's, else its first checkpoint folder with tokenizer files of its own, else
    corpus.tokenizer (None on the synthetic language)."""
    from saturation.local_runs import LocalRunError, list_run

    local = config["checkpoints"]["local"]
    text = config["corpus"]["source"] != "synthetic"
    subset = (config["checkpoints"].get("schedule") or {}).get("subset")
    models = {}
    for i, entry in enumerate(local["models"]):
        key = f"checkpoints.local.models[{i}]"
        if entry["name"] in models:
            raise SuiteError(f"config key '{key}.name': {entry['name']!r} is used twice")
        try:
            listing = list_run(entry["path"], f"{key}.path", entry.get("step"),
                               entry.get("pattern"))  # fmt: skip
        except LocalRunError as exc:
            raise SuiteError(str(exc)) from None
        steps = listing.steps
        if subset:
            missing = sorted(set(subset) - set(steps))
            if missing:
                raise SuiteError(
                    f"config key 'checkpoints.schedule.subset': {entry['name']} has no "
                    f"checkpoints at steps {missing} (found {sorted(steps)})"
                )
            steps = {s: steps[s] for s in sorted(subset)}
        per_step = entry.get("tokens_per_step", local.get("tokens_per_step"))
        unlogged = sorted(set(steps) - set(listing.tokens))
        # Tokens seen: Trainer's count, else step x tokens_per_step, else 0 (not known).
        tokens = {s: listing.tokens.get(s, s * (per_step or 0)) for s in steps}
        tokenizer = None
        if text:  # a run's own tokenizer: its first checkpoint that holds one, which stays
            # the same as the run saves more (what reads it is not re-run for a new path)
            own = [f for f in steps.values() if any((f / n).is_file() for n in TOKENIZER_FILES)]
            tokenizer = entry.get("tokenizer") or (str(own[0]) if own else None)
            tokenizer = located(tokenizer or config["corpus"]["tokenizer"])
        models[entry["name"]] = {
            "steps": steps,
            "tokens": tokens,
            "pending": listing.pending,
            "path": str(entry["path"]),
            "tokens_per_step": None if per_step is None else int(per_step),
            "tokens_unknown": [] if per_step else unlogged,  # steps whose tokens are unknown
            "tokenizer": tokenizer,
        }
    return models


def model_name(repo_id: str) -> str:
    """The model's name in paths and tables: the repo id without its owner."""
    return repo_id.rpartition("/")[2]


def revision_name(template: str, step: int, tokens: int) -> str:
    """A revision's branch name from a template: ``{step}``, ``{tokens}`` (tokens seen) and
    ``{tokens_b}`` (tokens seen in billions, rounded: OLMo's ``stage1-step20000-tokens84B``
    is ``stage1-step{step}-tokens{tokens_b}B``)."""
    return template.format(step=step, tokens=tokens, tokens_b=round(tokens / 1e9))


RETRY_KEYS = ("retries", "backoff_seconds", "max_backoff_seconds")  # of checkpoints.hub


def hub_retry(hub: dict) -> dict:
    """``saturation.retry.with_backoff``'s settings from checkpoints.hub's (or the schema's
    defaults of them: ``defaults.fill_derived``)."""
    return {
        "attempts": hub["retries"] + 1,
        "base": hub["backoff_seconds"],
        "cap": hub["max_backoff_seconds"],
    }


def hub_models(config: dict) -> dict[str, dict]:
    """{name: {"repo": id, "revisions": {step: name}, "tokens": {step: tokens seen},
    "tokenizer": repo id or folder}} of checkpoints.hub.models. An entry is a repo id (the section's revision_template,
    tokens_per_step and schedule), or an object that overrides any of them: its own
    ``revision_template`` and ``steps``, a ``revision_pattern`` matched against the repo's
    listed branches (``saturation.branches``), or an explicit ``revisions`` list of
    ``{step, revision, tokens?}`` (e.g. ``[{step: 0, revision: main}]`` for a final
    checkpoint only)."""
    hub = config["checkpoints"]["hub"]
    schedule = schedule_steps(config)
    models = {}
    for i, entry in enumerate(hub["models"]):
        key = f"checkpoints.hub.models[{i}]"
        if isinstance(entry, str):
            entry = {"repo": entry}
        name = entry.get("name") or model_name(entry["repo"])
        if name in models:
            raise SuiteError(f"config key '{key}': two entries share the model name {name!r}")
        per_step = entry.get("tokens_per_step", hub.get("tokens_per_step"))
        both = [k for k in ("revisions", "revision_template") if entry.get(k)]
        if entry.get("revision_pattern") and both:
            raise SuiteError(f"config key '{key}': give revision_pattern or {both[0]}, not both")
        if entry.get("revision_pattern"):
            revisions, tokens = pattern_entry(entry, key, hub, per_step)
        elif entry.get("revisions"):
            revisions, tokens = listed_entry(entry, key, per_step)
        else:
            revisions, tokens = template_entry(entry, key, hub, schedule, per_step)
        order = sorted(revisions)
        models[name] = {
            "repo": entry["repo"],
            "revisions": {s: revisions[s] for s in order},
            "tokens": {s: int(tokens[s]) for s in order},
            "tokenizer": located(entry.get("tokenizer") or hub.get("tokenizer") or entry["repo"]),
        }
    return models


def pattern_entry(entry: dict, key: str, hub: dict, per_step) -> tuple[dict, dict]:
    """({step: revision}, {step: tokens}) of a hub entry's listed branches that match its
    ``revision_pattern`` (those of its ``steps``, where it gives them)."""
    try:
        branches = listed_branches(entry["repo"], hub["branch_lists"], hub_retry(hub))
        revisions, tokens = pattern_revisions(
            entry["repo"], entry["revision_pattern"], branches, per_step, f"{key}.revision_pattern"
        )
    except BranchError as exc:
        raise SuiteError(str(exc)) from None
    if entry.get("steps"):  # a subset of the discovered steps
        wanted = set(entry["steps"])
        absent = sorted(wanted - set(revisions))
        if absent:
            raise SuiteError(
                f"config key '{key}.steps': steps {absent} are not among the branches "
                f"of {entry['repo']} that match its revision_pattern"
            )
        revisions = {s: r for s, r in revisions.items() if s in wanted}
    return revisions, tokens


def listed_entry(entry: dict, key: str, per_step) -> tuple[dict, dict]:
    """({step: revision}, {step: tokens}) of a hub entry's explicit ``revisions`` list."""
    revisions, tokens = {}, {}
    for r in entry["revisions"]:
        step = int(r["step"])
        if step in revisions:
            raise SuiteError(f"config key '{key}.revisions': step {step} is listed twice")
        revisions[step] = ref_name(r["revision"], f"{key}.revisions")
        tokens[step] = r.get("tokens", step * (per_step or 0))
    return revisions, tokens


def template_entry(entry: dict, key: str, hub: dict, schedule, per_step) -> tuple[dict, dict]:
    """({step: revision}, {step: tokens}) of a hub entry's steps (else the schedule's), each
    named by its ``revision_template`` (else the section's)."""
    template = entry.get("revision_template", hub["revision_template"])
    if not (entry.get("steps") or schedule):
        raise SuiteError(
            f"config key '{key}': {entry['repo']} has no steps - give it steps, "
            "revisions or a revision_pattern, or give checkpoints.schedule"
        )
    revisions, tokens = {}, {}
    for step in entry.get("steps") or schedule:
        tokens[step] = step * (per_step or 0)
        try:
            revisions[step] = ref_name(
                revision_name(template, step, tokens[step]), f"{key}.revision_template"
            )
        except (KeyError, IndexError) as exc:
            raise SuiteError(
                f"config key '{key}.revision_template': {template!r} uses an unknown "
                f"field {exc}; the fields are {{step}}, {{tokens}}, {{tokens_b}}"
            ) from None
    return revisions, tokens


# The step under which a backbone from outside the run's models is read: its one revision.
BACKBONE_STEP = 0


def backbone_name(entry: dict) -> str:
    """A ``rank_heads.backbones`` entry's model name: a model of the run (``model``), or one
    from outside it (its ``name``, else the repo's name: ``meta-llama/Llama-2-7b-hf`` ->
    ``Llama-2-7b-hf``)."""
    return entry.get("model") or entry.get("name") or model_name(entry["repo"])


def backbone_models(config: dict) -> dict[str, dict]:
    """Rank-head backbones given by ``repo`` (``rank_heads.backbones``): hub models outside
    the run's models, read at one revision for their rank heads alone (never measured over
    training). {name: {"repo", "revisions": {0: revision}, "tokens": {0: 0}, "tokenizer"}},
    in the shape of :func:`hub_models`; their step in paths is :data:`BACKBONE_STEP`."""
    heads = config.get("rank_heads") or {}
    models = {}
    for i, b in enumerate(heads.get("backbones") or []):
        if not b.get("repo"):
            continue
        key = f"rank_heads.backbones[{i}]"
        name = backbone_name(b)
        if name in models:
            raise SuiteError(f"config key '{key}': two backbones share the name {name!r}")
        models[name] = {
            "repo": b["repo"],
            "revisions": {BACKBONE_STEP: ref_name(b.get("revision") or "main", f"{key}.revision")},
            "tokens": {BACKBONE_STEP: 0},
            "tokenizer": located(b.get("tokenizer") or b["repo"]),
        }
    return models


# What git allows in a branch or tag name (git check-ref-format), and a commit's hex.
BAD_REF = re.compile(r"(^[/.-])|(\.\.)|([\x00-\x20~^:?*\[\\])|(//)|(/\.)|(\.lock$)|([/.]$)|(@\{)")


def ref_name(name: str, key: str) -> str:
    """A revision name as git allows a branch, tag or commit to be named, else refused naming
    the key (``../main`` would otherwise be looked up, found missing, and said only in a job's
    log)."""
    if not name or BAD_REF.search(name):
        raise SuiteError(
            f"config key '{key}': {name!r} cannot name a branch, tag or commit (git refuses "
            "'..', a leading '/', '.' or '-', spaces and ~^:?*[\\)"
        )
    return name


def model_steps(config: dict) -> dict[str, list[int]]:
    """Each model's checkpoint steps, ascending."""
    ckpt = config["checkpoints"]
    if ckpt["source"] == "local":
        return {m: list(v["steps"]) for m, v in local_models(config).items()}
    if ckpt["source"] == "hub":
        return {m: list(v["revisions"]) for m, v in hub_models(config).items()}
    names = [m["name"] for m in ckpt["minisuite"]["models"]]
    return dict.fromkeys(names, schedule_steps(config))


def job_batches(steps: list[int], per_job: int) -> dict[str, list[int]]:
    """Steps cut into jobs of ``per_job`` consecutive steps, each named in paths by its step
    (one checkpoint) or by its first and last steps (``{first}-{last}``)."""
    batches = [steps[i : i + per_job] for i in range(0, len(steps), per_job)]
    return {(str(b[0]) if len(b) == 1 else f"{b[0]}-{b[-1]}"): b for b in batches}


def checkpoint_jobs(
    checkpoints: list[tuple[str, int]], per_job: int
) -> dict[str, list[tuple[str, int]]]:
    """(model, step) checkpoints, in order, cut into jobs of ``per_job`` consecutive ones,
    which may span models (measuring and evaluation jobs). A job of one model's checkpoints
    is named in paths ``{model}/step{N}`` or ``{model}/step{first}-{last}``; a job across
    models by its first and last checkpoints, ``{model}.step{N}-{model}.step{M}``."""
    jobs = {}
    for i in range(0, len(checkpoints), per_job):
        batch = checkpoints[i : i + per_job]
        (m0, s0), (m1, s1) = batch[0], batch[-1]
        if m0 == m1:
            name = f"{m0}/step{s0}" if len(batch) == 1 else f"{m0}/step{s0}-{s1}"
        else:
            name = f"{m0}.step{s0}-{m1}.step{s1}"
        jobs[name] = batch
    return jobs


# What a job's name looks like (checkpoint_jobs), as a wildcard constraint.
CHECKPOINT_JOB = r"[^/]+/step\d+(-\d+)?|[^/]+\.step\d+-[^/]+\.step\d+"


def measure_jobs(config: dict) -> dict[str, list[tuple[str, int]]]:
    """The jobs that measure the run's checkpoints: every model's steps in order, models in
    the config's order, ``metrics.checkpoints_per_job`` a job (across models where that is
    more than a model's own)."""
    per_job = config["metrics"]["checkpoints_per_job"]
    pairs = [(m, s) for m, steps in model_steps(config).items() for s in steps]
    return checkpoint_jobs(pairs, per_job)


def model_tokenizers(config: dict) -> dict[str, str | None]:
    """Each model's tokenizer (a hub repo id or a folder); None on the synthetic language,
    whose token ids are the tokens."""
    ckpt = config["checkpoints"]
    if config["corpus"]["source"] == "synthetic":
        return dict.fromkeys(model_steps(config))
    if ckpt["source"] == "hub":  # with the rank-head backbones from outside the run's models
        models = hub_models(config) | backbone_models(config)
        return {m: v["tokenizer"] for m, v in models.items()}
    if ckpt["source"] == "local":
        return {m: v["tokenizer"] for m, v in local_models(config).items()}
    return dict.fromkeys(model_steps(config), config["corpus"]["tokenizer"])


def tokenizer_key(name: str) -> str:
    """A tokenizer's name in paths: ``EleutherAI/pythia-160m`` -> ``EleutherAI--pythia-160m``;
    a folder: ``tokenizer-`` and its files' digest (:class:`TokenizerFolder`)."""
    if isinstance(name, TokenizerFolder):
        return f"tokenizer-{name.digest[:12]}"
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-.") or "tokenizer"


# Files a tokenizer folder may hold, all read into its digest.
TOKENIZER_CONTENT = (
    *TOKENIZER_FILES,
    "merges.txt",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


class TokenizerFolder(str):
    """A tokenizer folder on disk, identified by what it holds: the string is its path (what
    jobs load), its ``repr`` the digest of its tokenizer files. Snakemake records a rule's
    params by ``repr``, so a run's tokenizer found in another checkpoint folder with the same
    files (Trainer deleting old checkpoints, a new first one) re-runs nothing, and edited
    files re-run what read them."""

    digest: str

    def __new__(cls, path: str | Path):
        folder = Path(path)
        h = hashlib.blake2b(digest_size=16)
        for name in TOKENIZER_CONTENT:
            if (folder / name).is_file():
                h.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
        self = super().__new__(cls, str(path))
        self.digest = h.hexdigest()
        return self

    def __repr__(self) -> str:
        return f"TokenizerFolder(digest={self.digest!r})"

    def __reduce__(self):
        return (TokenizerFolder, (str(self),))


def located(name: str | None) -> str | None:
    """A tokenizer as the workflow passes it on: a folder on disk as a
    :class:`TokenizerFolder`, a hub repo id (or None) as it is."""
    if name is None or isinstance(name, TokenizerFolder) or not Path(name).expanduser().is_dir():
        return name
    return TokenizerFolder(Path(name).expanduser())


def other_tokenizers(config: dict) -> dict[str, str]:
    """{key: tokenizer} of the models' tokenizers other than corpus.tokenizer: those the
    sample is tokenized for once more."""
    reference = config["corpus"].get("tokenizer")
    keys = {}
    for name in model_tokenizers(config).values():
        if name is None or tokenizer_key(name) == tokenizer_key(reference or ""):
            continue
        key = tokenizer_key(name)
        if keys.setdefault(key, name) != name and not isinstance(name, TokenizerFolder):
            raise SuiteError(
                f"tokenizers {keys[key]!r} and {name!r} share the file name {key!r}; "
                "name one of them differently"
            )
    return keys
