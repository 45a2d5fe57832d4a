"""The workflow's hub code against the loopback hub (tests/hub), through the unmodified
huggingface_hub and datasets clients: the revision manifest, reading revisions through the
Hugging Face cache, eviction, the fault cases, and The Pile's layout streamed."""

import json
import logging
import math
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from saturation.hub import build_manifest, check_usable, hub_checkpoint
from saturation.loading import CheckpointError
from saturation.retry import retry_delay, with_backoff

RETRY = {"attempts": 4, "base": 0.05, "cap": 2.0}


def manifest(model, facts, trusted=(), reference="main"):
    revisions = {s: f"step{s}" for s in facts["steps"]}
    table = build_manifest(model, f"EleutherAI/{model}", revisions, list(trusted), reference, RETRY)
    return {r["step"]: r for r in table.to_pylist()}


def test_manifest_finds_duplicates_and_missing_revisions_before_any_download(hub):
    server, facts = hub
    rows14 = manifest("pythia-14m", facts)
    rows31 = manifest("pythia-31m", facts)
    rows28 = manifest("pythia-2.8b", facts)
    # Nothing was downloaded: the tree's LFS sha256 identifies the weights.
    assert server.downloads() == []
    # step0 = step1: neither is trusted as the original.
    assert rows14[0]["status"] == rows14[1]["status"] == "duplicate"
    assert rows14[0]["duplicate_steps"] == [1] and rows14[1]["duplicate_steps"] == [0]
    assert {s for s, r in rows14.items() if r["status"] == "ok"} == {2, 512, 1000, 2000, 3000}
    assert rows14[2]["commit"] == facts["commits"]["pythia-14m"][2]
    # A missing branch.
    assert rows31[1000]["status"] == "missing" and rows31[1000]["commit"] is None
    assert {s for s, r in rows31.items() if r["status"] == "ok"} == {2, 512, 2000, 3000}
    # Final-era weights on early branches; the last step differs from main.
    assert {s for s, r in rows28.items() if r["status"] == "duplicate"} == {0, 512, 2000}
    assert all(rows28[s]["same_as_reference"] for s in (0, 512, 2000))
    assert rows28[3000]["status"] == "ok" and not rows28[3000]["same_as_reference"]
    # Trusted steps are used although duplicated.
    assert manifest("pythia-14m", facts, trusted=[1])[1]["status"] == "ok"
    # The sha256 the manifest combines are the files' own.
    assert rows14[2]["weights_format"] == "safetensors" and rows14[2]["weights_bytes"] > 0
    with pytest.raises(
        CheckpointError, match="step 1.*same weights as steps \\[0\\]|steps \\[0\\]"
    ):
        check_usable(rows14[1], allow_pickle=False)
    with pytest.raises(
        CheckpointError, match="revision 'step1000' does not exist in EleutherAI/pythia-31m"
    ):
        check_usable(rows31[1000], allow_pickle=False)


def test_revisions_are_read_through_the_cache_once(hub):
    server, facts = hub
    row = manifest("pythia-31m", facts)[2000]
    server.clear()
    with hub_checkpoint(row, False, evict=False, retry=RETRY) as folder:
        assert "hub/models--EleutherAI--pythia-31m/snapshots" in str(folder)
        first = server.downloads()
        assert {r["file"] for r in first} >= {"config.json", "model.safetensors"}
        assert all(r["commit"] == row["commit"] for r in first)
    server.clear()
    with hub_checkpoint(row, False, evict=False, retry=RETRY) as again:
        assert again == folder
    assert server.downloads() == []  # in the cache: nothing fetched again


