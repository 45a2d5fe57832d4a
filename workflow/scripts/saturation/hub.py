"""Checkpoint suites on the Hugging Face hub: what each revision serves, known before any
download; the revisions read through the user's Hugging Face cache; retries with backoff.

The *revision manifest* of a model lists every scheduled revision with its commit and the
sha256 of each weights file, as the hub's tree gives them for LFS files (one request per
revision, no weights downloaded). Revisions that serve the same weights as another scheduled
revision (pythia-2.8b serves final-era weights on 86 branches, step0 = step1 on every Pythia
model) or as the reference revision (``main``) where they should not, are marked duplicates
before anything is fetched: no member of such a group is trusted as "the original" unless
the config lists its step in ``checkpoints.trusted_steps``.

Weights are read through the Hugging Face cache (``HF_HOME``/``HF_HUB_CACHE``) at the commit
the manifest recorded, so a revision already there is not fetched again, ``HF_HUB_OFFLINE=1``
works once the cache is filled (the ``prefetch`` target), and the weights measured are the
weights the manifest names even if the branch moves. With ``checkpoints.hub.evict`` a
revision not already in the cache is fetched into a job-private folder and deleted when the
job ends, so the disk holds only the checkpoints of the jobs running at once; the Xet
client's cache goes there too (``bound_xet_cache``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from saturation.io import write_parquet
from saturation.loading import CheckpointError, allow_patterns, weights_files
from saturation.retry import with_backoff
from saturation.tables import MANIFEST_SCHEMA

log = logging.getLogger(__name__)

# --- the manifest ----------------------------------------------------------------------------


def weights_of(files: dict[str, dict]) -> tuple[str, dict[str, dict]]:
    """The weights format of a file listing and its weights files (safetensors first)."""
    safetensors = {p: f for p, f in files.items() if p.endswith(".safetensors")}
    if safetensors:
        return "safetensors", safetensors
    pickles = {p: f for p, f in files.items() if p.endswith(".bin") and "/" not in p}
    if pickles:
        return "bin", pickles
    return "none", {}


def weights_digest(weights: dict[str, dict]) -> str | None:
    """One digest of a revision's weights: the sha256 of each file (the git blob id where the
    hub gives no LFS sha256), with its name."""
    if not weights:
        return None
    h = hashlib.sha256()
    for path in sorted(weights):
        h.update(f"{path}\0{weights[path]['sha256']}\n".encode())
    return h.hexdigest()


def list_revision(api, repo_id: str, commit: str, retry: dict) -> dict[str, dict]:
    """The root files of one commit with their size and sha256, from the hub's tree."""
    from huggingface_hub.hf_api import RepoFile

    entries = with_backoff(
        lambda: list(api.list_repo_tree(repo_id, revision=commit, recursive=False)),
        f"{repo_id}@{commit[:12]}: tree",
        **retry,
    )
    files = {}
    for e in entries:
        if isinstance(e, RepoFile):
            sha = e.lfs.sha256 if e.lfs is not None else e.blob_id
            files[e.path] = {"size": e.size, "sha256": sha}
    return files


def build_manifest(
    model: str,
    repo_id: str,
    revisions: dict[int, str],
    trusted_steps: list[int],
    reference: str | None,
    retry: dict,
    api=None,
) -> pa.Table:
    """One row per scheduled revision: its commit, weights format and digest, and whether
    it is missing or serves the weights of another revision."""
    from huggingface_hub import HfApi

    api = api or HfApi()
    branches = repo_refs(api, repo_id, retry)
    rows = []
    for step in sorted(revisions):
        commit = commit_of(api, repo_id, revisions[step], branches, retry)
        rows.append(revision_row(api, model, repo_id, step, revisions[step], commit, retry))
    reference_digest = None
    if reference and reference in branches:
        ref_weights = weights_of(list_revision(api, repo_id, branches[reference], retry))[1]
        reference_digest = weights_digest(ref_weights)
    flag_duplicate_revisions(rows, reference_digest, max(revisions), set(trusted_steps))
    dup = [r["step"] for r in rows if r["status"] == "duplicate"]
    if dup:
        log.warning(
            "%s: steps %s serve the weights of another revision; they are not measured "
            "(list trusted ones in checkpoints.trusted_steps)",
            repo_id,
            dup,
        )
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def repo_refs(api, repo_id: str, retry: dict) -> dict[str, str]:
    """{branch or tag: commit} of a hub repo; a missing repo, or an offline machine, named."""
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        refs = with_backoff(lambda: api.list_repo_refs(repo_id), f"{repo_id}: refs", **retry)
    except RepositoryNotFoundError as exc:
        raise CheckpointError(
            f"repository '{repo_id}' not found on the hub (or private); "
            "check checkpoints.hub.models"
        ) from exc
    except OfflineModeIsEnabled as exc:
        raise CheckpointError(
            f"the revision manifest of {repo_id} needs the hub, and HF_HUB_OFFLINE is set: "
            "run the prefetch target where the network is first"
        ) from exc
    branches = {b.name: b.target_commit for b in refs.branches}
    branches.update({t.name: t.target_commit for t in refs.tags})
    return branches


