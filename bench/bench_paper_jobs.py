"""The paper run's jobs at the size config/pythia.yaml gives them: wall time and peak memory
against the resources each job asks for.

    python bench/bench_paper_jobs.py [--jobs aggregate_metrics,...] [--sizes small,paper]
                                     [--config config/pythia.yaml] [--keep-figures DIR]

Each job runs the workflow's own code in a fresh process (its peak RSS is that process's),
on synthetic inputs of the real shapes, since the real ones cannot be had offline:

- ngram_spectrum: a text-like token corpus (``bench_ngrams.textlike``: Zipf unigrams,
  collocations, a long tail of contexts seen once) of the paper's largest size, 20M tokens,
  under Pythia's 50,304-token vocabulary, through ``ngram_spectrum`` with the config's n,
  top_k and tol (the Parquet corpus written as the sampling job writes it);
- rank_head (with ``--jobs rank_head``: the cached protocol's job; ``config/pythia.yaml``
  trains as the paper does, measured by ``bench/bench_paper_heads.py``): one shard of the feature cache at pythia-2.8b's width (d = 2,560,
  ``rank_heads.shard_tokens`` tokens in ``cache_dtype``), streamed as the job streams it,
  and steps of the full-rank control head (the largest: V x d with its AdamW state)
  through ``train_heads``; the time of a step times ``rank_heads.steps``, plus the
  evaluation, is the job's time on this CPU;
- sample_corpus: ``corpus.train_tokens`` (20M) tokens sampled by ``sample_corpus`` from
  text-like .jsonl shards (Zipf words) with a byte-level BPE of 50,304 tokens trained here,
  its text kept beside the tokens as the workflow keeps it;
- measure_checkpoint: a pythia-2.8b-shaped checkpoint of random fp16 weights in
  safetensors, measured by ``checkpoint_tables`` in ``metrics.dtype`` on this CPU (the
  host memory a measuring job needs to load it), beside a bare forward of the same tokens;
- aggregate_metrics, scaling_fit and figures: per-revision tables of the real shapes (the config's
  models x 154 revisions, each model's layer count and head width, the evaluation
  documents), read and joined by ``aggregation.aggregate_metrics``, then the saturation analysis
  and the fit (``scaling.saturation_analysis``, with the bootstrap) on the result, then
  Figs 1a to 5 drawn from them (``figures.render``; ``--keep-figures DIR`` keeps the PNGs).

Synthetic inputs are written by a process of their own before each job, so a job's peak
RSS is its own. Prints one line per job and size and, at the end, the table: job, size, wall time, peak
RSS, the declared mem_mb and runtime, and the ratios. ``--sizes small`` runs each job at a
smaller size too, for the growth law.
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path[:0] = [str(ROOT / "workflow" / "scripts"), str(ROOT / "bench"), str(ROOT / "tests")]

from saturation.config import PYTHIA_VOCAB as VOCAB  # noqa: E402
from saturation.head_memory import PYTHIA_WIDTHS  # noqa: E402
from saturation.suites import model_steps  # noqa: E402

# Pythia's depths (their widths are the workflow's PYTHIA_WIDTHS).
PYTHIA_LAYERS = {
    "14m": 6,
    "31m": 6,
    "70m": 6,
    "160m": 12,
    "410m": 24,
    "1b": 16,
    "1.4b": 24,
    "2.8b": 32,
}


def run_revisions(config: dict, size: dict) -> dict[str, list[int]]:
    """The config's models and their revisions (``size['every']``-th of them), the first
    ``size['models']`` models."""
    models = list(model_steps(config).items())[: size["models"]]
    return {m: steps[:: size["every"]] for m, steps in models}


def pythia_shape(model: str) -> tuple[int, int]:
    size = model.removeprefix("pythia-")
    return PYTHIA_WIDTHS[size], PYTHIA_LAYERS[size]


def reset_peak_rss() -> None:
    """Start counting the peak RSS afresh (Linux: VmHWM), so that a job's peak is its own
    and not the imports'."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(x.split()[1]) for x in status if x.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(threads: int = 2) -> float:
    from bench_default_run import matmul_gflops as measure

    return measure(threads)


