"""The heavy stages on a GPU: CUDA against CPU on the same inputs, determinism, device memory
against its estimate, and throughput against the device's own matmul rate. One command, no
network; run from the repository root:

    python bench/gpu_check.py [--out DIR] [--quick] [--no-workflow]

It builds two models here (random weights, seeded, saved as checkpoints): a GPT-NeoX with
Pythia-70M's shape and untied head, and a Llama with a tied head. On each it runs the
workflow's own code: the measurement (``saturation.measuring.checkpoint_tables``), the
feature cache with rank-head training (``saturation.heads``), and one downstream evaluation
(``saturation.downstream``, on the synthetic language's local tasks). Without a CUDA device
(CI) it runs that CPU half and says plainly that the CUDA half did not run. With one, it
also runs everything on CUDA and asserts:

- float32 on CUDA equals the CPU: loss to 1e-5 relative, anisotropy to 1e-6, the head's
  spectrum to 1e-9 relative (the spectrum is computed in float64 from the same weights);
- bf16 on CUDA is within 2e-2 relative of the float32 loss and 2e-2 of its anisotropy
  (bf16 keeps 8 significant bits, a relative 2^-9 = 2e-3 a weight; the logits' sums over
  d = 512 products and the layers compound that, and the loss is a mean of log-softmaxes,
  so a few 1e-3 is expected and 2e-2 is the bound), and the spectrum of the bf16 head to 1e-2;
- two CUDA runs with deterministic algorithms give identical tables;
- the measurement's peak device memory (``torch.cuda.max_memory_allocated``) is within the
  estimate below, and the rank-head job's within ``saturation.head_memory.rank_head_memory_mb``;
- trained rank heads and the downstream scores agree with the CPU's (tolerances stated at
  each check).

It prints the measure pass's tokens per second and the fraction of the device's bf16 and fp32
matmul rate (measured in the same run) it reaches, and the same for rank-head training; then
(unless ``--no-workflow``) it runs the tiny configuration's whole workflow on CUDA through
``profiles/workstation``. Results go to ``DIR/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


# --- the inputs ------------------------------------------------------------------------------


def build_models(root: Path, quick: bool) -> dict[str, Path]:
    """The two checkpoints: Pythia-70M's shape (untied) and a tied-head Llama."""
    import torch
    import transformers

    torch.manual_seed(0)
    layers = 2 if quick else 6
    neox = transformers.GPTNeoXForCausalLM(
        transformers.GPTNeoXConfig(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=layers,
            num_attention_heads=8,
            vocab_size=50304,
            max_position_embeddings=2048,
            rotary_pct=0.25,
            tie_word_embeddings=False,
        )
    )
    llama = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            hidden_size=512,
            intermediate_size=1376,
            num_hidden_layers=2 if quick else 4,
            num_attention_heads=8,
            num_key_value_heads=4,
            vocab_size=32000,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        )
    )
    out = {}
    for name, model in (("neox-70m", neox), ("llama-tied", llama)):
        model.save_pretrained(root / name)
        out[name] = root / name
    return out


def write_sample(path: Path, vocab: int, docs: int, length: int, seed: int) -> Path:
    """Token documents in the corpus format (a ``tokens`` list column)."""
    rng = np.random.default_rng(seed)
    tokens = [rng.integers(0, vocab, size=length).astype(np.int32).tolist() for _ in range(docs)]
    pq.write_table(pa.table({"doc_id": list(range(docs)), "tokens": tokens}), path)
    return path


# --- the measurement -------------------------------------------------------------------------


def measure(folder: Path, sample: Path, device: str, dtype: str, seq: int, batch: int):
    """One measurement with every part, those beyond the paper included (the token counts:
    the sample's own)."""
    from saturation.bottleneck import PARTS
    from saturation.corpus import count_tokens
    from saturation.measuring import checkpoint_tables

    counts = sample.with_name(f"{sample.stem}-counts.parquet")
    if not counts.exists():
        count_tokens(sample, counts)
    tables = checkpoint_tables(
        model_name=folder.name,
        step=0,
        tokens_seen=0,
        checkpoint_dir=str(folder),
        eval_path=str(sample),
        sequence_length=seq,
        batch_size=batch,
        dtype=dtype,
        device=device,
        allow_pickle=False,
        threads=os.cpu_count() or 1,
        parts=("forward", "spectrum", *PARTS),
        counts=str(counts),
    )
    metrics = tables["checkpoint_metrics"].to_pandas()
    loss = float(metrics[metrics.metric == "loss"].value.iloc[0])
    aniso = metrics[metrics.metric == "anisotropy"].sort_values("layer").value.to_numpy()
    sigma = tables["head_spectra"].column("singular_value").to_numpy()
    beyond = metrics[metrics.layer.isna()].set_index("metric").value
    beyond = beyond[[m for m in beyond.index if m.startswith(BEYOND_METRICS)]]
    truncated = tables["truncated_heads"].column("loss").to_numpy()
    return {"loss": loss, "anisotropy": aniso, "sigma": sigma, "tables": tables,
            "beyond": beyond, "truncated": truncated}  # fmt: skip


