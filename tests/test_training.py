"""Mini-suite training: schedule, packing, determinism and checkpoints at the right steps."""

import hashlib
import math

import numpy as np
import pytest
import torch

from saturation.loading import load_model
from saturation.synthetic import make_language
from saturation.training import (
    MiniModel,
    TrainingSetup,
    learning_rate,
    pack_sequences,
    train_model,
)

SETUP = TrainingSetup(
    batch_size=8,
    learning_rate=0.01,
    min_lr_ratio=0.1,
    warmup_steps=4,
    weight_decay=0.01,
    grad_clip=1.0,
    seed=3,
)
SPEC = MiniModel("t", hidden_size=16, num_layers=1, num_heads=2, vocab_size=12, sequence_length=16)


def test_learning_rate_warmup_then_cosine():
    assert learning_rate(0, 100, SETUP) == pytest.approx(0.01 / 4)
    assert learning_rate(3, 100, SETUP) == pytest.approx(0.01)
    mid = 4 + (100 - 4) / 2
    assert learning_rate(int(mid), 100, SETUP) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert learning_rate(100, 100, SETUP) == pytest.approx(0.001)
    s = 40
    expected = 0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 96)))
    assert learning_rate(s, 100, SETUP) == pytest.approx(expected)


def test_pack_sequences():
    docs = [np.arange(5, dtype=np.int32), np.arange(5, 12, dtype=np.int32)]
    packed = pack_sequences(docs, 4)
    np.testing.assert_array_equal(packed, np.arange(12).reshape(3, 4))
    with pytest.raises(ValueError, match="fewer than one sequence"):
        pack_sequences(docs, 100)


def train(tmp_path, tag, steps=(0, 2, 30)):
    lang = make_language(12, 2, 3.0, 1.0, seed=0)
    seqs = lang.sample(64, 16, np.random.default_rng(0))
    dirs = [tmp_path / tag / f"step{s}" for s in steps]
    history = train_model(SPEC, SETUP, seqs, list(steps), dirs, threads=1)
    return history, dirs, lang


def digest(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_training_is_deterministic_and_learns(tmp_path):
    h1, d1, lang = train(tmp_path, "a")
    h2, d2, _ = train(tmp_path, "b")
    assert [digest(p) for p in d1] == [digest(p) for p in d2]
    assert h1.equals(h2)
    assert h1.column("step").to_pylist() == list(range(1, 31))
    assert h1.column("tokens_seen").to_pylist()[-1] == 30 * 8 * 16
    losses = h1.column("loss").to_numpy()
    assert losses[-5:].mean() < losses[:5].mean() - 0.3
    # Step 0 is the initialisation; later checkpoints differ from it and from each other.
    assert len({digest(p) for p in d1}) == 3
    # A checkpoint's loss, recomputed by hand from its logits, matches training's order.
    x = torch.from_numpy(lang.sample(32, 16, np.random.default_rng(9)).astype(np.int64))

    def loss(path):
        with torch.no_grad():
            logits = load_model(path)(input_ids=x).logits[:, :-1]
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, 12), x[:, 1:].reshape(-1)
        ).item()

    assert loss(d1[2]) < loss(d1[0]) - 0.3
    assert loss(d1[0]) == pytest.approx(np.log(12), abs=0.3)  # near uniform at init
    assert loss(d1[2]) > lang.entropy_rate - 0.05  # nobody beats the entropy floor
