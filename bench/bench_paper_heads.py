"""The paper's rank-head protocol (``rank_heads.protocol: paper``) at Pythia-1B's and
Llama-2-7B's sizes: its work, memory and time against what config/pythia.yaml declares.

    python bench/bench_paper_heads.py [--tokens 512] [--threads 2] [--device cpu|cuda]
                                      [--gpu-tflops 50,400]

For each backbone, from the shapes alone: the heads one job trains (the config's ranks up to
min(d, V) and the full-rank control, at every rate of the config's grid), their weights with
gradient and AdamW moments, the backbone's weights, and the FLOP of the job: a backbone
forward (2 N a token) and each head's forward and backward (6 x its weights a token) over
the training tokens, forwards only over the selection and evaluation tokens.

Then the throughput of the workflow's own code at those shapes, measured on this machine:
``train_streamed`` steps of one rate's heads (the grid's rates are independent copies, so the
job's head work is that times the grid) on ``--tokens`` random features of width d, and a
forward of the backbone's architecture (random weights: Pythia-1B whole; Llama-2-7B two of
its 32 layers, the rest scaled by depth) on ``--tokens`` tokens. The job's hours follow at the
rates measured on ``--device`` (a GPU where one is lent: the job's GPU hours from measured
throughput), and at sustained GPU rates (``--gpu-tflops``; 50: float32 on an 80 GB GPU's
CUDA cores, the heads' dtype; 400: its tensor cores in TF32 or bfloat16) for comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "workflow" / "scripts"), str(ROOT / "bench")]

from bench_default_run import matmul_gflops  # noqa: E402

from saturation.suites import backbone_name  # noqa: E402

BACKBONES = {
    # the backbone's name in config/pythia.yaml: (d, V (head rows), total parameters, layers)
    "pythia-1b": (2048, 50304, 1_011_781_632, 16),
    "Llama-2-7b-hf": (4096, 32000, 6_738_415_616, 32),
}


def head_params(ranks: list[int], d: int, vocab: int) -> tuple[list[int], int]:
    """The ranks a backbone trains (the config's, up to min(d, V)) and one rate's weights,
    the full-rank control's included."""
    ranks = sorted(r for r in set(ranks) if r <= min(d, vocab))
    return ranks, sum(r * (vocab + d) for r in ranks) + vocab * d


def backbone_model(name: str):
    """The backbone's architecture with random weights (Llama: two of its layers)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if name.startswith("pythia"):
        config = GPTNeoXConfig(vocab_size=50304, hidden_size=2048, num_hidden_layers=16,
                               num_attention_heads=8, intermediate_size=8192,
                               max_position_embeddings=2048, rotary_pct=0.25)  # fmt: skip
        return GPTNeoXForCausalLM(config).eval(), 1
    config = LlamaConfig(vocab_size=32000, hidden_size=4096, num_hidden_layers=2,
                         num_attention_heads=32, intermediate_size=11008,
                         max_position_embeddings=4096)  # fmt: skip
    return LlamaForCausalLM(config).eval(), 32 / 2


def synchronize(device: str) -> None:
    import torch

    if device != "cpu":
        torch.cuda.synchronize()


def time_backbone(name: str, tokens: int, device: str) -> float:
    """Seconds a token of the backbone's forward over one row of ``tokens`` tokens, scaled
    to all its layers."""
    import numpy as np
    import torch

    from saturation.streamed_heads import backbone_features

    model, scale = backbone_model(name)
    model = model.to(device)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 32000, tokens).astype(np.int64)]
    features = backbone_features(model, device, 1)
    for _ in features(seqs):  # warm-up
        pass
    synchronize(device)
    start = time.perf_counter()
    for _ in features(seqs):
        pass
    synchronize(device)
    seconds = time.perf_counter() - start
    del model
    if device != "cpu":
        torch.cuda.empty_cache()
    return seconds * scale / tokens


def time_heads(ranks, d: int, vocab: int, tokens: int, device: str, steps: int = 2) -> float:
    """Seconds a training step of one rate's heads takes per token, on random features."""
    import torch

    from saturation.head_settings import StreamTraining
    from saturation.streamed_heads import make_trainees, train_streamed

    setup = StreamTraining(batch_sequences=1, batch_size=1, sequence_length=tokens + 1,
                           lr_grid=(1e-3,), lr_base=1e-3, lr_reference_params=1, lr_exponent=0,
                           warmup_steps=1, min_lr_ratio=0.1, weight_decay=0.1, grad_clip=1.0,
                           chunk_tokens=4096, init="normal", components=4, seed=0)  # fmt: skip
    trainees = make_trainees([("linear", r) for r in ranks] + [("linear", None)], d, vocab,
                             setup, device)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    h = torch.randn(tokens, d, generator=g).to(device)
    t = torch.randint(0, vocab, (tokens,), generator=g).to(device)
    seqs = [torch.zeros(tokens + 1)] * (steps + 1)

    def features(batch):
        yield h, t

    quiet = open(os.devnull, "w")  # noqa: SIM115 (the progress bar, for the whole run)
    train_streamed(trainees, seqs[:1], features, setup, quiet)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    train_streamed(trainees, seqs[:steps], features, setup, quiet)
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps / tokens
    del trainees
    if device != "cpu":
        torch.cuda.empty_cache()
    return seconds


def main() -> None:
    import torch
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpu-tflops", default="50,400")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heads_cfg = yaml.safe_load((ROOT / "config" / "pythia.yaml").read_text())["rank_heads"]
    grid = len(heads_cfg["lr_grid"])
    train = heads_cfg["train_tokens"]
    scored = heads_cfg["select_tokens"] + 50_000  # selection and evaluation: forwards only
    entries = {backbone_name(b): b for b in heads_cfg["backbones"]}
    rate = matmul_gflops(args.threads)
    print(f"float32 matmul on {args.threads} threads: {rate:.0f} GFLOP/s")
    print(f"config/pythia.yaml: {train:,} training tokens, {scored:,} scored, a grid of {grid} "
          "rates")  # fmt: skip
    for name, (d, vocab, n_params, _layers) in BACKBONES.items():
        entry = entries[name]
        runtime = entry.get("runtime") or heads_cfg["runtime"]
        declared_min = runtime * heads_cfg["ranks_per_job"]
        declared_mb = entry.get("mem_mb") or heads_cfg["mem_mb"]
        ranks, per_rate = head_params(heads_cfg["ranks"], d, vocab)
        heads = per_rate * grid
        flop = train * (2 * n_params + 6 * heads) + scored * (2 * n_params + 2 * heads)
        head_s = time_heads(ranks, d, vocab, args.tokens, args.device)
        back_s = time_backbone(name, args.tokens, args.device)
        here_h = (train * (back_s + head_s * grid) + scored * (back_s + head_s * grid / 3)) / 3600
        achieved = 6 * per_rate / head_s / 1e9
        print(f"\n{name}: d = {d}, V = {vocab}, ranks {ranks[0]}..{ranks[-1]} and the control "
              f"({len(ranks) + 1} heads) x {grid} rates = {(len(ranks) + 1) * grid} heads")  # fmt: skip
        print(f"  head weights {heads / 1e9:.2f} B; with gradients and AdamW moments "
              f"{heads * 16 / 1e9:.1f} GB; backbone {n_params / 1e9:.2f} B parameters "
              f"({n_params * 4 / 1e9:.1f} GB in float32, {n_params * 2 / 1e9:.1f} GB in bfloat16)")  # fmt: skip
        print(f"  work: {flop:.2e} FLOP ({2 * n_params * train:.2e} the backbone's forwards, "
              f"{6 * heads * train:.2e} the heads' training)")  # fmt: skip
        print(f"  measured on {args.device}: heads {head_s * 1e3:.2f} ms a token for one rate "
              f"({achieved:.0f} GFLOP/s), backbone {back_s * 1e3:.2f} ms a token "
              f"({2 * n_params / back_s / 1e9:.0f} GFLOP/s)")  # fmt: skip
        print(f"  the job on {args.device}: {here_h:,.1f} hours; it declares {declared_min} min, "
              f"{declared_mb} MB")  # fmt: skip
        for tflops in map(float, args.gpu_tflops.split(",")):
            hours = flop / (tflops * 1e12) / 3600
            print(f"  at {tflops:.0f} TFLOP/s sustained: {hours:.1f} GPU hours "
                  f"({hours * 60 / declared_min:.2f} of the declared runtime)")  # fmt: skip


if __name__ == "__main__":
    main()