# The metrics beyond the paper (saturation.bottleneck), by their names' starts.
BEYOND_METRICS = ("gradient_", "frequency_", "top_component", "rankme", "alpha_req")


def measure_memory_estimate(n_params: int, element: int, batch: int, seq: int, vocab: int,
                            hidden: int, layers: int) -> float:  # fmt: skip
    """Bytes a measurement holds on the device at its peak: the weights; one batch of logits
    in the model's dtype, its float32 copy of the scored positions, their log-softmax and the
    finiteness mask; and the hidden states the layer taps keep (a batch's, per layer, and the
    attention's and MLP's working set, 8 of them)."""
    logits = batch * seq * vocab * (element + 4 + 4 + 1)
    hidden_states = batch * seq * hidden * element * (layers + 2 + 8)
    return n_params * element + logits + hidden_states


def matmul_rate(device: str, dtype) -> float:
    """FLOP/s of a 4096 x 4096 matmul on ``device`` in ``dtype`` (best of three)."""
    import torch

    n = 4096 if device != "cpu" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for _ in range(3):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * n**3 / best


def timed_measure(folder, sample, device, dtype, seq, batch, tokens):
    import torch

    if device != "cpu":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = measure(folder, sample, device, dtype, seq, batch)
    if device != "cpu":
        torch.cuda.synchronize()
    out["seconds"] = time.perf_counter() - t
    out["tokens_per_second"] = tokens / out["seconds"]
    if device != "cpu":
        out["peak_bytes"] = torch.cuda.max_memory_allocated()
    return out


# --- rank heads and downstream ---------------------------------------------------------------


def rank_heads(folder: Path, train: Path, sample: Path, work: Path, device: str, steps: int):
    """The feature cache and a rank-64 and a full head trained from it."""
    import torch

    from saturation.heads import feature_cache, rank_head

    cache = {
        "device": device,
        "dtype": "float32",
        "train_tokens": 10**9,
        "sequence_length": 256,
        "batch_size": 8,
        "shard_tokens": 4096,
        "cache_dtype": "float32",
        "chunk_tokens": 512,
    }
    cache_dir, original = work / f"cache-{device}", work / f"original-{device}.json"
    feature_cache(folder, train, sample, cache_dir, original, folder.name, 0, cache,
                   False, os.cpu_count() or 1)  # fmt: skip
    setup = {
        "steps": steps,
        "batch_tokens": 1024,
        "lr_base": 0.01,
        "lr_reference_params": 10000,
        "lr_exponent": 0.5,
        "warmup_steps": 2,
        "min_lr_ratio": 0.1,
        "weight_decay": 0.0,
        "chunk_tokens": 512,
        "seed": 0,
    }
    if device != "cpu":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out_path = work / f"heads-{device}.parquet"
    rank_head(cache_dir, original, ["64", "full"], folder.name, 0, setup, ["linear"],
                     device, os.cpu_count() or 1, out_path)  # fmt: skip
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    table = pq.read_table(out_path).to_pandas()
    result = {"table": table, "seconds": seconds, "steps": steps, "setup": setup}
    if device != "cpu":
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
    return result


def downstream(folder: Path, sample: Path, work: Path, device: str, vocab: int):
    from saturation.downstream import evaluate_checkpoint
    from saturation.tasks import downstream_tasks

    tasks = work / "tasks"
    if not tasks.is_dir():
        downstream_tasks(str(sample), vocab, 64, 32, 4, 5, str(tasks))
    rows, _ = evaluate_checkpoint(
        str(folder),
        tokenizer=str(tasks / "tokenizer"),
        tasks=["synthetic_next_token", "synthetic_choice"],
        include_path=str(tasks),
        batch_size=16,
        device=device,
    )
    return {(r["task"], r["metric"]): r["value"] for r in rows}


