"""Transient hub errors retried: which errors are worth another try, how long to wait (the
hub's rate-limit window, else exponential backoff with jitter), and the retry loop. Used by
every module that talks to the hub (revisions, ranged reads, data sets, branch lists)."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RETRY_STATUS = (408, 429, 500, 502, 503, 504)


def backoff(attempt: int, base: float, cap: float) -> float:
    """The exponential backoff before retry ``attempt`` + 1: base * 2^attempt, capped, with
    jitter."""
    return min(cap, base * 2**attempt) * random.uniform(0.75, 1.0)


def retry_delay(exc: BaseException, attempt: int, base: float, cap: float) -> float | None:
    """Seconds to wait before retrying after ``exc``, or None if retrying cannot help.

    Rate limits (429) wait until the hub's window resets, as its ``RateLimit`` or
    ``Retry-After`` header says, and one or two seconds more; server errors, time-outs,
    dropped connections and bodies cut short back off exponentially (``backoff``). Missing
    repos, revisions and files, and gated repos, are final.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    final = (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, LocalEntryNotFoundError) and cause is not None:
        # Online, the client reports a hub it could not reach as a missing cache entry.
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE:
            return retry_delay(cause, attempt, base, cap)
    if isinstance(exc, final):
        return None
    wait = backoff(attempt, base, cap)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status is not None:
        if status not in RETRY_STATUS:
            return None
        if status == 429:
            reset = rate_limit_reset(response.headers)
            if reset is not None:  # the window's end, and a second against rounding
                return reset + random.uniform(1.0, 2.0)
        return wait
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return None  # the local disk, not the hub
    if isinstance(exc, (OSError, TimeoutError) + transport_errors()):
        # Dropped connections and time-outs, and the client's check of a body cut short
        # ("consistency check failed", an OSError).
        return wait
    return None


def rate_limit_reset(headers) -> float | None:
    """Seconds until the hub's rate-limit window resets, from a 429's headers.

    The hub sends ``RateLimit: "api";r=0;t=55`` (IETF draft headers, parsed by the client's
    own ``parse_ratelimit_headers``) and ``Retry-After``; the window's own reset is used where
    the budget is spent, else ``Retry-After``. None if neither says.
    """
    from huggingface_hub.utils import parse_ratelimit_headers

    info = parse_ratelimit_headers(headers)
    if info is not None and info.remaining == 0:
        return float(info.reset_in_seconds)
    after = (headers.get("Retry-After") or "").strip()
    return float(after) if after.isdigit() else None


def transport_errors() -> tuple[type, ...]:
    """The HTTP library's transport errors (huggingface_hub 2 uses httpx2, 1.x httpx)."""
    import importlib

    found = []
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(importlib.import_module(name).TransportError)
    return tuple(found)


def with_backoff(
    call: Callable, what: str, attempts: int, base: float, cap: float, sleep=time.sleep
):
    """``call()``, retried up to ``attempts`` times in all on transient hub errors."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - classified by retry_delay
            delay = retry_delay(exc, attempt, base, cap)
            if delay is None or attempt == attempts - 1:
                raise
            log.warning(
                "%s: %s; retry %d of %d in %.1f s",
                what,
                str(exc).splitlines()[0],
                attempt + 1,
                attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")