def commit_of(api, repo_id: str, revision: str, branches: dict, retry: dict) -> str | None:
    """The commit a revision names: a listed branch or tag's, else the hub's answer for a
    commit sha or a ref the listing does not show; None where it does not exist."""
    from huggingface_hub.errors import RevisionNotFoundError

    if revision in branches:
        return branches[revision]
    try:
        info = with_backoff(
            lambda: api.model_info(repo_id, revision=revision),
            f"{repo_id}@{revision}: info",
            **retry,
        )
    except RevisionNotFoundError:
        return None
    return info.sha


def revision_row(api, model, repo_id, step, revision, commit: str | None, retry) -> dict:
    """A scheduled revision's manifest row, its weights files listed where it exists."""
    row = {
        "model": model,
        "repo_id": repo_id,
        "step": step,
        "revision": revision,
        "commit": commit,
        "status": "ok" if commit else "missing",
        "weights_format": "none",
        "weights_sha256": None,
        "weights_bytes": 0,
        "weights_files": [],
        "duplicate_steps": [],
        "same_as_reference": False,
    }
    if not commit:
        log.warning("%s: revision '%s' (step %d) does not exist", repo_id, revision, step)
        return row
    fmt, weights = weights_of(list_revision(api, repo_id, commit, retry))
    row["weights_format"] = fmt
    row["weights_sha256"] = weights_digest(weights)
    row["weights_bytes"] = sum(f["size"] for f in weights.values())
    row["weights_files"] = [{"path": p, **weights[p]} for p in sorted(weights)]
    return row


def flag_duplicate_revisions(rows, reference_digest, final_step: int, trusted: set) -> None:
    """Each row's other steps with the same weights, whether it serves the reference's, and
    status ``duplicate`` where either says it does not serve weights of its own (trusted
    steps excepted), in place."""
    digests = {}
    for row in rows:
        if row["weights_sha256"]:
            digests.setdefault(row["weights_sha256"], []).append(row["step"])
    for row in rows:
        digest = row["weights_sha256"]
        if digest is None:
            continue
        row["duplicate_steps"] = [s for s in digests[digest] if s != row["step"]]
        row["same_as_reference"] = digest == reference_digest
        # The final step is expected to serve the reference's weights; any other step that
        # does serves weights from the end of training, not its own.
        misplaced = row["same_as_reference"] and row["step"] != final_step
        if (row["duplicate_steps"] or misplaced) and row["step"] not in trusted:
            row["status"] = "duplicate"


def revision_manifest(model, repo_id, revisions, trusted_steps, reference, retry, out_path) -> None:
    """``revisions``: {step: branch name}, as the config's entry for the model names them."""
    revisions = {int(s): name for s, name in revisions.items()}
    table = build_manifest(model, repo_id, revisions, trusted_steps, reference, retry)
    write_parquet(table, out_path)
    counts = {
        s: table.column("status").to_pylist().count(s) for s in ("ok", "duplicate", "missing")
    }
    log.info("%s: %s", repo_id, counts)