# ---- the jobs, each run in a child process ------------------------------------------------


def prepare_ngram_spectrum(config: dict, size: dict, work: Path) -> None:
    from bench_ngrams import textlike

    from saturation.corpus import corpus_table
    from saturation.io import write_parquet

    docs = textlike(size["tokens"], size["vocab"])
    write_parquet(corpus_table(list(range(len(docs))), "train", docs), work / "tokens.parquet")


def job_ngram_spectrum(config: dict, size: dict, work: Path) -> dict:
    import torch

    from saturation.ngrams import ngram_spectrum

    ng = config["ngrams"]
    torch.set_num_threads(ng["threads"])
    t0 = time.perf_counter()
    info = ngram_spectrum(
        str(work / "tokens.parquet"),
        corpus="bench",
        tokenizer="synthetic",
        vocab_size=size["vocab"],
        n=ng["n"],
        min_context_count=ng["min_context_count"],
        top_k=ng["top_k"],
        gram_max_dim=ng["gram_max_dim"],
        out_path=str(work / "spectrum.parquet"),
        tol=ng["tol"],
        max_iter=ng["max_iter"],
        mem_mb=ng["mem_mb"],
    )
    return {"seconds": time.perf_counter() - t0, "C": info["C"], "nnz": info["nnz"]}


def prepare_rank_head(config: dict, size: dict, work: Path) -> None:
    import torch
    from safetensors.torch import save_file

    rh = config["rank_heads"]
    d, vocab, tokens = size["d"], size["vocab"], rh["shard_tokens"]
    g = torch.Generator().manual_seed(0)
    cache = work / "cache"
    cache.mkdir()
    features = torch.empty(tokens, d, dtype=getattr(torch, rh["cache_dtype"]))
    for s in range(0, tokens, 65536):  # written in pieces: the preparation stays small
        features[s : s + 65536] = torch.randn(min(65536, tokens - s), d, generator=g)
    targets = torch.randint(0, vocab, (tokens,), generator=g, dtype=torch.int32)
    save_file({"features": features, "targets": targets}, str(cache / "train_00000.safetensors"))
    n_eval = config["corpus"]["eval_tokens"]
    save_file(
        {
            "features": torch.randn(n_eval, d, generator=g),
            "targets": torch.randint(0, vocab, (n_eval,), generator=g),
        },
        str(work / "eval.safetensors"),
    )


