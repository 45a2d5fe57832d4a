# The rank-heads stage's Python (the backbones, the ranks and the jobs that train them, the cache's lifetime), included by rules/rank_heads.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
from saturation.head_settings import HeadTraining, StreamTraining, rank_heads_keys


def backbone_step(b):
    """The step a backbone's heads are trained at: its own, the model's last checkpoint
    (step null), or a backbone from outside the run's models' one revision."""
    if b.get("repo"):
        return BACKBONE_STEP
    return MODEL_STEPS[b["model"]][-1] if b.get("step") is None else b["step"]


BACKBONES = [
    {"model": backbone_name(b), "step": backbone_step(b)}
    for b in RANK_HEADS["backbones"]
]
# Each backbone's own settings where its entry gives them (a large model's dtype, memory
# and time), else rank_heads'.
BACKBONE_SETTINGS = {
    backbone_name(b): {
        k: RANK_HEADS[k] if b.get(k) is None else b[k]
        for k in ("dtype", "mem_mb", "runtime")
    }
    for b in RANK_HEADS["backbones"]
}
for _i, _b in enumerate(
    RANK_HEADS["backbones"]
):  # a backbone following its last checkpoint
    if _b.get("model") and _b.get("step") is None:
        _step = MODEL_STEPS[_b["model"]][-1]
        _trained = sorted(
            int(p.parent.name.removeprefix("step"))
            for p in Path(f"results/rank_heads/{_b['model']}").glob("step*/r*.parquet")
        )
        if _trained and _step not in _trained:
            logger.warning(
                f"rank heads of {_b['model']} follow its last checkpoint, now step {_step}: "
                f"they are trained anew there (those of step {_trained[-1]} stay); give "
                f"rank_heads.backbones[{_i}].step to keep one step"
            )
RANK_SWEEP = [str(r) for r in sorted(set(RANK_HEADS["ranks"]))] + ["full"]
# The jobs that train them: {name in paths: [rank, ...]}, rank_heads.ranks_per_job a job.
RANK_JOBS = job_batches(RANK_SWEEP, RANK_HEADS["ranks_per_job"])


def rank_head_job(wildcards):
    """The ranks one rank-head job trains (its ``ranks`` wildcard names them)."""
    try:
        return RANK_JOBS[wildcards.ranks]
    except KeyError:
        raise WorkflowError(
            f"r{wildcards.ranks} is not a rank-head job of this run: with "
            f"rank_heads.ranks_per_job = {RANK_HEADS['ranks_per_job']} they are r"
            + ", r".join(RANK_JOBS)
        ) from None


# The settings of HeadTraining (protocol cached) and StreamTraining (protocol paper), each
# from its rank_heads key of the same name (saturation/head_settings.py).
HEAD_TRAINING_KEYS = rank_heads_keys(HeadTraining)
STREAM_TRAINING_KEYS = rank_heads_keys(StreamTraining)


def backbone_setting(key, per_rank=False):
    """An input function: the job's backbone's ``key`` (its entry's, else rank_heads'); with
    ``per_rank``, times the ranks the job trains (rank_heads.runtime is minutes a rank).
    """

    def setting(wildcards):
        value = BACKBONE_SETTINGS[wildcards.model][key]
        return value * len(rank_head_job(wildcards)) if per_rank else value

    return setting


def backbone_params(keys):
    """An input function: rank_heads' ``keys``, the job's backbone's own where its entry
    gives them (its dtype)."""
    return lambda wildcards: {
        k: BACKBONE_SETTINGS[wildcards.model].get(k, RANK_HEADS[k]) for k in keys
    }


def head_setup(keys):
    """A training setup's settings: ``keys`` of rank_heads, the heads' initialisation, the
    mixture's components and the run's seed."""
    return {k: RANK_HEADS[k] for k in keys} | {
        "init": RANK_HEADS["init"],
        "components": RANK_HEADS["mixture_components"],
        "seed": config["seed"],
    }


def cache_output(path):
    return directory(path) if RANK_HEADS["keep_cache"] else temp(directory(path))
