"""Downstream evaluation with EleutherAI's lm-evaluation-harness (the paper's Table 1).

The harness does the scoring; this module only picks the checkpoints (each model's best,
i.e. minimum-loss, and final one), writes the workflow's local tasks for the synthetic
language, runs ``lm_eval.simple_evaluate`` on a checkpoint loaded through the workflow's
safe loader, and turns the results into tidy tables.

Local tasks (synthetic corpus only), built from held-out documents of the eval split:

- ``synthetic_next_token``: LAMBADA-style; the context is ``context_tokens`` tokens, the
  target the next one. ``loglikelihood`` requests; metrics ``acc`` (the target is the greedy
  prediction) and ``perplexity`` (exp of minus the mean log-likelihood of the target).
- ``synthetic_choice``: SciQ/ARC-style multiple choice; the same kind of context and
  ``choices`` candidates, the true next token among distractors drawn from the eval split's
  unigram distribution. Metric ``acc``.

Token ids are written as words ``t0 t1 ...`` and a word-level tokenizer maps them back to the
same ids, so the harness sees exactly the token sequences the models were trained on.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from saturation.io import write_json, write_parquet
from saturation.scaling import best_and_final

log = logging.getLogger(__name__)

ROLES = ("best", "final", "step")

SELECTION_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("role", pa.string()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
    ]
)
EVAL_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("task", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("stderr", pa.float64()),
        ("n_items", pa.int64()),
    ]
)
DOWNSTREAM_SCHEMA = EVAL_SCHEMA.insert(2, pa.field("role", pa.string()))

# Table 1 of the paper: Pythia-160M, best vs final checkpoint (accuracies in %).
PAPER_TABLE1 = {
    ("pythia-160m", "lambada_openai", "perplexity"): (24.6, 32.9),
    ("pythia-160m", "lambada_openai", "acc"): (40.3, 38.0),
    ("pythia-160m", "sciq", "acc"): (79.6, 73.4),
    ("pythia-160m", "arc_easy", "acc"): (46.5, 43.2),
}
PERCENT_METRICS = {"acc", "acc_norm", "exact_match"}


class DownstreamError(ValueError):
    """A downstream task or checkpoint problem; the message names it."""


# --- checkpoint selection -------------------------------------------------------------------


def select_checkpoints(metrics: pd.DataFrame, models: list[str], steps: list[int]) -> pd.DataFrame:
    """Each model's best (minimum eval loss, earliest on ties) and final (last) checkpoint,
    plus the configured steps; one row per (model, role, step)."""
    loss = metrics[metrics.metric == "loss"]
    rows = []
    for model in models:
        g = loss[loss.model == model]
        if g.empty:
            raise DownstreamError(f"model {model!r} has no measured loss")
        if g.value.isna().any():
            bad = g.step[g.value.isna()].tolist()
            raise DownstreamError(f"model {model!r} has no finite loss at steps {bad}")
        best, final = best_and_final(g)
        rows.append((model, "best", int(best.step), float(best.value)))
        rows.append((model, "final", int(final.step), float(final.value)))
        by_step = dict(zip(g.step.astype(int), g.value.astype(float), strict=True))
        for step in steps:
            if step not in by_step:
                raise DownstreamError(f"model {model!r} has no measured checkpoint at step {step}")
            rows.append((model, "step", int(step), by_step[step]))
    return pd.DataFrame(rows, columns=["model", "role", "step", "loss"])


def run_selection(metrics_path: str, models: list[str], steps: list[int], out: str) -> None:
    from saturation.tables import trusted_metrics

    sel = select_checkpoints(trusted_metrics(pd.read_parquet(metrics_path)), models, steps)
    for r in sel.itertuples():
        log.info("%s %s: step %d (loss %.4f)", r.model, r.role, r.step, r.loss)
    write_parquet(pa.Table.from_pandas(sel, schema=SELECTION_SCHEMA, preserve_index=False), out)


# --- local tasks ----------------------------------------------------------------------------


def token_text(ids) -> str:
    return " ".join(f"t{int(i)}" for i in ids)


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer whose words ``t0 … t{V-1}`` are the synthetic token ids.

    The language has no end-of-text or padding token, and the harness needs both ids: they
    are set to ``t0``. Padding positions are masked out; the end-of-text id only prefixes
    empty contexts (rolling log-likelihood tasks), which the local tasks never have.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="t0", pad_token="t0", model_max_length=1 << 30
    )


def local_items(
    documents, vocab_size: int, n_items: int, context_tokens: int, choices: int, seed: int
) -> list[dict]:
    """Items cut from held-out documents: a context, its next token, and distractors."""
    docs = [np.asarray(d, dtype=np.int64) for d in documents]
    docs = [d for d in docs if len(d) > context_tokens]
    if not docs:
        raise DownstreamError(
            f"no eval document is longer than downstream.context_tokens = {context_tokens}"
        )
    rng = np.random.default_rng(seed)
    counts = np.bincount(np.concatenate(docs), minlength=vocab_size).astype(np.float64) + 1.0
    items = []
    for i in range(n_items):
        doc = docs[i % len(docs)]
        start = int(rng.integers(0, len(doc) - context_tokens))
        context = doc[start : start + context_tokens]
        target = int(doc[start + context_tokens])
        p = counts.copy()
        p[target] = 0.0
        distractors = rng.choice(vocab_size, size=choices - 1, replace=False, p=p / p.sum())
        label = int(rng.integers(0, choices))
        options = [int(t) for t in distractors]
        options.insert(label, target)
        items.append(
            {
                "context": token_text(context),
                "target": f"t{target}",
                "choices": [f"t{t}" for t in options],
                "label": label,
            }
        )
    return items


def task_configs(data_dir: Path) -> dict[str, dict]:
    """lm-eval task YAMLs of the local tasks, reading JSON lines the workflow wrote."""
    base = {
        "dataset_path": "json",
        "test_split": "test",
        "doc_to_text": "context",  # column names: the harness reads the fields as they are
        "target_delimiter": " ",
        "metadata": {"version": 1.0},
    }
    return {
        "synthetic_next_token": {
            "task": "synthetic_next_token",
            **base,
            "dataset_kwargs": {"data_files": {"test": str(data_dir / "items.jsonl")}},
            "output_type": "loglikelihood",
            # loglikelihood tasks put no delimiter between context and target (LAMBADA's
            # YAML also writes the space into the target)
            "doc_to_target": " {{target}}",
            "metric_list": [
                {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            ],
        },
        "synthetic_choice": {
            "task": "synthetic_choice",
            **base,
            "dataset_kwargs": {"data_files": {"test": str(data_dir / "items.jsonl")}},
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",
            "doc_to_target": "label",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        },
    }


def write_local_tasks(
    eval_path: str,
    vocab_size: int,
    n_items: int,
    context_tokens: int,
    choices: int,
    seed: int,
    out_dir: str,
) -> None:
    """Items (JSON lines), one task YAML per local task, and the word-level tokenizer."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    docs = pd.read_parquet(eval_path, columns=["tokens"]).tokens
    items = local_items(docs, vocab_size, n_items, context_tokens, choices, seed)
    with (out / "items.jsonl").open("w") as fh:
        for item in items:
            fh.write(json.dumps(item) + "\n")
    for name, cfg in task_configs(out).items():
        (out / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    synthetic_tokenizer(vocab_size).save_pretrained(out / "tokenizer")
    log.info(
        "%d items of %d context tokens, %d choices, in %s", n_items, context_tokens, choices, out
    )


# --- evaluation -----------------------------------------------------------------------------


def task_manager(include_path: str | None):
    from lm_eval.tasks import TaskManager

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


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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
) -> tuple[list[dict], dict]:
    """Run the harness on one local checkpoint; tidy rows and the harness's raw results."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from saturation.checkpoints import load_model
    from saturation.hub import open_checkpoint

    manager = task_manager(include_path)
    check_tasks(manager, tasks)
    device = resolve_device(device)
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    with open_checkpoint(checkpoint_dir, step, hub, allow_pickle) as folder:
        model = load_model(folder, allow_pickle=allow_pickle, dtype=torch_dtype, device=device)
        # The checkpoint's own tokenizer unless another is named.
        tok = AutoTokenizer.from_pretrained(str(tokenizer or folder), trust_remote_code=False)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device)
    out = simple_evaluate(
        model=lm,
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=manager,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    rows = results_rows(out["results"], out.get("n-samples", {}))
    raw = {"results": out["results"], "versions": out.get("versions", {})}
    return rows, raw


def run_evaluation(
    model: str, step: int, out_table: str, out_json: str, threads: int = 1, **kwargs
) -> None:
    import torch

    torch.set_num_threads(threads)
    rows, raw = evaluate_checkpoint(step=step, **kwargs)
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
    write_json(raw, out_json)
    write_parquet(pa.Table.from_pandas(table, schema=EVAL_SCHEMA, preserve_index=False), out_table)


# --- tables ---------------------------------------------------------------------------------


def aggregate(
    selection_path: str, eval_paths: list[str], models: list[str], out: str
) -> pd.DataFrame:
    """downstream.parquet: every evaluation under each role its checkpoint plays."""
    sel = pd.read_parquet(selection_path)
    evals = pd.concat([pd.read_parquet(p) for p in eval_paths], ignore_index=True)
    table = sel[["model", "role", "step"]].merge(evals, on=["model", "step"], how="left")
    missing = table[table.task.isna()]
    if not missing.empty:
        raise DownstreamError(
            f"no evaluation for {missing[['model', 'step']].drop_duplicates().values.tolist()}"
        )
    table["model_order"] = table.model.map({m: i for i, m in enumerate(models)})
    table["role_order"] = table.role.map({r: i for i, r in enumerate(ROLES)})
    table = table.sort_values(["model_order", "role_order", "step", "task", "metric"])
    table = table[[f.name for f in DOWNSTREAM_SCHEMA]].reset_index(drop=True)
    write_parquet(pa.Table.from_pandas(table, schema=DOWNSTREAM_SCHEMA, preserve_index=False), out)
    return table


def _cell(metric: str, value: float, stderr: float) -> str:
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    v = value * scale
    if math.isnan(stderr):
        return f"{v:.1f}" if scale == 100 else f"{v:.3g}"
    s = stderr * scale
    return f"{v:.1f} ± {s:.1f}" if scale == 100 or v >= 10 else f"{v:.3f} ± {s:.3f}"


def table1(downstream: pd.DataFrame) -> pd.DataFrame:
    """Best vs final, one row per (model, task, metric); accuracies in %; the paper's cells
    beside ours where the same (model, task, metric) exists; then a column per configured
    extra step."""
    rows = []
    bf = downstream[downstream.role.isin(["best", "final"])]
    order = list(dict.fromkeys(bf.model))
    for (model, task, metric), g in bf.groupby(["model", "task", "metric"], sort=False):
        best = g[g.role == "best"].iloc[0]
        final = g[g.role == "final"].iloc[0]
        scale = 100.0 if metric in PERCENT_METRICS else 1.0
        paper = PAPER_TABLE1.get((model, task, metric))
        rows.append(
            {
                "model": model,
                "task": task,
                "metric": metric + (" (%)" if scale == 100 else ""),
                "best step": int(best.step),
                "final step": int(final.step),
                "best": _cell(metric, best.value, best.stderr),
                "final": _cell(metric, final.value, final.stderr),
                "Δ final − best": f"{(final.value - best.value) * scale:+.2f}",
                "paper best": f"{paper[0]:.1f}" if paper else "",
                "paper final": f"{paper[1]:.1f}" if paper else "",
                "_order": order.index(model),
            }
        )
        extra = downstream[
            (downstream.role == "step")
            & (downstream.model == model)
            & (downstream.task == task)
            & (downstream.metric == metric)
        ]
        for r in extra.itertuples():  # configured steps, after the paper's columns
            rows[-1][f"step {r.step}"] = _cell(metric, r.value, r.stderr)
    t = pd.DataFrame(rows).sort_values("_order", kind="stable").drop(columns="_order")
    return t.fillna("").reset_index(drop=True)


def to_markdown(t: pd.DataFrame) -> str:
    head = "| " + " | ".join(t.columns) + " |"
    sep = "|" + "|".join("---" for _ in t.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def _tex(s) -> str:
    s = str(s)
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
    ):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("−", "$-$")


def to_latex(t: pd.DataFrame) -> str:
    cols = "lll" + "r" * (len(t.columns) - 3)
    lines = [
        r"\begin{tabular}{" + cols + "}",
        r"\toprule",
        " & ".join(_tex(c) for c in t.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex(v) for v in r) + r" \\" for r in t.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_html(t: pd.DataFrame) -> str:
    from html import escape

    head = "".join(f"<th>{escape(str(c))}</th>" for c in t.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in r) + "</tr>"
        for r in t.itertuples(index=False)
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><style>"
        "table{border-collapse:collapse;font:13px sans-serif}"
        "td,th{border-bottom:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}</style></head><body>"
        "<p>Table 1: downstream scores of each model's best (minimum-loss) and final "
        "checkpoint, lm-evaluation-harness, zero-shot; ± is the harness's standard error. "
        "Paper columns: Godey et al. (2024), Pythia-160M.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n"
    )


def run_aggregate(
    selection: str,
    evaluations: list[str],
    models: list[str],
    out_table: str,
    out_md: str,
    out_tex: str,
    out_html: str,
) -> None:
    down = aggregate(selection, evaluations, models, out_table)
    t = table1(down)
    for path, text in ((out_md, to_markdown(t)), (out_tex, to_latex(t)), (out_html, to_html(t))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    log.info("Table 1:\n%s", to_markdown(t))
