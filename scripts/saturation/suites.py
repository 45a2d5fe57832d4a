"""Which checkpoints a run measures, per model: the schedule's steps for the mini-suite and
hub revisions, or the ``step{N}`` folders found on disk for a local training run.

A local run is read in place: the workflow lists it when the DAG is built and never writes,
moves or deletes anything under it.
"""

from __future__ import annotations

import re
from pathlib import Path

from saturation.schedule import checkpoint_steps, select_steps

STEP_FOLDER = re.compile(r"^step(\d+)$")


class SuiteError(ValueError):
    """A checkpoint suite that cannot be listed; the message names the config key."""


def schedule_steps(config: dict) -> list[int]:
    """The run's checkpoint steps, from checkpoints.schedule."""
    sched = config["checkpoints"]["schedule"]
    return select_steps(
        checkpoint_steps(sched["final_step"], sched["log_spaced_until"], sched["every"]),
        sched.get("subset"),
    )


def local_revisions(path: str | Path, key: str, step: int | None = None) -> dict[int, Path]:
    """A local model's checkpoints: {step: folder}.

    ``path`` holds one Hugging Face checkpoint folder per revision, named ``step{N}``, or is
    itself one checkpoint folder (a final checkpoint only; its step is ``step``, default 0).
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise SuiteError(f"config key '{key}': {path} is not a folder")
    if (path / "config.json").is_file():
        return {0 if step is None else int(step): path}
    found = {}
    for child in path.iterdir():
        m = STEP_FOLDER.match(child.name)
        if m and child.is_dir():
            if not (child / "config.json").is_file():
                raise SuiteError(
                    f"config key '{key}': {child} has no config.json (a Hugging Face "
                    "checkpoint folder holds config.json and its safetensors weights)"
                )
            found[int(m.group(1))] = child
    if not found:
        raise SuiteError(
            f"config key '{key}': {path} holds no step{{N}} checkpoint folders and is not a "
            "checkpoint folder itself (config.json + safetensors)"
        )
    return dict(sorted(found.items()))


def local_models(config: dict) -> dict[str, dict]:
    """{name: {"steps": {step: folder}, "tokens_per_step": int}} of checkpoints.local."""
    local = config["checkpoints"]["local"]
    subset = config["checkpoints"]["schedule"].get("subset")
    models = {}
    for i, entry in enumerate(local["models"]):
        key = f"checkpoints.local.models[{i}]"
        if entry["name"] in models:
            raise SuiteError(f"config key '{key}.name': {entry['name']!r} is used twice")
        steps = local_revisions(entry["path"], f"{key}.path", entry.get("step"))
        if subset:
            missing = sorted(set(subset) - set(steps))
            if missing:
                raise SuiteError(
                    f"config key 'checkpoints.schedule.subset': {entry['name']} has no "
                    f"checkpoints at steps {missing} (found {sorted(steps)})"
                )
            steps = {s: steps[s] for s in sorted(subset)}
        tokens = entry.get("tokens_per_step", local.get("tokens_per_step"))
        if tokens is None:
            raise SuiteError(
                f"config key '{key}.tokens_per_step' (or checkpoints.local.tokens_per_step) is "
                "missing: the tokens a training step consumed, for the scaling law's T"
            )
        models[entry["name"]] = {"steps": steps, "tokens_per_step": int(tokens)}
    return models


def model_name(repo_id: str) -> str:
    """The model's name in paths and tables: the repo id without its owner."""
    return repo_id.rpartition("/")[2]


def model_steps(config: dict) -> dict[str, list[int]]:
    """Each model's checkpoint steps, ascending."""
    ckpt = config["checkpoints"]
    if ckpt["source"] == "local":
        return {m: list(v["steps"]) for m, v in local_models(config).items()}
    steps = schedule_steps(config)
    if ckpt["source"] == "minisuite":
        names = [m["name"] for m in ckpt["minisuite"]["models"]]
    else:
        names = [model_name(r) for r in ckpt["hub"]["models"]]
    return {m: list(steps) for m in names}
