"""The head's spectrum read by HTTP range: against the loopback hub with the unmodified
client, the values equal a full load's, and the bytes served per revision (counted at the
server) are the header, the head and the config; sharded, tied-head, cut-range and
mismatched-config revisions."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save

from saturation.hub import build_manifest
from saturation.loading import UnreadableCheckpoint, load_model
from saturation.measuring import spectrum_tables
from saturation.metrics import fingerprints, parameter_counts, singular_values, spectrum_metrics

RETRY = {"attempts": 4, "base": 0.05, "cap": 0.2}


def manifest_row(repo: str, revision: str) -> dict:
    table = build_manifest("m", repo, {0: revision}, [], None, RETRY)
    return table.to_pylist()[0]


def served(server, repo: str, commit: str) -> dict[str, int]:
    """Bytes sent per file of one revision, GET bodies only."""
    out: dict[str, int] = {}
    for r in server.downloads():
        if r.get("repo") == repo and r.get("commit") == commit:
            out[r["file"]] = out.get(r["file"], 0) + r["bytes"]
    return out


def full_measure(folder, dtype=torch.float32):
    model = load_model(folder, dtype=dtype)
    head = model.get_output_embeddings().weight
    return model, singular_values(head)


JOB = """
import json, sys
import pyarrow.parquet as pq
from saturation.measuring import spectrum_tables

row, out = json.loads(sys.argv[1]), sys.argv[2]
retry = {"attempts": 4, "base": 0.05, "cap": 0.2}
tables = spectrum_tables(row, "pythia-31m", 2000, 123, "float32", retry)
for name, table in tables.items():
    pq.write_table(table, f"{out}/{name}.parquet")
