# Python of the workflow: config validation, the model/step lists, wildcard constraints and
# input functions. No rules here. (rules/setup.smk, included first, puts the package on
# sys.path and reads the config files strictly.)
from snakemake.utils import validate

from saturation.code import code_digest
from saturation.config import ConfigError, check_schema, check_semantics
from saturation.defaults import expand_shorthands, fill_derived
from saturation.outputs import PATH
from saturation.tables import MEASURED_TABLES  # the tables a measuring job writes
from saturation.suites import (
    CHECKPOINT_JOB,
    BACKBONE_STEP,
    TokenizerFolder,
    backbone_models,
    backbone_name,
    checkpoint_jobs,
    hub_models,
    local_models,
    job_batches,
    loaded_files,
    measure_jobs,
    model_steps,
    model_tokenizers,
    other_tokenizers,
    schedule_steps,
    tokenizer_key,
)

SCHEMA = workflow_file("../schemas/config.schema.yaml")
try:
    expand_shorthands(config)  # run= and text=, the common case
    check_schema(config, SCHEMA)  # one message naming the key, before any job runs
    validate(config, str(SCHEMA))  # fills in the schema's defaults
    fill_derived(config, SCHEMA)  # and those that follow from other keys and the disk
    check_semantics(config)
except ConfigError as exc:
    standalone = (
        " (config files given with --configfile stand alone: config/config.yaml, the "
        "demo, is not read under them; config/local-run.yaml is a starting point)"
        if workflow.overwrite_configfiles and "is missing" in str(exc)
        else ""
    )
    if "'checkpoints' is missing" in str(exc) and config.get("run") is None:
        standalone = (  # the starter config planned without its two command-line keys
            ": give your run's folder and your text on the command line, --config "
            "run=/path/to/run text=/path/to/text (docs/your-models.md), or a checkpoints "
            "section"
        )
    raise WorkflowError(f"Invalid configuration: {exc}{standalone}") from None


def code_of(script):
    """A rule's code, as a param: the digest of its entry script and of the package modules
    it imports, so editing the science re-runs the jobs that run it."""
    return code_digest(workflow_file(f"../scripts/{script}"), str(PACKAGE))


# The config's sections, each named once for every rule file.
CORPUS = config["corpus"]
CHECKPOINT_CONFIG = config["checkpoints"]  # not Snakemake's `checkpoints`
METRICS = config["metrics"]
NGRAMS = config["ngrams"]
RANK_HEADS = config.get("rank_heads", {})  # the section is optional
DOWNSTREAM = config["downstream"]
# Only the head's spectrum, read by range: no forward pass, and only the head's figures.
SPECTRUM_ONLY = "forward" not in METRICS["parts"]
# Named evaluation corpora each checkpoint is also scored on (WikiText as the harness's);
# none where only the head's spectrum is measured (no forward pass).
EVAL_CORPORA = {} if SPECTRUM_ONLY else {c["name"]: c for c in METRICS["eval_corpora"]}
# Rank-constrained heads where the config has the section (none on the head alone).
RANK_HEADS_ON = "rank_heads" in config and not SPECTRUM_ONLY
NGRAM_ENTRIES = {c["name"]: c for c in NGRAMS["corpora"]}
NGRAM_CORPORA = list(NGRAM_ENTRIES)
SYNTHETIC = CORPUS["source"] == "synthetic"
LANGUAGE_META = PATH["synthetic_language_record"]
STEPS = schedule_steps(config)  # the mini-suite's schedule
# Each model's own steps: the schedule, a hub entry's revisions, a local run's folders.
MODEL_STEPS = model_steps(config)
MODELS = list(MODEL_STEPS)
# The jobs that measure them: {name in paths: [(model, step), ...]}.
MEASURE_JOBS = measure_jobs(config)
# Each model's tokenizer, and those besides corpus.tokenizer that the sample is tokenized for.
MODEL_TOKENIZER = model_tokenizers(config)
OTHER_TOKENIZERS = other_tokenizers(config)  # {key in paths: repo id or folder}
# The tokenizer each model's evaluation corpora are encoded with, and those by key in paths.
EVAL_TOKENIZER = {m: t or CORPUS.get("tokenizer") for m, t in MODEL_TOKENIZER.items()}
MODEL_TOKENIZER_KEYS = {tokenizer_key(t): t for t in EVAL_TOKENIZER.values() if t}

# The checkpoint source's own settings, each defined (empty where it does not apply) for
# every source: the mini-suite's setup and widths, the hub section and its models, a local
# run's folders, and the tokens a training step consumed.
SOURCE = CHECKPOINT_CONFIG["source"]
MINISUITE = CHECKPOINT_CONFIG["minisuite"] if SOURCE == "minisuite" else {}
HIDDEN_SIZE = {m["name"]: m["hidden_size"] for m in MINISUITE.get("models", [])}
HUB = CHECKPOINT_CONFIG["hub"] if SOURCE == "hub" else {}
# How hub requests are retried (the harness's tasks' data sets come from the hub too).
HUB_RETRY = CHECKPOINT_CONFIG["retry"]
# Rank-head backbones from outside the run's models (rank_heads.backbones' repo), read at
# one revision for their heads alone: {model: {repo, revisions, tokens, tokenizer}}.
OUTSIDE_BACKBONES = backbone_models(config) if SOURCE == "hub" else {}
HUB_MODELS = (
    hub_models(config) | OUTSIDE_BACKBONES if SOURCE == "hub" else {}
)  # {model: {repo, revisions, tokens}}
REPO_ID = {m: v["repo"] for m, v in HUB_MODELS.items()}
LOCAL = (
    local_models(config) if SOURCE == "local" else {}
)  # {model: {steps: {step: folder}, tokens: {step: tokens seen}, pending: {step: why}}}
for _model, _run in LOCAL.items():  # checkpoints still being written: the next run's
    for _step, _why in _run["pending"].items():
        logger.warning(
            f"{_model} step {_step} is left out of this run, still being written "
            f"({_why}): {_run['path']}"
        )


