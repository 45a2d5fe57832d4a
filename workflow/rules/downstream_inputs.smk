# The downstream stage's Python (the evaluation jobs (known once select_downstream has run) and what each reads), included by rules/downstream.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
from saturation.story_cloze import TASK as STORY_CLOZE, harness_tasks

DOWNSTREAM_MODELS = DOWNSTREAM.get("models") or MODELS
# The tasks the harness runs, and those left out with the reason (StoryCloze without its
# data); with the data, the workflow's StoryCloze task first on the harness's include path.
HARNESS_TASKS, MISSING_TASKS = harness_tasks(
    DOWNSTREAM["tasks"], DOWNSTREAM["story_cloze_dir"]
)
STORY_CLOZE_TASK = (
    PATH["story_cloze_task"]
    if STORY_CLOZE in HARNESS_TASKS and DOWNSTREAM["story_cloze_dir"]
    else None
)
HARNESS_INCLUDE = [
    p
    for p in (
        DOWNSTREAM["include_path"],
        STORY_CLOZE_TASK and str(Path(STORY_CLOZE_TASK).parent),
    )
    if p
] or None


def downstream_tokenizer(model):
    """The tokenizer the harness uses for ``model``: the synthetic language's word-level
    one, or the model's (None: the hub checkpoint's own files)."""
    if SYNTHETIC:
        return f"{PATH['downstream_tasks']}/tokenizer"
    tokenizer = MODEL_TOKENIZER[model]
    if SOURCE == "hub" and tokenizer == HUB_MODELS[model]["repo"]:
        return None
    return tokenizer


def downstream_jobs():
    """The evaluation jobs: the selection's (model, step) pairs in order,
    ``downstream.checkpoints_per_job`` a job, across models ({name in paths: [(model,
    step), ...]}); known once select_downstream has run. Pairs that are not checkpoints of
    this run are left out: a selection another configuration left in results/ (read as it
    stands while its re-run is planned) adds no job."""
    import pandas as pd

    selection = pd.read_parquet(checkpoints.select_downstream.get().output[0])
    pairs = sorted(
        (m, s)
        for m, s in set(zip(selection.model, selection.step.astype(int)))
        if m in DOWNSTREAM_MODELS and s in MODEL_STEPS[m]
    )
    return checkpoint_jobs(pairs, DOWNSTREAM["checkpoints_per_job"])


def evaluation_job(wildcards):
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
    pairs = evaluation_job(wildcards)
    paths = [checkpoint_source(m, s) for m, s in pairs]
    inputs = {
        "checkpoints": list(dict.fromkeys(paths)),
        "weights": [f for m, s in pairs for f in checkpoint_files(m, s)],
    }
    if SYNTHETIC:
        inputs["tasks"] = PATH["downstream_tasks"]
    if STORY_CLOZE_TASK:
        inputs["story_cloze"] = STORY_CLOZE_TASK
    return inputs


def downstream_params(wildcards):
    """Each checkpoint an evaluation job reads: its model and step, where it is read from
    (a folder, or the manifest), and the tokenizer the harness uses."""
    return [
        {
            "model": m,
            "step": s,
            "checkpoint": checkpoint_source(m, s),
            "tokenizer": downstream_tokenizer(m),
        }
        for m, s in evaluation_job(wildcards)
    ]


def downstream_evaluations(wildcards):
    """The evaluation jobs' tables; known once select_downstream has run."""
    return [PATH["downstream_part"].format(job=job) for job in downstream_jobs()]


def downstream_raw(wildcards):
    """Each evaluation job's raw record: the harness's results and each item's score."""
    return [PATH["downstream_raw"].format(job=job) for job in downstream_jobs()]
