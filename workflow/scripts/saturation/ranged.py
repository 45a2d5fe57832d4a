"""One tensor of a hub revision read by HTTP range, without the rest of its weights.

A safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's
dtype, shape and ``data_offsets``, relative to the end of the header), then the tensors'
bytes; the hub answers range requests on ``resolve`` URLs. So the LM head of a revision is
read as: the config (a small file, through the Hugging Face cache), each weights file's
header (two ranges: its length, then the header), and the head's own bytes (one range), in
the weights file the index names where the checkpoint is sharded. Every range goes through
the client's HTTP backoff (429s wait for the rate-limit window) and ``saturation.retry``'s
retries; a body shorter than the range asked for is retried.

Before the head is trusted, the headers' tensor names and shapes are checked against the
model the config describes (built on the meta device, no memory): a config of another
architecture, or weights saved incompletely, is refused as the full load refuses them.

Offline (``HF_HUB_OFFLINE=1``) the head is read from a full weights file already in the
Hugging Face cache, or from the *head store* that ``prefetch`` fills in this mode: one small
safetensors file per revision holding the tensors read by range.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import pickle
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from saturation.loading import CheckpointError, UnreadableCheckpoint

log = logging.getLogger(__name__)

# safetensors dtype names and their torch dtypes, by name (torch imported where used)
DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
INDEX = "model.safetensors.index.json"
# Buffers old checkpoints carry that no model parameter reads (transformers drops them too).
IGNORED = re.compile(r"(inv_freq|masked_bias|attn\.bias|attention\.bias)$")


@dataclass
class RangeReader:
    """Byte ranges of one revision's files, counted (``bytes_read``)."""

    repo_id: str
    commit: str
    retry: dict
    bytes_read: int = 0
    requests: int = 0
    where: str = ""

    def read(self, filename: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``filename`` from ``start``."""
        body, first, _ = self.fetch(filename, f"{start}-{start + length - 1}")
        if first != start or len(body) != length:
            raise OSError(f"range {start}+{length} of {filename}: {len(body)} bytes from {first}")
        return body

    def tail(self, filename: str, length: int) -> tuple[bytes, int]:
        """The last ``length`` bytes of ``filename`` (all of it if shorter), and its size."""
        body, _, size = self.fetch(filename, f"-{length}")
        return body, size

    def head(self, filename: str, length: int) -> tuple[bytes, int]:
        """The first ``length`` bytes of ``filename``, and its size."""
        body, first, size = self.fetch(filename, f"0-{length - 1}")
        if first != 0 or len(body) != min(length, size):
            raise OSError(f"bytes 0-{length - 1} of {filename}: {len(body)} bytes from {first}")
        return body, size

    def fetch(self, filename: str, spec: str) -> tuple[bytes, int, int]:
        """The bytes of ``Range: bytes={spec}``, their first offset and the file's size, as
        the 206 answer's ``Content-Range`` gives them. The answer is streamed and never
        read past the range asked: one that is not a 206 for at most that range (a server
        that ignores ``Range`` sends the whole file with a 200) is refused before its body is
        read; a body cut short is an ``OSError``, retried. One layer of retries: the
        client's own are off."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import (
            build_hf_headers,
            hf_raise_for_status,
            http_stream_backoff,
        )

        from saturation.retry import with_backoff

        url = hf_hub_url(self.repo_id, filename, revision=self.commit)
        headers = {**build_hf_headers(), "Range": f"bytes={spec}"}
        first, _, last = spec.partition("-")
        asked = int(last) - int(first) + 1 if first else int(last)

        def get() -> tuple[bytes, int, int]:
            self.requests += 1
            with http_stream_backoff(
                "GET", url, headers=headers, follow_redirects=True, max_retries=0
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
                m = re.match(r"bytes (\d+)-(\d+)/(\d+)", response.headers.get("Content-Range", ""))
                if response.status_code != 206 or m is None:
                    raise CheckpointError(
                        f"bytes {spec} of {filename}: the server answered {response.status_code} "
                        "without a byte range (it does not serve ranges); nothing more is read. "
                        "Measure with metrics.parts [forward, spectrum], which downloads whole files"
                    )
                start, end, size = map(int, m.groups())
                if end - start + 1 > asked:
                    raise CheckpointError(
                        f"bytes {spec} of {filename}: the server answered {end - start + 1} "
                        f"bytes, more than the {asked} asked; nothing more is read"
                    )
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > end - start + 1:
                        raise OSError(f"bytes {spec} of {filename}: a body longer than its range")
            if len(body) != end - start + 1:
                raise OSError(f"bytes {spec} of {filename}: {len(body)} of {end - start + 1}")
            return bytes(body), start, size

        body, start, size = with_backoff(
            get, f"{self.where or self.repo_id}: {filename}", **self.retry
        )
        self.bytes_read += len(body)
        return body, start, size


@dataclass
class Header:
    """A safetensors file's tensors (name: dtype, shape, absolute byte range)."""

    filename: str
    tensors: dict[str, dict] = field(default_factory=dict)


def read_header(reader: RangeReader, filename: str) -> Header:
    """A safetensors file's tensors from its header, read by range and validated as the
    full loader validates it (``loading.safetensors_tensors``): a ranged read never trusts
    an offset the file's own layout contradicts."""
    from saturation.loading import MAX_HEADER, safetensors_tensors

    first, size = reader.head(filename, 8)
    (n,) = struct.unpack("<Q", first)
    if n > min(MAX_HEADER, size - 8):
        raise UnreadableCheckpoint(
            f"{reader.where}: {filename} declares a header of {n} bytes in a file of {size}; "
            "not a safetensors file?"
        )
    try:
        raw = json.loads(reader.read(filename, 8, n))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableCheckpoint(
            f"{reader.where}: corrupt safetensors header in {filename}"
        ) from exc
    tensors = safetensors_tensors(raw, size - 8 - n, f"{reader.where}: {filename}")
    return Header(filename, {
        name: {"dtype": dtype, "shape": shape, "start": 8 + n + begin, "length": end - begin}
        for name, (dtype, shape, begin, end) in tensors.items()
    })  # fmt: skip


def decode(raw: bytes, dtype: str, shape: tuple, where: str):
    """A torch tensor from a tensor's raw little-endian bytes."""
    import torch

    if dtype not in DTYPES:
        raise UnreadableCheckpoint(f"{where}: tensor dtype {dtype} is not a float type")
    t = torch.frombuffer(bytearray(raw), dtype=getattr(torch, DTYPES[dtype]))
    return t.reshape(shape)


# --- PyTorch .bin files: a zip of pickled storages -------------------------------------------

EOCD, EOCD64_LOCATOR, EOCD64, CENTRAL, LOCAL = (
    b"PK\x05\x06",
    b"PK\x06\x07",
    b"PK\x06\x06",
    b"PK\x01\x02",
    b"PK\x03\x04",
)
STORAGES = {  # torch's typed storage classes, as its pickles name them; the integer and
    # bool ones (a causal mask buffer, position ids) are recorded, never read for the head
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "FloatStorage": "F32",
    "DoubleStorage": "F64",
    "BoolStorage": "BOOL",
    "ByteStorage": "U8",
    "CharStorage": "I8",
    "ShortStorage": "I16",
    "IntStorage": "I32",
    "LongStorage": "I64",
}
MAX_ZIP_DIRECTORY = 64 * 2**20  # a shard of thousands of tensors has a few hundred KB
MAX_PICKLE = 256 * 2**20  # a state dict's pickle: names, shapes, strides (Pythia 12B: 0.1 MB)
ELEMENT = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "BOOL": 1, "U8": 1, "I8": 1, "I16": 2,
           "I32": 4, "I64": 8}  # fmt: skip


