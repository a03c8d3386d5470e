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