def test_weights_altered_on_the_way_are_never_measured_nor_kept(hub):
    """The hub's tree and ETag give a file's true sha256, and the bytes that arrive have
    three flipped, twice: the revision is refused naming the file and both digests, and the
    bad blob leaves the Hugging Face cache. Flipped once: downloaded again, the true bytes
    handed on."""
    import hashlib

    from safetensors.torch import save

    from conftest import tiny_gpt_neox

    server, facts = hub
    model = tiny_gpt_neox(hidden=16, vocab=32, seed=4242)  # weights no other test serves
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    weights = save(state)
    server.add_branch("model", "EleutherAI/pythia-31m", "altered-on-the-way",
                      {"config.json": model.config.to_json_string().encode(),
                       "model.safetensors": weights})  # fmt: skip
    table = build_manifest("pythia-31m", "EleutherAI/pythia-31m", {7: "altered-on-the-way"},
                           [], None, RETRY)  # fmt: skip
    row = table.to_pylist()[0]
    true = hashlib.sha256(weights).hexdigest()
    assert row["weights_files"] == [{"path": "model.safetensors", "sha256": true,
                                     "size": len(weights)}]  # fmt: skip
    server.clear()
    server.inject("flip", r"GET .*/resolve/.*/model.safetensors$", times=2)  # twice: refused
    with (
        pytest.raises(CheckpointError) as refused,
        hub_checkpoint(row, False, evict=False, retry=RETRY),
    ):
        pytest.fail("altered weights were handed on")
    message = str(refused.value)
    assert "model.safetensors has the digest" in message and f"not the {true}" in message
    assert "removed from the Hugging Face cache" in message
    blob = Path(message.split("Hugging Face cache (")[1].split(")")[0])
    assert blob.name == true and not blob.exists()
    fetched = sorted(r["file"] for r in server.downloads())
    assert fetched == ["config.json", "model.safetensors", "model.safetensors"]
    # Altered once, on the way: downloaded once more, and the true bytes handed on.
    server.clear()
    server.inject("flip", r"GET .*/resolve/.*/model.safetensors$", times=1)
    with hub_checkpoint(row, False, evict=False, retry=RETRY) as folder:
        assert (folder / "model.safetensors").read_bytes() == weights
    assert [r["file"] for r in server.downloads()] == ["model.safetensors"] * 2


def test_evict_fetches_into_a_private_folder_and_deletes_it(hub, tmp_path, monkeypatch):
    import saturation.hub

    # The job's Xet cache is set for this process; the test's process gets its own back.
    monkeypatch.setattr(saturation.hub, "_XET_CACHE", [])
    for name in ("HF_XET_CACHE", "HF_XET_CHUNK_CACHE_SIZE_BYTES"):
        monkeypatch.setenv(name, "unset by the test")
    server, facts = hub
    row = manifest("pythia-31m", facts)[512]
    server.clear()
    # What a job on this host left when it was killed (its process gone), and what a live
    # job (this one) and another host's job are using: only the first is swept.
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    left = [tmp_path / f"checkpoint-{host}.{dead}-abc123", tmp_path / f"xet-{host}.{dead}-x_9"]
    kept = [
        tmp_path / f"checkpoint-{host}.{os.getpid()}-live",
        tmp_path / f"xet-other-host.{dead}-zz",
    ]
    for folder in left + kept:
        (folder / "partial").mkdir(parents=True)
    with hub_checkpoint(row, False, evict=True, retry=RETRY, staging_root=tmp_path) as folder:
        assert folder.parent == tmp_path and (folder / "model.safetensors").is_file()
        assert not any(f.exists() for f in left) and all(f.exists() for f in kept)
    for folder in kept:
        import shutil

        shutil.rmtree(folder)
    # What is left is the job's Xet cache (deleted when the job's process ends).
    (xet,) = saturation.hub._XET_CACHE
    assert [p for p in tmp_path.iterdir() if p != xet] == []
    assert os.environ["HF_XET_CACHE"] == str(xet) and xet.parent == tmp_path
    assert any(r["file"] == "model.safetensors" for r in server.downloads())
    cache = Path(os.environ["HF_HOME"]) / "hub" / "models--EleutherAI--pythia-31m" / "snapshots"
    assert not (cache / row["commit"]).exists()  # the cache did not grow


def test_evict_stages_a_revision_the_cache_holds_only_part_of(hub, tmp_path, monkeypatch):
    """A snapshot holding only the revision's tokenizer (read by a tokenizing job from the
    same repo, as a backbone with its own tokenizer is) is not taken for the checkpoint: the
    revision is staged whole, and the cache gains no weights."""
    from huggingface_hub import hf_hub_download

    import saturation.hub

    monkeypatch.setattr(saturation.hub, "_XET_CACHE", [])
    for name in ("HF_XET_CACHE", "HF_XET_CHUNK_CACHE_SIZE_BYTES"):
        monkeypatch.setenv(name, "unset by the test")
    from huggingface_hub import constants

    # a cache of the test's own: other tests of the session fill the shared one
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    server, facts = hub
    row = manifest("pythia-31m", facts)[2000]
    part = Path(hf_hub_download("EleutherAI/pythia-31m", "tokenizer.json", revision=row["commit"]))
    assert part.is_relative_to(tmp_path / "cache")
    assert not (part.parent / "model.safetensors").exists()
    staging = tmp_path / "staging"
    with hub_checkpoint(row, False, evict=True, retry=RETRY, staging_root=staging) as folder:
        assert folder.parent == staging and (folder / "model.safetensors").is_file()
    assert not folder.exists() and not (part.parent / "model.safetensors").exists()


