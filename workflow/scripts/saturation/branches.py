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
from pathlib import Path

import regex  # the re module's syntax, and a timeout: no pattern can hang a plan

GROUPS = ("step", "tokens", "tokens_b")
MATCH_SECONDS = 1.0  # the longest one name may take to match


class BranchError(ValueError):
    """Branches that cannot be listed or matched; the message names the config key or repo."""


def compile_pattern(pattern: str, key: str, error=None):
    """A user's pattern compiled, or ``error`` (default BranchError) naming the key."""
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise (error or BranchError)(
            f"config key '{key}': {pattern!r} is not a regular expression: {exc}"
        ) from None


def bounded_fullmatch(compiled, name: str, key: str, error=None):
    """``compiled.fullmatch(name)`` within MATCH_SECONDS: a pattern that backtracks without
    end on a long name (nested quantifiers) is refused naming the key, never a hung plan."""
    try:
        return compiled.fullmatch(name, timeout=MATCH_SECONDS)
    except TimeoutError:
        raise (error or BranchError)(
            f"config key '{key}': {compiled.pattern!r} takes more than {MATCH_SECONDS:g} s to "
            f"match {name[:80]!r} (nested quantifiers backtrack without end); simplify it, "
            "e.g. (?P<step>\\d+)"
        ) from None


def whole_number(found: str | None, group: str, name: str, key: str, error=None) -> int:
    """A pattern group's capture as a whole number, or ``error`` naming the key and name."""
    try:
        return int(found)
    except (TypeError, ValueError):
        raise (error or BranchError)(
            f"config key '{key}': its {group} group captured {found!r} in {name!r}, not a "
            f"whole number; make it (?P<{group}>\\d+)"
        ) from None


def branch_list_path(folder: str | Path, repo_id: str) -> Path:
    return Path(folder) / f"{repo_id.replace('/', '--')}.json"


def listed_branches(repo_id: str, folder: str | Path, retry: dict) -> list[str]:
    """The repo's branch names: from its list file, else listed from the hub now and
    written there."""
    path = branch_list_path(folder, repo_id)
    if path.is_file():
        try:
            names = json.loads(path.read_text())["branches"]
            if isinstance(names, list) and all(isinstance(n, str) for n in names):
                return names
        except (ValueError, KeyError, TypeError):
            pass
        raise BranchError(
            f"the branch list of {repo_id}, {path}, is not one this workflow wrote (a JSON "
            "object whose 'branches' are names): delete it, and the next plan where the "
            "network is lists the repo again"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError

    from saturation.retry import with_backoff

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
    compiled = compile_pattern(pattern, key)
    unknown = sorted(set(compiled.groupindex) - set(GROUPS))
    if "step" not in compiled.groupindex or unknown:
        raise BranchError(
            f"config key '{key}': {pattern!r} needs a named group (?P<step>...) and may have "
            f"(?P<tokens>...) or (?P<tokens_b>...)"
            + (f"; it names {', '.join(unknown)}" if unknown else "")
        )
    revisions, tokens = {}, {}
    for name in branches:
        m = bounded_fullmatch(compiled, name, key)
        if m is None:
            continue
        step = whole_number(m["step"], "step", name, key)
        if step in revisions:
            raise BranchError(
                f"config key '{key}': branches {revisions[step]!r} and {name!r} of {repo_id} "
                f"both match {pattern!r} with step {step}; narrow the pattern to one of them"
            )
        revisions[step] = name
        found = m.groupdict()
        if found.get("tokens") is not None:
            tokens[step] = whole_number(found["tokens"], "tokens", name, key)
        elif found.get("tokens_b") is not None:
            try:
                tokens[step] = round(float(found["tokens_b"]) * 1e9)
            except ValueError:
                raise BranchError(
                    f"config key '{key}': its tokens_b group captured {found['tokens_b']!r} "
                    f"in {name!r}, not a number of billions"
                ) from None
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