def job_rank_head(config: dict, size: dict, work: Path) -> dict:
    """The full-rank control head (the largest: V x d with its AdamW state), trained for 1
    and for 1 + ``steps`` steps: the difference is the time of a step, the rest the
    evaluation."""
    import torch
    from safetensors.torch import load_file

    from saturation.head_settings import HeadTraining
    from saturation.heads import FeatureShards, train_heads

    rh = config["rank_heads"]
    torch.set_num_threads(rh["threads"])
    train = FeatureShards(work / "cache")
    ev = load_file(str(work / "eval.safetensors"))
    times = {}
    for steps in (1, 1 + size["steps"]):
        setup = HeadTraining(
            steps=steps,
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
        t0 = time.perf_counter()
        train_heads([None], size["vocab"], train, (ev["features"], ev["targets"]), setup)
        times[steps] = time.perf_counter() - t0
    per_step = (times[1 + size["steps"]] - times[1]) / size["steps"]
    evaluation = times[1] - per_step
    return {
        "seconds": per_step * rh["steps"] + evaluation,  # the job's whole run at this rate
        "extrapolated": f"{rh['steps']} steps at {per_step:.1f} s, evaluation {evaluation:.0f} s",
        "step_flop": 6 * rh["batch_tokens"] * size["vocab"] * size["d"],
        "step_seconds": per_step,
    }


def revision_tables(model: str, step: int, d: int, layers: int, n_docs: int, rng):
    """The four tables a measuring job writes for one revision, of the real shapes."""
    import pyarrow as pa

    from saturation.metrics import document_half, spectrum_metrics
    from saturation.tables import (
        CHECKPOINT_SCHEMA,
        DOCUMENT_LOSSES_SCHEMA,
        HEAD_SPECTRA_SCHEMA,
        METRICS_SCHEMA,
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
    return {
        "checkpoint_metrics": pa.table(rows, schema=METRICS_SCHEMA),
        "head_spectra": pa.table(spectrum, schema=HEAD_SPECTRA_SCHEMA),
        "checkpoints": pa.table({k: [v] for k, v in record.items()}, schema=CHECKPOINT_SCHEMA),
        "document_losses": pa.table(documents, schema=DOCUMENT_LOSSES_SCHEMA),
    }


def synthetic_jobs(tmp: Path, revisions: dict[str, list[int]], n_docs: int) -> dict:
    from saturation.measuring import write_tables

    rng = np.random.default_rng(0)
    paths = {
        k: [] for k in ("checkpoint_metrics", "head_spectra", "checkpoints", "document_losses")
    }
    for model, steps in revisions.items():
        d, layers = pythia_shape(model)
        for step in steps:
            job = tmp / "metrics" / f"{model}-step{step}"
            job.mkdir(parents=True)
            out = {k: str(job / f"{k}.parquet") for k in paths}
            write_tables(revision_tables(model, step, d, layers, n_docs, rng), out)
            for k, p in out.items():
                paths[k].append(p)
    return paths


def prepare_aggregate_metrics(config: dict, size: dict, work: Path) -> None:
    paths = synthetic_jobs(work, run_revisions(config, size), size["documents"])
    (work / "paths.json").write_text(json.dumps(paths))


def job_aggregate_metrics(config: dict, size: dict, work: Path) -> dict:
    from saturation.aggregation import aggregate_metrics

    paths = json.loads((work / "paths.json").read_text())
    t0 = time.perf_counter()
    aggregate_metrics(paths, {k: str(work / f"{k}.parquet") for k in paths})
    return {"seconds": time.perf_counter() - t0, "revisions": len(paths["checkpoints"])}


def prepare_scaling_fit(config: dict, size: dict, work: Path) -> None:
    prepare_aggregate_metrics(config, size, work)
    job_aggregate_metrics(config, size, work)


def job_scaling_fit(config: dict, size: dict, work: Path) -> dict:
    from saturation.scaling import saturation_analysis

    models = list(run_revisions(config, size))
    sc = config["scaling"]
    t0 = time.perf_counter()
    saturation_analysis(
        str(work / "checkpoint_metrics.parquet"),
        fit_models=[m for m in sc["models"] if m in models] or models,
        parameters=sc["parameters"],
        min_step=sc["min_step"],
        max_step=sc.get("max_step"),
        fixed=sc["fixed"],
        initial=sc["initial"],
        out_saturation=str(work / "saturation.parquet"),
        out_fit=str(work / "scaling_fit.parquet"),
        out_points=str(work / "points.parquet"),
        documents_path=str(work / "document_losses.parquet"),
        level=sc["saturation_level"],
        resamples=sc["bootstrap_resamples"],
        seed=0,
        out_by_size=str(work / "by_size.parquet"),
    )
    return {"seconds": time.perf_counter() - t0}


PYTHIA_2_8B = dict(
    hidden_size=2560,
    num_hidden_layers=32,
    num_attention_heads=32,
    intermediate_size=10240,
    vocab_size=VOCAB,
    rotary_pct=0.25,
    max_position_embeddings=2048,
    use_parallel_residual=True,
    tie_word_embeddings=False,
)


def prepare_measure_checkpoint(config: dict, size: dict, work: Path) -> None:
    """A pythia-2.8b-shaped checkpoint of random fp16 weights, saved as the hub serves it
    (safetensors), and an evaluation sample of ``size['tokens']`` tokens."""
    import pyarrow as pa
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from saturation.corpus import corpus_table
    from saturation.io import write_parquet

    torch.manual_seed(0)
    shape = dict(PYTHIA_2_8B, hidden_size=size["d"], num_hidden_layers=size["layers"])
    shape["intermediate_size"] = 4 * size["d"]
    shape["num_attention_heads"] = size["d"] // 80
    cfg = GPTNeoXConfig(**shape, torch_dtype="float16")
    with torch.device("meta"):
        model = GPTNeoXForCausalLM(cfg)
    model = model.to_empty(device="cpu").to(torch.float16)
    for p in model.parameters():  # small random weights, not the slow default initialisers
        with torch.no_grad():
            p.normal_(0, 0.02)
    for name, buf in model.named_buffers():
        if "inv_freq" in name:  # recomputed, as transformers' own init does
            dim = buf.numel() * 2
            base = cfg.rope_theta if hasattr(cfg, "rope_theta") else 10000
            buf.copy_(1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)))
    model.save_pretrained(work / "checkpoint", safe_serialization=True)
    del model
    rng = np.random.default_rng(0)
    seq = config["metrics"]["sequence_length"]
    docs = [rng.integers(0, VOCAB, seq).astype(np.int32) for _ in range(size["tokens"] // seq)]
    write_parquet(corpus_table(list(range(len(docs))), "eval", docs), work / "eval.parquet")
    # the training sample's token counts (metrics.parts frequency): Zipf-like
    counts = (1e7 / np.arange(1, VOCAB + 1)).astype(np.int64)
    ids = np.arange(VOCAB, dtype=np.int64)
    write_parquet(pa.table({"token": ids, "count": counts}), work / "counts.parquet")


def job_measure_checkpoint(config: dict, size: dict, work: Path) -> dict:
    """One revision measured by the workflow's ``checkpoint_tables`` on this CPU, with the
    paper's parts alone and with every part (those beyond the paper: ``bottleneck.PARTS``),
    then a bare forward of the same model over the same tokens, for the ratios. The parts
    beyond the paper cost a per-token share (two head-sized products and the truncations'
    log-sum-exps) and a fixed one (the head's SVD from its Gram matrix, one batch's gradient
    Gram), timed apart, so their share at ``metrics``' 50,000 tokens follows."""
    import torch

    from saturation.bottleneck import PARTS, GradientAccumulator, head_basis, logit_gradient
    from saturation.corpus import read_tokens
    from saturation.loading import load_model
    from saturation.measuring import checkpoint_tables
    from saturation.metrics import head_gram

    me = config["metrics"]
    measured = {}
    for name, parts in (
        ("paper", ("forward", "spectrum")),
        ("all", ("forward", "spectrum", *PARTS)),
    ):
        t0 = time.perf_counter()
        checkpoint_tables(
            "pythia-2.8b",
            143000,
            0,
            str(work / "checkpoint"),
            str(work / "eval.parquet"),
            me["sequence_length"],
            me["batch_size"],
            me["dtype"],
            "cpu",
            allow_pickle=False,
            threads=2,
            parts=parts,
            counts=str(work / "counts.parquet"),
        )
        measured[name] = time.perf_counter() - t0
    seconds = measured["paper"]
    rss = peak_rss_mb()
    t_load = time.perf_counter()
    model = load_model(work / "checkpoint", dtype=getattr(torch, me["dtype"]))
    load = time.perf_counter() - t_load
    ids = torch.from_numpy(np.stack(read_tokens(work / "eval.parquet")).astype(np.int64))
    t1 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(ids), me["batch_size"]):
            model(ids[s : s + me["batch_size"]])
    bare = time.perf_counter() - t1
    # The fixed share of the parts beyond the paper: the basis, one batch's gradient Gram.
    head = model.get_output_embeddings()
    t2 = time.perf_counter()
    basis = head_basis(head, "cpu", head_gram(head.weight))
    n_batch = min(len(ids) * (ids.shape[1] - 1), 8192)
    logp = torch.log_softmax(torch.randn(n_batch, head.weight.shape[0]), 1)
    GradientAccumulator(basis).batch_shares(
        logit_gradient(logp, torch.zeros(n_batch, dtype=torch.long))
    )
    fixed = time.perf_counter() - t2
    n_tokens = len(ids) * ids.shape[1]
    extra = measured["all"] - seconds
    per_token = (extra - fixed) / n_tokens
    target = config["corpus"]["eval_tokens"]
    paper_at = load + (seconds - load) * target / n_tokens
    projected = (fixed + per_token * target) / paper_at
    return {
        "seconds": seconds,
        "all_parts_seconds": measured["all"],
        "beyond_fixed_seconds": fixed,
        "beyond_share_measured": extra / seconds,
        "beyond_share_at_eval_tokens": projected,
        "measure_peak_rss_mb": rss,
        "bare_forward_seconds": bare,
        "load_seconds": load,
        "extrapolated": f"{n_tokens} tokens on this CPU; of it the load "
        f"{load:.0f} s; a bare forward of the tokens {bare:.0f} s; with every part "
        f"{measured['all']:.0f} s (+{extra / seconds:.0%}: {fixed:.0f} s fixed, "
        f"{per_token * 1e3:.1f} ms a token), at {target:,} tokens +{projected:.0%}",
    }


MEASURED_TABLES = {"metrics", "saturation", "fit", "checkpoints", "head_spectra"}


def figures_from_measurements() -> list[str]:
    """The registry's figures drawn from the measurements alone (Figs 1a to 5)."""
    from saturation.figures import FIGURES

    return [f for f, spec in FIGURES.items() if set(spec.needs) <= MEASURED_TABLES]


def prepare_figures(config: dict, size: dict, work: Path) -> None:
    prepare_scaling_fit(config, size, work)
    job_scaling_fit(config, size, work)


def job_figures(config: dict, size: dict, work: Path) -> dict:
    """The figures drawn from the measurements (Figs 1a to 5), each as its rule draws it;
    the peak RSS and time of the largest figure job."""
    from saturation.figures import render

    inputs = {
        "checkpoint_metrics": work / "checkpoint_metrics.parquet",
        "saturation": work / "saturation.parquet",
        "scaling_fit": work / "scaling_fit.parquet",
        "checkpoints": work / "checkpoints.parquet",
        "head_spectra": work / "head_spectra.parquet",
    }
    inputs = {k: str(v) for k, v in inputs.items()}
    out, worst = {}, (0.0, 0.0)
    (work / "figures").mkdir()
    figures = figures_from_measurements()
    for fig in figures:
        reset_peak_rss()
        t0 = time.perf_counter()
        png = work / "figures" / f"{fig}.png"
        render(fig, inputs, config["figures"], str(png), str(png.with_suffix(".pdf")))
        seconds, rss = time.perf_counter() - t0, peak_rss_mb()
        out[f"{fig} s"] = seconds
        out[f"{fig} MB"] = rss
        worst = max(worst, (seconds, rss))
        if size.get("keep"):
            Path(size["keep"]).mkdir(parents=True, exist_ok=True)
            (Path(size["keep"]) / png.name).write_bytes(png.read_bytes())
    slowest = max(figures, key=lambda f: out[f"{f} s"])
    out["seconds"] = out[f"{slowest} s"]
    out["peak_rss_mb"] = max(out[f"{f} MB"] for f in figures)
    out["extrapolated"] = f"the slowest figure, {slowest}"
    return out


def synthetic_words(n_words: int, vocab: int = 30000, seed: int = 0) -> np.ndarray:
    """Word ids with Zipf(1.05) frequencies, as in text."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, vocab + 1) ** -1.05
    return rng.choice(vocab, size=n_words, p=p / p.sum())


def word_strings(vocab: int = 30000, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed + 1)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 10, vocab)
    return ["".join(rng.choice(letters, n)) for n in lengths]


def prepare_sample_corpus(config: dict, size: dict, work: Path) -> None:
    """Text-like documents in .jsonl shards, enough for ``size['tokens']`` tokens, and a
    byte-level BPE tokenizer of Pythia's vocabulary size trained on part of them."""
    from hub.repos import tokenizer_files

    words = word_strings()
    ids = synthetic_words(size["words"])
    docs = [
        " ".join(words[i] for i in chunk) for chunk in np.array_split(ids, size["words"] // 400)
    ]
    shards = work / "shards"
    shards.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(docs)), 8)):
        with (shards / f"{i:02d}.jsonl").open("w") as fh:
            for j in part:
                fh.write(json.dumps({"text": docs[j]}) + "\n")
    tok = work / "tokenizer"
    tok.mkdir()
    for name, data in tokenizer_files(docs[:2000], vocab_size=size["vocab"]).items():
        (tok / name).write_bytes(data)


