"""A training run's checkpoints as it keeps them on disk, read in place: `step{N}/` folders,
`transformers.Trainer`'s `checkpoint-{N}/`, or folders a pattern of the user's names; the
tokens each had seen where Trainer logged them; and the checkpoints still being written,
left out until they are whole.

A checkpoint folder is whole when its weights are: every safetensors file as long as its
header declares (an 8-byte length, the JSON header, then the tensors up to the last
``data_offsets`` end), every ``.bin`` file a zip with its end record, every shard an index
names present; and, in a Trainer folder, when ``trainer_state.json`` is there (Trainer writes
it after the weights, the optimizer and the RNG states). Only ``config.json``, the weights
and ``trainer_state.json`` are read; never the optimizer, scheduler or RNG files."""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import regex

from saturation.branches import bounded_fullmatch, compile_pattern, whole_number

STEP_FOLDER = regex.compile(r"^step(?P<step>\d+)$")
TRAINER_FOLDER = regex.compile(r"^checkpoint-(?P<step>\d+)$")
SINGLE_FILES = (".ckpt", ".pt", ".pth")
EXPORT = (
    "the workflow reads Hugging Face checkpoint folders (config.json + safetensors weights): "
    "load the model in its framework and write each checkpoint with "
    "model.save_pretrained('<run>/step<N>') (Lightning: the module's transformers model)"
)


class LocalRunError(ValueError):
    pass


@dataclass
class Listing:
    steps: dict[int, Path] = field(default_factory=dict)  # whole checkpoints
    tokens: dict[int, int] = field(default_factory=dict)  # tokens seen, where Trainer logged it
    pending: dict[int, str] = field(default_factory=dict)  # still being written: why


def folder_pattern(pattern: str | None, key: str) -> list:
    """The folder names read as checkpoints: the user's pattern (a regex with a ``step``
    group), else ``step{N}`` and Trainer's ``checkpoint-{N}``."""
    if pattern is None:
        return [STEP_FOLDER, TRAINER_FOLDER]
    compiled = compile_pattern(pattern, key, LocalRunError)
    if "step" not in compiled.groupindex:
        raise LocalRunError(f"config key '{key}': {pattern!r} has no (?P<step>...) group")
    return [compiled]


def safetensors_short(path: Path) -> str | None:
    """Why a safetensors file is not whole (shorter than its header declares), or None."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{path.name} has no header yet"
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            return f"{path.name} is shorter than its header"
        try:
            header = json.loads(fh.read(n))
        except (ValueError, UnicodeDecodeError):
            return f"{path.name}'s header is not whole"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    need = 8 + n + max(ends, default=0)
    return None if size >= need else f"{path.name} holds {size} of the {need} bytes it declares"


def weights_short(folder: Path) -> str | None:
    """Why a checkpoint folder's weights are not whole yet, or None."""
    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError):
            return f"{index.name} is not whole"
        absent = sorted(s for s in shards if not (folder / s).is_file())
        if absent:
            return f"shards {absent} of {index.name} are not there yet"
    for path in sorted(folder.glob("*.safetensors")):
        if why := safetensors_short(path):
            return why
    for path in sorted(folder.glob("*.bin")):
        if path.name.startswith(("pytorch_model", "model")) and not zipfile.is_zipfile(path):
            return f"{path.name} has no zip end record yet"
    return None


def trainer_state(folder: Path) -> dict | None:
    path = folder / "trainer_state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def is_trainer_folder(folder: Path) -> bool:
    return bool(TRAINER_FOLDER.match(folder.name)) or (folder / "training_args.bin").is_file()


def pending_reason(folder: Path) -> str | None:
    """Why a checkpoint folder is still being written, or None when it is whole."""
    if not (folder / "config.json").is_file():
        return "no config.json yet"
    if why := weights_short(folder):
        return why
    if is_trainer_folder(folder) and not (folder / "trainer_state.json").is_file():
        return "no trainer_state.json yet (Trainer writes it last)"
    return None


def single_file_hint(path: Path) -> str:
    files = sorted(p.name for p in path.iterdir() if p.suffix in SINGLE_FILES)[:3]
    return f"; it holds {', '.join(files)}: {EXPORT}" if files else ""


def list_run(path: str | Path, key: str, step: int | None = None, pattern=None) -> Listing:
    """A local model's checkpoints: whole ones by step, the tokens Trainer logged for them,
    and those still being written. ``path`` holds checkpoint folders, or is one checkpoint
    folder (a final checkpoint only; its step is ``step``, default 0)."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix in SINGLE_FILES:
        raise LocalRunError(f"config key '{key}': {path} is a single-file checkpoint; {EXPORT}")
    if not path.is_dir():
        raise LocalRunError(f"config key '{key}': {path} is not a folder")
    listing = Listing()
    if (path / "config.json").is_file():
        folders = {0 if step is None else int(step): path}
    else:
        pattern_key = key.replace(".path", ".pattern")
        patterns = folder_pattern(pattern, pattern_key)
        folders = {}
        for child in sorted(path.iterdir()):
            match = next(
                (m for p in patterns
                 if (m := bounded_fullmatch(p, child.name, pattern_key, LocalRunError))),
                None,
            )  # fmt: skip
            if match and child.is_dir():
                n = whole_number(match.group("step"), "step", child.name, pattern_key,
                                 LocalRunError)  # fmt: skip
                if n in folders:
                    raise LocalRunError(
                        f"config key '{key}': {folders[n].name} and {child.name} are both step {n}"
                    )
                folders[n] = child
        if not folders:
            names = "step{N} or checkpoint-{N}" if pattern is None else f"{pattern!r}"
            raise LocalRunError(
                f"config key '{key}': {path} holds no {names} checkpoint folders and is not a "
                f"checkpoint folder itself (config.json + safetensors){single_file_hint(path)}"
            )
    for n, folder in sorted(folders.items()):
        if why := pending_reason(folder):
            listing.pending[n] = why
            continue
        listing.steps[n] = folder
        state = trainer_state(folder)
        if state is not None:
            if state.get("global_step") not in (None, n) and folder is not path:
                raise LocalRunError(
                    f"config key '{key}': {folder}/trainer_state.json says global_step "
                    f"{state['global_step']}, its folder's name step {n}"
                )
            if state.get("num_input_tokens_seen"):
                listing.tokens[n] = int(state["num_input_tokens_seen"])
    if not listing.steps:
        raise LocalRunError(
            f"config key '{key}': none of {path}'s checkpoints is whole yet: "
            + "; ".join(f"{folders[n].name}: {why}" for n, why in listing.pending.items())
        )
    return listing