def manifest_row(manifest_path: str | Path, step: int) -> dict:
    rows = pq.read_table(manifest_path, schema=MANIFEST_SCHEMA).to_pylist()
    for row in rows:
        if row["step"] == step:
            return row
    raise CheckpointError(f"step {step} is not in the revision manifest {manifest_path}")


# --- acquisition -----------------------------------------------------------------------------


def describe_revision(row: dict) -> str:
    return f"{row['repo_id']} at revision {row['revision']} (step {row['step']})"


def check_usable(row: dict, allow_pickle: bool) -> None:
    """Refuse, before any download, a revision that is missing, a duplicate or pickles only."""
    where = describe_revision(row)
    if row["status"] == "missing":
        raise CheckpointError(f"revision '{row['revision']}' does not exist in {row['repo_id']}")
    if row["status"] == "duplicate":
        raise CheckpointError(
            f"{where} serves the same weights as steps {row['duplicate_steps']}"
            + (" and the reference revision" if row["same_as_reference"] else "")
            + "; it is not trusted (list it in checkpoints.trusted_steps to use it)"
        )
    if row["weights_format"] == "bin" and not allow_pickle:
        raise CheckpointError(
            f"{where} serves only PyTorch .bin weights, which are pickles; refusing them. Set "
            "checkpoints.allow_pickle: true to read them with torch's weights-only unpickler, "
            "which loads tensors and refuses anything else."
        )
    if row["weights_format"] == "none":
        raise CheckpointError(f"{where} holds no weights files")


@contextlib.contextmanager
def hub_checkpoint(row: dict, allow_pickle: bool, evict: bool, retry: dict, staging_root=None):
    """The folder of one manifest revision, read through the Hugging Face cache.

    Yields a local folder with config and weights, checked: each weights file has the digest
    the hub's tree gave for it (a file that does not is downloaded once more, then refused).
    With ``evict``, a revision not already in the cache is fetched into a private folder that
    is deleted on exit.
    """
    check_usable(row, allow_pickle)
    for attempt in (1, 2):
        folder, staged = fetch_revision(row, allow_pickle, evict, retry, staging_root)
        try:
            verify_download(Path(folder), row, in_cache=staged is None)
            break
        except AlteredDownload as exc:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
            if attempt == 2:
                raise
            log.warning("%s; downloading it once more", exc)
    try:
        weights_files(folder, allow_pickle, where=describe_revision(row))
        yield Path(folder)
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
            log.info("evicted %s", describe_revision(row))


def cached_whole(folder: Path, row: dict, patterns: list[str]) -> bool:
    """Whether the Hugging Face cache's snapshot of a revision holds what a job reads: its
    config and every weights file of the manifest that ``patterns`` fetch. A snapshot may
    hold only some files: a tokenizer read from the same repo makes one."""
    from fnmatch import fnmatch

    wanted = [
        e["path"]
        for e in row.get("weights_files") or []
        if any(fnmatch(e["path"], p) for p in patterns)
    ]
    if not (folder / "config.json").is_file():
        return False
    if wanted:
        return all((folder / p).is_file() for p in wanted)
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def fetch_revision(row: dict, allow_pickle: bool, evict: bool, retry: dict, staging_root=None):
    """(folder, staged) of one manifest revision: the Hugging Face cache's snapshot, or with
    ``evict`` and the revision not cached, a private folder under ``staging_root`` (staged,
    the caller deletes it). Errors name the revision."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = describe_revision(row)
    fetch = {
        "repo_id": row["repo_id"],
        "revision": row["commit"],  # the weights the manifest names, even if the branch moves
        "allow_patterns": allow_patterns(allow_pickle, row["weights_format"]),
    }
    try:
        if evict:
            try:
                cached = snapshot_download(**fetch, local_files_only=True)
            except LocalEntryNotFoundError:
                cached = None
            if cached is not None and cached_whole(Path(cached), row, fetch["allow_patterns"]):
                return cached, None
            # not in the cache, or only some of its files (its tokenizer): staged
            staging_root = Path(staging_root or tempfile.gettempdir())
            staging_root.mkdir(parents=True, exist_ok=True)
            sweep_dead_jobs(staging_root)
            bound_xet_cache(staging_root)
            staged = Path(tempfile.mkdtemp(prefix=f"checkpoint-{job_tag()}-", dir=staging_root))
            try:
                folder = with_backoff(
                    lambda: snapshot_download(**fetch, local_dir=str(staged)), where, **retry
                )
            except BaseException:  # a failed download leaves nothing on the disk
                shutil.rmtree(staged, ignore_errors=True)
                raise
            return folder, staged
        sweep_empty_downloads(row["repo_id"])
        return with_backoff(lambda: snapshot_download(**fetch), where, **retry), None
    except RevisionNotFoundError as exc:
        raise CheckpointError(f"commit {row['commit']} of {where} is not on the hub") from exc
    except GatedRepoError as exc:
        raise CheckpointError(f"{row['repo_id']} is gated: accept its terms and log in") from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(f"repository '{row['repo_id']}' not found on the hub") from exc
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(
            f"{where} is not in the Hugging Face cache and the hub cannot be reached "
            "(HF_HUB_OFFLINE is set?): run the prefetch target on a machine with the network"
        ) from exc
    except HfHubHTTPError as exc:
        raise CheckpointError(f"download of {where} failed: {exc}") from exc
    except RuntimeError as exc:  # what hf_xet raises
        raise CheckpointError(
            f"download of {where} failed: {exc}. Where the hub's Xet storage is the cause, "
            "HF_HUB_DISABLE_XET=1 downloads over plain HTTP"
        ) from exc


class AlteredDownload(CheckpointError):
    """A downloaded file whose bytes do not have the digest the hub's tree gave for it."""


