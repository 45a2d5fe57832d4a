"""Checkpoint acquisition and loading: the hub path without the network, safetensors-only
loading, and clear errors for pickles and damaged files."""

import pytest
import torch

from conftest import tiny_gpt_neox
from saturation.checkpoints import (
    CheckpointError,
    check_safetensors,
    load_model,
    weights_files,
)


def tiny_model():
    return tiny_gpt_neox(hidden=8, heads=1, vocab=16, context=8)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "ckpt"
    tiny_model().save_pretrained(path, safe_serialization=True)
    return path


def logits(model):
    with torch.no_grad():
        return model(input_ids=torch.arange(8)[None]).logits


def test_safetensors_checkpoint_loads_exactly(checkpoint):
    loaded = load_model(checkpoint)
    torch.testing.assert_close(logits(loaded), logits(tiny_model()), rtol=0, atol=0)
    assert loaded.get_output_embeddings().weight.shape == (16, 8)


def test_pickle_weights_refused_unless_allowed(tmp_path):
    model = tiny_model()
    path = tmp_path / "pickled"
    model.save_pretrained(path, safe_serialization=False)
    for f in path.glob("*.safetensors"):
        f.unlink()
    if not list(path.glob("*.bin")):  # newer transformers may always write safetensors
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pickles.*allow_pickle: true"):
        load_model(path)
    loaded = load_model(path, allow_pickle=True)
    torch.testing.assert_close(logits(loaded), logits(model), rtol=0, atol=0)


def test_truncated_weights_give_a_clear_error(checkpoint):
    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    with pytest.raises(
        CheckpointError, match=r"truncated or corrupt safetensors file .*model\.safetensors"
    ):
        load_model(checkpoint)


def test_corrupt_header_gives_a_clear_error(checkpoint):
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"\xff" * 12
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt safetensors file"):
        check_safetensors(weights)
    weights.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(checkpoint)


def test_missing_weights_and_config(tmp_path, checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no \\*.safetensors weights"):
        weights_files(checkpoint, allow_pickle=False)
    with pytest.raises(CheckpointError, match="no config.json"):
        weights_files(tmp_path, allow_pickle=False)