def zip_entries(reader, filename: str) -> dict[str, tuple[int, int, int]]:
    """{entry name: (local header offset, stored size, method)} of a zip file, from its
    end-of-central-directory record (zip64 where the file is over 4 GB) and its central
    directory: two or three ranges, whatever the file's size."""
    # The end record is the file's last 22 bytes where there is no comment (torch writes
    # none), with zip64's locator and record before it: 1 KB holds them, else the most a
    # comment can add.
    tail, size = reader.tail(filename, 1024)
    if tail.rfind(EOCD) < 0 and size > len(tail):
        tail, _ = reader.tail(filename, 22 + 65535)
    at = tail.rfind(EOCD)
    if at < 0:
        raise UnreadableCheckpoint(f"{reader.where}: {filename} is not a zip file")
    n, cd_size, cd_offset = struct.unpack("<6xHII", tail[at + 4 : at + 20])
    if 0xFFFFFFFF in (cd_size, cd_offset) or n == 0xFFFF:
        loc = tail.rfind(EOCD64_LOCATOR, 0, at)
        (eocd64,) = struct.unpack("<Q", tail[loc + 8 : loc + 16])
        record = reader.read(filename, eocd64, 56)
        if record[:4] != EOCD64:
            raise UnreadableCheckpoint(f"{reader.where}: {filename}: bad zip64 record")
        n, cd_size, cd_offset = struct.unpack("<28xQQQ", record[4:56])
    if cd_offset + cd_size > size or cd_size > MAX_ZIP_DIRECTORY:
        raise UnreadableCheckpoint(
            f"{reader.where}: {filename}: its zip directory claims {cd_size} bytes at "
            f"{cd_offset}, in a file of {size} (at most {MAX_ZIP_DIRECTORY} are read)"
        )
    directory = reader.read(filename, cd_offset, cd_size)
    entries, p = {}, 0
    for _ in range(n):
        if directory[p : p + 4] != CENTRAL:
            raise UnreadableCheckpoint(f"{reader.where}: {filename}: corrupt zip directory")
        method, csize, _usize, nlen, elen, clen = struct.unpack(
            "<H8xIIHHH", directory[p + 10 : p + 34]
        )
        (offset,) = struct.unpack("<I", directory[p + 42 : p + 46])
        name = directory[p + 46 : p + 46 + nlen].decode()
        extra = directory[p + 46 + nlen : p + 46 + nlen + elen]
        csize, offset = zip64_fields(extra, _usize, csize, offset)
        if offset + csize > size:
            raise UnreadableCheckpoint(
                f"{reader.where}: {filename}: its zip entry {name} claims bytes past the file's end"
            )
        entries[name] = (offset, csize, method)
        p += 46 + nlen + elen + clen
    return entries


