"""Rank-constrained heads: the feature cache, the chunked loss, and a planted-rank teacher."""

import numpy as np
import pytest
import torch

from conftest import tiny_gpt_neox
from saturation.head_settings import HeadTraining
from saturation.heads import (
    FullHead,
    RankHead,
    build_cache,
    chunked_cross_entropy,
    evaluate,
    load_cache,
    train_heads,
)


def one_head(rank, vocab, train, evaluation, setup, kind="linear") -> dict:
    """One head trained alone: ``train_heads`` with one spec."""
    return train_heads([rank], vocab, train, evaluation, setup, kinds=(kind,))[0]


def tiny_model():
    return tiny_gpt_neox(hidden=16, heads=2, vocab=20, context=16)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cache_round_trips_exactly(tmp_path, dtype):
    model = tiny_model()
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 20, n).astype(np.int32) for n in (16, 40, 3, 9)]
    counts = build_cache(model, {"train": docs}, tmp_path, 16, 2, shard_tokens=10, dtype=dtype)
    feats, targets = load_cache(tmp_path, "train")
    # Every token but a document's first is a target once: 40 -> pieces of 16, 16, 10 that
    # share a token.
    assert counts["train"] == len(targets) == sum(len(d) - 1 for d in docs)
    assert len(list(tmp_path.glob("train_*.safetensors"))) > 1  # really sharded
    # Reference: the head's input from a plain forward pass, sequence by sequence.
    expected_h, expected_t = [], []
    with torch.no_grad():
        for doc in docs:
            for s in range(0, len(doc) - 1, 15):
                piece = torch.from_numpy(doc[s : s + 16].astype(np.int64))[None]
                h = model.gpt_neox(input_ids=piece).last_hidden_state[0, :-1]
                expected_h.append(h)
                expected_t.append(piece[0, 1:])
    ref = torch.cat(expected_h).to(getattr(torch, dtype)).float()
    assert torch.equal(targets, torch.cat(expected_t))
    torch.testing.assert_close(feats, ref, rtol=0, atol=1e-6)
    # The cached features through the original head give the model's own logits.
    logits = model.get_output_embeddings()(feats)
    assert logits.shape == (len(targets), 20)


def test_chunked_cross_entropy_equals_unchunked():
    g = torch.Generator().manual_seed(0)
    head = RankHead(d=32, vocab=500, rank=8, generator=g)
    h = torch.randn(1000, 32, generator=g)
    t = torch.randint(0, 500, (1000,), generator=g)
    full = torch.nn.functional.cross_entropy(head(h), t, reduction="sum")
    full.backward()
    grads = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    total, correct = chunked_cross_entropy(head, h, t, chunk_tokens=77, backward_scale=1.0)
    assert float(total) == pytest.approx(full.item(), rel=1e-6)
    for p, ref in zip(head.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, ref, rtol=1e-4, atol=1e-5)
    assert correct == int((head(h).argmax(1) == t).sum())


def planted_teacher(n, d, vocab, k, seed, feature_seed=None):
    """Features x ~ N(0, I_d); teacher logits x W^T with W of rank k (fixed by ``seed``);
    targets sampled from the teacher. Returns the sample and the teacher's mean entropy,
    the loss a perfect head reaches."""
    g = torch.Generator().manual_seed(seed)
    w = 1.5 * (torch.randn(vocab, k, generator=g) @ torch.randn(k, d, generator=g)) / np.sqrt(k)
    if feature_seed is not None:
        g = torch.Generator().manual_seed(feature_seed)
    x = torch.randn(n, d, generator=g)
    p = torch.softmax(x @ w.T, dim=1)
    t = torch.multinomial(p, 1, generator=g)[:, 0]
    entropy = float(-(p * torch.log(p)).sum(1).mean())
    return x, t, entropy


def test_sweep_shows_the_cliff_at_the_planted_rank():
    d, vocab, k = 32, 64, 6
    train = planted_teacher(40000, d, vocab, k, seed=1)[:2]
    xev, tev, entropy = planted_teacher(20000, d, vocab, k, seed=1, feature_seed=2)
    setup = HeadTraining(
        steps=600,
        batch_tokens=2048,
        lr_base=0.02,
        lr_reference_params=1000,
        lr_exponent=0.3,
        warmup_steps=20,
        min_lr_ratio=0.05,
        weight_decay=0.0,
        chunk_tokens=1024,
        seed=0,
    )
    loss = {r: one_head(r, vocab, train, (xev, tev), setup)["eval_loss"] for r in (2, 4, 6, 8, 16)}
    for r in (6, 8, 16):  # at and above the planted rank: the teacher's entropy
        assert loss[r] - entropy < 0.03, (r, loss, entropy)
    assert loss[4] - entropy > 0.08 and loss[2] - entropy > 0.3  # below it: clearly above
    assert loss[2] > loss[4] > loss[6]
    control = one_head(None, vocab, train, (xev, tev), setup)
    assert control["trainable_params"] == vocab * d
    # The unconstrained control has 64 x 32 weights to fit from the same 600 steps.
    assert control["eval_loss"] - entropy < 0.1 and control["eval_loss"] < loss[4]
    assert 0.0 <= control["eval_accuracy"] <= 1.0


