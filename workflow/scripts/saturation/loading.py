"""Safe loading of model checkpoints.

Hub revisions are read through the Hugging Face cache with an allow-list of file patterns
(``saturation.hub``); the mini-suite writes the same Hugging Face layout. Loading reads
safetensors; PyTorch ``.bin`` files (pickles, which can run code when unpickled by the plain
unpickler) only where the config opts in (``checkpoints.allow_pickle``), and then only
through torch's weights-only unpickler, which builds tensors and plain containers and
refuses any other object. It never runs remote code, and checks every weights file before
the model sees it.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from pathlib import Path

log = logging.getLogger(__name__)

CONFIG_PATTERNS = ["config.json", "generation_config.json"]
SAFETENSORS_PATTERNS = ["*.safetensors", "model.safetensors.index.json"]
PICKLE_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
TOKENIZER_PATTERNS = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be acquired or loaded; the message names it."""


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint that is there but whose content is unusable: no config or weights, a
    damaged weights file, weights that do not match the config exactly, or non-finite
    weights. A measuring job records it (status ``unreadable``) and goes on with the rest;
    the aggregation then stops or leaves it out (``metrics.unreadable``)."""


def allow_patterns(allow_pickle: bool, weights_format: str | None = None) -> list[str]:
    """The files to fetch of a revision: config, tokenizer and weights. Where the revision's
    weights format is known (the manifest's), only that format's weights: a repo serving
    both safetensors and ``.bin`` files is not downloaded twice."""
    weights = SAFETENSORS_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    if weights_format == "safetensors":
        weights = SAFETENSORS_PATTERNS
    elif weights_format == "bin" and allow_pickle:
        weights = PICKLE_PATTERNS
    return CONFIG_PATTERNS + weights + TOKENIZER_PATTERNS


def weights_files(
    directory: str | Path, allow_pickle: bool, where: str | None = None
) -> list[Path]:
    """The weights files of a checkpoint directory, each checked; pickles only on request."""
    directory = Path(directory)
    where = where or str(directory)
    if not (directory / "config.json").is_file():
        raise UnreadableCheckpoint(f"checkpoint {where} has no config.json")
    safetensors = sorted(directory.glob("*.safetensors"))
    if safetensors:
        for f in safetensors:
            check_safetensors(f)
        return safetensors
    pickles = sorted(directory.glob("*.bin"))
    if pickles and not allow_pickle:
        raise CheckpointError(
            f"checkpoint {where} has only PyTorch .bin weights ({pickles[0].name}), which are "
            "pickles; refusing them. Set checkpoints.allow_pickle: true to read them with "
            "torch's weights-only unpickler, which loads tensors and refuses anything else."
        )
    if pickles:
        for f in pickles:
            check_pickle(f)
        return pickles
    hint = (
        ""
        if allow_pickle
        else " (if it serves only .bin pickles, set checkpoints.allow_pickle: true)"
    )
    raise UnreadableCheckpoint(f"checkpoint {where} holds no *.safetensors weights{hint}")


def safetensors_header(path: Path) -> tuple[int, dict]:
    """A safetensors file's header length and header (each tensor's dtype, shape and byte
    offsets), read without its tensors; a corrupt one is refused naming the file."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > min(MAX_HEADER, size - 8):
                raise ValueError(f"header of {n} bytes does not fit in a file of {size} bytes")
            return n, json.loads(fh.read(n))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableCheckpoint(f"corrupt safetensors file {path}: {exc}") from None


# Bytes an element of each safetensors dtype takes (the format's own list).
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
MAX_HEADER = 100_000_000  # the largest header safetensors itself reads


