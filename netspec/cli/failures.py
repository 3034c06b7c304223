"""The one place every failure of a command becomes what the user sees and the exit status.

    NetspecError (any kind: spec, data, model file, run, export, option)  → its diagnostics, exit 2
    RunStopped (a training that stopped: divergence, Ctrl-C, SIGTERM)     → its message, its exit code
    Ctrl-C outside a training                                              → `interrupted`, exit 130
    a closed pipe (`netspec check big.yaml | head`)                        → nothing, exit 141
    anything else (a bug)                                                  → one `internal error:` line, exit 1

`--debug` re-raises user and internal errors, for their traceback.
"""

from __future__ import annotations

import os
import sys

from netspec.errors import NetspecError, RunStopped, printable

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def report_failure(error: BaseException, debug: bool) -> int:
    """Print `error` for the user on stderr and return the exit status (or re-raise it under --debug)."""
    if isinstance(error, BrokenPipeError):  # the reader left, as with any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_BROKEN_PIPE
    if not isinstance(error, Exception | KeyboardInterrupt):  # not a failure (SystemExit, GeneratorExit)
        raise error
    if debug and isinstance(error, Exception) and not isinstance(error, RunStopped):
        raise error
    text, status = describe(error)
    print(text, file=sys.stderr)
    return status


def describe(error: BaseException) -> tuple[str, int]:
    """The text the user sees for `error`, and the exit status."""
    if isinstance(error, NetspecError):
        return error.format(), error.exit_code
    if isinstance(error, RunStopped):  # the message says what was kept on disk
        return printable(str(error), keep_newlines=True), error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    return (f"internal error: {type(error).__name__}: {printable(str(error))} (run with --debug for the traceback)",
            1)