def zip64_fields(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int]:
    """The stored size and local header offset, from the zip64 extra field where the
    central directory gives 0xFFFFFFFF."""
    q = 0
    while q + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[q : q + 4])
        if tag == 0x0001:
            values = iter(struct.unpack(f"<{length // 8}Q", extra[q + 4 : q + 4 + length]))
            if usize == 0xFFFFFFFF:
                next(values)
            if csize == 0xFFFFFFFF:
                csize = next(values)
            if offset == 0xFFFFFFFF:
                offset = next(values)
        q += 4 + length
    return csize, offset


def entry_data(reader, filename: str, offset: int) -> int:
    """Where an entry's bytes begin: after its local header."""
    header = reader.read(filename, offset, 30)
    if header[:4] != LOCAL:
        raise UnreadableCheckpoint(f"{reader.where}: {filename}: corrupt zip entry")
    nlen, elen = struct.unpack("<HH", header[26:30])
    return offset + 30 + nlen + elen


@dataclass
class StorageRef:
    dtype: str
    key: str
    numel: int


@dataclass
class TensorRef:
    storage: StorageRef
    offset: int
    shape: tuple
    stride: tuple


class RecordingUnpickler(pickle.Unpickler):
    """Reads a state dict's pickle and builds nothing: the few globals torch's pickles of
    tensors name (an OrderedDict, ``torch._utils._rebuild_tensor_v2``, the typed storage
    classes) become records of which storage, offset, shape and stride each tensor has; any
    other global is refused, naming it. No function of the pickle's choosing runs, which is
    stricter than torch's weights-only unpickler."""

    def __init__(self, data: bytes, where: str):
        super().__init__(io.BytesIO(data))
        self.where = where

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in STORAGES:
            return STORAGES[name]
        raise pickle.UnpicklingError(
            f"{self.where}: the pickle names {module}.{name}, which a state dict of tensors "
            "does not; refused"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self.where}: unknown persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if dtype not in ELEMENT:
            raise pickle.UnpicklingError(f"{self.where}: storage of type {dtype!r}")
        return StorageRef(dtype, str(key), int(numel))