def job_sample_corpus(config: dict, size: dict, work: Path) -> dict:
    """The training sample of ``corpus.train_tokens`` tokens through ``sample_corpus`` (a local
    source here: the whole text is held, more than the hub source's stream holds)."""
    from saturation.corpus import sample_corpus

    corpus = config["corpus"]
    params = {
        "source": "local",
        "split": "train",
        "n_tokens": size["tokens"],
        "seed": config["seed"],
        "tokenizer": str(work / "tokenizer"),
        "eval_fraction": 0.0,  # as with the config's eval_split: every document is training's
        "max_document_tokens": corpus["max_document_tokens"],
        "document_separator": corpus["document_separator"],
        "local": {
            "paths": sorted(str(p) for p in (work / "shards").glob("*.jsonl")),
            "text_field": "text",
        },
    }
    t0 = time.perf_counter()
    sample_corpus(params, {}, str(work / "train.parquet"), str(work / "train.json"))
    meta = json.loads((work / "train.json").read_text())
    return {"seconds": time.perf_counter() - t0, "tokens": meta["n_tokens"]}


# 8 models x 154 revisions (every: 1), or a quarter of the revisions
TABLE_SIZES = {
    "paper": {"models": 8, "every": 1, "documents": 400},
    "small": {"models": 8, "every": 4, "documents": 400},
}
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
            "paper": {"d": 2560, "vocab": VOCAB, "steps": 4},
            "small": {"d": 1024, "vocab": VOCAB, "steps": 4},
        },
    ),
    "measure_checkpoint": (
        "measure_checkpoint",
        job_measure_checkpoint,
        {
            "paper": {"d": 2560, "layers": 32, "tokens": 4096},
            "small": {"d": 1280, "layers": 16, "tokens": 4096},
        },
    ),
    "sample_corpus": (
        "sample_corpus",
        job_sample_corpus,
        {
            "paper": {"tokens": 20_000_000, "words": 24_000_000, "vocab": VOCAB},
            "small": {"tokens": 5_000_000, "words": 6_000_000, "vocab": VOCAB},
        },
    ),
    "aggregate_metrics": (
        "aggregate_metrics",
        job_aggregate_metrics,
        TABLE_SIZES,
    ),
    "scaling_fit": (
        "scaling_fit",
        job_scaling_fit,
        TABLE_SIZES,
    ),
    "figures": (
        "fig4_head_spectrum",
        job_figures,
        TABLE_SIZES,
    ),
}


