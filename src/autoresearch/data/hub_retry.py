"""What a Hugging Face Hub failure means, and the retry loop around every Hub call.

:func:`with_retries` calls a function that talks to the Hub. Each failure is classified (see
``_classify``) as one of:

* final: the user must act (repo or revision not found, gated or private without a token, access refused,
  offline without a cached copy, an endpoint that is not a Hub); it becomes a
  :class:`~autoresearch.data.spec.DataError` at once, its message naming the problem and the fix;
* transient: connection errors, timeouts, HTTP 408/429/5xx, interrupted transfers; retried with
  exponential backoff (``backoff_s * 2**attempt``, at most 60 s), and after the last retry raised as
  :class:`UnreachableError` (a DataError the caller may answer with a cached copy);
* anything else is a bug and propagates unchanged.

huggingface_hub's exception classes are looked up by name, so this works across its versions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from autoresearch.data.spec import DataError

__all__ = ["HubContext", "UnreachableError", "with_retries"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_NAMES = {
    "TransportError",
    "NetworkError",
    "TimeoutException",
    "RemoteProtocolError",
    "ProtocolError",
    "ChunkedEncodingError",
    "Timeout",
    "ReadTimeoutError",
}
_CONNECT_NAMES = {"ConnectError", "ConnectTimeout", "NameResolutionError", "NewConnectionError"}
_MAX_BACKOFF_S = 60.0


class UnreachableError(DataError):
    """The Hub could not be reached after retries (a cached copy may still be used)."""


@dataclass
class HubContext:
    """Which repo, revision, endpoint and cache a Hub call is about: what its error messages name."""

    repo: str
    revision: str | None
    endpoint: str
    cache_dir: Path

    @property
    def where(self) -> str:
        return f"hf:{self.repo}" + (f"@{self.revision}" if self.revision else "")


class _Transient(Exception):
    """A failure worth retrying; ``reason`` says what it was."""

    def __init__(self, reason: str, connection: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connection = connection


class _NeverRaised(Exception):
    """Stand-in for an exception class that the installed huggingface_hub does not define."""


def _hub_errors() -> dict[str, type[BaseException]]:
    """huggingface_hub's exception classes, wherever this version defines them."""
    import huggingface_hub.utils as hf_utils

    try:
        import huggingface_hub.errors as hf_errors
    except ImportError:  # huggingface_hub < 0.23
        hf_errors = hf_utils  # type: ignore[assignment]
    names = (
        "OfflineModeIsEnabled",
        "GatedRepoError",
        "DisabledRepoError",
        "RevisionNotFoundError",
        "RepositoryNotFoundError",
        "RemoteEntryNotFoundError",
        "EntryNotFoundError",
        "HfHubHTTPError",
    )
    found: dict[str, type[BaseException]] = {}
    for name in names:
        found[name] = getattr(hf_errors, name, None) or getattr(hf_utils, name, None) or _NeverRaised
    if found["RemoteEntryNotFoundError"] is _NeverRaised:  # older versions: one EntryNotFoundError
        found["RemoteEntryNotFoundError"] = found["EntryNotFoundError"]
    return found


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts, nearest first."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(out) < 16:
        e = todo.pop(0)
        if e is None or any(e is o for o in out):
            continue
        out.append(e)
        todo += [e.__cause__, e.__context__]
    return out


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _summary(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:200]


def _classify(exc: BaseException, ctx: HubContext, action: str) -> DataError | _Transient | None:
    """Map a huggingface_hub / HTTP failure to a final DataError, a retryable _Transient, or None (a bug).

    huggingface_hub's own exceptions anywhere in the chain of causes take precedence over transport
    errors (connection, timeout) found in it.
    """
    errs = _hub_errors()
    chain = _chain(exc)
    for e in chain:
        verdict = _classify_hub_error(e, errs, ctx, action)
        if verdict is not None:
            return verdict
    for e in chain:
        verdict = _classify_transport_error(e, ctx)
        if verdict is not None:
            return verdict
    return None