def content_digest(path: Path, sha256: bool) -> str:
    """A file's sha256, or its git blob id (the hub's digest of a file not in LFS)."""
    if sha256:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def forget_cached(path: Path) -> str:
    """Remove a file of a Hugging Face cache snapshot and the blob it links to, so that the
    next read downloads it again; says what it did."""
    blob = path.resolve()
    for p in {blob, path}:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return (
        f"it is removed from the Hugging Face cache ({blob}), and the next run downloads it again"
    )


def verify_download(folder: Path, row: dict, in_cache: bool) -> None:
    """Every weights file of a downloaded revision against the digest the hub's tree gave
    for it when the manifest was made (sha256 for LFS files, the git blob id otherwise), so
    that bytes altered on the way, or on the disk since, are never measured. A bad file in
    the cache is removed from it, and the error names it."""
    for entry in row.get("weights_files") or []:
        path = folder / entry["path"]
        if not path.is_file():  # a format allow_patterns does not fetch (.bin beside .safetensors)
            continue
        got = content_digest(path, sha256=len(entry["sha256"]) == 64)
        if got != entry["sha256"]:
            fate = forget_cached(path) if in_cache else "it was not kept"
            raise AlteredDownload(
                f"{describe_revision(row)}: {entry['path']} has the digest {got}, not the "
                f"{entry['sha256']} the hub's tree gives for it (its bytes were altered on "
                f"the way or on the disk); it is not measured, and {fate}"
            )


def job_tag() -> str:
    """This job's host and process, in the names of the folders it stages."""
    return f"{socket.gethostname()}.{os.getpid()}"


def sweep_dead_jobs(staging_root: Path) -> list[Path]:
    """Remove the staging and Xet folders that jobs on this host left when they were killed
    (their process is gone), before a job stages its own; returns them. Folders of other
    hosts (a cluster's shared disk) are left to their own hosts' jobs."""
    host, removed = socket.gethostname(), []
    for folder in staging_root.glob("*-*"):
        kind, _, rest = folder.name.partition("-")
        owner, _, pid = rest.rpartition("-")[0].rpartition(".")  # mkdtemp's suffix has no -
        if kind not in ("checkpoint", "xet") or owner != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.warning("removed %s, left by a job on this host that was killed", folder)
        except PermissionError:  # alive, another user's
            pass
    return removed