def describe(job: str, size: dict, config: dict) -> str:
    if job == "ngram_spectrum":
        return f"{size['tokens'] / 1e6:.0f}M tokens, V = {size['vocab']}, top {config['ngrams']['top_k']}"
    if job == "rank_head":
        shard = config["rank_heads"]["shard_tokens"]
        return f"d = {size['d']}, V = {size['vocab']}, full-rank head, shard {shard} tokens"
    if job == "sample_corpus":
        return f"{size['tokens'] / 1e6:.0f}M tokens of .jsonl text, a {size['vocab']}-token BPE"
    if job == "measure_checkpoint":
        return (
            f"d = {size['d']}, {size['layers']} layers, fp16 safetensors, {size['tokens']} tokens"
        )
    revisions = run_revisions(config, size)
    n = sum(len(v) for v in revisions.values())
    return f"{len(revisions)} models, {n} revisions, {size['documents']} documents"


# ---- the declared resources ---------------------------------------------------------------


def declared(rule: str, config: dict) -> tuple[float, float]:
    """A rule's mem_mb and runtime as the workflow declares them (its rule file, with
    config-driven values looked up in the config)."""
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        match = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", text, re.S | re.M)
        if match is None and rule.startswith("fig") and path.name == "figures.smk":
            match = re.search(r"^    rule:\n(.*)", text, re.S | re.M)  # the figure rules' loop
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