def safetensors_tensors(header: dict, data_bytes: int, where: str) -> dict[str, tuple]:
    """{name: (dtype, shape, begin, end)} of a safetensors header, validated as the
    safetensors library validates it before any tensor is read: every dtype known, every
    shape a list of whole numbers, each tensor's bytes exactly its elements times its dtype's
    size, the tensors laid end to end from the data's start without a gap or an overlap, and
    the last ending where the file does (``data_bytes`` after the header). A header that
    breaks any of these is refused naming ``where`` and the tensor."""

    def bad(why: str):
        return UnreadableCheckpoint(f"corrupt safetensors file {where}: {why}")

    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise bad(f"{name}'s entry lacks dtype, shape or two data_offsets") from None
        if dtype not in SAFETENSORS_DTYPES:
            raise bad(f"{name} has the unknown dtype {dtype!r}")
        numbers = [*shape, begin, end] if isinstance(shape, list) else None
        if numbers is None or not all(type(x) is int and x >= 0 for x in numbers):
            raise bad(f"{name}'s shape {shape!r} or offsets {[begin, end]!r} are not whole numbers")
        if end - begin != math.prod(shape) * SAFETENSORS_DTYPES[dtype]:
            raise bad(
                f"{name} holds {end - begin} bytes, and its shape {shape} of {dtype} needs "
                f"{math.prod(shape) * SAFETENSORS_DTYPES[dtype]}"
            )
        tensors[name] = (dtype, tuple(shape), begin, end)
    at = 0
    for name, (_, _, begin, end) in sorted(tensors.items(), key=lambda kv: kv[1][2:]):
        if begin != at:
            raise bad(
                f"{name} starts at byte {begin} of the data, where the tensors before it end "
                f"at {at} (tensors must lie end to end, not overlap nor leave gaps)"
            )
        at = end
    if at != data_bytes:
        raise UnreadableCheckpoint(
            f"truncated or corrupt safetensors file {where}: its header declares {at} bytes "
            f"of tensors, and the file holds {data_bytes} after the header"
        )
    return tensors


def check_safetensors(path: str | Path) -> None:
    """Check a safetensors file's header (:func:`safetensors_tensors`) against its size.

    Catches truncated downloads and corrupt or hostile headers with a message naming the
    file, before torch meets them.
    """
    path = Path(path)
    n, header = safetensors_header(path)
    safetensors_tensors(header, path.stat().st_size - 8 - n, str(path))


