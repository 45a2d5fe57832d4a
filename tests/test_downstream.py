"""Downstream evaluation: the local tasks through lm-evaluation-harness against a direct
computation, the tables, and clear errors."""

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import tiny_gpt_neox
from saturation.config import ConfigError, check_downstream
from saturation.downstream import (
    DownstreamError,
    check_tasks,
    evaluate_checkpoint,
    results_rows,
    task_manager,
)
from saturation.table1 import PAPER_TABLE1, table1, to_latex, to_markdown
from saturation.tables import DOWNSTREAM_SCHEMA
from saturation.tasks import downstream_tasks, local_items, synthetic_tokenizer

V, CONTEXT = 20, 6


@pytest.fixture(scope="module")
def local_setup(tmp_path_factory):
    """A tiny checkpoint, an eval split of random documents, and the local tasks."""
    root = tmp_path_factory.mktemp("downstream")
    model = tiny_gpt_neox(hidden=16, layers=1, heads=2, vocab=V, context=16, seed=3)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(
            30.0
        )  # peaked predictions, so accuracy is far from chance
    model.save_pretrained(root / "ckpt", safe_serialization=True)
    # documents sampled from the model itself: its scores are informative, not chance level
    torch.manual_seed(0)
    ids = torch.randint(0, V, (40, 1))
    with torch.no_grad():
        for _ in range(11):
            probs = torch.softmax(model(ids).logits[:, -1], -1)
            ids = torch.cat([ids, torch.multinomial(probs, 1)], 1)
    docs = ids.to(torch.int32).tolist()
    pq.write_table(pa.table({"doc_id": list(range(40)), "tokens": docs}), root / "eval.parquet")
    downstream_tasks(
        str(root / "eval.parquet"),
        vocab_size=V,
        n_items=50,
        context_tokens=CONTEXT,
        choices=4,
        seed=5,
        out_dir=str(root / "tasks"),
    )
    return root, model


def direct_scores(model, items):
    """Accuracy, perplexity and multiple-choice accuracy computed straight from the logits."""
    logp, correct, chosen = [], [], []
    for item in items:
        ids = torch.tensor([[int(w[1:]) for w in item["context"].split()]])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0, -1].double(), -1)
        target = int(item["target"][1:])
        logp.append(lp[target].item())
        correct.append(int(lp.argmax()) == target)
        choice_lp = [lp[int(c[1:])].item() for c in item["choices"]]
        chosen.append(int(np.argmax(choice_lp)) == item["label"])
    return np.mean(correct), math.exp(-np.mean(logp)), np.mean(chosen)


