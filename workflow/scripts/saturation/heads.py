"""Rank-constrained LM heads on frozen models (the paper's Fig 6).

The frozen model's final hidden states (the head's input) are computed once per backbone and
cached in shards; every head of the sweep trains from that cache, so the sweep costs one
backbone forward pass per token, not one per rank. A head of rank r is W = A B with
A in R^{V x r}, B in R^{r x d}; its V-sized logits exist one chunk of tokens at a time.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from safetensors.torch import load_file, save_file

from saturation.devices import resolve_device
from saturation.head_settings import HeadTraining
from saturation.io import write_json, write_parquet
from saturation.rank_table import RANK_HEADS_SCHEMA
from saturation.training import warmup_cosine

log = logging.getLogger(__name__)

CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# --- the feature cache ---------------------------------------------------------------------


def next_token_pairs(docs: list[np.ndarray], sequence_length: int):
    """The sequences a feature pass runs on; each sequence of n tokens gives n - 1
    (feature, next token) pairs."""
    from saturation.metrics import chunk_documents

    return chunk_documents(docs, sequence_length)


@torch.inference_mode()
def head_inputs(model, seqs, batch_size, device):
    """Yield (features, next-token targets) batch by batch: the head's input (the base
    model's last hidden state, after the final norm) at every position that has a next
    token. The V-sized logits are never computed."""
    from saturation.metrics import pad_batch

    base = model.base_model
    for start in range(0, len(seqs), batch_size):
        ids, mask = pad_batch(seqs[start : start + batch_size], device)
        h = base(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        valid = mask[:, 1:]
        yield h[:, :-1][valid], ids[:, 1:][valid]


def write_shard(path, features: list, targets: list, dtype: str) -> None:
    save_file(
        {
            "features": torch.cat(features).to("cpu", CACHE_DTYPES[dtype]).contiguous(),
            "targets": torch.cat(targets).to("cpu", torch.int32).contiguous(),
        },
        str(path),
    )


def build_cache(
    model,
    splits: dict[str, list[np.ndarray]],
    out_dir,
    sequence_length,
    batch_size,
    shard_tokens,
    dtype,
    device="cpu",
) -> dict:
    """Write ``{split}_{k:05d}.safetensors`` shards (``features``, ``targets``) to out_dir.

    Training features are stored in ``dtype``; the evaluation features in float32 whatever
    ``dtype`` says (they are few), so that every head, the original one included, is scored
    on full-precision features."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, docs in splits.items():
        split_dtype = "float32" if split == "eval" else dtype
        hs, ts, n_buf, shard, total = [], [], 0, 0, 0
        pairs = head_inputs(model, next_token_pairs(docs, sequence_length), batch_size, device)
        for h, t in pairs:
            hs.append(h)
            ts.append(t)
            n_buf += len(t)
            total += len(t)
            if n_buf >= shard_tokens:
                write_shard(out_dir / f"{split}_{shard:05d}.safetensors", hs, ts, split_dtype)
                hs, ts, n_buf, shard = [], [], 0, shard + 1
        if n_buf:
            write_shard(out_dir / f"{split}_{shard:05d}.safetensors", hs, ts, split_dtype)
        counts[split] = total
        log.info("cached %d %s feature vectors", total, split)
    return counts