SMALL = HeadTraining(
    steps=20,
    batch_tokens=256,
    lr_base=0.01,
    lr_reference_params=100,
    lr_exponent=0.5,
    warmup_steps=2,
    min_lr_ratio=0.1,
    weight_decay=0.0,
    chunk_tokens=100,
    seed=3,
)


def test_training_is_deterministic():
    x, t, _ = planted_teacher(3000, 8, 16, 2, seed=0)
    setup = SMALL
    assert one_head(3, 16, (x, t), (x, t), setup) == one_head(3, 16, (x, t), (x, t), setup)


def test_learning_rate_rule():
    setup = HeadTraining(
        steps=1,
        batch_tokens=1,
        lr_base=0.01,
        lr_reference_params=10000,
        lr_exponent=0.5,
        warmup_steps=0,
        min_lr_ratio=0.1,
        weight_decay=0.0,
        chunk_tokens=1,
        seed=0,
    )
    assert setup.learning_rate(10000) == pytest.approx(0.01)
    assert setup.learning_rate(40000) == pytest.approx(0.005)


def test_evaluate_matches_direct_loss():
    g = torch.Generator().manual_seed(5)
    head = FullHead(8, 30, g)
    h, t = torch.randn(500, 8, generator=g), torch.randint(0, 30, (500,), generator=g)
    loss, acc = evaluate(head, h, t, chunk_tokens=64)
    with torch.no_grad():
        assert loss == pytest.approx(torch.nn.functional.cross_entropy(head(h), t).item(), rel=1e-6)
        assert acc == pytest.approx((head(h).argmax(1) == t).float().mean().item())


