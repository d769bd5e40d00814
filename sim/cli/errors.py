"""One exit-code convention for every command, and no tracebacks.

0: success. 1: the run failed (a simulation that reverted or produced non-finite figures, or an internal
error). 2: bad input (a scenario, an override, an option, a data or portfolio file, an output folder),
found before anything is written. Click's own usage errors (an unknown option, a value out of an option's
range) also exit 2.

Commands wrap their input phase in `bad_input()` and their simulation in `run_failure()`; anything else
that escapes becomes a one-line "internal error" with exit 1 (set DEFISTRESS_DEBUG=1 to see the traceback).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 the run failed (a simulation error or non-finite results); "
    "2 bad input (scenario, overrides, options, files or output folder), with nothing written."
)

err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print one error line (no markup interpretation of the message) and exit with `code`."""
    err.print("[bold red]error:[/] ", end="")
    err.print(message, markup=False, highlight=False)
    raise typer.Exit(code)


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from defistress.scenarios.loader import ScenarioError
    from defistress.sim.engine.model import SetupError
    from defistress.sim.engine.replay import DataFileError
    from defistress.sim.experiments.outdir import OutputFolderError

    return (ScenarioError, SetupError, DataFileError, OutputFolderError)


@contextlib.contextmanager
def bad_input() -> Iterator[None]:
    """Reading and checking input: any ValueError or OSError here is bad input (exit 2)."""
    try:
        yield
    except typer.Exit:
        raise
    except (ValueError, OSError) as exc:
        fail(str(exc) or type(exc).__name__, EXIT_BAD_INPUT)


@contextlib.contextmanager
def run_failure() -> Iterator[None]:
    """Simulating and writing: input problems found late are still bad input (exit 2); anything else that
    goes wrong is a failed run (exit 1)."""
    from defistress.protocols.base import Revert
    from defistress.sim.experiments.runs import NonFiniteOutput

    try:
        yield
    except typer.Exit:
        raise
    except _bad_input_types() as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except NonFiniteOutput as exc:
        fail(str(exc), EXIT_RUN_FAILED)
    except Revert as exc:
        fail(f"the run failed: a transaction reverted outside any agent's handling: {exc}", EXIT_RUN_FAILED)
    except OSError as exc:
        fail(f"cannot write the output: {exc}", EXIT_RUN_FAILED)


def guarded(fn: F) -> F:
    """Decorate a command: an exception nobody expected becomes one "internal error" line and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
            if os.environ.get("DEFISTRESS_DEBUG"):
                raise
            fail(
                f"internal error ({type(exc).__name__}: {exc}); nothing was written. This is a bug: please report "
                "it with the command line (DEFISTRESS_DEBUG=1 shows the traceback)",
                EXIT_RUN_FAILED,
            )

    return wrapper  # type: ignore[return-value]