def cache_shards(cache_dir, split: str) -> list[Path]:
    shards = sorted(Path(cache_dir).glob(f"{split}_*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no {split} shards in the feature cache {cache_dir}")
    return shards


class FeatureShards:
    """The cached training features, streamed one shard at a time in their stored dtype.

    Memory holds one shard (``shard_tokens`` x d in the cache dtype), whatever the number of
    cached tokens; each batch is upcast to float32 on the device. Batches follow a seeded
    order: the shards in a permuted order (when there are several), then the tokens of each
    shard in a permuted order; a shard's last tokens that do not fill a batch are skipped in
    that epoch, as are the last tokens of an epoch of a single-shard cache.
    """

    def __init__(self, cache_dir, split: str = "train"):
        from safetensors import safe_open

        self.paths = cache_shards(cache_dir, split)
        self.sizes = []
        for p in self.paths:
            with safe_open(str(p), framework="pt") as fh:
                n, self.d = fh.get_slice("features").get_shape()
                self.sizes.append(n)

    def __len__(self) -> int:
        return sum(self.sizes)

    def batches(self, rng: np.random.Generator, batch: int, device):
        if batch > max(self.sizes):
            raise ValueError(
                f"a batch of {batch} tokens is larger than the largest cache shard "
                f"({max(self.sizes)} tokens): raise rank_heads.shard_tokens or lower batch_tokens"
            )
        while True:
            order = rng.permutation(len(self.paths)) if len(self.paths) > 1 else [0]
            for i in order:
                if self.sizes[i] < batch:
                    continue
                shard = load_file(str(self.paths[i]))
                features, targets = shard["features"], shard["targets"]
                perm = rng.permutation(self.sizes[i])
                for start in range(0, self.sizes[i] - batch + 1, batch):
                    # index_select: a row gather several times faster than indexing
                    idx = torch.from_numpy(perm[start : start + batch])
                    yield (
                        features.index_select(0, idx).to(device).float(),
                        targets.index_select(0, idx).to(device, torch.long),
                    )
                del shard, features, targets


class FeatureTensors:
    """Training features already in memory, batched as a single-shard cache is."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor):
        self.features, self.targets = features, targets
        self.d = features.shape[1]

    def __len__(self) -> int:
        return len(self.targets)

    def batches(self, rng: np.random.Generator, batch: int, device):
        while True:
            perm = rng.permutation(len(self.targets))
            for start in range(0, len(perm) - batch + 1, batch):
                idx = torch.from_numpy(perm[start : start + batch]).to(self.features.device)
                yield (
                    self.features.index_select(0, idx).to(device).float(),
                    self.targets.index_select(0, idx).to(device),
                )


def load_cache(cache_dir, split: str, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split of the cache in float32 (the evaluation features: they are few)."""
    parts = [load_file(str(p)) for p in cache_shards(cache_dir, split)]
    features = torch.cat([p["features"] for p in parts]).to(device, torch.float32)
    targets = torch.cat([p["targets"] for p in parts]).to(device, torch.long)
    return features, targets


# --- heads and the chunked loss ------------------------------------------------------------


INITS = ("scaled", "normal")


def init_scale(fan_in: int, init: str) -> float:
    """The standard deviation of a head's initial entries: N(0, 1) as the paper draws them
    (``normal``), or ours (``scaled``): 1/sqrt(fan_in), so that a unit-variance feature of
    norm ~sqrt(d) (a layer-norm output) gives logits of variance ~1 whatever r and d."""
    if init not in INITS:
        raise ValueError(f"head initialisation {init!r} is not one of {INITS}")
    return 1.0 if init == "normal" else 1.0 / math.sqrt(fan_in)


class RankHead(torch.nn.Module):
    """W = A B with A in R^{V x r}, B in R^{r x d}, entries drawn as ``init_scale`` says."""

    def __init__(
        self, d: int, vocab: int, rank: int, generator: torch.Generator, init: str = "scaled"
    ):
        super().__init__()
        self.B = torch.nn.Parameter(torch.randn(rank, d, generator=generator) * init_scale(d, init))
        self.A = torch.nn.Parameter(
            torch.randn(vocab, rank, generator=generator) * init_scale(rank, init)
        )

    def forward(self, h):
        return (h @ self.B.T) @ self.A.T


class FullHead(torch.nn.Module):
    """An unconstrained V x d head: the full-rank control."""

    def __init__(self, d: int, vocab: int, generator: torch.Generator, init: str = "scaled"):
        super().__init__()
        self.W = torch.nn.Parameter(
            torch.randn(vocab, d, generator=generator) * init_scale(d, init)
        )

    def forward(self, h):
        return h @ self.W.T


class MixtureHead(torch.nn.Module):
    """A mixture of K softmaxes (Yang et al. 2018) whose components are rank-r heads:

        p(y | h) = sum_k pi_k(h) softmax(A_k B_k h)_y,   pi(h) = softmax(G h),

    G in R^{K x d} the learned gate, initialised at zero (an even mixture at the start); the
    components are drawn as ``RankHead``'s. Its log-probabilities are not those of any
    rank-r logit matrix: the mixture escapes the linear head's bottleneck.

    ``forward`` returns the mixture's log-probabilities, already normalised, so the cross-
    entropy of its output is the mixture's negative log-likelihood and its argmax the most
    probable token, as for the linear heads' logits.
    """

    def __init__(
        self,
        d: int,
        vocab: int,
        rank: int,
        components: int,
        generator: torch.Generator,
        init: str = "scaled",
    ):
        super().__init__()
        self.B = torch.nn.Parameter(
            torch.randn(components, rank, d, generator=generator) * init_scale(d, init)
        )
        self.A = torch.nn.Parameter(
            torch.randn(components, vocab, rank, generator=generator) * init_scale(rank, init)
        )
        self.G = torch.nn.Parameter(torch.zeros(components, d))

    def forward(self, h):
        log_gate = torch.log_softmax(h @ self.G.T, dim=1)  # (n, K)
        z = torch.einsum("nd,krd->knr", h, self.B)
        log_p = torch.log_softmax(torch.bmm(z, self.A.transpose(1, 2)).float(), dim=2)  # (K, n, V)
        return torch.logsumexp(log_p + log_gate.T[:, :, None], dim=0)


KINDS = ("linear", "mixture")


def make_head(
    kind: str,
    rank: int | None,
    d: int,
    vocab: int,
    seed: int,
    init: str = "scaled",
    components: int = 1,
) -> torch.nn.Module:
    """A head of ``kind`` (linear, mixture) and ``rank`` (None: the full-rank linear
    control), its initialisation drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "mixture":
        if rank is None:
            raise ValueError("a mixture head needs a rank (the full-rank control is linear)")
        return MixtureHead(d, vocab, rank, components, generator, init)
    if kind != "linear":
        raise ValueError(f"head kind {kind!r} is not one of {KINDS}")
    return (
        FullHead(d, vocab, generator, init)
        if rank is None
        else RankHead(d, vocab, rank, generator, init)
    )


def chunked_cross_entropy(
    head, features, targets, chunk_tokens: int, backward_scale=None, count_correct=True
):
    """Sum of token NLLs and of correct top-1 predictions, one chunk of logits at a time.

    With ``backward_scale`` set, each chunk's loss * scale is back-propagated as soon as it
    is computed, so the gradient of the whole batch accumulates without the batch's
    (tokens x V) logits ever existing at once.
    """
    total = torch.zeros((), dtype=torch.float64, device=features.device)
    correct = 0
    for start in range(0, len(targets), chunk_tokens):
        h = features[start : start + chunk_tokens]
        t = targets[start : start + chunk_tokens]
        logits = head(h)
        nll = torch.nn.functional.cross_entropy(logits.float(), t, reduction="sum")
        if backward_scale is not None:
            (nll * backward_scale).backward()
        total += nll.detach().double()
        if count_correct:
            correct += int((logits.detach().argmax(dim=1) == t).sum())
    return total, correct


@torch.no_grad()
def evaluate(head, features, targets, chunk_tokens):
    nll, correct = chunked_cross_entropy(head, features, targets, chunk_tokens)
    return float(nll) / len(targets), correct / len(targets)


# --- training ------------------------------------------------------------------------------


def head_specs(ranks: list[int | None], kinds=("linear",)) -> list[tuple[str, int | None]]:
    """(kind, rank) of every head a job trains: each rank in each kind, the full-rank control
    (rank None) linear only."""
    return [(kind, r) for r in ranks for kind in (kinds if r is not None else ("linear",))]


def trainable_params(head: torch.nn.Module) -> int:
    return sum(p.numel() for p in head.parameters())


def result_row(kind, components, params, tokens, steps, lr) -> dict:
    return {
        "kind": kind,
        "components": components if kind == "mixture" else 1,
        "trainable_params": params,
        "training_tokens": tokens,
        "steps": steps,
        "lr": lr,
    }


def train_heads(
    ranks: list[int | None],
    vocab: int,
    train,
    evaluation,
    setup: HeadTraining,
    device="cpu",
    progress_file=None,
    kinds=("linear",),
) -> list[dict]:
    """Train a head of each rank (an int, or None for the full-rank control) in each of
    ``kinds`` from the cache, side by side: each step's batch is read and gathered once and
    given to every head. Rows in ``head_specs`` order.

    ``train`` is a :class:`FeatureShards` (streamed from disk) or (features, targets).

    Each head has its own AdamW, linear warm-up then cosine decay, and its own seeded
    initialisation; batches are drawn from the cached training features by one seeded
    permutation, the same for every head, so a head trained here alongside others is the
    head trained alone, to the bit (deterministic on CPU). Gathering a batch costs as much
    as a low-rank head's step: shared, it is paid once.
    """
    from tqdm import tqdm

    if isinstance(train, tuple):
        train = FeatureTensors(*train)
    specs = head_specs(ranks, kinds)
    heads, n_params, optimizers, lrs = [], [], [], []
    for kind, rank in specs:
        head = make_head(kind, rank, train.d, vocab, setup.seed, setup.init, setup.components)
        heads.append(head.to(device))
        n_params.append(trainable_params(head))
        lrs.append(setup.learning_rate(n_params[-1]))
        optimizers.append(
            torch.optim.AdamW(
                head.parameters(),
                lr=lrs[-1],
                weight_decay=setup.weight_decay,
                betas=(0.9, 0.95),
                foreach=True,
            )
        )
    rng = np.random.default_rng(setup.seed)
    batch = min(setup.batch_tokens, len(train))
    batches = train.batches(rng, batch, device)
    names = ", ".join(f"{kind} {r or 'full'}" for kind, r in specs)
    for step in tqdm(range(setup.steps), desc=names, file=progress_file, mininterval=10):
        features, targets = next(batches)
        scale = warmup_cosine(step, setup.steps, setup.warmup_steps, setup.min_lr_ratio)
        for head, optimizer, lr in zip(heads, optimizers, lrs, strict=True):
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
            chunked_cross_entropy(
                head, features, targets, setup.chunk_tokens, 1.0 / batch, count_correct=False
            )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    results = []
    for (kind, _), head, params, lr in zip(specs, heads, n_params, lrs, strict=True):
        loss, accuracy = evaluate(head, *evaluation, setup.chunk_tokens)
        row = result_row(kind, setup.components, params, setup.steps * batch, setup.steps, lr)
        results.append(row | {"eval_loss": loss, "eval_accuracy": accuracy})
    return results


def deterministic(device) -> None:
    """Deterministic kernels; on CUDA, cuBLAS needs a fixed workspace for that, set before
    its first use (torch raises on CUDA matmuls otherwise)."""
    import os

    if str(device).startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


# --- Snakemake-facing wrappers -------------------------------------------------------------


class UnreadableBackbone(RuntimeError):
    """A rank-head backbone's checkpoint that cannot be read."""


def load_backbone(checkpoint_dir, backbone, step, hub, allow_pickle, dtype, device):
    """The frozen backbone, loaded in ``dtype`` on ``device``. A checkpoint that cannot be
    read stops the job with the setting to change: under ``metrics.unreadable: skip`` the
    run's analysis leaves it out, but a backbone's heads cannot be trained on it."""
    from saturation.hub import open_checkpoint
    from saturation.loading import UnreadableCheckpoint, load_model

    try:
        with open_checkpoint(checkpoint_dir, step, hub, allow_pickle) as folder:
            return load_model(folder, allow_pickle, dtype=getattr(torch, dtype), device=device)
    except UnreadableCheckpoint as exc:
        raise UnreadableBackbone(
            f"the rank heads' backbone {backbone} at step {step} cannot be read ({exc}); "
            f"give rank_heads.backbones' step for {backbone} a checkpoint that reads (a step "
            "of null follows the last checkpoint, unreadable or not)"
        ) from None


def feature_cache(
    checkpoint_dir,
    train_path,
    eval_path,
    out_dir,
    out_original,
    backbone,
    step,
    cache: dict,
    allow_pickle,
    threads,
    progress_file=None,
    hub: dict | None = None,
) -> None:
    """Cache the backbone's head inputs for the train and eval splits, and score the
    original head on the eval features (the reference line of Fig 6)."""
    from saturation.corpus import read_tokens

    torch.set_num_threads(threads)
    device = resolve_device(cache["device"], "rank_heads.device")
    model = load_backbone(checkpoint_dir, backbone, step, hub, allow_pickle, cache["dtype"], device)
    train_docs = read_tokens(train_path)
    # The first train_tokens tokens of the training split, cut at a document boundary or
    # mid-document: the sample is fixed by the config alone.
    kept, total = [], 0
    for doc in train_docs:
        kept.append(doc[: cache["train_tokens"] - total])
        total += len(kept[-1])
        if total >= cache["train_tokens"]:
            break
    counts = build_cache(
        model,
        {"train": kept, "eval": read_tokens(eval_path)},
        out_dir,
        cache["sequence_length"],
        cache["batch_size"],
        cache["shard_tokens"],
        cache["cache_dtype"],
        device,
    )
    head = model.get_output_embeddings()
    feats, targets = load_cache(out_dir, "eval", device)
    loss, accuracy = evaluate(
        lambda h: head(h.to(head.weight.dtype)), feats, targets, cache["chunk_tokens"]
    )
    record = original_record(backbone, step, head.weight, loss, accuracy)
    write_json(record | {"cached_tokens": counts}, out_original)


def original_record(backbone: str, step: int, weight: torch.Tensor, loss, accuracy) -> dict:
    """A backbone's own head as its rank heads' jobs record it (``original.json``): its loss
    and accuracy on the evaluation split, its shape (the input width after OPT's
    project_out: narrower than the blocks) and all its singular values, descending (Fig 8's
    W-error of the head the rank-r heads stand in for)."""
    from saturation.metrics import singular_values

    return {
        "backbone": backbone,
        "step": step,
        "eval_loss": loss,
        "eval_accuracy": accuracy,
        "head_input_size": weight.shape[1],
        "vocab_size": weight.shape[0],
        "singular_values": singular_values(weight).tolist(),
    }


def backbone_ranks(ranks: list[str], d: int, vocab: int, backbone: str) -> list[int | None]:
    """The ranks of a job a backbone has: ints, None for "full" (the full-rank control);
    ranks above min(d, V) are left out (the control stands for r = min(d, V)), so one rank
    list serves backbones of every width, each up to its own d."""
    wanted = [None if rank == "full" else int(rank) for rank in ranks]
    above = [r for r in wanted if r is not None and r > min(d, vocab)]
    if above:
        log.info(
            "ranks %s exceed min(hidden size %d, vocabulary %d) of %s: not trained for it",
            above,
            d,
            vocab,
            backbone,
        )
    return [r for r in wanted if r is None or r <= min(d, vocab)]


def head_rows(ranked, *, backbone, step, d, vocab, init, protocol) -> list[dict]:
    """The table's rows of trained heads, in ``RANK_HEADS_SCHEMA``, from (rank, result)
    pairs (rank None: the full-rank control)."""
    rows = []
    for r, result in ranked:
        row = {
            "backbone": backbone,
            "step": step,
            "head": "rank" if r else "full",
            "r": r or min(d, vocab),
            "hidden_size": d,
            "vocab_size": vocab,
            "init": init,
            "protocol": protocol,
            "select_loss": None,
            "chosen": True,
            **result,
        }
        log.info("%s", row)
        rows.append(row)
    return rows


def rank_head(
    cache_dir,
    original_json,
    ranks: list[str],
    backbone,
    step,
    setup: dict,
    kinds: list[str],
    device,
    threads,
    out_path,
    progress_file=None,
):
    """Train a head of each of ``ranks`` (ints as strings, or "full") in each of ``kinds``
    from one backbone's cache, side by side; one table, a row per head."""
    from saturation.io import read_json

    torch.set_num_threads(threads)
    device = resolve_device(device, "rank_heads.device")
    deterministic(device)
    info = read_json(original_json)
    d, vocab = info["head_input_size"], info["vocab_size"]
    wanted = backbone_ranks(ranks, d, vocab, backbone)
    setup = HeadTraining(**setup)
    results = []
    if wanted:
        results = train_heads(
            wanted,
            vocab,
            FeatureShards(cache_dir, "train"),
            load_cache(cache_dir, "eval", device),
            setup,
            device,
            progress_file,
            kinds,
        )
    ranks_of = [r for _, r in head_specs(wanted, kinds)]
    rows = head_rows(
        zip(ranks_of, results, strict=True),
        backbone=backbone,
        step=step,
        d=d,
        vocab=vocab,
        init=setup.init,
        protocol="cached",
    )
    write_parquet(pa.Table.from_pylist(rows, schema=RANK_HEADS_SCHEMA), out_path)