def test_feature_shards_stream_the_cache_shard_by_shard(tmp_path):
    """Streamed batches: rows of the cache, upcast to float32, no row twice in an epoch, and
    a single-shard cache batched exactly as the same features held in memory."""
    from safetensors.torch import save_file

    from saturation.heads import FeatureShards, FeatureTensors

    rng = np.random.default_rng(0)
    rows = torch.from_numpy(rng.normal(size=(70, 4)).astype(np.float32)).to(torch.bfloat16)
    targets = torch.arange(70, dtype=torch.int32)  # a row's target is its index
    for i, (a, b) in enumerate([(0, 30), (30, 60), (60, 70)]):
        save_file(
            {"features": rows[a:b].contiguous(), "targets": targets[a:b].contiguous()},
            str(tmp_path / f"train_{i:05d}.safetensors"),
        )
    shards = FeatureShards(tmp_path)
    assert len(shards) == 70 and shards.d == 4
    batches = shards.batches(np.random.default_rng(1), 8, "cpu")
    seen = []
    for _ in range(6):  # one epoch: 3 batches from each 30-row shard, none from the 10-row one
        f, t = next(batches)
        assert f.dtype == torch.float32 and t.dtype == torch.long
        assert torch.equal(f, rows[t].float())
        assert len({int(x) // 30 for x in t}) == 1  # one shard a batch
        seen += t.tolist()
    assert len(seen) == len(set(seen)) == 48
    with pytest.raises(ValueError, match="larger than the largest cache shard"):
        next(shards.batches(np.random.default_rng(1), 31, "cpu"))

    one = tmp_path / "one"
    one.mkdir()
    save_file({"features": rows, "targets": targets}, str(one / "train_00000.safetensors"))
    a = FeatureShards(one).batches(np.random.default_rng(5), 16, "cpu")
    b = FeatureTensors(rows, targets.long()).batches(np.random.default_rng(5), 16, "cpu")
    for _ in range(10):
        (fa, ta), (fb, tb) = next(a), next(b)
        assert torch.equal(fa, fb) and torch.equal(ta, tb)


def test_heads_trained_side_by_side_are_the_heads_trained_alone(tmp_path):
    """One job's heads share each step's batch: every head, its loss and accuracy are those
    of the same head trained alone, to the bit, from a streamed cache of several shards."""
    from safetensors.torch import save_file

    from saturation.heads import FeatureShards

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    t = (x[:, :2].argmax(1) * 5 + rng.integers(0, 5, 300)).astype(np.int64)  # 10 ids
    for i in range(3):
        part = slice(100 * i, 100 * (i + 1))
        save_file(
            {"features": torch.from_numpy(x[part]), "targets": torch.from_numpy(t[part])},
            str(tmp_path / f"train_{i:05d}.safetensors"),
        )
    held_out = (torch.from_numpy(x[:64]), torch.from_numpy(t[:64]))
    setup = HeadTraining(
        steps=30,
        batch_tokens=32,
        lr_base=0.05,
        lr_reference_params=100,
        lr_exponent=0.5,
        warmup_steps=3,
        min_lr_ratio=0.1,
        weight_decay=0.01,
        chunk_tokens=20,
        seed=4,
    )
    ranks = [1, 3, None, 6]
    together = train_heads(ranks, 10, FeatureShards(tmp_path), held_out, setup)
    alone = [one_head(r, 10, FeatureShards(tmp_path), held_out, setup) for r in ranks]
    assert together == alone
    assert len({r["eval_loss"] for r in together}) == len(ranks)  # four different heads
    assert [r["trainable_params"] for r in together] == [16, 48, 60, 96]


def test_deterministic_cuda_sets_the_cublas_workspace():
    """torch raises on deterministic CUDA matmuls unless CUBLAS_WORKSPACE_CONFIG is set
    before cuBLAS starts; the rank-head job sets it (checked without a GPU, in a fresh
    process)."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import os, sys; sys.path.insert(0, 'workflow/scripts'); os.environ.pop('CUBLAS_WORKSPACE_CONFIG', None)\n"
        "import torch; from saturation.heads import deterministic\n"
        "deterministic('cpu'); assert 'CUBLAS_WORKSPACE_CONFIG' not in os.environ\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "deterministic('cuda'); print(os.environ['CUBLAS_WORKSPACE_CONFIG'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ":4096:8"


def test_eval_features_are_cached_in_float32_whatever_the_cache_dtype(tmp_path):
    """The original head and every trained head are scored on full-precision features."""
    from safetensors import safe_open

    model = tiny_model()
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 20, 16).astype(np.int32) for _ in range(3)]
    build_cache(model, {"train": docs, "eval": docs}, tmp_path, 16, 2, 100, dtype="bfloat16")
    dtypes = {}
    for p in tmp_path.glob("*.safetensors"):
        with safe_open(str(p), framework="pt") as fh:
            dtypes[p.name.split("_")[0]] = fh.get_slice("features").get_dtype()
    assert dtypes == {"train": "BF16", "eval": "F32"}
    feats, _ = load_cache(tmp_path, "eval")
    train_feats, _ = load_cache(tmp_path, "train")
    assert not torch.equal(feats, train_feats)  # bfloat16 rounding on the train copy only
    torch.testing.assert_close(feats, train_feats, atol=0.05, rtol=0.02)


def test_an_unreadable_backbone_names_the_setting_to_change(tmp_path):
    """Under metrics.unreadable: skip the analysis leaves an unreadable checkpoint out; a
    rank-head backbone following the last checkpoint onto it stops, saying what to set."""
    from saturation.heads import UnreadableBackbone, load_backbone

    folder = tmp_path / "step40"
    tiny_model().save_pretrained(folder, safe_serialization=True)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short
    with pytest.raises(UnreadableBackbone, match="rank_heads.backbones' step for m") as info:
        load_backbone(folder, "m", 40, None, False, "float32", "cpu")
    assert "step 40 cannot be read" in str(info.value) and "model.safetensors" in str(info.value)


def test_the_cached_protocol_trains_each_kind_at_each_rank_and_a_linear_control():
    from dataclasses import replace

    x, t, _ = planted_teacher(2000, 8, 16, 2, seed=0)
    setup = replace(SMALL, steps=5, warmup_steps=1, components=3)
    rows = train_heads([2, None], 16, (x, t), (x, t), setup, kinds=("linear", "mixture"))
    assert [(r["kind"], r["components"]) for r in rows] == [
        ("linear", 1),
        ("mixture", 3),
        ("linear", 1),
    ]
    # a mixture of 3 rank-2 heads and its gate: 3 x 2 x (16 + 8) + 3 x 8 weights
    assert [r["trainable_params"] for r in rows] == [2 * 24, 3 * 2 * 24 + 3 * 8, 16 * 8]
    alone = one_head(2, 16, (x, t), (x, t), setup, kind="mixture")
    assert alone["eval_loss"] == rows[1]["eval_loss"]  # side by side = alone, to the bit
