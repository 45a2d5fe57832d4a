"""Rank-constrained heads trained as the paper's Appendix B.1 trains them (Figs 6 and 9).

The frozen backbone streams its head inputs and every head of a backbone trains on them
side by side, so the sweep costs one backbone pass per training token however many heads
(ranks x kinds x learning rates) it trains, and nothing is cached: at the paper's 150M
tokens a feature cache would be 614 GB at d = 2,048 in bfloat16. The training and selection
tokens are packed as Pythia's training data was (``packed``); each training token is seen
once, in the sample's order, in batches of ``batch_sequences`` rows; the last batch takes
what is left, so no token is dropped. The evaluation split is scored document by document,
as the original head is (Fig 6's reference line).

With a learning-rate grid, every head trains at every peak rate of the grid; the rate of a
(kind, rank) is the one whose head has the least loss on the selection split, tokens of the
training split that follow the training tokens and are never trained on. The figures report
the loss on the evaluation split, disjoint from both.

Optimiser (Pythia's, ``EleutherAI/pythia`` ``models/*.yml``): Adam with decoupled weight
decay (AdamW), betas (0.9, 0.95), eps 1e-8, weight decay 0.1, linear warm-up over 1% of the
steps, cosine decay to 10% of the peak rate, gradient-norm clipping at 1.0; the warm-up,
floor, decay and clipping are the config's (``rank_heads``), the betas and eps fixed here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from saturation.devices import resolve_device
from saturation.head_settings import StreamTraining
from saturation.heads import (
    backbone_ranks,
    chunked_cross_entropy,
    deterministic,
    head_rows,
    head_specs,
    load_backbone,
    make_head,
    original_record,
    result_row,
    trainable_params,
)
from saturation.io import write_json, write_parquet
from saturation.rank_table import RANK_HEADS_SCHEMA
from saturation.training import warmup_cosine

log = logging.getLogger(__name__)

BETAS, EPS = (0.9, 0.95), 1e-8  # Pythia's Adam


@dataclass
class Trainee:
    kind: str
    rank: int | None
    lr: float
    head: torch.nn.Module
    optimizer: torch.optim.Optimizer
    params: int


def split_training_stream(docs, train_tokens: int, select_tokens: int, where="the split"):
    """The training tokens (the first ``train_tokens`` of the split, cut mid-document where
    the count falls) and the selection tokens (the next ``select_tokens``). A split too short
    is named (``where``): in another tokenizer than the one that drew the sample, the same
    text has another count than corpus.train_tokens."""
    available = sum(len(d) for d in docs)
    if available < train_tokens + select_tokens:
        raise ValueError(
            f"the training split {where} has {available} tokens: fewer than "
            f"rank_heads.train_tokens ({train_tokens}) + rank_heads.select_tokens "
            f"({select_tokens}); raise corpus.train_tokens or lower those"
        )
    parts, part, left = [[], []], 0, [train_tokens, select_tokens]
    for doc in docs:
        while len(doc) and part < 2:
            take = doc[: left[part]]
            if len(take):
                parts[part].append(take)
            left[part] -= len(take)
            doc = doc[len(take) :]
            if left[part] == 0:
                part += 1
        if part == 2:
            break
    return parts[0], parts[1]


def packed(docs, sequence_length: int):
    """The documents packed as Pythia was trained on them: one stream (each document starts
    with the corpus's separator) cut into rows of ``sequence_length`` tokens; consecutive
    rows share a token, so every token but the stream's first is a target once."""
    from saturation.metrics import chunk_documents

    return chunk_documents([np.concatenate(docs)] if docs else [], sequence_length)


def backbone_features(model, device, batch_size: int):
    """The feature function of a frozen model: sequences -> (features in float32, next
    tokens), ``batch_size`` sequences a forward pass; the V-sized logits are never computed.
    Plain no-grad mode, not inference mode: the heads' autograd keeps the features."""
    from saturation.metrics import pad_batch

    base = model.base_model

    def features(seqs):
        for start in range(0, len(seqs), batch_size):
            with torch.no_grad():  # left before the yield: the consumer's grad mode is its own
                ids, mask = pad_batch(seqs[start : start + batch_size], device)
                h = base(input_ids=ids, attention_mask=mask.long()).last_hidden_state
                valid = mask[:, 1:]
                pairs = h[:, :-1][valid].float(), ids[:, 1:][valid]
            yield pairs

    return features


def make_trainees(specs, d, vocab, setup: StreamTraining, device) -> list[Trainee]:
    """A head of each (kind, rank) at each of its peak rates, every rate's head starting from
    the same seeded draw (copies of one head)."""
    import copy

    trainees = []
    for kind, rank in specs:
        first = make_head(kind, rank, d, vocab, setup.seed, setup.init, setup.components)
        params = trainable_params(first)
        for i, lr in enumerate(setup.peak_rates(params)):
            head = (first if i == 0 else copy.deepcopy(first)).to(device)
            optimizer = torch.optim.AdamW(
                head.parameters(),
                lr=lr,
                betas=BETAS,
                eps=EPS,
                weight_decay=setup.weight_decay,
                foreach=True,
            )
            trainees.append(Trainee(kind, rank, lr, head, optimizer, params))
    return trainees


def train_streamed(
    trainees: list[Trainee], seqs, features, setup: StreamTraining, progress_file=None
) -> tuple[int, int]:
    """One pass over the training sequences: each optimiser step takes the next
    ``batch_sequences`` of them (the last step what is left); each step's loss is the mean
    over its (feature, next token) pairs, its gradient accumulated micro-batch by micro-batch
    and chunk by chunk. Returns (pairs trained on, steps)."""
    from tqdm import tqdm

    steps = math.ceil(len(seqs) / setup.batch_sequences)
    seen = 0
    for step in tqdm(range(steps), desc="streamed heads", file=progress_file, mininterval=10):
        batch = seqs[step * setup.batch_sequences : (step + 1) * setup.batch_sequences]
        pairs = sum(len(s) - 1 for s in batch)
        scale = warmup_cosine(step, steps, setup.warmup_steps, setup.min_lr_ratio)
        for t in trainees:
            for group in t.optimizer.param_groups:
                group["lr"] = t.lr * scale
        for h, targets in features(batch):
            for t in trainees:
                chunked_cross_entropy(
                    t.head, h, targets, setup.chunk_tokens, 1.0 / pairs, count_correct=False
                )
        for t in trainees:
            if setup.grad_clip:
                torch.nn.utils.clip_grad_norm_(t.head.parameters(), setup.grad_clip)
            t.optimizer.step()
            t.optimizer.zero_grad(set_to_none=True)
        seen += pairs
    return seen, steps


@torch.no_grad()
def score(heads, seqs, features, chunk_tokens) -> list[tuple[float, float]]:
    """(mean loss, accuracy) of every head on the pairs of ``seqs``, one backbone pass."""
    nll = [0.0] * len(heads)
    correct = [0] * len(heads)
    n = 0
    for h, targets in features(seqs):
        n += len(targets)
        for i, head in enumerate(heads):
            total, right = chunked_cross_entropy(head, h, targets, chunk_tokens)
            nll[i] += float(total)
            correct[i] += right
    if n == 0:
        raise ValueError("no (feature, next token) pair to score: the split is empty")
    return [(loss / n, c / n) for loss, c in zip(nll, correct, strict=True)]


def choose_rates(trainees: list[Trainee], select_losses: list[float]) -> list[bool]:
    """For each (kind, rank), the grid point of least selection loss is chosen; a head whose
    loss is not finite (it diverged) never is. Without a grid each head is its own choice."""
    chosen = [False] * len(trainees)
    groups: dict = {}
    for i, t in enumerate(trainees):
        groups.setdefault((t.kind, t.rank), []).append(i)
    for (kind, rank), members in groups.items():
        finite = [i for i in members if math.isfinite(select_losses[i])]
        if not finite:
            log.warning(
                "%s head of rank %s: every learning rate of the grid diverged (selection "
                "losses %s); none is chosen",
                kind,
                rank or "full",
                [select_losses[i] for i in members],
            )
            continue
        chosen[min(finite, key=lambda i: select_losses[i])] = True
    return chosen


def run_protocol(
    ranks: list[int | None],
    kinds,
    d: int,
    vocab: int,
    splits: dict,
    features,
    setup: StreamTraining,
    device="cpu",
    progress_file=None,
) -> list[dict]:
    """Train every (kind, rank, peak rate) head on ``splits["train"]`` (sequences), choose
    the rates on ``splits["select"]`` (when there is a grid) and score every head on
    ``splits["eval"]``; a (rank, result) pair a head, ``head_specs`` order, each rank's
    rates in grid order."""
    trainees = make_trainees(head_specs(ranks, kinds), d, vocab, setup, device)
    log.info(
        "%d heads (%d trainable parameters) train on %d sequences",
        len(trainees),
        sum(t.params for t in trainees),
        len(splits["train"]),
    )
    seen, steps = train_streamed(trainees, splits["train"], features, setup, progress_file)
    log.info("trained on %d pairs in %d steps, each pair once", seen, steps)
    heads = [t.head for t in trainees]
    if setup.lr_grid:
        select = [loss for loss, _ in score(heads, splits["select"], features, setup.chunk_tokens)]
        chosen = choose_rates(trainees, select)
    else:
        select, chosen = [None] * len(trainees), [True] * len(trainees)
    evaluation = score(heads, splits["eval"], features, setup.chunk_tokens)
    results = []
    for t, sel, pick, (loss, acc) in zip(trainees, select, chosen, evaluation, strict=True):
        row = result_row(t.kind, setup.components, t.params, seen, steps, t.lr)
        row |= {"select_loss": sel, "chosen": pick, "eval_loss": loss, "eval_accuracy": acc}
        results.append((t.rank, row))
    return results


# --- Snakemake-facing wrappers -------------------------------------------------------------


def stream_rank_heads(
    checkpoint_dir,
    train_path,
    eval_path,
    out_path,
    backbone,
    step,
    ranks: list[str],
    kinds: list[str],
    setup: dict,
    stream: dict,
    allow_pickle,
    threads,
    hub: dict | None = None,
    progress_file=None,
) -> None:
    """Train one job's heads of a backbone as the paper does (``run_protocol``): one table,
    a row per (kind, rank, peak rate). ``stream``: train_tokens, select_tokens, dtype,
    device."""
    from saturation.corpus import read_tokens
    from saturation.metrics import chunk_documents

    torch.set_num_threads(threads)
    device = resolve_device(stream["device"], "rank_heads.device")
    deterministic(device)
    setup = StreamTraining(**{**setup, "lr_grid": tuple(setup["lr_grid"] or ()) or None})
    model = load_backbone(
        checkpoint_dir, backbone, step, hub, allow_pickle, stream["dtype"], device
    )
    head = model.get_output_embeddings()
    vocab, d = head.weight.shape
    wanted = backbone_ranks(ranks, d, vocab, backbone)
    results = []
    if wanted:
        train, select = split_training_stream(
            read_tokens(train_path), stream["train_tokens"], stream["select_tokens"], train_path
        )
        splits = {
            "train": packed(train, setup.sequence_length),
            "select": packed(select, setup.sequence_length),
            "eval": chunk_documents(read_tokens(eval_path), setup.sequence_length),
        }
        features = backbone_features(model, device, setup.batch_size)
        results = run_protocol(
            wanted, kinds, d, vocab, splits, features, setup, device, progress_file
        )
    rows = head_rows(
        results,
        backbone=backbone,
        step=step,
        d=d,
        vocab=vocab,
        init=setup.init,
        protocol="paper",
    )
    write_parquet(pa.Table.from_pylist(rows, schema=RANK_HEADS_SCHEMA), out_path)


def score_original_head(
    checkpoint_dir,
    eval_path,
    out_json,
    backbone,
    step,
    stream: dict,
    allow_pickle,
    threads,
    hub: dict | None = None,
) -> None:
    """The backbone's own head on the evaluation split (Fig 6's reference line), in the
    record ``feature_cache`` writes for the cached protocol."""
    from saturation.corpus import read_tokens
    from saturation.metrics import chunk_documents

    torch.set_num_threads(threads)
    device = resolve_device(stream["device"], "rank_heads.device")
    model = load_backbone(
        checkpoint_dir, backbone, step, hub, allow_pickle, stream["dtype"], device
    )
    head = model.get_output_embeddings()
    seqs = chunk_documents(read_tokens(eval_path), stream["sequence_length"])
    features = backbone_features(model, device, stream["batch_size"])
    [(loss, accuracy)] = score(
        [lambda h: head(h.to(head.weight.dtype))], seqs, features, stream["chunk_tokens"]
    )
    record = original_record(backbone, step, head.weight, loss, accuracy)
    write_json(record | {"eval_tokens": sum(len(s) - 1 for s in seqs)}, out_json)