def test_a_killed_downloads_empty_file_is_swept_before_the_next_download(hub):
    """A download killed before its first byte leaves an empty ``*.incomplete`` in the
    Hugging Face cache; the next fetch of that repo removes it, unless a download holds its
    lock, and leaves a partial file with bytes for the client to resume."""
    from filelock import FileLock
    from huggingface_hub import constants

    server, facts = hub
    row = manifest("pythia-31m", facts)[512]
    folder = Path(constants.HF_HUB_CACHE) / "models--EleutherAI--pythia-31m"
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (Path(constants.HF_HUB_CACHE) / ".locks" / folder.name).mkdir(parents=True, exist_ok=True)
    empty, held, partial = (folder / "blobs" / f"{c * 64}.incomplete" for c in "abc")
    # the client's own file of one process (huggingface_hub 1.x): <blob>.<8 hex>.incomplete,
    # under the blob's lock
    held_own = folder / "blobs" / f"{'b' * 64}.0123abcd.incomplete"
    for part in (empty, held, held_own):
        part.write_bytes(b"")
    partial.write_bytes(b"12345")
    lock = Path(constants.HF_HUB_CACHE) / ".locks" / folder.name / f"{'b' * 64}.lock"
    with FileLock(str(lock)):  # a download of that blob under way
        with hub_checkpoint(row, False, evict=False, retry=RETRY) as snapshot:
            assert (snapshot / "model.safetensors").is_file()
        assert not empty.exists() and held.exists() and partial.read_bytes() == b"12345"
        assert held_own.exists()
    for part in (held, held_own, partial):
        part.unlink()


def test_rate_limit_honours_retry_after_then_succeeds(hub, caplog):
    server, facts = hub
    server.inject("429", r"GET /api/models/EleutherAI/pythia-14m/refs", times=2, retry_after=1)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="saturation.retry"):
        rows = manifest("pythia-14m", facts)
    waited = time.perf_counter() - start
    assert rows[2]["status"] == "ok"
    assert waited >= 2.0  # two Retry-After: 1 s, although the backoff base is 0.05 s
    assert [r["status"] for r in server.log if r["route"] == "fault"] == [429, 429]
    retries = [m for m in caplog.messages if " retry " in m]
    assert len(retries) == 2 and all("429" in m for m in retries)


def test_a_sustained_rate_limit_is_waited_out_once_per_window(hub):
    """Under a fixed window of 4 API calls per 2 s the manifest completes, and each 429 is
    waited out once: the next call comes when the window resets (the client's own retries,
    on tree listings, and ours, on the refs, do not both wait)."""
    server, facts = hub
    server.limit("api", calls=4, seconds=2)
    start = time.monotonic()
    rows = manifest("pythia-14m", facts)
    wall = time.monotonic() - start
    assert [rows[s]["status"] for s in facts["steps"]].count("ok") >= 1
    api = [r for r in server.log if r["bucket"] == "api"]
    served = [r for r in api if r["status"] != 429]
    limited = [r for r in api if r["status"] == 429]
    calls = 1 + len(facts["steps"]) + 1  # the refs, a tree per revision, the reference's tree
    assert len(served) == calls
    windows = math.ceil(calls / 4)
    assert len(limited) >= 1 and len(limited) <= windows  # one process: one 429 per window
    assert wall >= (windows - 1) * 2 * 0.9
    for r in limited:
        after = next(x for x in api if x["time"] > r["time"])
        gap = after["time"] - r["time"]
        assert r["reset"] - 0.1 <= gap <= r["reset"] + 2.5, (r, gap)


