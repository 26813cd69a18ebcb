"""Exit codes and the one exception type the CLI turns into them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a finished run tells cron, CI and shells."""

    OK = 0  # every slice done
    FAILED = 1  # finished, but a slice failed or documents failed beyond the error budget
    USAGE = 2  # bad flag, config key, time or mapping
    UNAVAILABLE = 3  # server unreachable, table missing, Thrift transport/protocol mismatch
    LOCKED = 75  # another run holds the ledger (EX_TEMPFAIL: cron may simply try again)
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


class Hbase2esError(Exception):
    """An error the user can act on; str() is the one line printed on stderr."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __reduce__(self):
        # Crosses the worker pipes: keep the code when it pickles.
        return (type(self), (str(self), self.exit_code))


class ConfigError(Hbase2esError):
    """A bad setting: names the key and where it came from."""

    exit_code = ExitCode.USAGE


class UnavailableError(Hbase2esError):
    """A server that does not answer, a table that does not exist, a protocol mismatch."""

    exit_code = ExitCode.UNAVAILABLE
