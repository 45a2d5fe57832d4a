# Python of the workflow: config validation, the model/step lists, wildcard constraints and
# input functions. No rules here. (rules/setup.smk, included first, puts the package on
# sys.path and reads the config files strictly.)
from snakemake.utils import validate

from saturation.code import code_digest
from saturation.config import ConfigError, check_schema, check_semantics
from saturation.suites import (
    CHECKPOINT_JOB,
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
    check_schema(config, SCHEMA)  # one message naming the key, before any job runs
    validate(config, str(SCHEMA))  # fills in the schema's defaults
    check_semantics(config)
except ConfigError as exc:
    raise WorkflowError(f"Invalid configuration: {exc}") from None


def code_of(script):
    """A rule's code, as a param: the digest of its entry script and of the package modules
    it imports, so editing the science re-runs the jobs that run it."""
    return code_digest(workflow_file(f"../scripts/{script}"), str(PACKAGE))


CORPUS = config["corpus"]
CKPT = config["checkpoints"]
METRICS = config["metrics"]
NGRAMS = config["ngrams"]
NGRAM_ENTRIES = {c["name"]: c for c in NGRAMS["corpora"]}
NGRAM_CORPORA = list(NGRAM_ENTRIES)
SYNTHETIC = CORPUS["source"] == "synthetic"
LANGUAGE_META = "results/corpus/synthetic_language.json"
STEPS = schedule_steps(config)  # the mini-suite's schedule
# Each model's own steps: the schedule, a hub entry's revisions, a local run's folders.
MODEL_STEPS = model_steps(config)
MODELS = list(MODEL_STEPS)
# The jobs that measure them: {name in paths: [(model, step), ...]}.
MEASURE_JOBS = measure_jobs(config)
# Each model's tokenizer, and those besides corpus.tokenizer that the sample is tokenized for.
MODEL_TOKENIZER = model_tokenizers(config)
OTHER_TOKENIZERS = other_tokenizers(config)  # {key in paths: repo id or folder}

if CKPT["source"] == "minisuite":
    MINISUITE = CKPT["minisuite"]
    HIDDEN_SIZE = {m["name"]: m["hidden_size"] for m in MINISUITE["models"]}
    TOKENS_PER_STEP = {
        m: MINISUITE["batch_size"] * MINISUITE["sequence_length"] for m in MODELS
    }
elif CKPT["source"] == "hub":
    HUB = CKPT["hub"]
    HUB_MODELS = hub_models(config)  # {model: {repo, revisions: {step: name}, tokens}}
    REPO_ID = {m: v["repo"] for m, v in HUB_MODELS.items()}
else:
    LOCAL = local_models(config)  # read in place: {model: {steps: {step: folder}, ...}}
    TOKENS_PER_STEP = {m: v["tokens_per_step"] for m, v in LOCAL.items()}


def tokens_seen(model, step):
    """Tokens the checkpoint was trained on: its step times the model's tokens per step, or
    the number a hub entry gives for the revision."""
    if CKPT["source"] == "hub":
        return HUB_MODELS[model]["tokens"][int(step)]
    return int(step) * TOKENS_PER_STEP[model]


def measured_checkpoints(wildcards):
    """The (model, step) checkpoints one measuring job reads (its ``job`` wildcard names
    them)."""
    try:
        return MEASURE_JOBS[wildcards.job]
    except KeyError:
        raise WorkflowError(
            f"results/metrics/{wildcards.job} is not a measuring job of this run: with "
            f"metrics.checkpoints_per_job = {METRICS['checkpoints_per_job']}, its jobs are "
            + ", ".join(MEASURE_JOBS)
        ) from None


def measure_params(wildcards):
    """Each checkpoint a measuring job reads: its model and step, the tokens it was trained
    on, where it is read from (a folder, or the revision manifest), the eval sample tokenized
    the model's way and the model's tokenizer."""
    return [
        {
            "model": m,
            "step": s,
            "tokens_seen": tokens_seen(m, s),
            "checkpoint": checkpoint_path(m, s),
            "eval": corpus_of(m, "eval"),
            "tokenizer": MODEL_TOKENIZER[m],
        }
        for m, s in measured_checkpoints(wildcards)
    ]


def measure_inputs(wildcards):
    """What a measuring job reads: each checkpoint's folder or its model's revision manifest,
    and each model's eval sample."""
    read = measure_params(wildcards)
    return {
        "checkpoints": list(dict.fromkeys(c["checkpoint"] for c in read)),
        "weights": [
            f
            for m, s in measured_checkpoints(wildcards)
            for f in checkpoint_files(m, s)
        ],
        "eval": list(dict.fromkeys(c["eval"] for c in read)),
    }


def measured_of(pattern):
    """``pattern`` formatted for every measuring job of the run (``{job}``: its name)."""
    return [pattern.format(job=j) for j in MEASURE_JOBS]


def checkpoints_of(pattern):
    """``pattern`` formatted for every (model, step) of the run."""
    return [pattern.format(model=m, step=s) for m in MODELS for s in MODEL_STEPS[m]]


# How jobs read hub revisions (None: local checkpoint folders).
HUB_ACCESS = (
    {
        "evict": HUB["evict"],
        "staging": "results/checkpoints/staging",  # evict: job-private folders, deleted
        "retry": {
            "attempts": HUB["retries"] + 1,
            "base": HUB["backoff_seconds"],
            "cap": HUB["max_backoff_seconds"],
        },
    }
    if CKPT["source"] == "hub"
    else None
)


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    step=r"\d+",
    rank=r"\d+|full",
    ranks=r"(\d+|full)(-(\d+|full))?",
    corpus="|".join(map(re.escape, NGRAM_CORPORA)),
    split="train|eval",
    tokenizer="|".join(map(re.escape, OTHER_TOKENIZERS)) or "(?!)",


def corpus_of(model, split):
    """The sample a model reads: the corpus as drawn, or its documents tokenized with the
    model's own tokenizer."""
    tokenizer = MODEL_TOKENIZER[model]
    if tokenizer is None or tokenizer == CORPUS["tokenizer"]:
        return f"results/corpus/{split}.parquet"
    return f"results/corpus/{split}/{tokenizer_key(tokenizer)}.parquet"


def sample_input(split):
    """An input function: the ``split`` sample of the job's model, tokenized its way."""
    return lambda wildcards: corpus_of(wildcards.model, split)


def checkpoint_dir(model, step):
    return f"results/checkpoints/{model}/step{step}"


def revision_manifest(model):
    return f"results/checkpoints/{model}/revisions.parquet"


def checkpoint_path(model, step):
    """What a job reads a checkpoint from: the mini-suite's folder, the model's revision
    manifest (the job then reads the revision through the Hugging Face cache), or a local
    run's folder, in place."""
    if CKPT["source"] == "hub":
        return revision_manifest(model)
    if CKPT["source"] == "local":
        return str(LOCAL[model]["steps"][int(step)])
    return checkpoint_dir(model, step)


def checkpoint_input(wildcards):
    return checkpoint_path(wildcards.model, wildcards.step)


def checkpoint_files(model, step):
    """A local run's checkpoint as the files a job loads (config.json, the weights), for its
    inputs: weights rewritten in place re-run what read them. [] for other sources."""
    if CKPT["source"] != "local":
        return []
    return loaded_files(LOCAL[model]["steps"][int(step)], CKPT["allow_pickle"])


def checkpoint_files_input(wildcards):
    return checkpoint_files(wildcards.model, wildcards.step)


def manifest_params(wildcards):
    return {
        "model": wildcards.model,
        "repo_id": REPO_ID[wildcards.model],
        "revisions": HUB_MODELS[wildcards.model]["revisions"],
        "trusted_steps": CKPT["trusted_steps"].get(wildcards.model, []),
        "reference": HUB["reference_revision"],
        "retry": HUB_ACCESS["retry"],
    }


def prefetch_targets():
    """What a machine with the network fetches before an offline run: every revision into
    the Hugging Face cache, the corpus samples and the hub n-gram corpora."""
    targets = []
    if CKPT["source"] == "hub":
        targets += checkpoints_of("results/prefetch/{model}/step{step}.json")
    targets += expand("results/corpus/{split}.parquet", split=("train", "eval"))
    targets += sorted({corpus_of(m, s) for m in MODELS for s in ("train", "eval")})
    targets += [
        f"results/ngrams/{name}/tokens.parquet"
        for name, entry in NGRAM_ENTRIES.items()
        if entry["source"] != "workflow"
    ]
    return targets


def corpus_params(split):
    """What sampling one split reads: editing another split's size or an unused source
    section does not re-run it."""
    params = {
        "source": CORPUS["source"],
        "split": split,
        "n_tokens": CORPUS[f"{split}_tokens"],
        "seed": config["seed"],
    }
    if CORPUS["source"] == "synthetic":
        params["document_length"] = CORPUS["synthetic"]["document_length"]
    else:
        params["tokenizer"] = CORPUS["tokenizer"]
        params["eval_fraction"] = CORPUS["eval_fraction"]
        params["max_document_tokens"] = CORPUS["max_document_tokens"]
        params["document_separator"] = CORPUS["document_separator"]
        params[CORPUS["source"]] = CORPUS[CORPUS["source"]]
    return params


def corpus_inputs(wildcards):
    if CORPUS["source"] == "synthetic":
        return {"language": "results/corpus/synthetic_language.npz"}
    if CORPUS["source"] == "local":
        return {"documents": CORPUS["local"]["paths"]}
    return {}


def minisuite_model(wildcards):
    return {
        "name": wildcards.model,
        "hidden_size": HIDDEN_SIZE[wildcards.model],
        "num_layers": MINISUITE["num_layers"],
        "head_dim": MINISUITE["head_dim"],
        "sequence_length": MINISUITE["sequence_length"],
    }


def minisuite_vocab():
    """The vocabulary the mini-suite is trained on: the synthetic language's, or the
    tokenizer's for a text corpus."""
    if CORPUS["source"] == "synthetic":
        return {"vocab_size": CORPUS["synthetic"]["vocab_size"], "tokenizer": None}
    return {"vocab_size": None, "tokenizer": CORPUS["tokenizer"]}


RANK_HEADS = config["rank_heads"]
BACKBONES = [
    {
        "model": b["model"],
        "step": MODEL_STEPS[b["model"]][-1] if b.get("step") is None else b["step"],
    }
    for b in RANK_HEADS["backbones"]
]
RANK_SWEEP = [str(r) for r in sorted(set(RANK_HEADS["ranks"]))] + ["full"]
# The jobs that train them: {name in paths: [rank, ...]}, rank_heads.ranks_per_job a job.
RANK_JOBS = job_batches(RANK_SWEEP, RANK_HEADS["ranks_per_job"])


def trained_ranks(wildcards):
    """The ranks one rank-head job trains (its ``ranks`` wildcard names them)."""
    try:
        return RANK_JOBS[wildcards.ranks]
    except KeyError:
        raise WorkflowError(
            f"r{wildcards.ranks} is not a rank-head job of this run: with "
            f"rank_heads.ranks_per_job = {RANK_HEADS['ranks_per_job']} they are r"
            + ", r".join(RANK_JOBS)
        ) from None


HEAD_TRAINING_KEYS = (
    "steps",
    "batch_tokens",
    "lr_base",
    "lr_reference_params",
    "lr_exponent",
    "warmup_steps",
    "min_lr_ratio",
    "weight_decay",
    "chunk_tokens",
)


def cache_output(path):
    return directory(path) if RANK_HEADS["keep_cache"] else temp(directory(path))


def ngram_tokens(wildcards):
    """The tokens of an n-gram corpus: the workflow's training split, or its own sample."""
    if NGRAM_ENTRIES[wildcards.corpus]["source"] == "workflow":
        return {
            "tokens": "results/corpus/train.parquet",
            "meta": "results/corpus/train.json",
        }
    return {
        "tokens": f"results/ngrams/{wildcards.corpus}/tokens.parquet",
        "meta": f"results/ngrams/{wildcards.corpus}/tokens.json",
    }


def ngram_tokenizer(name):
    entry = NGRAM_ENTRIES[name]
    if entry["source"] == "workflow":
        return CORPUS["tokenizer"] or "synthetic"
    return entry["tokenizer"]


def ngram_corpus_params(name):
    entry = NGRAM_ENTRIES[name]
    params = {
        "source": entry["source"],
        "split": "train",
        "n_tokens": entry["n_tokens"],
        "seed": config["seed"],
        "tokenizer": entry["tokenizer"],
        "eval_fraction": 0.0,  # every document counts
        "max_document_tokens": None,
        "document_separator": CORPUS["document_separator"],
        "keep_text": False,  # no other tokenizer reads an n-gram corpus
    }
    params[entry["source"]] = entry[entry["source"]]
    return params


def ngram_corpus_inputs(wildcards):
    entry = NGRAM_ENTRIES[wildcards.corpus]
    if entry["source"] == "local":
        return {"documents": entry["local"]["paths"]}
    return {}


DOWNSTREAM = config["downstream"]
DOWNSTREAM_MODELS = DOWNSTREAM.get("models") or MODELS


def downstream_tokenizer(model):
    """The tokenizer the harness uses for ``model``: the synthetic language's word-level
    one, or the model's (None: the hub checkpoint's own files)."""
    if SYNTHETIC:
        return "results/downstream/tasks/tokenizer"
    tokenizer = MODEL_TOKENIZER[model]
    if CKPT["source"] == "hub" and tokenizer == HUB_MODELS[model]["repo"]:
        return None
    return tokenizer


def downstream_jobs():
    """The evaluation jobs: the selection's (model, step) pairs in order,
    ``downstream.checkpoints_per_job`` a job, across models ({name in paths: [(model,
    step), ...]}); known once select_downstream has run."""
    import pandas as pd

    selection = pd.read_parquet(checkpoints.select_downstream.get().output[0])
    pairs = sorted(set(zip(selection.model, selection.step.astype(int))))
    return checkpoint_jobs(pairs, DOWNSTREAM["checkpoints_per_job"])


def evaluations_of(wildcards):
    """The (model, step) pairs one evaluation job reads (its ``job`` wildcard names them)."""
    jobs = downstream_jobs()
    try:
        return jobs[wildcards.job]
    except KeyError:
        raise WorkflowError(
            f"results/downstream/{wildcards.job} is not an evaluation job of this run: "
            f"with downstream.checkpoints_per_job = {DOWNSTREAM['checkpoints_per_job']}, "
            "the selection's are " + ", ".join(jobs)
        ) from None


def downstream_inputs(wildcards):
    pairs = evaluations_of(wildcards)
    paths = [checkpoint_path(m, s) for m, s in pairs]
    inputs = {
        "checkpoints": list(dict.fromkeys(paths)),
        "weights": [f for m, s in pairs for f in checkpoint_files(m, s)],
    }
    if SYNTHETIC:
        inputs["tasks"] = "results/downstream/tasks"
    return inputs


def downstream_params(wildcards):
    """Each checkpoint an evaluation job reads: its model and step, where it is read from
    (a folder, or the manifest), and the tokenizer the harness uses."""
    return [
        {
            "model": m,
            "step": s,
            "checkpoint": checkpoint_path(m, s),
            "tokenizer": downstream_tokenizer(m),
        }
        for m, s in evaluations_of(wildcards)
    ]


def downstream_evaluations(wildcards):
    """The evaluation jobs' tables; known once select_downstream has run."""
    return [f"results/downstream/{job}.parquet" for job in downstream_jobs()]


TABLES = {
    "metrics": "results/tables/checkpoint_metrics.parquet",
    "spectra": "results/tables/spectra.parquet",
    "saturation": "results/tables/saturation.parquet",
    "fit": "results/tables/scaling_fit.parquet",
    "rank_heads": "results/tables/rank_heads.parquet",
    "ngram_spectra": "results/tables/ngram_spectra.parquet",
    "checkpoints": "results/tables/checkpoints.parquet",
}

# Each figure and the tables it draws from.
FIGURES = {
    "fig1a_loss": ["metrics"],
    "fig1b_scaling": ["metrics", "saturation", "fit"],
    "fig2_anisotropy_layers": ["metrics", "checkpoints"],
    "fig3_anisotropy_training": ["metrics"],
    "fig4_head_spectrum": ["metrics", "spectra"],
    "fig5_singular_entropy": ["metrics"],
    "fig6_rank_heads": ["metrics", "rank_heads"],
    "fig7_w_error": ["metrics", "ngram_spectra", "language_matrix"],
    "fig8_loss_vs_w_error": ["metrics", "rank_heads", "ngram_spectra"],
}
FIGURE_GROUPS = {
    "fig1a_loss": "Loss and saturation",
    "fig1b_scaling": "Loss and saturation",
    "fig2_anisotropy_layers": "Anisotropy",
    "fig3_anisotropy_training": "Anisotropy",
    "fig4_head_spectrum": "LM-head spectrum",
    "fig5_singular_entropy": "LM-head spectrum",
    "fig6_rank_heads": "Rank-constrained heads",
    "fig7_w_error": "n-gram spectra",
    "fig8_loss_vs_w_error": "n-gram spectra",
}


def figure_inputs(needs):
    inputs = {name: TABLES[name] for name in needs if name in TABLES}
    if SYNTHETIC:  # the entropy floor is drawn where loss is shown
        inputs["language"] = LANGUAGE_META
        if "language_matrix" in needs:  # Fig 7's reference: the language's true logits
            inputs["language_matrix"] = "results/corpus/synthetic_language.npz"
    return inputs


def saturation_inputs(wildcards):
    inputs = {"metrics": TABLES["metrics"]}
    if SYNTHETIC:
        inputs["language"] = LANGUAGE_META
    return inputs


def all_targets():
    targets = list(TABLES.values()) + ["results/tables/scaling_points.parquet"]
    targets += expand("results/figures/{fig}.{ext}", fig=FIGURES, ext=("png", "pdf"))
    if CKPT["source"] == "minisuite":
        targets += expand("results/training/{model}.parquet", model=MODELS)
    if DOWNSTREAM["activate"]:
        targets += [
            "results/tables/downstream.parquet",
            "results/tables/table1.md",
            "results/tables/table1.tex",
            "results/tables/table1.html",
        ]
    return targets