def tokens_seen(model, step):
    """Tokens the checkpoint was trained on: the mini-suite's step times its tokens per
    step; the number a hub entry gives for the revision; a local run's (Trainer's count
    where logged, else step x tokens_per_step)."""
    if SOURCE == "hub":
        return HUB_MODELS[model]["tokens"][int(step)]
    if SOURCE == "local":
        return LOCAL[model]["tokens"][int(step)]
    return int(step) * MINISUITE["batch_size"] * MINISUITE["sequence_length"]


def for_each_checkpoint(pattern):
    """``pattern`` formatted for every (model, step) of the run."""
    return [pattern.format(model=m, step=s) for m in MODELS for s in MODEL_STEPS[m]]


# How jobs read hub revisions (None: local checkpoint folders).
HUB_ACCESS = (
    {
        "evict": HUB["evict"],
        "staging": "results/checkpoints/staging",  # evict: job-private folders, deleted
        "heads": "results/checkpoints/heads",  # metrics.parts [spectrum]: heads prefetched
        "retry": HUB_RETRY,
    }
    if SOURCE == "hub"
    else None
)


wildcard_constraints:
    model="|".join(map(re.escape, [*MODELS, *OUTSIDE_BACKBONES])),
    step=r"\d+",
    rank=r"\d+|full",
    ranks=r"(\d+|full)(-(\d+|full))?",
    corpus="|".join(map(re.escape, NGRAM_CORPORA)),
    split="train|eval",
    tokenizer="|".join(map(re.escape, OTHER_TOKENIZERS)) or "(?!)",
    eval_corpus="|".join(map(re.escape, EVAL_CORPORA)) or "(?!)",
    eval_tokenizer="|".join(map(re.escape, MODEL_TOKENIZER_KEYS)) or "(?!)",


def own_tokenizer(model):
    """The key in paths of the tokenizer a model reads the corpus with, where it is not the
    corpus's own (None where it is)."""
    tokenizer = MODEL_TOKENIZER[model]
    if tokenizer is None or tokenizer_key(tokenizer) == tokenizer_key(
        CORPUS["tokenizer"]
    ):
        return None
    return tokenizer_key(tokenizer)


def model_sample(model, split):
    """The sample a model reads: the corpus as drawn, or its documents tokenized with the
    model's own tokenizer."""
    key = own_tokenizer(model)
    if key is None:
        return PATH["corpus"].format(split=split)
    return PATH["tokenized_corpus"].format(split=split, tokenizer=key)


def token_counts(model):
    """Each token id's count in the training sample the model reads (metrics.parts
    frequency)."""
    key = own_tokenizer(model)
    return PATH["token_counts"].format(
        sample="train" if key is None else f"train/{key}"
    )


def sample_input(split):
    """An input function: the ``split`` sample of the job's model, tokenized its way."""
    return lambda wildcards: model_sample(wildcards.model, split)


def model_eval_corpora(model):
    """{name: (tokens, record)} of every evaluation corpus, encoded with the model's
    tokenizer."""
    if not EVAL_CORPORA:
        return {}
    key = tokenizer_key(EVAL_TOKENIZER[model])
    return {
        name: [
            PATH[table].format(eval_corpus=name, eval_tokenizer=key)
            for table in ("eval_corpus_tokens", "eval_corpus_tokens_record")
        ]
        for name in EVAL_CORPORA
    }


def checkpoint_dir(model, step):
    return PATH["minisuite_checkpoint"].format(model=model, step=step)


def revision_manifest(model):
    return PATH["revision_manifest"].format(model=model)


def checkpoint_source(model, step):
    """What a job reads a checkpoint from: the mini-suite's folder, the model's revision
    manifest (the job then reads the revision through the Hugging Face cache), or a local
    run's folder, in place."""
    if SOURCE == "hub":
        return revision_manifest(model)
    if SOURCE == "local":
        return str(LOCAL[model]["steps"][int(step)])
    return checkpoint_dir(model, step)


def checkpoint_source_input(wildcards):
    return checkpoint_source(wildcards.model, wildcards.step)


def checkpoint_files(model, step):
    """A local run's checkpoint as the files a job loads (config.json, the weights), for its
    inputs: weights rewritten in place re-run what read them. [] for other sources."""
    if SOURCE != "local":
        return []
    return loaded_files(
        LOCAL[model]["steps"][int(step)], CHECKPOINT_CONFIG["allow_pickle"]
    )


def checkpoint_files_input(wildcards):
    return checkpoint_files(wildcards.model, wildcards.step)


# The run's tables (saturation/outputs.py: every output's name and path).
TABLES = {
    name: PATH[name]
    for name in (
        "checkpoint_metrics",
        "head_spectra",
        "checkpoints",
        "document_losses",
        "truncated_heads",
        "saturation",
        "scaling_fit",
        "scaling_points",
        "saturation_by_size",
        "ngram_spectra",
        *(("rank_heads", "backbone_spectra") if RANK_HEADS_ON else ()),
    )
}