def child(job: str, size: dict, config_path: Path, work: Path, prepare: bool) -> None:
    config = load_config(config_path)
    if prepare:
        globals()[f"prepare_{job}"](config, size, work)
        return
    reset_peak_rss()
    out = JOBS[job][1](config, size, work)
    out = {k: v for k, v in out.items() if isinstance(v, (int, float, str))}
    out["peak_rss_mb"] = max(out.get("peak_rss_mb", 0), peak_rss_mb())
    out["size"] = describe(job, size, config)
    print(json.dumps(out))


def run_child(job: str, size: dict, config_path: Path, work: Path, prepare=False) -> dict:
    """One job in a fresh process, in the folder ``work``: its inputs written (``prepare``),
    or the job run and its result line returned."""
    out = subprocess.run(
        [sys.executable, __file__, "--config", str(config_path), "--work", str(work)]
        + ["--child", job, json.dumps(size)]
        + (["--prepare"] if prepare else []),
        capture_output=True,
        text=True,
    )
    if out.returncode:
        print(out.stderr[-3000:])
        raise SystemExit(f"{job} ({size}) failed")
    return None if prepare else json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs",
        # rank_head: the cached protocol's job; config/pythia.yaml's (protocol: paper) is
        # bench/bench_paper_heads.py's
        default="aggregate_metrics,scaling_fit,figures,sample_corpus,measure_checkpoint,ngram_spectrum",
    )
    parser.add_argument("--sizes", default="paper", help="paper, small, or small,paper")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "pythia.yaml")
    parser.add_argument("--keep-figures", type=Path, help="keep the figures job's PNGs here")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("JOB", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]), args.config, args.work, args.prepare)
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
                if job == "figures" and args.keep_figures:
                    sizes[label]["keep"] = str(args.keep_figures.resolve() / label)
                run_child(job, sizes[label], args.config, Path(work), prepare=True)
                t0 = time.perf_counter()
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
        took = f"{r['seconds']:.1f} s" if r["seconds"] < 120 else f"{minutes:.0f} min"
        note = f" ({r['extrapolated']})" if "extrapolated" in r else ""
        print(
            f"| {r['job']} | {r['size']} | {took}{note} | {r['peak_rss_mb']:.0f} MB | "
            f"{r['mem_mb']:.0f} | {r['peak_rss_mb'] / r['mem_mb']:.2f} | {r['runtime']:.0f} min | "
            f"{minutes / r['runtime']:.2f} |"
        )


if __name__ == "__main__":
    main()
