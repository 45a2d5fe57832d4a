"""Downstream evaluation with EleutherAI's lm-evaluation-harness (the paper's Table 1).

The harness does the scoring; this module runs ``lm_eval.simple_evaluate`` on one
checkpoint loaded through the workflow's safe loader and turns its results into a tidy
table. The checkpoints are chosen in :mod:`saturation.selection`, the synthetic language's
tasks written in :mod:`saturation.tasks`, Table 1 made in :mod:`saturation.table1`.
"""

from __future__ import annotations

import difflib
import logging
import math

import pandas as pd
import pyarrow as pa

from saturation.devices import resolve_device
from saturation.io import write_json, write_parquet
from saturation.tables import SCORES_SCHEMA

log = logging.getLogger(__name__)


class DownstreamError(ValueError):
    """A downstream task or checkpoint problem; the message names it."""


def task_manager(include_path: str | None, tasks: list[str] | None = None):
    """The harness's task index: only the local folder's tasks where they are all the run
    needs (indexing the harness's own thousands of task files takes seconds a job), else
    the local tasks and the harness's."""
    from lm_eval.tasks import TaskManager

    if include_path and tasks is not None:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if set(tasks) <= set(local.all_tasks):
            return local
    return TaskManager(include_path=include_path) if include_path else TaskManager()


