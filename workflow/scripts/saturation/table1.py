"""downstream.parquet and Table 1: each model's best vs final downstream scores, with the
paper's cells beside ours, as Markdown, LaTeX and HTML."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from saturation.downstream import DownstreamError
from saturation.io import write_parquet
from saturation.tables import DOWNSTREAM_SCHEMA

log = logging.getLogger(__name__)

ROLES = ("best", "final", "step")
# Table 1 of the paper, its six columns: Pythia-160M, best vs final checkpoint (accuracies
# in %; WikiText: the harness's word perplexity).
PAPER_TABLE1 = {
    ("pythia-160m", "lambada_openai", "perplexity"): (24.6, 32.9),
    ("pythia-160m", "lambada_openai", "acc"): (40.3, 38.0),
    ("pythia-160m", "storycloze_2016", "acc"): (59.6, 57.2),
    ("pythia-160m", "wikitext", "word_perplexity"): (30.47, 33.4),
    ("pythia-160m", "sciq", "acc"): (79.6, 73.4),
    ("pythia-160m", "arc_easy", "acc"): (46.5, 43.2),
}
PERCENT_METRICS = {"acc", "acc_norm", "exact_match"}


def downstream_table(
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


def paired_items(best: dict, final: dict, level: float) -> dict | None:
    """Best vs final on the same items (``downstream.item_scores`` records of one task and
    metric): final - best, its paired standard error sqrt(var(d) / n) over the n items both
    scored, and the one-sided p-value that the best checkpoint scores better (Student's t,
    n - 1 degrees of freedom). None where they share fewer than two items."""
    b = dict(zip(best["doc_id"], best["value"], strict=True))
    f = dict(zip(final["doc_id"], final["value"], strict=True))
    ids = sorted(set(b) & set(f))
    if len(ids) < 2:
        return None
    from saturation.significance import ratio_test

    d = np.array([f[i] - b[i] for i in ids])
    sign = -1.0 if best["higher_is_better"] else 1.0  # > 0: the final scores worse
    worse, se, p = ratio_test(sign * d, np.ones(len(d)))
    return {"diff": sign * worse, "se": se, "p": p, "n": len(d), "beyond": p < level}


def table1(
    downstream: pd.DataFrame,
    items: dict | None = None,
    level: float = 0.01,
    missing: dict | None = None,
) -> pd.DataFrame:
    """Best vs final, one row per (model, task, metric); accuracies in %; the paper's cells
    beside ours where the same (model, task, metric) exists; then a column per configured
    extra step. With ``items`` ({(model, step): the evaluation's item scores}), final - best
    is tested on the items both checkpoints scored: its paired standard error, and a mark
    where the best scores better at the one-sided ``level``. A paper cell with no score of
    ours is a row of its own, its note saying why (``missing``: {task: the reason it was not
    run}), never a silent gap."""
    items = items or {}
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
                "paired ±": "",
                "p": "",
                "paper best": f"{paper[0]:g}" if paper else "",
                "paper final": f"{paper[1]:g}" if paper else "",
                "_order": order.index(model),
            }
        )
        scored = [
            (items.get((model, int(r.step))) or {}).get(task, {}).get(metric) for r in (best, final)
        ]
        same = int(best.step) == int(final.step)  # one checkpoint: nothing to test
        test = paired_items(*scored, level) if None not in scored and not same else None
        if test is not None:
            rows[-1]["Δ final − best"] = f"{test['diff'] * scale:+.2f}" + (
                " *" if test["beyond"] else ""
            )
            rows[-1]["paired ±"] = f"{test['se'] * scale:.2f}"
            rows[-1]["p"] = f"{test['p']:.2g}"
        extra = downstream[
            (downstream.role == "step")
            & (downstream.model == model)
            & (downstream.task == task)
            & (downstream.metric == metric)
        ]
        for r in extra.itertuples():  # configured steps, after the paper's columns
            rows[-1][f"step {r.step}"] = _cell(metric, r.value, r.stderr)
    rows += unscored_paper_cells(rows, bf, order, missing or {})
    t = pd.DataFrame(rows).sort_values("_order", kind="stable").drop(columns="_order")
    return t.fillna("").reset_index(drop=True)


def unscored_paper_cells(rows: list[dict], bf, order: list[str], missing: dict) -> list[dict]:
    """A row for each paper cell of a model in the table that has no score of ours, with
    the reason."""
    scored = {(r["model"], r["task"], r["metric"].removesuffix(" (%)")) for r in rows}
    out = []
    for (model, task, metric), (best, final) in PAPER_TABLE1.items():
        if model not in order or (model, task, metric) in scored:
            continue
        percent = metric in PERCENT_METRICS
        steps = bf[bf.model == model].groupby("role").step.first()
        note = missing.get(task) or f"not evaluated: {task} is not in downstream.tasks"
        out.append(
            {
                "model": model,
                "task": task,
                "metric": metric + (" (%)" if percent else ""),
                "best step": int(steps["best"]),
                "final step": int(steps["final"]),
                "best": "—",
                "final": "—",
                "paper best": f"{best:g}",
                "paper final": f"{final:g}",
                "note": note,
                "_order": order.index(model),
            }
        )
    return out


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
        "<p>Table 1: downstream scores of each model's best and final "
        "checkpoint (best: the minimum loss on one half of the evaluation documents), lm-evaluation-harness, zero-shot; ± is the harness's standard error. "
        "Δ: final − best on the items both scored, with its paired standard error and the "
        "one-sided p-value that the best scores better; * where p is below the level. "
        "Paper columns: Godey et al. (2024), Pythia-160M.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n"
    )


def evaluation_items(raw_paths: list[str]) -> dict:
    """{(model, step): item scores} from the evaluation jobs' raw JSON records."""
    import json

    out = {}
    for path in raw_paths:
        for record in json.loads(Path(path).read_text()):
            out[(record["model"], int(record["step"]))] = record.get("items") or {}
    return out


def aggregate_downstream(
    selection: str,
    evaluations: list[str],
    models: list[str],
    out_table: str,
    out_md: str,
    out_tex: str,
    out_html: str,
    raws: list[str] = (),
    level: float = 0.01,
    missing: dict | None = None,
) -> None:
    """``raws``: the evaluation jobs' raw records, whose item scores test final - best;
    ``missing``: {task: why it was not run}, said in the log and in Table 1."""
    for task, reason in (missing or {}).items():
        log.warning("%s not evaluated: %s", task, reason)
    down = downstream_table(selection, evaluations, models, out_table)
    t = table1(down, evaluation_items(raws), level, missing)
    for path, text in ((out_md, to_markdown(t)), (out_tex, to_latex(t)), (out_html, to_html(t))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    log.info("Table 1:\n%s", to_markdown(t))
