"""A Hugging Face hub on loopback for the tests.

Serves model and dataset repositories, each a set of branches whose files lie in folders on
disk, through the endpoints the unmodified ``huggingface_hub`` and ``datasets`` clients call
(set ``HF_ENDPOINT=http://127.0.0.1:PORT``):

- ``GET /api/{models|datasets}/{repo}[/revision/{rev}]``: ``id``, ``sha``, ``siblings``...
- ``GET /api/{models|datasets}/{repo}/tree/{rev}[/{dir}]?recursive=&expand=``
- ``POST /api/{models|datasets}/{repo}/paths-info/{rev}`` (form ``paths``, ``expand``)
- ``GET /api/{models|datasets}/{repo}/refs``
- ``HEAD``/``GET /[datasets/]{repo}/resolve/{rev}/{path}``, ranges answered with 206
- errors as the hub gives them: 404 with ``X-Error-Code`` RepoNotFound, RevisionNotFound or
  EntryNotFound.

Large files (weights, compressed data) are LFS files: the tree gives their sha256 under
``lfs.oid`` and ``resolve`` answers with ``X-Linked-Etag``/``X-Linked-Size``, as the hub does
for LFS files; other files carry their git blob sha1. Each branch is a commit of its own (a
sha1 of the branch name and its files), so two branches that serve the same weights have
different commits and the same LFS sha256, as on the hub.

With :attr:`LoopbackHub.xet` set, it answers as a Xet-backed hub does for the parts the
client reads before choosing how to download: tree entries of LFS files carry ``xetHash``
beside ``lfs``, ``resolve`` answers carry ``X-Xet-Hash`` and a ``Link: <…/xet-read-token/…>;
rel="xet-auth"``, and ``GET /api/{models|datasets}/{repo}/xet-read-token/{rev}`` gives a
token and a content-store address (``/cas``). The content store holds no chunks (404), so a
download through Xet fails there, after the requests that show the client chose it.

Faults are injected per test with :meth:`LoopbackHub.inject`: 429 with ``Retry-After``, a
status such as 500, or a body cut short. Rate limits are set with :meth:`LoopbackHub.limit`:
fixed windows of N calls per T seconds in the hub's two buckets, ``api`` (``/api/`` routes)
and ``resolve`` (file downloads and their HEAD requests); every answer in a limited bucket
carries the hub's ``RateLimit`` and ``RateLimit-Policy`` headers, and a call past the
window's budget is answered 429 with ``Retry-After``, as the hub does. Every request is
recorded (:attr:`LoopbackHub.log`), with its bucket and time. Binds to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".zst", ".parquet", ".gz", ".npz")
LAST_MODIFIED = "2024-04-01T00:00:00.000Z"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Entry:
    path: str
    file: Path
    size: int
    oid: str  # git blob sha1 (regular file) or sha256 (LFS)
    lfs: bool


@dataclass
class Branch:
    name: str
    commit: str
    files: dict[str, Entry]


@dataclass
class Repo:
    kind: str  # "model" or "dataset"
    repo_id: str
    branches: dict[str, Branch] = field(default_factory=dict)

    def resolve(self, revision: str) -> Branch | None:
        if revision in self.branches:
            return self.branches[revision]
        for b in self.branches.values():
            if b.commit == revision:
                return b
        return None


def scan_branch(name: str, folder: Path) -> Branch:
    files = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        lfs = f.suffix in LFS_SUFFIXES
        oid = file_sha256(f) if lfs else git_blob_sha1(f.read_bytes())
        files[rel] = Entry(rel, f, f.stat().st_size, oid, lfs)
    commit = hashlib.sha1(
        json.dumps([name, [(e.path, e.oid) for e in files.values()]]).encode()
    ).hexdigest()
    return Branch(name, commit, files)


@dataclass
class Fault:
    """Answer matching requests with a fault, ``times`` times (None: always)."""

    # "429", "status", "cut" (half the body, then hang up), "flip" (3 bytes altered),
    # "norange" (the Range header ignored: the whole file, 200)
    kind: str
    pattern: str  # a regex searched in "METHOD path"
    times: int | None = 1
    status: int = 500
    retry_after: int = 1


@dataclass
class Window:
    """A fixed-window rate limit: ``calls`` per ``seconds``, windows starting at the first
    call. Calls answered 429 are not counted against the window."""

    bucket: str
    calls: int
    seconds: float
    start: float = 0.0
    used: int = 0

    def take(self, now: float) -> tuple[bool, int, int]:
        """(allowed, remaining, seconds until the window resets)."""
        if self.used == 0 or now >= self.start + self.seconds:
            self.start, self.used = now, 0
        reset = max(1, math.ceil(self.start + self.seconds - now))
        if self.used >= self.calls:
            return False, 0, reset
        self.used += 1
        return True, self.calls - self.used, reset

    def headers(self, remaining: int, reset: int) -> dict[str, str]:
        return {
            "RateLimit": f'"{self.bucket}";r={remaining};t={reset}',
            "RateLimit-Policy": f'"fixed window";"{self.bucket}";q={self.calls};w={self.seconds:g}',
        }


class LoopbackHub:
    """Repositories under ``root/{models,datasets}/{org}/{name}/{branch}/``, served on
    127.0.0.1. A branch folder named ``refs--pr--1`` is the branch ``refs/pr/1``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.log: list[dict] = []
        self.faults: list[Fault] = []
        self.windows: dict[str, Window] = {}
        self.xet = False  # answer as a Xet-backed hub (see HubHandler.xet_headers)
        self._lock = threading.Lock()
        self.rescan()

    # --- content -------------------------------------------------------------------------

    def rescan(self) -> None:
        repos = {}
        for kind in ("model", "dataset"):
            base = self.root / f"{kind}s"
            for repo_dir in sorted(base.glob("*/*")) if base.is_dir() else []:
                repo_id = repo_dir.relative_to(base).as_posix()
                repo = Repo(kind, repo_id)
                for branch_dir in sorted(p for p in repo_dir.iterdir() if p.is_dir()):
                    name = branch_dir.name.replace("--", "/")
                    repo.branches[name] = scan_branch(name, branch_dir)
                repos[(kind, repo_id)] = repo
        self.repos = repos

    def add_branch(self, kind: str, repo_id: str, branch: str, files: dict[str, bytes | Path]):
        folder = self.root / f"{kind}s" / repo_id / branch.replace("/", "--")
        folder.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                shutil.copyfile(content, target)
        repo = self.repos.setdefault((kind, repo_id), Repo(kind, repo_id))
        repo.branches[branch] = scan_branch(branch, folder)
        return repo.branches[branch]

    def inject(self, kind: str, pattern: str, times: int | None = 1, **kw) -> Fault:
        fault = Fault(kind, pattern, times, **kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def limit(self, bucket: str, calls: int, seconds: float) -> Window:
        """Rate-limit the ``api`` or ``resolve`` bucket to ``calls`` per ``seconds``."""
        if bucket not in ("api", "resolve"):
            raise ValueError(f"unknown bucket {bucket!r}: api or resolve")
        with self._lock:
            self.windows[bucket] = Window(bucket, calls, seconds)
            return self.windows[bucket]

    def clear(self) -> None:
        """No faults, no rate limits, not Xet-backed, an empty log."""
        with self._lock:
            self.faults.clear()
            self.windows.clear()
            self.log.clear()
            self.xet = False

    def take_call(self, bucket: str | None) -> tuple[bool, dict[str, str]]:
        """Count one call in ``bucket``'s window: (allowed, the RateLimit headers to send)."""
        with self._lock:
            window = self.windows.get(bucket)
            if window is None:
                return True, {}
            allowed, remaining, reset = window.take(time.monotonic())
            headers = window.headers(remaining, reset)
            if not allowed:
                headers["Retry-After"] = str(reset)
            return allowed, headers

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times != 0 and re.search(fault.pattern, f"{method} {path}"):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # --- queries on the log --------------------------------------------------------------

    def downloads(self) -> list[dict]:
        """File bodies sent (GET on resolve, 200 or 206)."""
        return [
            r
            for r in self.log
            if r["method"] == "GET" and r["route"] == "resolve" and r["status"] in (200, 206)
        ]

    # --- serving -------------------------------------------------------------------------

    def serve(self, port: int = 0) -> ThreadingHTTPServer:
        hub = self

        class Handler(HubHandler):
            pass

        Handler.hub = hub
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self.httpd

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def bucket_of(path: str) -> str | None:
    """The hub's rate-limit bucket of a request path: ``api`` or ``resolve``."""
    if path.startswith("/api/"):
        return "api"
    if RESOLVE.match(path):
        return "resolve"
    return None


API = re.compile(r"^/api/(models|datasets)/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
RESOLVE = re.compile(r"^/(?:(?P<ds>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rest>.+)$")


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str):
        self.status, self.code, self.message = status, code, message


class HubHandler(BaseHTTPRequestHandler):
    hub: LoopbackHub
    protocol_version = "HTTP/1.1"
    bucket: str | None = None
    rate_headers: dict[str, str] = {}  # noqa: RUF012 - set per request in dispatch

    def log_message(self, *args):  # quiet: requests go to hub.log
        pass

    # --- plumbing ------------------------------------------------------------------------

    def record(self, route: str, status: int, sent: int = 0, **extra) -> None:
        with self.hub._lock:
            self.hub.log.append(
                {
                    "method": self.command,
                    "path": unquote(urlsplit(self.path).path),
                    "route": route,
                    "status": status,
                    "bytes": sent,
                    "bucket": self.bucket,
                    "time": time.monotonic(),
                    **extra,
                }
            )

    def reply_json(self, obj, status=200, headers=None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**self.rate_headers, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_error(self, exc: HubError, route: str) -> None:
        headers = {"X-Error-Code": exc.code} if exc.code else {}
        headers["X-Error-Message"] = exc.message
        self.record(route, exc.status)
        self.reply_json({"error": exc.message}, exc.status, headers)

    def do_HEAD(self):
        self.dispatch()

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def dispatch(self) -> None:
        url = urlsplit(self.path)
        # The path's segments are URL-encoded (a revision "refs/pr/1" arrives as refs%2Fpr%2F1).
        raw_path = url.path
        query = parse_qs(url.query)
        body = b""
        if self.command == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        self.bucket = bucket_of(raw_path)
        self.rate_headers = {}
        allowed, self.rate_headers = self.hub.take_call(self.bucket)
        if not allowed:
            self.record("ratelimit", 429, reset=int(self.rate_headers["Retry-After"]))
            return self.reply_json({"error": "429 Too Many Requests: rate limit reached"}, 429)
        fault = self.hub.take_fault(self.command, unquote(raw_path))
        if fault is not None and fault.kind not in ("cut", "flip", "norange"):
            self.record("fault", 429 if fault.kind == "429" else fault.status)
            if fault.kind == "429":
                self.reply_json(
                    {"error": "rate limited"}, 429, {"Retry-After": str(fault.retry_after)}
                )
            else:
                self.reply_json({"error": "injected failure"}, fault.status)
            return
        route = "other"
        try:
            if raw_path == "/api/agent-harnesses":
                route = "agent-harnesses"
                raise HubError(404, None, "not served here")
            if raw_path.startswith("/cas/"):
                route = "cas"  # Xet's content store: the loopback holds no chunks
                raise HubError(404, None, "the loopback hub serves no Xet chunks")
            m = API.match(raw_path)
            if m:
                kind = m.group(1)[:-1]
                route = "api"
                return self.api(kind, unquote(m.group("repo")), m.group("rest") or "", query, body)
            m = RESOLVE.match(raw_path)
            if m:
                kind = "dataset" if m.group("ds") else "model"
                route = "resolve"
                return self.resolve(kind, unquote(m.group("repo")), m.group("rest"), fault)
            raise HubError(404, None, f"no route for {self.command} {raw_path}")
        except HubError as exc:
            self.reply_error(exc, route)

    # --- repositories --------------------------------------------------------------------

    def repo(self, kind: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((kind, repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository Not Found for url: {repo_id}")
        return repo

    def branch(self, repo: Repo, revision: str) -> Branch:
        branch = repo.resolve(revision)
        if branch is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return branch

    def api(self, kind: str, repo_id: str, rest: str, query: dict, body: bytes) -> None:
        repo = self.repo(kind, repo_id)
        parts = rest.split("/", 2)[1:] if rest else []
        if not parts or parts[0] == "revision":
            revision = unquote(parts[1]) if len(parts) > 1 else "main"
            info = self.info(repo, self.branch(repo, revision))
            self.record("info", 200)  # before the reply: a test that counts may read at once
            return self.reply_json(info)
        if parts[0] in ("xet-read-token", "xet-write-token"):
            # A Xet access token and the content store's address, as headers.
            self.record("xet-token", 200)
            return self.reply_json(
                {},
                headers={
                    "X-Xet-Cas-Url": f"{self.hub.endpoint}/cas",
                    "X-Xet-Access-Token": "loopback",
                    "X-Xet-Token-Expiration": str(int(time.time()) + 3600),
                },
            )
        if parts[0] == "refs":
            branches = [
                {"name": b.name, "ref": f"refs/heads/{b.name}", "targetCommit": b.commit}
                for b in repo.branches.values()
                if not b.name.startswith("refs/")
            ]
            self.record("refs", 200)  # before the reply: a test that counts may read at once
            return self.reply_json({"branches": branches, "tags": [], "converts": []})
        if parts[0] == "tree":
            rev_and_dir = parts[1] if len(parts) > 1 else "main"
            revision, _, folder = rev_and_dir.partition("/")
            branch = self.branch(repo, unquote(revision))
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries = self.tree(branch, unquote(folder).strip("/"), recursive)
            self.record("tree", 200)
            return self.reply_json(entries)
        if parts[0] == "paths-info":
            branch = self.branch(repo, unquote(parts[1]))
            form = parse_qs(body.decode())
            if not form and body:
                form = json.loads(body)
            paths = form.get("paths", [])
            paths = [paths] if isinstance(paths, str) else paths
            out = []
            for p in paths:
                p = p.strip("/")
                if p in branch.files:
                    out.append(self.file_entry(branch.files[p], self.hub.xet))
                elif any(f.startswith(p + "/") for f in branch.files):
                    out.append(
                        {"type": "directory", "oid": dir_oid(branch, p), "size": 0, "path": p}
                    )
            self.record("paths-info", 200)
            return self.reply_json(out)
        raise HubError(404, None, f"no API route {rest}")

    def info(self, repo: Repo, branch: Branch) -> dict:
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": branch.commit,
            "lastModified": LAST_MODIFIED,
            "createdAt": LAST_MODIFIED,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "cardData": {},
            "siblings": [{"rfilename": p} for p in branch.files],
            "usedStorage": sum(e.size for e in branch.files.values()),
        }

    @staticmethod
    def file_entry(e: Entry, xet: bool = False) -> dict:
        out = {
            "type": "file",
            "oid": e.oid if not e.lfs else git_lfs_pointer_oid(e),
            "size": e.size,
            "path": e.path,
        }
        if e.lfs:
            out["lfs"] = {"oid": e.oid, "size": e.size, "pointerSize": len(lfs_pointer(e))}
            if xet:
                out["xetHash"] = xet_hash(e)
        return out

    def tree(self, branch: Branch, folder: str, recursive: bool) -> list[dict]:
        prefix = folder + "/" if folder else ""
        if folder and not any(p.startswith(prefix) for p in branch.files):
            raise HubError(404, "EntryNotFound", f"{folder} does not exist on {branch.name}")
        out, dirs = [], set()
        for p, e in branch.files.items():
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix) :]
            parts = rest.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if (recursive or i == 1) and d not in dirs:
                    dirs.add(d)
                    out.append(
                        {"type": "directory", "oid": dir_oid(branch, d), "size": 0, "path": d}
                    )
            if recursive or len(parts) == 1:
                out.append(self.file_entry(e, self.hub.xet))
        return out

    def resolve(self, kind: str, repo_id: str, rest: str, fault: Fault | None) -> None:
        repo = self.repo(kind, repo_id)
        # The revision may be URL-encoded with its slashes ("refs%2Fpr%2F1").
        revision, _, path = rest.partition("/")
        revision, path = unquote(revision), unquote(path)
        branch = self.branch(repo, revision)
        entry = branch.files.get(path)
        if entry is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}")
        headers = {
            "X-Repo-Commit": branch.commit,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "ETag": f'"{entry.oid}"',  # the hub: the sha256 of LFS files, else the blob id
            "Last-Modified": "Mon, 01 Apr 2024 00:00:00 GMT",
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.oid}"'
            headers["X-Linked-Size"] = str(entry.size)
            if self.hub.xet:
                # The hub names a Xet-backed file's hash and where to get a read token.
                api = "/api/" + ("datasets" if kind == "dataset" else "models")
                token = f"{self.hub.endpoint}{api}/{repo_id}/xet-read-token/{branch.commit}"
                headers["X-Xet-Hash"] = xet_hash(entry)
                headers["Link"] = f'<{token}>; rel="xet-auth"'
        start, end, status = 0, entry.size - 1, 200
        rng = self.headers.get("Range")
        if fault is not None and fault.kind == "norange":
            rng, fault = None, None
        if rng:
            m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
            if not m:
                raise HubError(416, None, f"bad range {rng}")
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), entry.size - 1) if m.group(2) else entry.size - 1
            else:  # a suffix range: the last N bytes
                start = max(entry.size - int(m.group(2)), 0)
            if start >= entry.size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{entry.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return self.record("resolve", 416)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        length = end - start + 1
        self.send_response(status)
        for k, v in {**self.rate_headers, **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        sent = 0
        cut = fault is not None and fault.kind == "cut"
        if self.command == "GET":
            flip = start + length // 2 if fault is not None and fault.kind == "flip" else None
            with entry.file.open("rb") as fh:
                fh.seek(start)
                todo = length if not cut else length // 2  # "cut": half, then hang up
                while todo > 0:
                    block = bytearray(fh.read(min(todo, 1 << 20)))
                    if not block:
                        break
                    at = None if flip is None else flip - (start + sent)
                    if at is not None and 0 <= at < len(block):  # "flip": the same length,
                        for i in range(at, min(at + 3, len(block))):  # the true hash claimed
                            block[i] ^= 0xFF
                    self.wfile.write(block)
                    sent += len(block)
                    todo -= len(block)
            if cut:
                self.wfile.flush()
                self.close_connection = True
                self.record(
                    "resolve", status, sent, cut=True, repo=repo_id, commit=branch.commit, file=path
                )
                return
        self.record("resolve", status, sent, repo=repo_id, commit=branch.commit, file=path)


def xet_hash(e: Entry) -> str:
    """A stand-in for the Xet hash of an LFS file (64 hex digits, as the hub's)."""
    return hashlib.sha256(b"xet\0" + e.oid.encode()).hexdigest()


def lfs_pointer(e: Entry) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{e.oid}\nsize {e.size}\n".encode()
    )


def git_lfs_pointer_oid(e: Entry) -> str:
    return git_blob_sha1(lfs_pointer(e))


def dir_oid(branch: Branch, folder: str) -> str:
    inside = sorted((p, e.oid) for p, e in branch.files.items() if p.startswith(folder + "/"))
    return hashlib.sha1(json.dumps(inside).encode()).hexdigest()


def main() -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Serve a folder of repositories on 127.0.0.1")
    parser.add_argument("root")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    hub = LoopbackHub(args.root)
    hub.serve(args.port)
    print(f"HF_ENDPOINT={hub.endpoint}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.shutdown()


if __name__ == "__main__":
    main()