def test_server_errors_and_cut_bodies_are_retried(hub):
    server, facts = hub
    row = manifest("pythia-14m", facts)[512]
    server.clear()
    server.inject(
        "status", rf"GET /api/models/EleutherAI/pythia-14m/tree/{row['commit']}", status=500
    )
    server.inject("cut", rf"GET /EleutherAI/pythia-14m/resolve/{row['commit']}/model.safetensors")
    with hub_checkpoint(row, False, evict=False, retry=RETRY) as folder:
        data = (folder / "model.safetensors").read_bytes()
    served = [r for r in server.downloads() if r["file"] == "model.safetensors"]
    assert served[0].get("cut") and served[0]["bytes"] < len(data)
    assert not served[-1].get("cut") and served[-1]["bytes"] == len(data)
    assert any(r["status"] == 500 for r in server.log)


def test_persistent_failure_names_the_revision(hub):
    server, facts = hub
    row = manifest("pythia-14m", facts)[1000]
    server.clear()
    server.inject(
        "status",
        rf"GET /EleutherAI/pythia-14m/resolve/{row['commit']}/model",
        times=None,
        status=503,
    )
    retry = {**RETRY, "attempts": 2}
    with (
        pytest.raises(CheckpointError, match="EleutherAI/pythia-14m at revision step1000"),
        hub_checkpoint(row, False, evict=False, retry=retry),
    ):
        pass
    # One GET of the weights per attempt, each answered 503.
    faults = [r for r in server.log if r["route"] == "fault"]
    assert [r["status"] for r in faults] == [503] * retry["attempts"]


def test_pickle_only_branch_is_refused_before_download(hub):
    server, _ = hub
    table = build_manifest("pythia-70m", "EleutherAI/pythia-70m", {2: "step2"}, [], "main", RETRY)
    row = table.to_pylist()[0]
    assert row["weights_format"] == "bin" and row["status"] == "ok"
    with (
        pytest.raises(
            CheckpointError, match="EleutherAI/pythia-70m at revision step2.*only PyTorch .bin"
        ),
        hub_checkpoint(row, False, evict=False, retry=RETRY),
    ):
        pass
    assert server.downloads() == []


def test_missing_repository_is_named(hub):
    with pytest.raises(CheckpointError, match="repository 'EleutherAI/pythia-99m' not found"):
        build_manifest("pythia-99m", "EleutherAI/pythia-99m", {0: "step0"}, [], "main", RETRY)


