"""Checkpoint acquisition and loading: the hub path without the network, safetensors-only
loading, and clear errors for pickles and damaged files."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_gpt_neox
from saturation.checkpoints import (
    CheckpointError,
    allow_patterns,
    check_safetensors,
    download,
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


def test_hub_download_asks_for_repo_revision_and_patterns(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, revision, local_dir, allow_patterns):
        calls.append((repo_id, revision, allow_patterns))
        tiny_model().save_pretrained(local_dir, safe_serialization=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    out = tmp_path / "pythia-14m" / "step1000"
    download("EleutherAI/pythia-14m", "step1000", out, allow_pickle=False)
    ((repo, rev, patterns),) = calls
    assert (repo, rev) == ("EleutherAI/pythia-14m", "step1000")
    assert "config.json" in patterns and "*.safetensors" in patterns
    assert "model.safetensors.index.json" in patterns and "tokenizer.json" in patterns
    assert not any(p.endswith(".bin") for p in patterns)
    assert any(p.endswith(".bin") for p in allow_patterns(True))
    np.testing.assert_array_equal(logits(load_model(out)).numpy(), logits(tiny_model()).numpy())


def http_error(cls, url):
    import httpx2

    response = httpx2.Response(404, request=httpx2.Request("GET", url))
    return cls(f"404 Client Error for url {url}", response=response)


@pytest.mark.parametrize(
    "error, message",
    [
        ("RevisionNotFoundError", "revision 'step999' does not exist in EleutherAI/pythia-14m"),
        ("RepositoryNotFoundError", "repository 'EleutherAI/pythia-14m' not found"),
    ],
)
def test_hub_missing_revision_or_repo_is_named(tmp_path, monkeypatch, error, message):
    import huggingface_hub
    import huggingface_hub.errors as errors

    def fake_snapshot_download(repo_id, revision, local_dir, allow_patterns):
        raise http_error(getattr(errors, error), f"https://hub/{repo_id}/{revision}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(CheckpointError, match=message):
        download("EleutherAI/pythia-14m", "step999", tmp_path / "x", allow_pickle=False)


def test_hub_revision_serving_only_pickles_is_refused(tmp_path, monkeypatch):
    import huggingface_hub

    def fake_snapshot_download(repo_id, revision, local_dir, allow_patterns):
        Path(local_dir).mkdir(parents=True)
        tiny_model().config.save_pretrained(local_dir)  # config only: weights were .bin
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(
        CheckpointError, match="pythia-14m at revision step0 holds no .*allow_pickle"
    ):
        download("EleutherAI/pythia-14m", "step0", tmp_path / "x", allow_pickle=False)
