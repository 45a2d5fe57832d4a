"""Revisions discovered from a hub repo's branches.

A hub model entry may give a ``revision_pattern`` (a regular expression matched against
the whole branch name, with a named group ``step`` and optionally ``tokens`` or
``tokens_b``, tokens seen in billions) instead of a template: OLMo-2's branches
(``stage1-step101000-tokens424B``) carry tokens that no template computes the way the
publisher rounded them. The repo's branches are listed once, where the network is, into
``checkpoints.hub.branch_lists``/``{owner}--{name}.json``; every later plan reads that file,
so ``snakemake -n`` plans offline and every run measures the same revisions. Re-listing is
explicit: delete the file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

GROUPS = ("step", "tokens", "tokens_b")


class BranchError(ValueError):
    """Branches that cannot be listed or matched; the message names the config key or repo."""


def branch_list_path(folder: str | Path, repo_id: str) -> Path:
    return Path(folder) / f"{repo_id.replace('/', '--')}.json"


def listed_branches(repo_id: str, folder: str | Path, retry: dict) -> list[str]:
    """The repo's branch names: from its list file, else listed from the hub now and
    written there."""
    path = branch_list_path(folder, repo_id)
    if path.is_file():
        return json.loads(path.read_text())["branches"]
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError

    from saturation.hub import with_backoff

    try:
        refs = with_backoff(lambda: HfApi().list_repo_refs(repo_id), f"{repo_id}: refs", **retry)
    except OfflineModeIsEnabled:
        raise BranchError(
            f"the branches of {repo_id} are not listed yet ({path}) and HF_HUB_OFFLINE is "
            "set: plan once where the network is (snakemake -n lists them), then plan offline"
        ) from None
    except RepositoryNotFoundError:
        raise BranchError(
            f"repository '{repo_id}' not found on the hub (or private); check "
            "checkpoints.hub.models"
        ) from None
    names = sorted(b.name for b in refs.branches)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"repo": repo_id, "branches": names}, indent=1) + "\n")
    tmp.replace(path)
    return names


def pattern_revisions(
    repo_id: str, pattern: str, branches: list[str], tokens_per_step: int | None, key: str
) -> tuple[dict[int, str], dict[int, int]]:
    """({step: branch}, {step: tokens seen}) of the branches the pattern matches whole.

    Tokens come from the name's ``tokens`` or ``tokens_b`` group where the pattern has one,
    else step x tokens_per_step."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise BranchError(
            f"config key '{key}': {pattern!r} is not a regular expression: {exc}"
        ) from None
    unknown = sorted(set(regex.groupindex) - set(GROUPS))
    if "step" not in regex.groupindex or unknown:
        raise BranchError(
            f"config key '{key}': {pattern!r} needs a named group (?P<step>...) and may have "
            f"(?P<tokens>...) or (?P<tokens_b>...)"
            + (f"; it names {', '.join(unknown)}" if unknown else "")
        )
    revisions, tokens = {}, {}
    for name in branches:
        m = regex.fullmatch(name)
        if m is None:
            continue
        step = int(m["step"])
        if step in revisions:
            raise BranchError(
                f"config key '{key}': branches {revisions[step]!r} and {name!r} of {repo_id} "
                f"both match {pattern!r} with step {step}; narrow the pattern to one of them"
            )
        revisions[step] = name
        found = m.groupdict()
        if found.get("tokens") is not None:
            tokens[step] = int(found["tokens"])
        elif found.get("tokens_b") is not None:
            tokens[step] = round(float(found["tokens_b"]) * 1e9)
        else:
            tokens[step] = step * (tokens_per_step or 0)
    if not revisions:
        shown = ", ".join(branches[:5]) + (
            f" and {len(branches) - 5} more" if len(branches) > 5 else ""
        )
        raise BranchError(
            f"config key '{key}': no branch of {repo_id} matches {pattern!r} (its branches: "
            f"{shown or 'none'})"
        )
    return revisions, tokens