def check_tasks(manager, tasks: list[str]) -> None:
    """Fail with the unknown names (and close matches) before any model is loaded."""
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if not unknown:
        return
    import lm_eval

    hints = []
    for t in unknown:
        close = difflib.get_close_matches(t, sorted(known), n=3)
        hints.append(f"'{t}'" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    version = getattr(lm_eval, "__version__", "?")
    raise DownstreamError(
        f"config key 'downstream.tasks': lm-evaluation-harness {version} does not know "
        f"task {', '.join(hints)}"
    )


def load_tasks(manager, tasks: list[str], retry: dict | None = None) -> list[tuple[str, object]]:
    """The harness's task objects of ``tasks`` (groups opened up), each with its data set
    loaded: through the Hugging Face datasets cache, filled from the hub where the network
    is. Offline (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``), a data set not in the cache
    stops with a message that says to prefetch."""
    from lm_eval.tasks import get_task_dict

    from saturation.retry import with_backoff

    def load():
        return get_task_dict(list(tasks), manager)

    try:
        loaded = with_backoff(load, "the harness's tasks", **retry) if retry else load()
    except (ConnectionError, FileNotFoundError, OSError) as exc:
        if not offline():
            raise
        raise DownstreamError(
            f"config key 'downstream.tasks': the data sets of {', '.join(tasks)} are not all "
            "in the Hugging Face datasets cache, and the hub cannot be reached (HF_HUB_OFFLINE "
            f"or HF_DATASETS_OFFLINE is set): run `snakemake prefetch` where the network is "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc

    def flat(d):
        for key, value in d.items():
            if isinstance(value, dict):
                yield from flat(value)
            else:
                yield getattr(key, "group_name", key), value

    return list(flat(loaded))


def offline() -> bool:
    """Whether datasets runs offline: its own reading of HF_DATASETS_OFFLINE, and of
    HF_HUB_OFFLINE where that is unset."""
    from datasets import config

    return bool(config.HF_HUB_OFFLINE)


def prefetch_tasks(
    tasks: list[str], include_path, retry: dict, out_path, missing: dict | None = None
) -> None:
    """Fill the datasets cache with the data of ``downstream.tasks``, as the harness itself
    loads each task (its own ``dataset_path``/``dataset_name``, no list of ours), so that
    evaluation jobs run offline. Writes what was loaded: each task's data set and its
    splits' sizes, and the tasks left out (``missing``: {task: why and how to get it})."""
    for task, reason in (missing or {}).items():
        log.warning("%s left out: %s", task, reason)
    manager = task_manager(include_path, tasks)
    check_tasks(manager, tasks)
    records = []
    for name, task in load_tasks(manager, tasks, retry):
        config = getattr(task, "config", None)
        dataset = getattr(task, "dataset", None)
        splits = {str(k): len(v) for k, v in dataset.items()} if hasattr(dataset, "items") else {}
        records.append(
            {
                "task": name,
                "dataset_path": getattr(config, "dataset_path", None),
                "dataset_name": getattr(config, "dataset_name", None),
                "splits": splits,
            }
        )
        log.info(
            "%s: %s %s, splits %s",
            name,
            records[-1]["dataset_path"],
            records[-1]["dataset_name"] or "",
            splits,
        )
    write_json({"tasks": records, **({"missing": missing} if missing else {})}, out_path)


def results_rows(results: dict, n_samples: dict) -> list[dict]:
    """Tidy rows from ``simple_evaluate(...)["results"]``: keys are ``metric,filter``."""
    rows = []
    for task in sorted(results):
        res = results[task]
        for key, value in res.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, _, filt = key.partition(",")
            if not isinstance(value, (int, float)):
                continue
            stderr = res.get(f"{metric}_stderr,{filt}")
            stderr = float(stderr) if isinstance(stderr, (int, float)) else math.nan
            rows.append(
                {
                    "task": task,
                    "metric": metric if filt == "none" else f"{metric} ({filt})",
                    "value": float(value),
                    "stderr": stderr,
                    "n_items": int(n_samples.get(task, {}).get("effective", -1)),
                }
            )
    return rows


def evaluate_checkpoint(
    checkpoint_dir: str,
    tokenizer: str,
    tasks: list[str],
    include_path: str | None = None,
    num_fewshot: int = 0,
    batch_size: int = 32,
    limit: int | None = None,
    device: str = "auto",
    dtype: str = "float32",
    allow_pickle: bool = False,
    seed: int = 1234,
    step: int | None = None,
    hub: dict | None = None,
    manager=None,
) -> tuple[list[dict], dict]:
    """Run the harness on one local checkpoint; tidy rows and the harness's raw results.
    ``manager``: the harness's task index, when the caller evaluates several checkpoints;
    the tasks are checked against it before any model is loaded."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from saturation.bootstrap import exact_bootstrap
    from saturation.hub import open_checkpoint
    from saturation.loading import load_model

    if manager is None:
        manager = task_manager(include_path, tasks)
    check_tasks(manager, tasks)
    device = resolve_device(device, "downstream.device")
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    with open_checkpoint(checkpoint_dir, step, hub, allow_pickle) as folder:
        model = load_model(folder, allow_pickle=allow_pickle, dtype=torch_dtype, device=device)
        # The checkpoint's own tokenizer unless another is named.
        tok = AutoTokenizer.from_pretrained(str(tokenizer or folder), trust_remote_code=False)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device)
    with exact_bootstrap():  # the harness's standard errors, without its process pool
        out = simple_evaluate(
            model=lm,
            tasks=list(tasks),
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=manager,
            log_samples=True,  # per-item scores: best and final compared on the same items
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    rows = results_rows(out["results"], out.get("n-samples", {}))
    raw = {
        "results": out["results"],
        "versions": out.get("versions", {}),
        "items": item_scores(
            out["results"], out.get("samples", {}), out.get("higher_is_better", {})
        ),
    }
    return rows, raw


def item_scores(results: dict, samples: dict, higher_is_better: dict) -> dict:
    """{task: {metric: {"doc_id", "value", "higher_is_better"}}}: each item's score, for the
    metrics the harness reports as the mean of them (accuracies; not perplexities, which are
    functions of a mean), checked: the mean of the items equals the reported value. Keys are
    the tidy table's metric names."""
    out = {}
    for task, items in samples.items():
        for key, reported in (results.get(task) or {}).items():
            if "," not in key or "_stderr," in key or not isinstance(reported, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            picked = [s for s in items if s.get("filter", "none") == filt and metric in s]
            values = [s[metric] for s in picked]
            if not values or not all(isinstance(v, (int, float, bool)) for v in values):
                continue
            values = [float(v) for v in values]
            if abs(sum(values) / len(values) - float(reported)) > 1e-9:
                continue  # not a mean of the items (e.g. a perplexity)
            name = metric if filt == "none" else f"{metric} ({filt})"
            out.setdefault(task, {})[name] = {
                "doc_id": [int(s["doc_id"]) for s in picked],
                "value": values,
                "higher_is_better": bool((higher_is_better.get(task) or {}).get(metric, True)),
            }
    return out


def evaluate_downstream(
    evaluations: list[dict],
    out_table: str,
    out_json: str,
    threads: int = 1,
    **kwargs,
) -> None:
    """Evaluate checkpoints in one process, one after another, the harness imported and its
    tasks indexed once. ``evaluations``: dicts of model, step, checkpoint (a folder, or a
    revision manifest) and tokenizer. Writes one table (rows in the evaluations' order) and
    one JSON list of the harness's raw results, a record per checkpoint."""
    import torch

    torch.set_num_threads(threads)
    manager = task_manager(kwargs.get("include_path"), kwargs["tasks"])  # indexed once
    check_tasks(manager, kwargs["tasks"])
    load_tasks(manager, kwargs["tasks"])  # their data at hand, before any model is loaded
    tables, raws = [], []
    for e in evaluations:
        model, step = e["model"], e["step"]
        rows, raw = evaluate_checkpoint(
            e["checkpoint"], tokenizer=e["tokenizer"], step=step, manager=manager, **kwargs
        )
        for r in rows:
            log.info(
                "%s step %d %s %s = %.4f ± %.4f",
                model,
                step,
                r["task"],
                r["metric"],
                r["value"],
                r["stderr"],
            )
        table = pd.DataFrame(rows)
        table.insert(0, "step", step)
        table.insert(0, "model", model)
        tables.append(table)
        raws.append({"model": model, "step": step, **raw})
    write_json(raws, out_json)
    table = pd.concat(tables, ignore_index=True)
    write_parquet(
        pa.Table.from_pandas(table, schema=SCORES_SCHEMA, preserve_index=False), out_table
    )