def _classify_hub_error(
    e: BaseException, errs: dict[str, type[BaseException]], ctx: HubContext, action: str
) -> DataError | _Transient | None:
    """The verdict on one exception if it is one of huggingface_hub's, else None."""
    page = f"{ctx.endpoint}/datasets/{ctx.repo}"
    if isinstance(e, errs["OfflineModeIsEnabled"]):
        return DataError(
            f"HF_HUB_OFFLINE is set and {ctx.where} is not fully in the cache {ctx.cache_dir}: unset "
            f"HF_HUB_OFFLINE to download it, or use --data <path> with a local copy"
        )
    if isinstance(e, errs["GatedRepoError"]):
        return DataError(
            f"{ctx.where} is a gated dataset: accept its terms at {page} while logged in, then set "
            f"HF_TOKEN to an access token of that account"
        )
    if isinstance(e, errs["DisabledRepoError"]):
        return DataError(f"{ctx.where} is disabled on the Hub; use another dataset or --data <path>")
    if isinstance(e, errs["RevisionNotFoundError"]):
        return DataError(
            f"revision {ctx.revision or 'main'!r} not found in {ctx.where}: check the part after '@' "
            f"(a branch, tag or commit), or leave it out to use the default branch"
        )
    if isinstance(e, errs["RepositoryNotFoundError"]):
        return DataError(
            f"dataset not found: {ctx.where} does not exist at {ctx.endpoint} or is private; check the "
            f"repo name (owner/name, as in {page}); for a private or gated dataset set HF_TOKEN"
        )
    if isinstance(e, errs["RemoteEntryNotFoundError"]) and _status(e) == 404:
        return DataError(
            f"{action}: the file is missing from {ctx.where} (HTTP 404); the repo may have changed "
            f"since it was listed: rerun the command"
        )
    if isinstance(e, errs["HfHubHTTPError"]):
        return _classify_http_status(_status(e), ctx, action)
    return None


def _classify_http_status(status: int | None, ctx: HubContext, action: str) -> DataError | _Transient | None:
    """The verdict on an HTTP error from the Hub by its status; None when the status decides nothing."""
    if status in (401, 403):
        return DataError(
            f"access to {ctx.where} refused (HTTP {status}) while {action}: set HF_TOKEN to an access "
            f"token that can read it"
        )
    if status is not None and (status in _RETRY_STATUS or status >= 500):
        return _Transient(f"HTTP {status}", connection=False)
    if status == 404:
        return DataError(
            f"dataset not found: {ctx.where} at {ctx.endpoint} (HTTP 404 while {action}); check the "
            f"repo name and HF_ENDPOINT"
        )
    return None


def _classify_transport_error(e: BaseException, ctx: HubContext) -> DataError | _Transient | None:
    """The verdict on one exception if it is a transport failure (or a non-Hub answer), else None."""
    if type(e).__name__ == "FileMetadataError":
        return DataError(
            f"{ctx.endpoint} does not answer like a Hugging Face Hub ({_summary(e)}); fix HF_ENDPOINT "
            f"or use --data <path>"
        )
    names = {cls.__name__ for cls in type(e).__mro__}
    if names & _CONNECT_NAMES:
        return _Transient(_summary(e), connection=True)
    if names & _TRANSIENT_NAMES or isinstance(e, (ConnectionError, TimeoutError)):
        return _Transient(_summary(e), connection=isinstance(e, ConnectionError))
    if isinstance(e, OSError) and "Consistency check failed" in str(e):
        return _Transient("incomplete download", connection=False)
    return None


def with_retries(
    fn: Callable[[], _T], *, action: str, ctx: HubContext, max_retries: int, backoff_s: float
) -> _T:
    """Call ``fn``; retry transient failures with exponential backoff (``backoff_s * 2**attempt``).

    404/auth-type failures become a :class:`DataError` at once. After ``max_retries`` retries a transient
    failure becomes an :class:`UnreachableError` saying the endpoint could not be reached.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except DataError:
            raise
        except Exception as exc:
            verdict = _classify(exc, ctx, action)
            if verdict is None:
                raise
            if isinstance(verdict, DataError):
                raise verdict from exc
            if attempt >= max_retries:
                raise UnreachableError(
                    f"could not reach {ctx.endpoint} while {action}: {verdict.reason} "
                    f"({attempt + 1} attempt{'s' if attempt else ''}); check the network, set HF_ENDPOINT to a "
                    f"reachable Hub mirror, set HF_HUB_OFFLINE=1 to use a copy downloaded before, or use "
                    f"--data <path> with a local copy"
                ) from exc
            delay = min(backoff_s * (2**attempt), _MAX_BACKOFF_S)
            logger.warning(
                "%s: %s; retrying in %.1fs (%d/%d)", action, verdict.reason, delay, attempt + 1, max_retries
            )
            time.sleep(delay)
            attempt += 1