"""


def spectrum_in_a_new_cache(row: dict, tmp_path):
    """spectrum_tables in a process of its own, with an empty Hugging Face cache."""
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from conftest import ROOT

    out = tmp_path / "ranged"
    out.mkdir()
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(ROOT / "workflow" / "scripts"),
    }
    result = subprocess.run(
        [sys.executable, "-c", JOB, json.dumps(row), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {n: pq.read_table(out / f"{n}.parquet") for n in TABLES}


TABLES = ("checkpoint_metrics", "head_spectra", "checkpoints", "document_losses")


def test_the_ranged_head_equals_the_full_load_for_a_few_percent_of_the_bytes(
    loopback_hub, tmp_path
):
    from huggingface_hub import snapshot_download

    server, facts = loopback_hub
    repo = "EleutherAI/pythia-31m"
    row = manifest_row(repo, "step2000")
    server.clear()
    tables = spectrum_in_a_new_cache(row, tmp_path)  # other tests may have cached it whole
    ranged = served(server, repo, row["commit"])
    metrics, spectrum, checkpoint, documents = (tables[n].to_pylist() for n in TABLES)
    server.clear()
    folder = snapshot_download(repo, revision=row["commit"], local_dir=tmp_path / "full")
    full = served(server, repo, row["commit"])
    model, sigma = full_measure(folder)
    # Values: the spectrum to the last bit, the metrics, the fingerprint and the counts.
    assert np.array_equal([r["singular_value"] for r in spectrum], sigma)
    spec = spectrum_metrics(sigma)
    assert {r["metric"]: r["value"] for r in metrics} == spec
    record = checkpoint[0]
    assert record["head_fingerprint"] == fingerprints(model)["head_fingerprint"]
    counts = parameter_counts(model)
    assert (record["n_params"], record["n_params_no_embedding"]) == (
        counts["n_params"],
        counts["n_params_no_embedding"],
    )
    assert record["vocab_size"] == model.config.vocab_size and record["tied_head"] is False
    assert record["weights_fingerprint"] is None and documents == []
    # Bytes: the config, the weights file's header and the head; nothing else.
    header_len = int.from_bytes(
        (tmp_path / "full" / "model.safetensors").read_bytes()[:8], "little"
    )
    head_bytes = model.get_output_embeddings().weight.numel() * 4  # float32 on this hub
    assert set(ranged) == {"config.json", "model.safetensors"}
    assert ranged["model.safetensors"] == 8 + header_len + head_bytes
    # What a full download of the revision serves: its files (a cache other tests filled
    # may have spared this one its GETs).
    branch = server.repos[("model", repo)].resolve(row["commit"])
    whole = {p: e.size for p, e in branch.files.items()}
    assert not full or full == {p: whole[p] for p in full}
    weights = whole["model.safetensors"]
    print(
        f"bytes served for {repo} step2000: ranged {sum(ranged.values())} "
        f"(head {head_bytes}, header {8 + header_len}, config {ranged['config.json']}); "
        f"full {sum(whole.values())} (weights {weights})"
    )
    assert ranged["model.safetensors"] < weights / 2


def shard(state: dict, n: int) -> dict[str, bytes]:
    """A state dict as ``n`` safetensors shards and their index, as save_pretrained writes."""
    names = sorted(state)
    files, weight_map = {}, {}
    for i in range(n):
        part = names[i::n]
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        files[fname] = save({k: state[k].contiguous() for k in part})
        weight_map.update({k: fname for k in part})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    return files


def add_model(server, repo: str, branch: str, model, files: dict | None = None) -> dict:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        saved = {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}
    if files is not None:
        saved = {"config.json": saved["config.json"], **files}
    server.add_branch("model", repo, branch, saved)
    return manifest_row(repo, branch)


def test_sharded_tied_and_cut_revisions(loopback_hub):
    from hub import families

    server, _ = loopback_hub
    torch.manual_seed(0)
    neox = families.gpt_neox(300).eval()
    # Named as Pythia's files name them: the head is `embed_out` (transformers: `lm_head`).
    state = {
        k.replace("lm_head.", "embed_out."): v.to(torch.float16)
        for k, v in neox.state_dict().items()
    }
    row = add_model(server, "tests/sharded", "main", neox, shard(state, 3))
    server.clear()
    # A cut range body is retried.
    server.inject("cut", r"GET /tests/sharded/resolve/.*/model-0000", times=1)
    tables = spectrum_tables(row, "sharded", 0, 0, "float32", RETRY)
    assert any(r.get("cut") for r in server.log)
    head = state["embed_out.weight"].float()
    sigma = np.array([r["singular_value"] for r in tables["head_spectra"].to_pylist()])
    assert np.array_equal(sigma, singular_values(head))
    files = served(server, "tests/sharded", row["commit"])
    assert "model.safetensors.index.json" in files
    # Only the shard holding the head sent more than its header.
    holder = json.loads(
        server.repos[("model", "tests/sharded")]
        .branches["main"]
        .files["model.safetensors.index.json"]
        .file.read_text()
    )["weight_map"]["embed_out.weight"]
    assert files[holder] > head.numel() * 2

    # A tied head (Llama): the input embedding is read.
    llama = families.llama(300).eval()
    row = add_model(server, "tests/tied", "main", llama)
    record = spectrum_tables(row, "tied", 0, 0, "float32", RETRY)["checkpoints"].to_pylist()[0]
    assert record["tied_head"] is True
    assert record["head_fingerprint"] == fingerprints(llama)["head_fingerprint"]


def test_a_config_of_another_architecture_is_refused(loopback_hub):
    """The weights of a GPT-NeoX under a Llama config: refused, naming the revision, as the
    full load refuses them (never a spectrum of random weights)."""
    from hub import families

    server, _ = loopback_hub
    neox = families.gpt_neox(300).eval()
    llama = families.llama(300)
    weights = save({k: v.contiguous() for k, v in neox.state_dict().items()})
    row = add_model(server, "tests/mismatch", "main", llama, {"model.safetensors": weights})
    with pytest.raises(UnreadableCheckpoint, match="do not match the model its config.json"):
        spectrum_tables(row, "mismatch", 0, 0, "float32", RETRY)


def torch_bin(state: dict) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_sharded_bin_heads_are_read_through_the_zip_directory(loopback_hub, tmp_path):
    """Pythia 12B's layout: ``pytorch_model-0000N-of-00003.bin`` shards and their index. The
    head is read through each shard's zip directory and pickle, by an unpickler that builds
    nothing; the values equal a full load's (torch's weights-only unpickler) for a few
    percent of the bytes; a pickle that carries a payload is refused and runs nothing."""
    from hub import families

    server, _ = loopback_hub
    torch.manual_seed(1)
    neox = families.gpt_neox(300).eval()
    state = {
        k.replace("lm_head.", "embed_out."): v.to(torch.float16).clone()
        for k, v in neox.state_dict().items()
    }
    names = sorted(state)
    files, weight_map = {}, {}
    for i in range(3):
        fname = f"pytorch_model-{i + 1:05d}-of-00003.bin"
        files[fname] = torch_bin({k: state[k] for k in names[i::3]})
        weight_map.update({k: fname for k in names[i::3]})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    files["pytorch_model.bin.index.json"] = json.dumps(index).encode()
    row = add_model(server, "tests/bin-shards", "main", neox, files)
    assert row["weights_format"] == "bin"
    with pytest.raises(Exception, match="checkpoints.allow_pickle: true"):
        spectrum_tables(row, "bins", 0, 0, "float32", RETRY)
    server.clear()
    tables = spectrum_tables(row, "bins", 0, 0, "float32", RETRY, allow_pickle=True)
    sent = served(server, "tests/bin-shards", row["commit"])
    sigma = np.array([r["singular_value"] for r in tables["head_spectra"].to_pylist()])
    assert np.array_equal(sigma, singular_values(state["embed_out.weight"].float()))
    # Against the full load of the same files (torch's weights-only unpickler).
    from huggingface_hub import snapshot_download

    folder = snapshot_download("tests/bin-shards", revision=row["commit"], local_dir=tmp_path / "f")
    model = load_model(folder, allow_pickle=True, dtype=torch.float32)
    assert (
        tables["checkpoints"].to_pylist()[0]["head_fingerprint"]
        == fingerprints(model)["head_fingerprint"]
    )
    weights = sum(len(v) for k, v in files.items() if k.endswith(".bin"))
    head = state["embed_out.weight"].numel() * 2
    print(f"sharded .bin: {sum(sent.values())} bytes served by range of {weights}; head {head}")
    # Of each shard: its last KB (the zip's end records), its directory and pickle; of the
    # head's, the head.
    assert sum(v for k, v in sent.items() if k.endswith(".bin")) < head + 3 * 1024 + weights / 4

    # A pickle with a payload: refused by name, and its payload never runs.
    sentinel = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    import io
    import pickle
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"lm_head.weight": Payload()}))
        z.writestr("archive/version", "3\n")
    bad = buffer.getvalue()
    row = add_model(server, "tests/bin-payload", "main", neox, {"pytorch_model.bin": bad})
    with pytest.raises(UnreadableCheckpoint, match=r"names io\.open.*refused"):
        spectrum_tables(row, "payload", 0, 0, "float32", RETRY, allow_pickle=True)
    assert not sentinel.exists()


def test_bin_files_with_bool_buffers_lists_or_overrunning_tensors(tmp_path):
    """The Pythia-era causal mask, a bool buffer, is recorded and the head still read (its
    bytes equal the tensor's); a pickle that holds a list, not a state dict, and a tensor
    whose offset runs past its storage's zip record are unreadable checkpoints, named."""
    import io
    import zipfile

    from saturation.ranged import LocalReader, bin_header, tensor_start

    head = torch.randn(12, 4, dtype=torch.float16)
    mask = torch.tril(torch.ones(1, 1, 8, 8, dtype=torch.bool))
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(
        torch_bin({"gpt_neox.layers.0.attention.bias": mask, "embed_out.weight": head})
    )
    reader = LocalReader({"pytorch_model.bin": path}, where="ckpt")
    header = bin_header(reader, "pytorch_model.bin")
    assert header.tensors["gpt_neox.layers.0.attention.bias"]["dtype"] == "BOOL"
    t = header.tensors["embed_out.weight"]
    raw = reader.read("pytorch_model.bin", tensor_start(reader, header, t), t["length"])
    assert raw == head.numpy().tobytes()

    path.write_bytes(torch_bin([head]))
    with pytest.raises(UnreadableCheckpoint, match="pickle holds a list, not a state dict"):
        bin_header(reader, "pytorch_model.bin")

    # The head's storage cut to half its bytes in the zip: its tensor would run past it.
    source = zipfile.ZipFile(io.BytesIO(torch_bin({"embed_out.weight": head})))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
        for item in source.infolist():
            data = source.read(item)
            out.writestr(
                item.filename, data[: len(data) // 2] if "/data/" in item.filename else data
            )
    path.write_bytes(buffer.getvalue())
    with pytest.raises(
        UnreadableCheckpoint, match="embed_out.weight runs past the end of its storage"
    ):
        bin_header(reader, "pytorch_model.bin")


def test_a_stale_or_broken_head_store_file_is_read_again(loopback_hub, tmp_path, caplog):
    """Another revision's head file under this revision's name, then a file cut short: each
    is named, removed, and the head read again by range; the values are this revision's."""
    import shutil

    from hub import families

    from saturation.ranged import prefetch_head, ranged_head, store_path

    server, _ = loopback_hub
    rows = {}
    for seed in (11, 12):
        torch.manual_seed(seed)
        rows[seed] = add_model(server, "tests/store", f"seed{seed}", families.gpt_neox(300).eval())
    store = tmp_path / "heads"
    for seed, row in rows.items():
        prefetch_head(row, RETRY, store, tmp_path / f"{seed}.json")
    truth = ranged_head(rows[12], RETRY).weight
    mine, other = store_path(store, rows[12]), store_path(store, rows[11])
    shutil.copy(other, mine)  # another revision's head, under this one's commit
    server.clear()
    head = ranged_head(rows[12], RETRY, store)
    assert torch.equal(head.weight, truth) and head.bytes_read > 0  # read again, by range
    assert f"holds the head of tests/store at commit {rows[11]['commit']}" in caplog.text
    assert not mine.exists()  # removed; prefetch stores it anew
    prefetch_head(rows[12], RETRY, store, tmp_path / "again.json")
    mine.write_bytes(mine.read_bytes()[:100])  # cut short
    head = ranged_head(rows[12], RETRY, store)
    assert torch.equal(head.weight, truth)
    assert "is not whole" in caplog.text


def test_a_ranged_read_is_bounded_whatever_the_server_answers(loopback_hub):
    """A server that ignores Range (the whole file, 200) is refused at its status line, its
    body not read; one that rate-limits for ever gets one request per attempt of ours (the
    client's own retries are off), and the error names the file."""
    from hub import families

    from saturation.ranged import RangeReader

    server, _ = loopback_hub
    torch.manual_seed(21)
    row = add_model(server, "tests/bounded", "main", families.gpt_neox(300).eval())
    reader = RangeReader(row["repo_id"], row["commit"], {"attempts": 3, "base": 0.01, "cap": 0.02})
    server.clear()
    server.inject("norange", r"GET .*/resolve/.*model.safetensors", times=None)
    with pytest.raises(Exception, match=r"answered 200 without a byte range"):
        reader.read("model.safetensors", 0, 8)
    size = (server.root / "models/tests/bounded/main/model.safetensors").stat().st_size
    assert reader.bytes_read == 0 and reader.requests == 1  # refused, not retried
    print(f"the whole file would be {size} bytes")
    server.clear()
    server.inject("status", r"GET .*/resolve/.*model.safetensors", times=None, status=503)
    with pytest.raises(Exception, match="model.safetensors"):
        reader.read("model.safetensors", 0, 8)
    requests = [r for r in server.log if r.get("route") == "fault"]
    assert len(requests) == 3  # attempts, not attempts x the client's retries


def test_a_commit_deleted_since_the_manifest_is_named_with_what_to_do(loopback_hub):
    from hub import families

    from saturation.loading import CheckpointError
    from saturation.ranged import ranged_head

    server, _ = loopback_hub
    torch.manual_seed(31)
    row = add_model(server, "tests/deleted", "main", families.gpt_neox(300).eval())
    gone = {**row, "commit": "0" * 40}  # the branch force-pushed, its old commit gone
    with pytest.raises(CheckpointError, match=r"no longer serves commit 0{40}.*revisions.parquet"):
        ranged_head(gone, RETRY)