# --- the run ---------------------------------------------------------------------------------


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/gpu_check")
    parser.add_argument("--quick", action="store_true", help="smaller models and samples")
    parser.add_argument("--no-workflow", action="store_true")
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    seq, batch = (128, 4) if args.quick else (512, 8)
    docs = 8 if args.quick else 32
    steps = 5 if args.quick else 50
    report: dict = {"torch": torch.__version__, "cuda": torch.version.cuda if cuda else None}
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        models = build_models(work, args.quick)
        print(f"float32 matmul on the CPU: {matmul_rate('cpu', torch.float32) / 1e9:.0f} GFLOP/s")
        devices = ["cpu"] + (["cuda"] if cuda else [])
        if cuda:
            report["device"] = torch.cuda.get_device_name()
            report["matmul_tflops"] = {
                "bf16": matmul_rate("cuda", torch.bfloat16) / 1e12,
                "fp32": matmul_rate("cuda", torch.float32) / 1e12,
            }
            print(f"{report['device']}: matmul {report['matmul_tflops']} TFLOP/s")
        for name, folder in models.items():
            config = json.loads((folder / "config.json").read_text())
            vocab, hidden = config["vocab_size"], config["hidden_size"]
            layers = config["num_hidden_layers"]
            sample = write_sample(work / f"{name}-eval.parquet", vocab, docs, seq * 2, 1)
            train = write_sample(work / f"{name}-train.parquet", vocab, docs, seq * 2, 2)
            tokens = docs * seq * 2
            entry: dict = {}
            print(f"\n{name}: V = {vocab}, d = {hidden}, {layers} layers", flush=True)
            runs = {d: timed_measure(folder, sample, d, "float32", seq, batch, tokens)
                    for d in devices}  # fmt: skip
            cpu = runs["cpu"]
            entry["cpu"] = {"loss": cpu["loss"], "tokens_per_second": cpu["tokens_per_second"]}
            print(f"  cpu: loss {cpu['loss']:.6f}, {cpu['tokens_per_second']:.0f} tokens/s")
            heads = {d: rank_heads(folder, train, sample, work / name, d, steps) for d in devices}
            scores = {d: downstream(folder, sample, work / name, d, vocab) for d in devices}
            entry["cpu"]["rank_heads_eval_loss"] = heads["cpu"]["table"].eval_loss.tolist()
            entry["cpu"]["downstream"] = {f"{k[0]} {k[1]}": v for k, v in scores["cpu"].items()}
            if cuda:
                entry["cuda"] = cuda_checks(name, folder, sample, runs, heads, scores, seq,
                                            batch, tokens, vocab, hidden, layers, report)  # fmt: skip
            report[name] = entry
        if cuda and not args.no_workflow:
            report["workflow"] = run_workflow(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not cuda:
        print(
            "\nThe CUDA half did not run: this machine has no CUDA device. Only the CPU half ran."
        )
        report["cuda_half"] = "not run: no CUDA device"
    report["failures"] = FAILURES
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1, default=float))
    print(f"\n{len(FAILURES)} failed; results in {out_dir / 'gpu_check.json'}")
    return 1 if FAILURES else 0