def test_offline_manifest_says_to_prefetch():
    """HF_HUB_OFFLINE is read when the client is imported: a fresh process."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import sys; sys.path.insert(0, 'workflow/scripts')\n"
        "from saturation.hub import build_manifest\n"
        "build_manifest('m', 'EleutherAI/pythia-14m', {0: 'step0'}, [], 'main',"
        " {'attempts': 3, 'base': 5.0, 'cap': 5.0})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=60,
    )
    assert out.returncode != 0
    assert "manifest of EleutherAI/pythia-14m needs the hub" in out.stderr
    assert "run the prefetch target" in out.stderr and "retry 1 of" not in out.stderr


def test_retry_delay_classifies_errors():
    import httpx2 as httpx
    from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

    def http_error(status, headers=None, cls=HfHubHTTPError):
        request = httpx.Request("GET", "http://127.0.0.1/x")
        response = httpx.Response(status, headers=headers or {}, request=request)
        return cls("boom", response=response)

    assert 31 <= retry_delay(http_error(429, {"Retry-After": "30"}), 0, 1.0, 300) <= 32
    # The hub's RateLimit header, where the window's budget is spent, over Retry-After; the
    # backoff (here 1 * 2^8, capped at 300) is not added to a known reset.
    spent = {"RateLimit": '"api";r=0;t=55', "Retry-After": "70"}
    assert 56 <= retry_delay(http_error(429, spent), 8, 1.0, 300) <= 57
    assert (
        71 <= retry_delay(http_error(429, {**spent, "RateLimit": '"api";r=3;t=55'}), 0, 1, 9) <= 72
    )
    assert retry_delay(http_error(429), 0, 1.0, 300) <= 1.0  # neither header: the backoff
    assert 0.75 * 4 <= retry_delay(http_error(503), 2, 1.0, 300) <= 4  # 1 * 2^2, jittered
    assert retry_delay(http_error(503), 20, 1.0, 10) <= 10  # capped
    assert retry_delay(http_error(401), 0, 1.0, 300) is None
    assert retry_delay(http_error(404, cls=RevisionNotFoundError), 0, 1.0, 300) is None
    assert retry_delay(httpx.ConnectError("refused"), 0, 1.0, 300) is not None
    assert retry_delay(ValueError("a bug"), 0, 1.0, 300) is None
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise http_error(502)
        return "ok"

    slept = []
    assert with_backoff(flaky, "x", 3, 1.0, 300, sleep=slept.append) == "ok"
    assert len(slept) == 2 and slept[1] > slept[0] * 1.4


# The loopback's Pile-shaped dataset, as corpus.huggingface gives it.
PILE = {
    "path": "monology/pile-uncopyrighted",
    "name": None,
    "split": "train",
    "eval_split": "validation",
    "data_files": {"train": "train/*.jsonl.zst", "validation": "val.jsonl.zst"},
    "text_field": "text",
    "shuffle_buffer": 16,
}


def test_pile_layout_streams_validation_and_train_splits(hub, tmp_path):
    """The Pile's train/*.jsonl.zst and val.jsonl.zst through datasets' streaming (zstd)."""
    from saturation.corpus import read_tokens, sample_corpus

    server, facts = hub
    settings = dict(PILE)
    common = {
        "source": "huggingface",
        "seed": 3,
        "tokenizer": "EleutherAI/pythia-160m",
        "eval_fraction": 0.5,
        "max_document_tokens": None,
        "huggingface": settings,
    }
    for split, n in (("eval", 500), ("train", 2000)):
        sample_corpus(
            {**common, "split": split, "n_tokens": n},
            {},
            tmp_path / f"{split}.parquet",
            tmp_path / f"{split}.json",
        )
        meta = json.loads((tmp_path / f"{split}.json").read_text())
        assert meta["n_tokens"] == n
        assert meta["dataset_split"] == ("validation" if split == "eval" else "train")
    files = {r["file"] for r in server.downloads()}
    assert "val.jsonl.zst" in files and any(f.startswith("train/") for f in files)
    assert "test.jsonl.zst" not in files
    # Range requests: streaming reads the compressed files in pieces.
    assert any(r["status"] == 206 for r in server.downloads())
    eval_docs = read_tokens(tmp_path / "eval.parquet")
    assert max(int(d.max()) for d in eval_docs) < facts["tokenizer_size"]
    assert pq.read_table(tmp_path / "eval.parquet").num_rows >= 2
    # Without data_files, a split the layout does not give is named.
    from saturation.corpus import CorpusError

    bad = {
        **common,
        "split": "eval",
        "n_tokens": 10,
        "huggingface": {**settings, "data_files": None},
    }
    with pytest.raises(CorpusError, match="no split 'validation'"):
        sample_corpus(bad, {}, tmp_path / "x.parquet", tmp_path / "x.json")


def test_a_corpus_stream_broken_by_the_hub_gives_the_same_sample(hub, tmp_path, caplog):
    """The train split of The Pile's layout, sampled once unbroken and once with the hub
    failing mid-way: its API refusing with 429 (which datasets' file system reports as a
    missing file) and a file's body cut short. The stream starts again past what it gave,
    and the sample is the same token for token."""
    from saturation.corpus import read_tokens, sample_corpus

    server, _ = hub
    params = {
        "source": "huggingface",
        "split": "train",
        "n_tokens": 3000,
        "seed": 5,
        "tokenizer": "EleutherAI/pythia-160m",
        "eval_fraction": 0.0,
        "max_document_tokens": None,
        "huggingface": dict(PILE),
    }
    retry = {"attempts": 6, "base": 0.05, "cap": 0.2}
    sample_corpus(params, {}, tmp_path / "a.parquet", tmp_path / "a.json", retry=retry)
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()  # as a new job starts: no repo known to exist
    server.clear()
    server.inject("429", r"GET /api/datasets/monology/pile-uncopyrighted/revision/", times=3)
    server.inject("cut", r"GET /datasets/monology/pile-uncopyrighted/resolve/.*/train/", times=1)
    with caplog.at_level(logging.WARNING, logger="saturation.corpus"):
        sample_corpus(params, {}, tmp_path / "b.parquet", tmp_path / "b.json", retry=retry)
    assert "starting the stream again" in caplog.text
    faults = [r for r in server.log if r["route"] == "fault" or r.get("cut")]
    assert len(faults) == 4, faults  # every injected fault was met
    a, b = read_tokens(tmp_path / "a.parquet"), read_tokens(tmp_path / "b.parquet")
    assert len(a) == len(b) and all((x == y).all() for x, y in zip(a, b, strict=True))
    # Without retries the same faults end the job.
    HfFileSystem.clear_instance_cache()
    server.clear()
    server.inject("429", r"GET /api/datasets/monology/pile-uncopyrighted/revision/", times=3)
    with pytest.raises(Exception):  # noqa: B017,PT011 - whatever datasets raises
        sample_corpus(params, {}, tmp_path / "c.parquet", tmp_path / "c.json")


XET_JOB = """
import json, os, sys
from pathlib import Path
from saturation.hub import build_manifest, hub_checkpoint
from saturation.loading import CheckpointError