def rebuild_tensor(storage, offset, shape, stride, *rest) -> TensorRef:
    """What the recording unpickler gives for ``torch._utils._rebuild_tensor_v2``."""
    return TensorRef(storage, int(offset), tuple(shape), tuple(stride))


def bin_header(reader, filename: str) -> Header:
    """A ``.bin`` file's tensors, as a safetensors header gives them: dtype, shape and the
    byte range of each, read from its zip directory and its pickle (no storage bytes)."""
    entries = zip_entries(reader, filename)
    pkl = [n for n in entries if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise UnreadableCheckpoint(f"{reader.where}: {filename} holds no torch pickle")
    prefix = pkl[0][: -len("data.pkl")]
    offset, size_pkl, method = entries[pkl[0]]
    if method != 0:
        raise UnreadableCheckpoint(f"{reader.where}: {filename}: its pickle is compressed")
    if size_pkl > MAX_PICKLE:
        raise UnreadableCheckpoint(
            f"{reader.where}: {filename}: its pickle claims {size_pkl} bytes, more than a "
            f"state dict's ({MAX_PICKLE} are read at most)"
        )
    data = reader.read(filename, entry_data(reader, filename, offset), size_pkl)
    try:
        state = RecordingUnpickler(data, f"{reader.where}: {filename}").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UnreadableCheckpoint(str(exc)) from exc
    if not isinstance(state, dict):
        raise UnreadableCheckpoint(
            f"{reader.where}: {filename}'s pickle holds a {type(state).__name__}, not a state "
            "dict of tensors"
        )
    tensors = {}
    for name, ref in state.items():
        if not isinstance(ref, TensorRef):
            raise UnreadableCheckpoint(f"{reader.where}: {filename}: {name} is not a tensor")
        contiguous = tuple(
            int(np.prod(ref.shape[i + 1 :], dtype=np.int64)) for i in range(len(ref.shape))
        )
        if ref.stride != contiguous and int(np.prod(ref.shape)) > 1:
            raise UnreadableCheckpoint(f"{reader.where}: {filename}: {name} is not contiguous")
        entry = entries.get(f"{prefix}data/{ref.storage.key}")
        if entry is None or entry[2] != 0:
            raise UnreadableCheckpoint(
                f"{reader.where}: {filename}: the storage of {name} is missing or compressed"
            )
        element = ELEMENT[ref.storage.dtype]
        if (ref.offset + int(np.prod(ref.shape, dtype=np.int64))) * element > entry[1]:
            raise UnreadableCheckpoint(
                f"{reader.where}: {filename}: {name} runs past the end of its storage "
                f"({entry[1]} bytes); its offset or shape is not the file's"
            )
        tensors[name] = {  # where its storage's bytes begin is read for the head alone
            "dtype": ref.storage.dtype,
            "shape": ref.shape,
            "local": entry[0],
            "within": ref.offset * element,
            "length": int(np.prod(ref.shape, dtype=np.int64)) * element,
        }
    return Header(filename, tensors)


def tensor_start(reader, header: Header, t: dict) -> int:
    """A tensor's first byte in its file (a .bin storage's: after the entry's local header)."""
    if "start" in t:
        return t["start"]
    return entry_data(reader, header.filename, t["local"]) + t["within"]


# --- which tensor is the head ----------------------------------------------------------------


def meta_model(config_dir: Path):
    """The model a checkpoint's config describes, on the meta device (no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(config_dir), trust_remote_code=False)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=False)


def parameter_names(model) -> dict[int, list[str]]:
    """Every name of each parameter (a tied head has two)."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return names


def model_keys(model, names) -> dict[str, str | None]:
    """{checkpoint tensor name: the model's parameter name}, through transformers' own key
    renamings for the model (GPT-NeoX files name the head ``embed_out``, the model
    ``lm_head``; GPT-2's drop the base prefix). None where a converter merges the tensor
    with others (no one-to-one name)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    meta = model.state_dict()
    out = {}
    for name in names:
        key, converted = rename_source_key(
            name, renamings, converters, model.base_model_prefix, meta
        )
        out[name] = None if converted is not None else key
    return out


def check_tensors(model, tensors: dict[str, tuple], where: str) -> dict[str, str]:
    """Refuse weights that do not match the model the config describes: a parameter the
    files lack (the full load would leave it random), a tensor no parameter reads, or one
    of another shape. ``tensors``: {name: shape} over every weights file. Returns {model
    parameter name: checkpoint tensor name}."""
    keys = model_keys(model, tensors)
    found = {k: name for name, k in keys.items() if k is not None}
    problems = []
    for names in parameter_names(model).values():
        present = [n for n in names if n in found]
        if not present:
            if not any(v is None for v in keys.values()):
                problems.append(f"{names[0]} is not in the checkpoint")
            continue
        shape = tuple(model.get_parameter(names[0]).shape)
        stored = tensors[found[present[0]]]
        if stored != shape:
            problems.append(
                f"{found[present[0]]} is {stored} in the checkpoint, {shape} in the model"
            )
    params = {n for names in parameter_names(model).values() for n in names}
    unused = sorted(
        n for n, k in keys.items() if k is not None and k not in params and not IGNORED.search(n)
    )
    if unused:
        problems.append(f"{len(unused)} tensors no parameter reads: {', '.join(unused[:3])}")
    if problems:
        config = model.config
        raise UnreadableCheckpoint(
            f"{where}: its weights do not match the model its config.json describes "
            f"({type(model).__name__}, model_type {config.model_type}, hidden size "
            f"{getattr(config, 'hidden_size', None)}): "
            + "; ".join(problems[:4])
            + " (a config.json of another model, or weights saved incompletely?)"
        )
    return found


# --- the head of a revision ------------------------------------------------------------------


@dataclass
class RangedHead:
    """A revision's head read by range: the tensor, the model it belongs to, what was read."""

    weight: object  # torch tensor, V x d, in the file's dtype
    model: object  # the meta-device model of its config
    tensor: str  # its name in the checkpoint
    filename: str
    sha256: str  # of the tensor's raw bytes as stored
    tied: bool
    bytes_read: int
    requests: int
    shapes: dict[str, tuple]  # every tensor of the revision's weights files


@dataclass
class LocalReader:
    """Byte ranges of weights files already on the disk (the Hugging Face cache)."""

    paths: dict[str, Path]
    bytes_read: int = 0
    requests: int = 0
    where: str = ""

    def read(self, filename: str, start: int, length: int) -> bytes:
        with open(self.paths[filename], "rb") as fh:
            fh.seek(start)
            body = fh.read(length)
        self.bytes_read += len(body)
        return body

    def tail(self, filename: str, length: int) -> tuple[bytes, int]:
        size = self.paths[filename].stat().st_size
        start = max(size - length, 0)
        return self.read(filename, start, size - start), size

    def head(self, filename: str, length: int) -> tuple[bytes, int]:
        size = self.paths[filename].stat().st_size
        return self.read(filename, 0, min(length, size)), size


def store_path(store: str | Path, row: dict) -> Path:
    """The head store's file of a revision: ``{store}/{repo}/{commit}.safetensors``."""
    return Path(store) / row["repo_id"] / f"{row['commit']}.safetensors"


WEIGHTS = {  # format: (the index of a sharded checkpoint, the single file, its header reader)
    "safetensors": (INDEX, "model.safetensors", read_header),
    "bin": ("pytorch_model.bin.index.json", "pytorch_model.bin", bin_header),
}


def ranged_head(
    row: dict, retry: dict, store: str | Path | None = None, allow_pickle: bool = False
) -> RangedHead:
    """The LM head of a manifest revision (``saturation.hub`` row): from the head store where
    ``prefetch`` put it, else from weights files already in the Hugging Face cache, else by
    HTTP range from the hub (offline: an error that says to prefetch). A commit or file the
    hub no longer has (deleted since the manifest was made) is named with what to do."""
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        return read_head(row, retry, store, allow_pickle)
    except (RevisionNotFoundError, EntryNotFoundError) as exc:
        from saturation.hub import describe_revision

        raise CheckpointError(
            f"{describe_revision(row)}: the hub no longer serves commit {row['commit']} or its files "
            f"({type(exc).__name__}), as the revision manifest recorded them; delete "
            f"results/checkpoints/{row['model']}/revisions.parquet and run again to list the "
            "repo anew"
        ) from exc


def read_head(row: dict, retry: dict, store, allow_pickle: bool) -> RangedHead:
    """:func:`ranged_head`'s reading, from the store, the cache or by range."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from saturation.hub import describe_revision
    from saturation.retry import with_backoff

    where = describe_revision(row)
    fmt = row["weights_format"]
    if fmt == "bin" and not allow_pickle:
        raise CheckpointError(
            f"{where} serves only PyTorch .bin weights, which are pickles; refusing them. Set "
            "checkpoints.allow_pickle: true to read the head's pickle with an unpickler that "
            "builds nothing (it records where each tensor's bytes lie, and refuses any other "
            "object)"
        )
    if fmt not in WEIGHTS:
        raise CheckpointError(f"{where} holds no weights files")
    index_name, single, header_of = WEIGHTS[fmt]
    repo, commit = row["repo_id"], row["commit"]
    offline = constants.HF_HUB_OFFLINE
    prefetch = "run the prefetch target where the network is first"

    def small(name: str) -> Path:
        try:
            return Path(
                with_backoff(
                    lambda: hf_hub_download(repo, name, revision=commit),
                    f"{where}: {name}",
                    **retry,
                )
            )
        except LocalEntryNotFoundError as exc:
            if not offline:
                raise
            raise CheckpointError(
                f"{where}: {name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: "
                + prefetch
            ) from exc

    model = meta_model(small("config.json").parent)
    if store is not None and store_path(store, row).is_file():
        try:
            return stored_head(store_path(store, row), model, where, row)
        except StaleHead as exc:  # repaired: read again by range (prefetch stores it anew)
            log.warning("%s; it is removed, and the head read again by range", exc)
            store_path(store, row).unlink(missing_ok=True)
    try:
        files = sorted(set(json.loads(small(index_name).read_text())["weight_map"].values()))
    except EntryNotFoundError:
        files = [single]
    except CheckpointError:  # offline, and no index cached: the single-file layout
        files = [single]
    cached = {f: try_to_load_from_cache(repo, f, revision=commit) for f in files}
    if all(isinstance(p, str) for p in cached.values()):
        reader = LocalReader({f: Path(p) for f, p in cached.items()}, where=where)
    elif offline:
        raise CheckpointError(
            f"{where}: its head is neither in the head store nor, with its weights, in the "
            f"Hugging Face cache, and HF_HUB_OFFLINE is set: {prefetch}"
        )
    else:
        reader = RangeReader(repo, commit, retry, where=where)
    headers = [header_of(reader, f) for f in files]
    shapes = {n: t["shape"] for h in headers for n, t in h.tensors.items()}
    found = check_tensors(model, shapes, where)
    stored = head_name(model, found)
    for header in headers:
        if stored in header.tensors:
            t = header.tensors[stored]
            raw = reader.read(header.filename, tensor_start(reader, header, t), t["length"])
            return RangedHead(
                decode(raw, t["dtype"], t["shape"], where),
                model,
                stored,
                header.filename,
                hashlib.sha256(raw).hexdigest(),
                is_tied(model),
                reader.bytes_read,
                reader.requests,
                shapes,
            )
    raise UnreadableCheckpoint(f"{where}: no weights file holds the head")


def head_name(model, found: dict[str, str]) -> str | None:
    """The checkpoint's name of the model's output embedding (a tied head: the input's)."""
    names = parameter_names(model)[id(model.get_output_embeddings().weight)]
    return next((found[n] for n in names if n in found), None)


def is_tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


def save_head(head: RangedHead, path: Path, row: dict) -> None:
    """Keep a head read by range in the head store: the tensor as stored, and what the
    check against the config needs (every tensor's shape), its source file and sha256, and
    the revision it was read from (repo and commit)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "repo_id": row["repo_id"],
        "commit": row["commit"],
        "source_file": head.filename,
        "sha256": head.sha256,
        "shapes": json.dumps({k: list(v) for k, v in head.shapes.items()}),
    }
    partial = path.with_suffix(".partial")
    save_file({head.tensor: head.weight.contiguous()}, str(partial), metadata=meta)
    partial.replace(path)


class StaleHead(UnreadableCheckpoint):
    """A head-store file that is not this revision's head as it was read."""


def stored_head(path: Path, model, where: str, row: dict) -> RangedHead:
    """A head from the head store, checked as a ranged read is: the revision it was read
    from (a file written since repo and commit are recorded), the shapes against the config's
    model, the tensor's bytes against the sha256 recorded when it was read. A file that fails
    any of these is :class:`StaleHead`."""
    import torch
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            (name,) = list(fh.keys())
            weight = fh.get_tensor(name)
        shapes = {k: tuple(v) for k, v in json.loads(meta["shapes"]).items()}
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise StaleHead(f"{where}: the head store's {path} is not whole ({exc})") from None
    read_from = (meta.get("repo_id", row["repo_id"]), meta.get("commit", row["commit"]))
    if read_from != (row["repo_id"], row["commit"]):
        raise StaleHead(
            f"{where}: the head store's {path} holds the head of {read_from[0]} at commit "
            f"{read_from[1]}, not of commit {row['commit']}"
        )
    found = check_tensors(model, shapes, where)
    if head_name(model, found) != name:
        raise StaleHead(f"{where}: the head store's {path} holds {name}, not the head")
    raw = weight.contiguous().flatten().view(torch.uint8).numpy().tobytes()
    if hashlib.sha256(raw).hexdigest() != meta["sha256"]:
        raise StaleHead(f"{where}: {path} does not hold the bytes read (sha256)")
    return RangedHead(
        weight, model, name, meta["source_file"], meta["sha256"], is_tied(model), 0, 0, shapes
    )


def prefetch_head(
    row: dict, retry: dict, store: str | Path, out_path, allow_pickle: bool = False
) -> None:
    """Where the network is: a revision's head read by range into the head store, so that
    the spectrum-only measurement runs offline (``metrics.parts: [spectrum]``'s prefetch)."""
    from saturation.hub import describe_revision
    from saturation.io import write_json

    record = {k: row[k] for k in ("repo_id", "revision", "step", "commit", "status")}
    if row["status"] in ("missing", "duplicate"):
        log.warning("%s is %s; not fetched", describe_revision(row), row["status"])
    else:
        path = store_path(store, row)
        head = ranged_head(row, retry, store, allow_pickle)
        if not path.is_file():
            save_head(head, path, row)
        record.update(head_store=str(path), tensor=head.tensor, bytes=head.bytes_read)
    write_json(record, out_path)