def cuda_checks(name, folder, sample, runs, heads, scores, seq, batch, tokens, vocab, hidden,
                layers, report) -> dict:  # fmt: skip
    import torch

    from saturation.heads import deterministic

    cpu, gpu = runs["cpu"], runs["cuda"]
    out: dict = {}
    check(rel(gpu["loss"], cpu["loss"]) < 1e-5, f"{name}: float32 loss, CUDA vs CPU (1e-5 rel)")
    check(np.max(np.abs(gpu["anisotropy"] - cpu["anisotropy"])) < 1e-6,
          f"{name}: float32 anisotropy, CUDA vs CPU (1e-6)")  # fmt: skip
    check(np.max(np.abs(gpu["sigma"] - cpu["sigma"]) / cpu["sigma"].max()) < 1e-9,
          f"{name}: head spectrum, CUDA vs CPU (1e-9 rel)")  # fmt: skip
    check(np.max(np.abs(gpu["truncated"] - cpu["truncated"])) < 1e-4,
          f"{name}: truncated heads' losses, CUDA vs CPU (1e-4)")  # fmt: skip
    worst = (gpu["beyond"] - cpu["beyond"]).abs() / cpu["beyond"].abs().clip(lower=1e-3)
    check(worst.max() < 1e-3, f"{name}: gradient, frequency and RankMe metrics, CUDA vs CPU "
          f"(1e-3 rel; worst {worst.idxmax()})")  # fmt: skip
    bf16 = timed_measure(folder, sample, "cuda", "bfloat16", seq, batch, tokens)
    check(rel(bf16["loss"], cpu["loss"]) < 2e-2, f"{name}: bf16 loss within 2e-2 rel")
    check(np.max(np.abs(bf16["anisotropy"] - cpu["anisotropy"])) < 2e-2,
          f"{name}: bf16 anisotropy within 2e-2")  # fmt: skip
    check(np.max(np.abs(bf16["sigma"] - cpu["sigma"]) / cpu["sigma"].max()) < 1e-2,
          f"{name}: bf16 head spectrum within 1e-2 rel")  # fmt: skip
    # Determinism: two runs with deterministic algorithms, the same tables to the bit.
    deterministic("cuda")
    first = measure(folder, sample, "cuda", "float32", seq, batch)
    second = measure(folder, sample, "cuda", "float32", seq, batch)
    same = all(first["tables"][k].equals(second["tables"][k]) for k in first["tables"])
    check(same, f"{name}: two deterministic CUDA runs give identical tables")
    torch.use_deterministic_algorithms(False)
    # Memory against the estimate.
    n_params = int(cpu["tables"]["checkpoints"].column("n_params")[0].as_py())
    estimate = measure_memory_estimate(n_params, 4, batch, seq, vocab, hidden, layers)
    check(gpu["peak_bytes"] <= estimate,
          f"{name}: measurement peak {gpu['peak_bytes'] / 2**20:.0f} MB <= estimate "
          f"{estimate / 2**20:.0f} MB")  # fmt: skip
    from saturation.head_memory import rank_head_memory_mb

    setup = heads["cuda"]["setup"]
    parts = rank_head_memory_mb(
        {"shard_tokens": 4096, "cache_dtype": "float32", "batch_tokens": setup["batch_tokens"],
         "chunk_tokens": setup["chunk_tokens"]}, tokens, hidden, vocab)  # fmt: skip
    head_estimate = sum(parts.values()) * 2**20
    check(heads["cuda"]["peak_bytes"] <= head_estimate,
          f"{name}: rank-head peak {heads['cuda']['peak_bytes'] / 2**20:.0f} MB <= estimate "
          f"{head_estimate / 2**20:.0f} MB")  # fmt: skip
    # Trained heads: the same losses to 1e-3 relative after a few steps (the summation order
    # differs between the devices; the optimiser compounds it slowly).
    c, g = heads["cpu"]["table"], heads["cuda"]["table"]
    check(all(rel(a, b) < 1e-3 for a, b in zip(g.eval_loss, c.eval_loss, strict=True)),
          f"{name}: rank heads' eval loss, CUDA vs CPU (1e-3 rel)")  # fmt: skip
    # Downstream: accuracy within one item (a near-tie may flip), perplexity to 1e-4.
    for key, value in scores["cpu"].items():
        tol = 1 / 64 + 1e-12 if key[1] == "acc" else 1e-4 * abs(value)
        check(abs(scores["cuda"][key] - value) <= tol, f"{name}: downstream {key}, CUDA vs CPU")
    flops = 2 * n_params * tokens
    rates = report["matmul_tflops"]
    for dtype, run in (("fp32", gpu), ("bf16", bf16)):
        achieved = flops / run["seconds"] / 1e12
        out[f"measure_{dtype}"] = {
            "tokens_per_second": run["tokens_per_second"],
            "tflops": achieved,
            "fraction_of_matmul": achieved / rates[dtype],
        }
        print(f"  measure {dtype}: {run['tokens_per_second']:.0f} tokens/s, {achieved:.2f} "
              f"TFLOP/s, {achieved / rates[dtype]:.1%} of the device's {dtype} matmul")  # fmt: skip
    h = heads["cuda"]
    head_flops = 6 * h["steps"] * setup["batch_tokens"] * hidden * vocab * 2  # two heads
    achieved = head_flops / h["seconds"] / 1e12
    out["rank_heads"] = {"seconds": h["seconds"], "tflops": achieved,
                         "fraction_of_fp32_matmul": achieved / rates["fp32"]}  # fmt: skip
    print(f"  rank heads: {h['seconds']:.1f} s, {achieved:.2f} TFLOP/s, "
          f"{achieved / rates['fp32']:.1%} of fp32 matmul")  # fmt: skip
    out["peak_bytes"] = {"measure": gpu["peak_bytes"], "rank_heads": h["peak_bytes"]}
    return out


def run_workflow(work: Path) -> dict:
    """The tiny configuration's whole workflow on CUDA, through profiles/workstation."""
    wf = work / "wf"
    for part in ("workflow", "config", "profiles"):
        shutil.copytree(ROOT / part, wf / part)
    shutil.copy(ROOT / "tests" / "config" / "tiny.yaml", wf / "config" / "tiny.yaml")
    (wf / "config" / "gpu.yaml").write_text(
        "metrics: {device: cuda, gpu: 1}\n"
        "rank_heads: {device: cuda, gpu: 1}\n"
        "downstream: {device: cuda, gpu: 1}\n"
    )
    t = time.perf_counter()
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("snakemake")),
            "--workflow-profile",
            "profiles/workstation",
            "--configfile",
            "config/tiny.yaml",
            "config/gpu.yaml",
            "--cores",
            "8",
        ],  # fmt: skip
        cwd=wf,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - t
    check(result.returncode == 0, f"the tiny workflow on CUDA ({seconds:.0f} s)")
    if result.returncode:
        print(result.stderr[-3000:])
    return {"returncode": result.returncode, "seconds": seconds}


if __name__ == "__main__":
    sys.exit(main())
