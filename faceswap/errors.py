"""The failure policy: the error types, a shard's status row, and the exit code of failed rows.

    a shard's work -> shard_status() -> {"status": ok|failed, "error", "error_kind": input|service|crash}
      -> the driver: raise_for_failed(rows) -> InputError (2) | ServiceUnavailable (1) | StageFailed (1)
      -> cli.main: user_error() finds it behind Ray's wrappers, prints one line, exits with its code

Exit codes: 0 ok, 1 other failure (a service down after retries, a crashed shard), 2 bad
input or usage, 3 `verify` found no mark.
"""

from __future__ import annotations

from typing import Callable


class FaceswapError(Exception):
    """Something the user can fix: bad input, bad config, missing weights.

    The message is one line that names the file or URI and the problem.
    """

    exit_code = 2


class InputError(FaceswapError):
    """An input file, folder or reference that cannot be used."""


class ConfigError(FaceswapError):
    """A config file or a combination of options that cannot be used."""


class StoreError(FaceswapError):
    """The object store refused us: missing bucket, wrong credentials, bad key."""


class ServiceUnavailable(Exception):
    """A service (object store, Ray) did not answer after bounded retries: exit 1."""

    exit_code = 1


class StageFailed(Exception):
    """Work crashed for a reason that is neither bad input nor a service down (a bug, a dead
    ffmpeg): exit 1, with the first failure in one line."""

    exit_code = 1


def chain(exc: BaseException | None):
    """``exc`` and everything behind it: causes, contexts, and the errors Ray wraps (a task's
    ``cause``, Ray Train's ``worker_failures`` and ``controller_failure``), each once."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__, getattr(e, "controller_failure", None)]
        todo += list((getattr(e, "worker_failures", None) or {}).values())


def user_error(exc: BaseException) -> FaceswapError | ServiceUnavailable | StageFailed | None:
    """The error behind ``exc`` that tells the user what to do (bad input: exit 2; a service down or
    failed shards: exit 1), or None for a crash."""
    return next((e for e in chain(exc) if isinstance(e, (FaceswapError, ServiceUnavailable, StageFailed))), None)


# -- status rows ---------------------------------------------------------------------------------

OK = {"status": "ok", "error": "", "error_kind": ""}
# What a failed row's kind becomes on the driver; the most urgent kind present wins.
_RAISE = {"service": ServiceUnavailable, "crash": StageFailed, "input": InputError}


def failure_row(exc: BaseException) -> dict:
    """A shard's failure as status columns: the user's error if there is one behind ``exc``. A local
    OSError (a folder in the way, a full disk) is the user's to fix, like bad input."""
    err = user_error(exc) or exc
    if isinstance(err, ServiceUnavailable):
        kind = "service"
    elif isinstance(err, (FaceswapError, OSError)):
        kind = "input"
    else:
        kind = "crash"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return {"status": "failed", "error": f"{type(err).__name__}: {text}" if text else type(err).__name__,
            "error_kind": kind}


def shard_status(work: Callable[[], dict | None]) -> dict:
    """Run one shard's ``work``: its result columns plus OK, or failure_row; never raises, so one bad
    shard becomes a counted, reported row instead of failing the whole dataset."""
    try:
        return {**OK, **(work() or {})}
    except Exception as exc:  # noqa: BLE001 - becomes this shard's status row, never dropped
        return failure_row(exc)


def raise_for_failed(rows: list[dict], what: str, where: Callable[[dict], str], hint: str) -> None:
    """Raise for the failed rows, if any: a service down (exit 1) before a crash (exit 1) before bad
    input (exit 2). The message names where the first failure of that kind happened, and how many."""
    failed = [r for r in rows if r["status"] != "ok"]
    if not failed:
        return
    kind = next(k for k in _RAISE if any(r["error_kind"] == k for r in failed))
    first = next(r for r in failed if r["error_kind"] == kind)
    raise _RAISE[kind](f"{where(first)} failed: {first['error']}; {len(failed)} of {len(rows)} {what} failed "
                       f"({hint})")