def sweep_empty_downloads(repo_id: str, cache_dir=None) -> list[Path]:
    """Remove the empty ``*.incomplete`` files a killed download left in the Hugging Face
    cache's folder of ``repo_id`` (there is nothing in them to resume from), each only while
    no download holds its blob's lock (the client's ``.locks/<repo>/<blob>.lock``, whether the
    file is ``<blob>.incomplete`` or a process's own ``<blob>.<8 hex>.incomplete``); returns
    them. A partial file with bytes in it is left to the client."""
    from filelock import FileLock, Timeout
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    name = repo_folder_name(repo_id=repo_id, repo_type="model")
    removed = []
    for part in sorted((cache / name / "blobs").glob("*.incomplete")):
        if part.stat().st_size:
            continue
        # <blob>.incomplete, or <blob>.<8 hex>.incomplete: the client's file of one process
        blob = re.sub(r"\.[0-9a-f]{8}$", "", part.name.removesuffix(".incomplete"))
        lock = cache / ".locks" / name / f"{blob}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(lock), timeout=0):
                part.unlink(missing_ok=True)
        except Timeout:  # a download of it is under way
            continue
        removed.append(part)
        log.warning("removed %s, an empty download a killed job left", part)
    return removed


_XET_CACHE: list[Path] = []  # this process's Xet cache in evict mode, once set


def bound_xet_cache(staging_root: Path) -> Path:
    """Keep the Xet client's cache of this job inside the evict mode's staging folder.

    Where the hub serves a file from Xet storage and ``hf_xet`` is installed, the client
    downloads it through Xet, which keeps a chunk cache (xet-runtime's default is 10 GB,
    unless the build disables it), its logs and a staging folder in ``HF_XET_CACHE``
    (``HF_HOME/xet``), outside any job's folder.
    Before the job's first staged download, ``HF_XET_CACHE`` becomes a folder of the job's own
    under ``staging_root``, deleted when the job ends, and the chunk cache is switched off
    (``HF_XET_CHUNK_CACHE_SIZE_BYTES=0``: each revision is read once, so it could only cost
    disk). The Xet client reads both when its session starts, at the job's first Xet download.
    """
    if _XET_CACHE:
        return _XET_CACHE[0]
    folder = Path(tempfile.mkdtemp(prefix=f"xet-{job_tag()}-", dir=staging_root))
    os.environ["HF_XET_CACHE"] = str(folder)
    os.environ["HF_XET_CHUNK_CACHE_SIZE_BYTES"] = "0"
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _XET_CACHE.append(folder)
    return folder


def prefetch_checkpoint(
    manifest: str, step: int, allow_pickle: bool, retry: dict, heads: str | None, out_path
) -> None:
    """Where the network is: the revision of ``manifest`` at ``step`` into the Hugging Face
    cache, or (``heads``, the head store of ``metrics.parts: [spectrum]``) its LM head alone,
    read by range; what was fetched recorded at ``out_path``."""
    row = manifest_row(manifest, step)
    if heads:
        from saturation.ranged import prefetch_head

        prefetch_head(row, retry, heads, out_path, allow_pickle=allow_pickle)
    else:
        prefetch(row, allow_pickle, retry, out_path)


def prefetch(row: dict, allow_pickle: bool, retry: dict, out_path) -> None:
    """Fill the Hugging Face cache with one revision (skipping those not to be measured)."""
    from saturation.io import write_json

    record = {k: row[k] for k in ("repo_id", "revision", "step", "commit", "status")}
    try:
        check_usable(row, allow_pickle)  # what the jobs would refuse is not fetched either
    except CheckpointError as exc:
        log.warning("%s; not fetched", exc)
    else:
        with hub_checkpoint(row, allow_pickle, evict=False, retry=retry) as folder:
            record["snapshot"] = str(folder)
            record["bytes"] = sum(f.stat().st_size for f in Path(folder).iterdir())
    write_json(record, out_path)


@contextlib.contextmanager
def open_checkpoint(checkpoint: str | Path, step: int, hub: dict | None, allow_pickle: bool):
    """A checkpoint folder: ``checkpoint`` itself (local), or (``hub`` set) the revision of
    the manifest ``checkpoint`` at ``step``, read through the Hugging Face cache."""
    if hub is None:
        yield Path(checkpoint)
        return
    row = manifest_row(checkpoint, step)
    with hub_checkpoint(
        row, allow_pickle, hub["evict"], hub["retry"], hub.get("staging")
    ) as folder:
        yield folder