retry = {"attempts": 2, "base": 0.05, "cap": 0.1}
rows = build_manifest("pythia-14m", "EleutherAI/pythia-14m", {2000: "step2000"}, [], None, retry)
row = rows.to_pylist()[0]
out = {"sha256": row["weights_sha256"]}
try:
    with hub_checkpoint(row, False, evict=True, retry=retry, staging_root=sys.argv[1]) as folder:
        out["files"] = sorted(p.name for p in Path(folder).iterdir())
except CheckpointError as exc:
    out["error"] = str(exc)
xet = os.environ.get("HF_XET_CACHE")
out["xet_cache"] = xet
out["xet_files"] = sorted(str(p.relative_to(xet)) for p in Path(xet).rglob("*")) if xet else []
print(json.dumps(out))
"""


def run_xet_job(tmp_path: Path, name: str, **env) -> dict:
    import subprocess
    import sys

    from conftest import ROOT

    staging = tmp_path / name / "staging"
    hf_home = tmp_path / name / "hf"
    result = subprocess.run(
        [sys.executable, "-c", XET_JOB, str(staging)],
        env={
            **os.environ,
            "HF_HOME": str(hf_home),
            "PYTHONPATH": str(ROOT / "workflow" / "scripts"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["staging_after"] = sorted(p.name for p in staging.iterdir())
    out["hf_home_xet"] = (hf_home / "xet").exists()
    return out


def test_a_xet_backed_hub_keeps_lfs_sha256_and_xet_stays_in_the_staging_folder(hub, tmp_path):
    """The loopback answers as a Xet-backed hub does: tree entries carry ``xetHash`` beside
    ``lfs``, and resolve answers ``X-Xet-Hash`` with a read-token link. The manifest's sha256
    is still the LFS one. With hf_xet installed the unmodified client downloads the weights
    through Xet (a read token, then Xet's content store; the loopback stores no chunks, so
    that download fails and says what to set), and in evict mode Xet's cache lies in the
    job's staging folder and goes with it; with HF_HUB_DISABLE_XET=1 it downloads over plain
    HTTP."""
    server, _ = hub
    plain = manifest("pythia-14m", facts=hub[1])[2000]["weights_sha256"]
    server.clear()
    server.xet = True
    tree = [r for r in server.log if r["route"] == "tree"]
    xet = run_xet_job(tmp_path, "xet")
    routes = [(r["method"], r["route"], r.get("file")) for r in server.log]
    assert xet["sha256"] == plain  # lfs.oid, not xetHash
    assert ("GET", "xet-token", None) in routes
    assert any(route == "cas" for _, route, _ in routes)
    assert ("GET", "resolve", "model.safetensors") not in routes  # not over plain HTTP
    assert "HF_HUB_DISABLE_XET=1" in xet["error"]
    # The Xet client's cache was the job's own, in the staging folder, and went with it.
    assert Path(xet["xet_cache"]).parent == tmp_path / "xet" / "staging"
    assert any(f.startswith("logs") for f in xet["xet_files"]), xet["xet_files"]
    assert xet["staging_after"] == [] and not xet["hf_home_xet"]

    server.log.clear()
    http = run_xet_job(tmp_path, "http", HF_HUB_DISABLE_XET="1")
    routes = [(r["method"], r["route"], r.get("file")) for r in server.log]
    assert "error" not in http and "model.safetensors" in http["files"]
    assert ("GET", "resolve", "model.safetensors") in routes
    assert not any(route in ("xet-token", "cas") for _, route, _ in routes)
    assert http["staging_after"] == [] and not http["hf_home_xet"]
    assert tree == []
