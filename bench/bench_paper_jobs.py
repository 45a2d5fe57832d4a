"""The paper run's jobs at the size config/pythia.yaml gives them: wall time and peak memory
against the resources each job asks for.

    python bench/bench_paper_jobs.py [--jobs ngram_spectrum,rank_head,aggregate_metrics,scaling_fit]
                                     [--sizes paper|small] [--config config/pythia.yaml]

Each job runs the workflow's own code in a fresh process (its peak RSS is that process's),
on synthetic inputs of the real shapes, since the real ones cannot be had offline:

- ngram_spectrum: a text-like token corpus (``bench_ngrams.textlike``: Zipf unigrams,
  collocations, a long tail of contexts seen once) of the paper's largest size, 20M tokens,
  under Pythia's 50,304-token vocabulary, through ``ngram_spectrum`` with the config's n,
  top_k and tol (the Parquet corpus written as the sampling job writes it);
- rank_head: one shard of the feature cache at pythia-2.8b's width (d = 2,560,
  ``rank_heads.shard_tokens`` tokens in ``cache_dtype``), streamed as the job streams it,
  and steps of the full-rank control head (the largest: V x d with AdamW state) and of the
  highest rank, through ``train_heads``; the time per step times ``rank_heads.steps`` is
  the CPU floor of the job's runtime;
- aggregate_metrics and scaling_fit: per-revision tables of the real shapes (the config's
  models x 154 revisions, each model's layer count and head width, the evaluation
  documents), read and joined by ``aggregation.aggregate``, then the saturation analysis
  and the fit (``scaling.saturation_analysis``, with the bootstrap) on the result.

Prints one line per job and size and, at the end, the table: job, size, wall time, peak
RSS, the declared mem_mb and runtime, and the ratios. ``--sizes small`` runs each job at a
smaller size too, for the growth law.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "workflow" / "scripts"), str(ROOT / "bench")]

# Pythia's widths and depths (config/pythia.yaml's models), and the hub's 154 revisions.
PYTHIA = {
    "pythia-14m": (128, 6),
    "pythia-31m": (256, 6),
    "pythia-70m": (512, 6),
    "pythia-160m": (768, 12),
    "pythia-410m": (1024, 24),
    "pythia-1b": (2048, 16),
    "pythia-1.4b": (2048, 24),
    "pythia-2.8b": (2560, 32),
}
STEPS = [0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000))
VOCAB = 50304


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(threads: int = 2) -> float:
    from bench_default_run import matmul_gflops as measure

    return measure(threads)


# ---- the jobs, each run in a child process ------------------------------------------------


def job_ngram_spectrum(config: dict, size: dict, tmp: Path) -> dict:
    import torch
    from bench_ngrams import textlike

    from saturation.corpus import corpus_table
    from saturation.io import write_parquet
    from saturation.ngrams import ngram_spectrum

    ng = config["ngrams"]
    torch.set_num_threads(ng["threads"])
    docs = textlike(size["tokens"], size["vocab"])
    path = tmp / "tokens.parquet"
    write_parquet(corpus_table(list(range(len(docs))), "train", docs), path)
    del docs
    t0 = time.perf_counter()
    info = ngram_spectrum(
        str(path),
        corpus="bench",
        tokenizer="synthetic",
        vocab_size=size["vocab"],
        n=ng["n"],
        min_context_count=ng["min_context_count"],
        top_k=ng["top_k"],
        gram_max_dim=ng["gram_max_dim"],
        out_path=str(tmp / "spectrum.parquet"),
        tol=ng["tol"],
        max_iter=ng["max_iter"],
    )
    return {"seconds": time.perf_counter() - t0, "C": info["C"], "nnz": info["nnz"]}


def job_rank_head(config: dict, size: dict, tmp: Path) -> dict:
    import torch
    from safetensors.torch import save_file

    from saturation.heads import FeatureShards, HeadTraining, train_heads

    rh = config["rank_heads"]
    torch.set_num_threads(rh["threads"])
    d, vocab, tokens = size["d"], size["vocab"], size["shard_tokens"]
    g = torch.Generator().manual_seed(0)
    dtype = getattr(torch, rh["cache_dtype"])
    save_file(
        {
            "features": torch.randn(tokens, d, generator=g).to(dtype),
            "targets": torch.randint(0, vocab, (tokens,), generator=g, dtype=torch.int32),
        },
        str(tmp / "train_00000.safetensors"),
    )
    before = peak_rss_mb()
    train = FeatureShards(tmp)
    n_eval = config["corpus"]["eval_tokens"]
    evaluation = (torch.randn(n_eval, d, generator=g), torch.randint(0, vocab, (n_eval,)))
    setup = HeadTraining(
        steps=size["steps"],
        batch_tokens=rh["batch_tokens"],
        lr_base=rh["lr_base"],
        lr_reference_params=rh["lr_reference_params"],
        lr_exponent=rh["lr_exponent"],
        warmup_steps=1,
        min_lr_ratio=rh["min_lr_ratio"],
        weight_decay=rh["weight_decay"],
        chunk_tokens=rh["chunk_tokens"],
        seed=0,
    )
    out = {"rss_before_training_mb": before}
    for label, rank in (
        ("full-rank control", None),
        (f"rank {max(rh['ranks'])}", max(rh["ranks"])),
    ):
        t0 = time.perf_counter()
        train_heads([rank], vocab, train, evaluation, setup)
        out[f"{label}: s/step"] = (time.perf_counter() - t0) / size["steps"]
    per_step = max(v for k, v in out.items() if k.endswith("s/step"))
    out["seconds"] = per_step * rh["steps"]  # the job's whole run at this rate
    out["extrapolated"] = f"{rh['steps']} steps at {per_step:.2f} s/step"
    return out


def revision_tables(model: str, step: int, d: int, layers: int, n_docs: int, rng):
    """The four tables a measuring job writes for one revision, of the real shapes."""
    import pyarrow as pa

    from saturation.metrics import document_half, spectrum_metrics
    from saturation.tables import (
        CHECKPOINTS_SCHEMA,
        DOCUMENTS_SCHEMA,
        METRICS_SCHEMA,
        SPECTRA_SCHEMA,
    )

    loss = 3.0 + 4.0 / (1 + step / 2000) + 0.02 * rng.standard_normal()
    names = ["loss", "accuracy", "loss_select", "loss_report", "nats_per_byte", "bits_per_byte"]
    metrics = [(k, None, loss + 0.01 * i) for i, k in enumerate(names)]
    metrics += [("anisotropy", i, float(rng.random())) for i in range(layers + 1)]
    sigma = np.sort(rng.random(d))[::-1] + 1e-3
    metrics += [(k, None, v) for k, v in spectrum_metrics(sigma).items()]
    base = {
        "model": model,
        "step": step,
        "tokens_seen": step * 2097152,
        "n_params": d * d * 12 * layers + 2 * VOCAB * d,
        "n_params_no_embedding": d * d * 12 * layers,
        "hidden_size": d,
    }
    rows = {k: [v] * len(metrics) for k, v in base.items()}
    rows["metric"], rows["layer"], rows["value"] = map(list, zip(*metrics, strict=True))
    spectrum = {"model": [model] * d, "step": [step] * d, "index": np.arange(d)}
    spectrum["singular_value"] = sigma
    record = {
        **base,
        "vocab_size": VOCAB,
        "model_type": "gpt_neox",
        "n_layers": layers,
        "tied_head": False,
        "head_input_size": d,
        "n_predicted_tokens": 50000,
        "head_fingerprint": f"{rng.integers(2**63):016x}",
        "weights_fingerprint": f"{rng.integers(2**63):016x}",
        "commit": f"{rng.integers(2**63):040x}",
        "weights_sha256": f"{rng.integers(2**63):064x}",
        "status": "measured",
        "reason": None,
    }
    docs = np.arange(n_docs)
    documents = {
        "model": [model] * n_docs,
        "step": [step] * n_docs,
        "document": docs,
        "half": [document_half(int(i)) for i in docs],
        "nll": rng.random(n_docs) * 400 + loss * 100,
        "n_predicted": np.full(n_docs, 100),
    }
    return (
        pa.table(rows, schema=METRICS_SCHEMA),
        pa.table(spectrum, schema=SPECTRA_SCHEMA),
        pa.table({k: [v] for k, v in record.items()}, schema=CHECKPOINTS_SCHEMA),
        pa.table(documents, schema=DOCUMENTS_SCHEMA),
    )


def synthetic_jobs(tmp: Path, models: list[str], steps: list[int], n_docs: int) -> dict:
    from saturation.measuring import write_tables

    rng = np.random.default_rng(0)
    paths = {k: [] for k in ("metrics", "spectrum", "checkpoint", "documents")}
    for model in models:
        d, layers = PYTHIA[model]
        for step in steps:
            job = tmp / "metrics" / f"{model}-step{step}"
            job.mkdir(parents=True)
            out = [str(job / f"{k}.parquet") for k in paths]
            write_tables(revision_tables(model, step, d, layers, n_docs, rng), *out)
            for k, p in zip(paths, out, strict=True):
                paths[k].append(p)
    return paths


def aggregated(config: dict, size: dict, tmp: Path) -> dict:
    from saturation.aggregation import aggregate

    models = list(PYTHIA)[: size["models"]]
    paths = synthetic_jobs(tmp, models, STEPS[:: size["every"]], size["documents"])
    tables = {k: str(tmp / f"{k}.parquet") for k in ("metrics", "spectra", "ckpts", "docs")}
    # (scaling_fit reads metrics.parquet and docs.parquet from this folder)
    t0 = time.perf_counter()
    aggregate(
        paths["metrics"],
        paths["spectrum"],
        paths["checkpoint"],
        tables["metrics"],
        tables["spectra"],
        tables["ckpts"],
        documents_paths=paths["documents"],
        out_documents=tables["docs"],
    )
    return {"seconds": time.perf_counter() - t0, "tables": tables, "models": models}


def job_aggregate_metrics(config: dict, size: dict, tmp: Path) -> dict:
    out = aggregated(config, size, tmp)
    return {
        "seconds": out["seconds"],
        "revisions": len(out["models"]) * len(STEPS[:: size["every"]]),
    }


def job_scaling_fit(config: dict, size: dict, tmp: Path) -> dict:
    from saturation.scaling import saturation_analysis

    # The aggregated tables come from a process of their own, as from the rule before.
    r = run_child("aggregate_metrics", size, config["_path"], tmp)
    out = {"tables": {k: str(tmp / f"{k}.parquet") for k in ("metrics", "docs")}}
    out["models"] = list(PYTHIA)[: size["models"]]
    sc = config["scaling"]
    t0 = time.perf_counter()
    saturation_analysis(
        out["tables"]["metrics"],
        fit_models=[m for m in sc["models"] if m in out["models"]] or out["models"],
        parameters=sc["parameters"],
        min_step=sc["min_step"],
        max_step=sc.get("max_step"),
        fixed=sc["fixed"],
        initial=sc["initial"],
        out_saturation=str(tmp / "saturation.parquet"),
        out_fit=str(tmp / "fit.parquet"),
        out_points=str(tmp / "points.parquet"),
        documents_path=out["tables"]["docs"],
        level=sc["saturation_level"],
        resamples=sc["bootstrap_resamples"],
        seed=0,
        out_by_size=str(tmp / "by_size.parquet"),
    )
    return {"seconds": time.perf_counter() - t0, "aggregation_seconds": r["seconds"]}


JOBS = {
    # job: (rule, function, {size label: size})
    "ngram_spectrum": (
        "ngram_spectrum",
        job_ngram_spectrum,
        {
            "paper": {"tokens": 20_000_000, "vocab": VOCAB},
            "small": {"tokens": 5_000_000, "vocab": VOCAB},
        },
    ),
    "rank_head": (
        "rank_head",
        job_rank_head,
        {
            "paper": {"d": 2560, "vocab": VOCAB, "shard_tokens": None, "steps": 4},
            "small": {"d": 1024, "vocab": VOCAB, "shard_tokens": None, "steps": 4},
        },
    ),
    "aggregate_metrics": (
        "aggregate_metrics",
        job_aggregate_metrics,
        {
            "paper": {"models": 8, "every": 1, "documents": 400},
            "small": {"models": 8, "every": 4, "documents": 400},
        },
    ),
    "scaling_fit": (
        "scaling_fit",
        job_scaling_fit,
        {
            "paper": {"models": 8, "every": 1, "documents": 400},
            "small": {"models": 8, "every": 4, "documents": 400},
        },
    ),
}


def describe(job: str, size: dict, config: dict) -> str:
    if job == "ngram_spectrum":
        return f"{size['tokens'] / 1e6:.0f}M tokens, V = {size['vocab']}, top {config['ngrams']['top_k']}"
    if job == "rank_head":
        return f"d = {size['d']}, V = {size['vocab']}, shard {size['shard_tokens']} tokens"
    return f"{size['models']} models x {len(STEPS[:: size['every']])} revisions, {size['documents']} documents"


# ---- the declared resources ---------------------------------------------------------------


def declared(rule: str, config: dict) -> tuple[float, float]:
    """A rule's mem_mb and runtime as the workflow declares them (its rule file, with
    config-driven values looked up in the config)."""
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        match = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", text, re.S | re.M)
        if match:
            block = match.group(1)
            values = []
            for key in ("mem_mb", "runtime"):
                value = re.search(rf"{key}=([^,\n]+),", block).group(1).strip()
                # RANK_HEADS["runtime"] * len(rank_head_job(wildcards)): per head, and
                # config/pythia.yaml gives one head a job
                ref = re.search(r'([A-Z_]+)\["(\w+)"\]', value)
                values.append(
                    float(config[ref.group(1).lower()][ref.group(2)]) if ref else float(value)
                )
            return values[0], values[1]
    raise KeyError(rule)


def load_config(path: Path) -> dict:
    """config/config.yaml overlaid by ``path`` with the schema's defaults, as the workflow
    reads ``--configfile path``."""
    from snakemake.utils import update_config, validate

    from saturation.config import read_config_file

    config = read_config_file(ROOT / "config" / "config.yaml")
    update_config(config, read_config_file(path))
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def child(job: str, size: dict, config_path: Path, work: Path) -> None:
    config = load_config(config_path)
    config["_path"] = config_path
    if job == "rank_head" and size["shard_tokens"] is None:
        size["shard_tokens"] = config["rank_heads"]["shard_tokens"]
    out = JOBS[job][1](config, size, work)
    out = {k: v for k, v in out.items() if isinstance(v, (int, float, str))}
    out["peak_rss_mb"] = peak_rss_mb()
    out["size"] = describe(job, size, config)
    print(json.dumps(out))


def run_child(job: str, size: dict, config_path: Path, work: Path) -> dict:
    """One job in a fresh process, in the folder ``work``; its result line."""
    out = subprocess.run(
        [sys.executable, __file__, "--config", str(config_path), "--work", str(work)]
        + ["--child", job, json.dumps(size)],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        print(out.stderr[-3000:])
        raise SystemExit(f"{job} ({size}) failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--sizes", default="paper", help="paper, small, or small,paper")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "pythia.yaml")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("JOB", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]), args.config, args.work)
        return
    config = load_config(args.config)
    print(f"float32 matmul on 2 threads: {matmul_gflops():.0f} GFLOP/s")
    rows = []
    for job in args.jobs.split(","):
        rule, _, sizes = JOBS[job]
        mem_mb, runtime = declared(rule, config)
        for label in args.sizes.split(","):
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as work:
                r = run_child(job, sizes[label], args.config, Path(work))
            r.update(
                job=job, label=label, wall=time.perf_counter() - t0, mem_mb=mem_mb, runtime=runtime
            )
            print(json.dumps(r), flush=True)
            rows.append(r)
    print()
    print(
        "| job | size | time | peak RSS | declared mem_mb | RSS / mem_mb | declared runtime | time / runtime |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        minutes = r["seconds"] / 60
        note = f" ({r['extrapolated']})" if "extrapolated" in r else ""
        print(
            f"| {r['job']} | {r['size']} | {minutes:.1f} min{note} | {r['peak_rss_mb']:.0f} MB | "
            f"{r['mem_mb']:.0f} | {r['peak_rss_mb'] / r['mem_mb']:.2f} | {r['runtime']:.0f} min | "
            f"{minutes / r['runtime']:.2f} |"
        )


if __name__ == "__main__":
    main()
