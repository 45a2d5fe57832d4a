"""Checkpoint acquisition and loading: the hub path without the network, safetensors-only
loading, and clear errors for pickles and damaged files."""

import pytest
import torch

from conftest import tiny_gpt_neox
from saturation.loading import (
    CheckpointError,
    UnreadableCheckpoint,
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


def rewritten_header(path, edit):
    """The safetensors file at ``path`` with its header edited by ``edit`` (in place, the
    same tensor bytes after it)."""
    import json
    import struct

    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def test_a_hostile_header_is_refused_by_the_full_and_the_ranged_reader_alike(checkpoint):
    """Headers safetensors itself would refuse - the head's offsets overlapping the input
    embedding's (a ranged read measured the embedding as the head), an unknown dtype, a
    length that is not the shape's - are unreadable checkpoints in both modes, naming the
    tensor, before any tensor is read; the true header passes both."""
    from saturation.ranged import LocalReader, read_header

    weights = checkpoint / "model.safetensors"
    original = weights.read_bytes()
    reader = LocalReader({"model.safetensors": weights}, where="ckpt")
    assert set(read_header(reader, "model.safetensors").tensors) >= {"embed_out.weight"}

    def overlap(h):  # the head's bytes: the input embedding's
        h["embed_out.weight"]["data_offsets"] = h["gpt_neox.embed_in.weight"]["data_offsets"]

    def dtype(h):
        h["embed_out.weight"]["dtype"] = "F99"

    def length(h):
        h["embed_out.weight"]["shape"] = [16, 9]

    for edit, why in ((overlap, "starts at byte"), (dtype, "unknown dtype 'F99'"),
                      (length, r"embed_out.weight holds 512 bytes, and its shape \[16, 9\]")):  # fmt: skip
        weights.write_bytes(original)
        rewritten_header(weights, edit)
        with pytest.raises(UnreadableCheckpoint, match=why):
            check_safetensors(weights)
        with pytest.raises(UnreadableCheckpoint, match=why):
            load_model(checkpoint)
        with pytest.raises(UnreadableCheckpoint, match=why):
            read_header(reader, "model.safetensors")


def test_missing_weights_and_config(tmp_path, checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no \\*.safetensors weights"):
        weights_files(checkpoint, allow_pickle=False)
    with pytest.raises(CheckpointError, match="no config.json"):
        weights_files(tmp_path, allow_pickle=False)


# --- weights that do not match their config are refused, never measured at random ---------


def edit_weights(path, edit):
    """Rewrite a checkpoint's model.safetensors in place through ``edit(state_dict)``."""
    from safetensors.torch import load_file, save_file

    weights = path / "model.safetensors"
    tensors = load_file(weights)
    edit(tensors)
    save_file(tensors, weights, metadata={"format": "pt"})


def test_another_architectures_config_is_refused(checkpoint):
    """A Llama config beside GPT-NeoX weights: transformers alone would build a randomly
    initialised Llama and report every tensor as missing or unexpected."""
    from transformers import LlamaConfig

    LlamaConfig(
        hidden_size=8, num_attention_heads=1, num_hidden_layers=1, vocab_size=16,
        intermediate_size=32,
    ).save_pretrained(checkpoint)  # fmt: skip
    with pytest.raises(UnreadableCheckpoint) as info:
        load_model(checkpoint)
    message = str(info.value)
    assert f"checkpoint {checkpoint}:" in message
    assert "LlamaForCausalLM, model_type llama" in message
    assert "not in the checkpoint (left at random initialisation): lm_head.weight" in message
    assert "in the checkpoint but not in the model (unused): embed_out.weight" in message


def test_another_widths_config_is_refused(checkpoint):
    import json

    config = json.loads((checkpoint / "config.json").read_text())
    config.update(hidden_size=16, num_attention_heads=2)
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnreadableCheckpoint) as info:
        load_model(checkpoint)
    message = str(info.value)
    assert "GPTNeoXForCausalLM, model_type gpt_neox, hidden size 16" in message
    assert (
        "of another shape: gpt_neox.embed_in.weight (checkpoint (16, 8), model (16, 16))" in message
    )


def test_a_missing_tensor_is_refused(checkpoint):
    name = "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"
    edit_weights(checkpoint, lambda t: t.pop(name))
    with pytest.raises(
        UnreadableCheckpoint,
        match=rf"1 tensor not in the checkpoint \(left at random initialisation\): {name} \(",
    ):
        load_model(checkpoint)


def test_an_extra_tensor_is_refused(checkpoint):
    edit_weights(checkpoint, lambda t: t.update({"gpt_neox.extra.weight": torch.zeros(3)}))
    with pytest.raises(
        UnreadableCheckpoint, match=r"1 tensor in the checkpoint but not in the model \(unused\)"
    ):
        load_model(checkpoint)


def test_non_finite_weights_are_refused_naming_the_tensor(checkpoint):
    def poison(tensors):
        tensors["gpt_neox.layers.0.attention.dense.weight"][1, 2] = float("nan")
        tensors["gpt_neox.layers.0.attention.dense.weight"][0, 0] = float("inf")

    edit_weights(checkpoint, poison)
    with pytest.raises(
        UnreadableCheckpoint,
        match=rf"checkpoint {checkpoint}: tensor gpt_neox.layers.0.attention.dense.weight "
        "holds 2 NaN or infinite values of 64",
    ):
        load_model(checkpoint)


def test_buffers_old_checkpoints_carry_still_load(checkpoint):
    """Pythia's early safetensors carry causal-mask buffers and rotary inv_freq: transformers
    knows them and drops them from its report, so they are no reason to refuse."""
    edit_weights(
        checkpoint,
        lambda t: t.update(
            {
                "gpt_neox.layers.0.attention.bias": torch.ones(1, 1, 8, 8, dtype=torch.bool),
                "gpt_neox.layers.0.attention.masked_bias": torch.tensor(-1e9),
                "gpt_neox.layers.0.attention.rotary_emb.inv_freq": torch.ones(4),
            }
        ),
    )
    torch.testing.assert_close(logits(load_model(checkpoint)), logits(tiny_model()), rtol=0, atol=0)


# --- .bin weights: torch's weights-only unpickler, never the plain one ----------------------


class Payload:
    """What a malicious pickle carries: unpickling it by the plain unpickler runs a
    command."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.sentinel}",))


def bin_checkpoint(path, state_dict, shards=1):
    """A checkpoint folder with config.json and ``.bin`` weights, sharded with an index as
    transformers writes them (pytorch_model-0000k-of-0000n.bin + pytorch_model.bin.index.json)."""
    import json

    tiny_model().config.save_pretrained(path)
    names = list(state_dict)
    if shards == 1:
        torch.save(state_dict, path / "pytorch_model.bin")
        return path
    weight_map = {}
    for k in range(shards):
        part = names[k::shards]
        file = f"pytorch_model-{k + 1:05d}-of-{shards:05d}.bin"
        torch.save({n: state_dict[n] for n in part}, path / file)
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {}, "weight_map": weight_map}
    (path / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    return path


def test_a_bin_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    sentinel = tmp_path / "ran"
    state = {**tiny_model().state_dict(), "payload": Payload(sentinel)}
    folder = bin_checkpoint(tmp_path / "evil", state, shards=2)
    evil = sorted(folder.glob("*.bin"))
    with pytest.raises(UnreadableCheckpoint) as info:
        load_model(folder, allow_pickle=True)
    message = str(info.value)
    assert "holds more than tensors, and torch's weights-only unpickler refused it" in message
    assert "posix.system" in message and "nothing in it was run" in message
    assert any(message.startswith(str(f)) for f in evil)
    assert not sentinel.exists()
    # The plain unpickler, which the workflow never uses, runs it: the payload is real.
    import json

    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    torch.load(folder / index["weight_map"]["payload"], weights_only=False)
    assert sentinel.exists()


def test_sharded_bin_weights_measure_like_their_safetensors_twin(tmp_path, checkpoint):
    from saturation.corpus import corpus_table
    from saturation.io import write_parquet
    from saturation.measuring import checkpoint_tables

    twin = bin_checkpoint(tmp_path / "bin", tiny_model().state_dict(), shards=3)
    assert len(list(twin.glob("pytorch_model-*.bin"))) == 3
    torch.testing.assert_close(
        logits(load_model(twin, allow_pickle=True)), logits(tiny_model()), rtol=0, atol=0
    )
    eval_path = tmp_path / "eval.parquet"
    docs = [torch.arange(8).numpy().astype("int32"), (torch.arange(8) % 5).numpy().astype("int32")]
    write_parquet(corpus_table([0, 1], "eval", docs), eval_path)
    tables = {
        name: checkpoint_tables(
            "m", 0, 0, str(folder), str(eval_path), 8, 2, "float32", "cpu", allow_pickle=True
        )
        for name, folder in (("safetensors", checkpoint), ("bin", twin))
    }
    for kind in ("checkpoint_metrics", "head_spectra", "document_losses"):
        assert tables["bin"][kind].equals(tables["safetensors"][kind])


def test_a_checkpoint_too_large_for_the_jobs_memory_is_refused_before_loading(checkpoint):
    """The estimate is the file's bytes plus every parameter in the load dtype (the planted
    count from the saved state dict); a job given less stops naming metrics.mem_mb."""
    from safetensors.torch import load_file

    from saturation.loading import load_memory_mb

    weights = checkpoint / "model.safetensors"
    params = sum(t.numel() for t in load_file(weights).values())
    size = weights.stat().st_size
    for dtype, element in ((torch.float32, 4), (torch.bfloat16, 2)):
        assert load_memory_mb([weights], dtype) == (size + params * element) / 2**20
    need = load_memory_mb([weights], torch.float32)
    with pytest.raises(MemoryError, match=r"'metrics.mem_mb': 0.001 MB cannot hold checkpoint"):
        load_model(checkpoint, dtype=torch.float32, mem_mb=0.001)
    assert load_model(checkpoint, dtype=torch.float32, mem_mb=need * 1.01) is not None
    # A config.json that declares a vocabulary of 50M: refused before anything is built.
    import json

    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "vocab_size": 50_000_000}))
    with pytest.raises(MemoryError, match=r"its config.json describes 800,00\d,\d+ parameters"):
        load_model(checkpoint, dtype=torch.float32, mem_mb=need * 1.01)