def test_local_tasks_through_the_harness_match_a_direct_computation(local_setup):
    root, model = local_setup
    items = [json.loads(line) for line in (root / "tasks" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 50
    rows, raw = evaluate_checkpoint(
        str(root / "ckpt"),
        tokenizer=str(root / "tasks" / "tokenizer"),
        tasks=["synthetic_next_token", "synthetic_choice"],
        include_path=str(root / "tasks"),
        batch_size=7,
        device="cpu",
    )
    got = {(r["task"], r["metric"]): r for r in rows}
    acc, ppl, mc_acc = direct_scores(model, items)
    assert 0.3 < acc < 0.95 and 0.3 < mc_acc < 1  # informative, not chance (0.05 and 0.25)
    assert got[("synthetic_next_token", "acc")]["value"] == pytest.approx(acc, abs=1e-12)
    assert got[("synthetic_next_token", "perplexity")]["value"] == pytest.approx(ppl, rel=1e-5)
    assert got[("synthetic_choice", "acc")]["value"] == pytest.approx(mc_acc, abs=1e-12)
    assert all(r["n_items"] == 50 for r in rows)
    # binomial standard error of a mean of 0/1 scores (the harness uses the sample variance)
    assert got[("synthetic_choice", "acc")]["stderr"] == pytest.approx(
        math.sqrt(mc_acc * (1 - mc_acc) / 49), rel=1e-9
    )
    assert "synthetic_choice" in raw["results"]
    # Each item's score, for the metrics that are a mean of them (not the perplexity).
    scored = raw["items"]
    assert set(scored) == {"synthetic_next_token", "synthetic_choice"}
    assert set(scored["synthetic_next_token"]) == {"acc"}
    choice = scored["synthetic_choice"]["acc"]
    assert sorted(choice["doc_id"]) == list(range(50)) and set(choice["value"]) <= {0.0, 1.0}
    assert np.mean(choice["value"]) == pytest.approx(mc_acc, abs=1e-12)
    assert choice["higher_is_better"] is True


def test_local_items_are_cut_from_the_documents():
    docs = [list(range(i, i + 10)) for i in range(5)]
    items = local_items(docs, vocab_size=20, n_items=30, context_tokens=4, choices=3, seed=1)
    for item in items:
        ctx = [int(w[1:]) for w in item["context"].split()]
        target = int(item["target"][1:])
        assert len(ctx) == 4 and ctx == list(range(ctx[0], ctx[0] + 4)) and target == ctx[-1] + 1
        assert item["choices"][item["label"]] == item["target"]
        assert len(set(item["choices"])) == 3
    assert len({it["label"] for it in items}) == 3  # the answer's position varies
    assert items == local_items(docs, 20, 30, 4, 3, seed=1)
    with pytest.raises(DownstreamError, match="context_tokens = 10"):
        local_items(docs, 20, 3, context_tokens=10, choices=3, seed=1)


def test_synthetic_tokenizer_round_trips_ids():
    tok = synthetic_tokenizer(300)
    ids = [0, 7, 299, 42]
    assert tok(" ".join(f"t{i}" for i in ids), add_special_tokens=False)["input_ids"] == ids
    with pytest.raises(Exception, match="UNK"):
        tok("t300")


def test_unknown_task_names_it_and_suggests(local_setup):
    root, _ = local_setup
    manager = task_manager(str(root / "tasks"))
    check_tasks(manager, ["synthetic_choice", "lambada_openai", "sciq"])  # known: no error
    with pytest.raises(DownstreamError, match=r"'lambada_opnai' \(did you mean lambada_openai"):
        check_tasks(manager, ["sciq", "lambada_opnai"])
    with pytest.raises(DownstreamError, match="'no_such_benchmark_xyz'"):
        evaluate_checkpoint(
            str(root / "ckpt"),
            tokenizer=str(root / "tasks" / "tokenizer"),
            tasks=["no_such_benchmark_xyz"],
            include_path=str(root / "tasks"),
            device="cpu",
            manager=manager,  # the index built above: the name is checked against it
        )


def test_results_rows_parse_the_harness_keys():
    results = {
        "lambada_openai": {
            "alias": "lambada_openai",
            "perplexity,none": 24.6,
            "perplexity_stderr,none": 0.9,
            "acc,none": 0.403,
            "acc_stderr,none": 0.007,
        },
        "gsm8k": {"exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": "N/A"},
    }
    rows = results_rows(results, {"lambada_openai": {"effective": 5153}})
    got = {(r["task"], r["metric"]): (r["value"], r["stderr"], r["n_items"]) for r in rows}
    assert got[("lambada_openai", "acc")] == (0.403, 0.007, 5153)
    assert got[("lambada_openai", "perplexity")] == (24.6, 0.9, 5153)
    value, stderr, _ = got[("gsm8k", "exact_match (strict-match)")]
    assert value == 0.1 and math.isnan(stderr)
    assert len(rows) == 3


def test_table1_puts_the_paper_beside_ours():
    """The paper's six columns beside ours; a paper cell with no score of ours is a row
    that says why (StoryCloze without its data: how to get it), never a silent gap."""
    from saturation.story_cloze import MISSING, TASK

    rows = []
    for role, step, acc, ppl in (("best", 33000, 0.41, 25.0), ("final", 143000, 0.37, 33.5)):
        rows.append(("pythia-160m", step, role, "lambada_openai", "acc", acc, 0.007, 5153))
        rows.append(("pythia-160m", step, role, "lambada_openai", "perplexity", ppl, 0.9, 5153))
        rows.append(
            ("pythia-160m", step, role, "wikitext", "word_perplexity", ppl + 5, math.nan, 62)
        )
        rows.append(("pythia-160m", step, role, "piqa", "acc", 0.6, 0.01, 1838))
    rows.append(("pythia-160m", 1000, "step", "piqa", "acc", 0.55, 0.01, 1838))
    down = pd.DataFrame(rows, columns=[f.name for f in DOWNSTREAM_SCHEMA])
    t = table1(down, missing={TASK: MISSING})
    assert list(t.columns[-4:]) == ["paper best", "paper final", "step 1000", "note"]
    assert t["step 1000"].tolist()[:4] == ["", "", "", "55.0 ± 1.0"]
    acc = t[(t.task == "lambada_openai") & (t.metric == "acc (%)")].iloc[0]
    assert (acc["best step"], acc["final step"]) == (33000, 143000)
    assert acc["best"] == "41.0 ± 0.7" and acc["final"] == "37.0 ± 0.7"
    assert acc["Δ final − best"] == "-4.00"
    assert (acc["paper best"], acc["paper final"]) == ("40.3", "38")
    ppl = t[t.metric == "perplexity"].iloc[0]
    assert (ppl["paper best"], ppl["paper final"]) == ("24.6", "32.9")
    assert ppl["best"] == "25.000 ± 0.900" or ppl["best"] == "25.0 ± 0.9"
    wiki = t[t.task == "wikitext"].iloc[0]
    assert (wiki["paper best"], wiki["paper final"], wiki["best"]) == ("30.47", "33.4", "30")
    piqa = t[t.task == "piqa"].iloc[0]
    assert piqa["paper best"] == ""  # the paper has no such cell
    # Every paper cell has a row: StoryCloze's says how to get its data, SciQ's and ARC-e's
    # that they were not in downstream.tasks.
    cells = {(r.task, r.metric.removesuffix(" (%)")) for r in t.itertuples()}
    assert {(task, metric) for (_, task, metric) in PAPER_TABLE1} <= cells
    assert len(PAPER_TABLE1) == 6
    story = t[t.task == TASK].iloc[0]
    assert (story["best"], story["paper best"], story["paper final"]) == ("—", "59.6", "57.2")
    assert "rocstories" in story["note"] and "downstream.story_cloze_dir" in story["note"]
    assert t[t.task == "sciq"].iloc[0]["note"] == "not evaluated: sciq is not in downstream.tasks"
    md = to_markdown(t)
    assert md.count("\n") == len(t) + 2 and "| 40.3 | 38 |" in md
    tex = to_latex(t)
    assert r"lambada\_openai" in tex and r"$\pm$" in tex and tex.count(r"\\") == len(t) + 1


def test_table1_tests_final_minus_best_on_the_same_items():
    """The paired standard error against a direct computation, on planted item scores: a
    drop of known size is marked, the same scores are not, and perplexities (no per-item
    mean) stay untested."""
    from saturation.table1 import paired_items

    rng = np.random.default_rng(0)
    n = 400
    best = (rng.random(n) < 0.45).astype(float)
    final = best.copy()
    flip = rng.choice(np.flatnonzero(best == 1), size=40, replace=False)
    final[flip] = 0.0  # 40 items the final checkpoint loses: a drop of 10 points
    order = rng.permutation(n)  # the two runs list the items in different orders
    b = {"doc_id": list(range(n)), "value": best.tolist(), "higher_is_better": True}
    f = {"doc_id": order.tolist(), "value": final[order].tolist(), "higher_is_better": True}
    test = paired_items(b, f, level=0.01)
    d = final - best
    assert test["diff"] == pytest.approx(d.mean(), abs=1e-15) == pytest.approx(-0.1)
    assert test["se"] == pytest.approx(np.sqrt(np.var(d, ddof=1) / n), rel=1e-12)
    assert test["beyond"] and test["p"] < 1e-6
    assert not paired_items(b, b, level=0.01)["beyond"]
    rows = []
    for role, step, acc in (("best", 33000, best.mean()), ("final", 143000, final.mean())):
        rows.append(("pythia-160m", step, role, "sciq", "acc", acc, 0.02, n))
        rows.append(("pythia-160m", step, role, "lambada_openai", "perplexity", 30.0, 1.0, n))
    down = pd.DataFrame(rows, columns=[f.name for f in DOWNSTREAM_SCHEMA])
    items = {
        ("pythia-160m", 33000): {"sciq": {"acc": b}},
        ("pythia-160m", 143000): {"sciq": {"acc": f}},
    }
    t = table1(down, items, level=0.01).set_index(["task", "metric"])
    assert t.loc[("sciq", "acc (%)"), "Δ final − best"] == "-10.00 *"
    assert t.loc[("sciq", "acc (%)"), "paired ±"] == f"{100 * test['se']:.2f}"
    ppl = t.loc[("lambada_openai", "perplexity")]
    assert ppl["paired ±"] == "" and ppl["p"] == ""


def test_downstream_config_errors():
    base = {
        "corpus": {"source": "huggingface", "synthetic": {"document_length": 64}},
        "checkpoints": {
            "source": "hub",
            "schedule": {"final_step": 10, "log_spaced_until": 4, "every": 5},
            "hub": {"models": ["EleutherAI/m"], "revision_template": "step{step}"},
        },
        "downstream": {
            "activate": True,
            "tasks": ["synthetic_choice"],
            "models": None,
            "steps": [],
            "context_tokens": 8,
            "choices": 4,
        },
    }
    with pytest.raises(ConfigError, match="'downstream.tasks'.*synthetic"):
        check_downstream(base, ["m"])
    base["downstream"]["tasks"] = ["sciq"]
    base["downstream"]["steps"] = [7]
    with pytest.raises(ConfigError, match=r"'downstream.steps': \[7\]"):
        check_downstream(base, ["m"])
    base["downstream"]["steps"] = [5]
    base["downstream"]["models"] = ["other"]
    with pytest.raises(ConfigError, match="'downstream.models'"):
        check_downstream(base, ["m"])
    base["downstream"]["models"] = ["m"]
    check_downstream(base, ["m"])
