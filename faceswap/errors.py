"""One error type for what the user can fix; `cli.main` prints it as one line.

Exit codes: 0 ok, 1 other failure (a service down after retries), 2 bad input
or usage, 3 `verify` found no mark.
"""


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


def user_error(exc: BaseException) -> FaceswapError | ServiceUnavailable | None:
    """The error behind ``exc`` that tells the user what to do (bad input: exit 2; a service down:
    exit 1), or None for a crash."""
    return next((e for e in chain(exc) if isinstance(e, (FaceswapError, ServiceUnavailable))), None)