def check_pickle(path: str | Path) -> None:
    """Read a ``.bin`` file with torch's weights-only unpickler, without its tensors' bytes
    (to the meta device), so that a file holding anything but tensors and plain containers
    is refused, naming it, before the model is built; nothing in it is run."""
    import pickle

    import torch

    path = Path(path)
    try:
        torch.load(path, map_location="meta", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = str(exc).strip().split("\n")
        why = next((line for line in refused if "GLOBAL" in line or "global" in line), refused[-1])
        raise UnreadableCheckpoint(
            f"{path} holds more than tensors, and torch's weights-only unpickler refused it "
            f"({why.strip()}); nothing in it was run. Use the checkpoint's safetensors "
            "weights, or convert it where you trust it"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise UnreadableCheckpoint(
            f"truncated or corrupt PyTorch weights file {path}: {exc}"
        ) from None


def load_memory_mb(files: list[Path], dtype) -> float:
    """The host memory loading these weights into ``dtype`` takes at its peak, in MB: the
    files' bytes (read or memory-mapped) and every parameter in ``dtype`` (measured: a
    pythia-2.8b-shaped fp16 checkpoint loaded in float32 peaked at 16.3 GB against this
    estimate's 16.6 GB). A .bin file's parameters are counted as if it held 16-bit values
    (its header does not say), so an fp32 .bin is over-estimated, never under."""
    import torch

    total_bytes, params = 0, 0
    for f in files:
        size = f.stat().st_size
        total_bytes += size
        if f.suffix == ".safetensors":
            header = safetensors_header(f)[1]
            params += sum(
                math.prod(info["shape"]) for k, info in header.items() if k != "__metadata__"
            )
        else:
            params += size // 2
    element = torch.empty((), dtype=dtype).element_size() if dtype is not None else 4
    return (total_bytes + params * element) / 2**20


def config_parameters(directory) -> int:
    """The parameters of the model a checkpoint's config.json describes, counted on the meta
    device (nothing allocated): transformers builds that model before it reads any weight."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(directory), trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableCheckpoint(f"cannot read {directory}/config.json: {exc}") from exc
    return sum(p.numel() for p in model.parameters())


def check_load_memory(directory, files: list[Path], dtype, mem_mb: float) -> None:
    """Stop before loading a checkpoint the job's memory cannot hold, naming the key: its
    weights files and parameters, or the model its config.json describes, whichever is
    larger (a config that declares absurd sizes is refused before anything is built)."""
    import torch

    element = torch.empty((), dtype=dtype).element_size() if dtype is not None else 4
    described = config_parameters(directory)
    need = max(load_memory_mb(files, dtype), described * element / 2**20)
    if need > mem_mb:
        raise MemoryError(
            f"config key 'metrics.mem_mb': {mem_mb} MB cannot hold checkpoint {directory} "
            f"loaded in {str(dtype).removeprefix('torch.')}: about {need:.0f} MB (its weights "
            f"files and the parameters; its config.json describes {described:,} parameters); "
            "raise metrics.mem_mb"
        )


def load_model(
    directory: str | Path, allow_pickle: bool = False, dtype=None, device="cpu", mem_mb=None
):
    """A causal LM from a checked checkpoint directory (hub snapshot or mini-suite).

    Refused unless every weight of the checkpoint loads into the model its config names and
    every parameter of that model comes from the checkpoint, shapes equal, all finite:
    transformers would otherwise initialise what it cannot load at random and go on. The
    loader's own report is used, after transformers has dropped the buffers it knows old
    checkpoints carry (causal masks, rotary ``inv_freq``) and the tied copies of a head.
    With ``mem_mb`` (the job's memory), a checkpoint that cannot fit is refused first.
    """
    from transformers import AutoModelForCausalLM

    files = weights_files(directory, allow_pickle)
    if mem_mb is not None:
        check_load_memory(directory, files, dtype, mem_mb)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(directory),
            trust_remote_code=False,
            use_safetensors=files[0].suffix == ".safetensors",
            weights_only=True,  # .bin files: torch's weights-only unpickler, never the plain one
            dtype=dtype,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported below, with the shapes, then refused
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise UnreadableCheckpoint(f"cannot load checkpoint {directory}: {exc}") from exc
    check_loading(directory, model, info)
    check_finite(directory, model)
    return model.to(device).eval()


def check_loading(directory, model, info: dict, shown: int = 3) -> None:
    """Refuse a load that left parameters at their initialisation or tensors unused."""
    config = model.config
    problems = []
    for key, what in (
        ("missing_keys", "not in the checkpoint (left at random initialisation)"),
        ("unexpected_keys", "in the checkpoint but not in the model (unused)"),
    ):
        names = sorted(info.get(key) or ())
        if names:
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            problems.append(f"{tensors(len(names))} {what}: {', '.join(names[:shown])}{more}")
    mismatched = sorted(info.get("mismatched_keys") or (), key=str)
    if mismatched:
        shapes = [
            f"{name} (checkpoint {tuple(ckpt)}, model {tuple(model)})"
            for name, ckpt, model in mismatched[:shown]
        ]
        more = f" and {len(mismatched) - shown} more" if len(mismatched) > shown else ""
        problems.append(f"{tensors(len(mismatched))} of another shape: {'; '.join(shapes)}{more}")
    problems += [str(m) for m in info.get("error_msgs") or ()]
    if problems:
        arch = type(model).__name__
        raise UnreadableCheckpoint(
            f"checkpoint {directory}: its weights do not match the model its config.json "
            f"describes ({arch}, model_type {config.model_type}, hidden size "
            f"{getattr(config, 'hidden_size', None)}): "
            + "; ".join(problems)
            + " (a config.json of another model, or weights saved incompletely?)"
        )


def tensors(n: int) -> str:
    return f"{n} tensor" if n == 1 else f"{n} tensors"


def check_finite(directory, model) -> None:
    """Refuse weights holding NaN or infinite values, naming the first such tensor."""
    import torch

    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise UnreadableCheckpoint(
                f"checkpoint {directory}: tensor {name} holds {bad} NaN or infinite values "
                f"of {tensor.numel()}"
            )
