"""The `aduana` command line: wiring from options to flows, and from results to flows/render.py's text.

The group and its global options are in root.py; the commands are in one module per family (data_commands,
model_commands, risk_commands, service_commands), registered here in the order `aduana --help` lists them. `main` is the console script.
Errors are one line and a non-zero exit code; --debug shows the traceback."""
from __future__ import annotations

import sys

import typer

from features.errors import UserError
from flows.cli import data_commands as data
from flows.cli import model_commands as models
from flows.cli import risk_commands as risk
from flows.cli import service_commands as service
from flows.cli import stack_commands as stack
from flows.cli.output import fail
from flows.cli.root import app, state
from flows.orchestration import runtime

EX_TEMPFAIL = 75  # sysexits.h: a temporary failure (a busy warehouse); retrying later may succeed

app.command()(data.generate)
app.command()(data.ingest)
app.command()(models.train)
app.command()(models.evaluate)
app.command()(data.score)
app.command()(service.serve)
app.command()(risk.audit)
app.command()(risk.ratings)
app.command()(models.monitor)
app.command()(risk.backtest)
app.command()(service.schedule)
app.add_typer(service.server_app, name="server")
app.add_typer(stack.stack_app, name="stack")
app.command()(models.promote)
app.command(name="warnings")(models.warnings_command)
app.command()(data.demo)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point. Exit codes: 0 done, 2 usage or bad input, 75 busy (retry later), 1 a bug."""
    runtime.settle_gc()
    from pydantic import ValidationError

    # Typer raises its own copy of Click's exceptions (typer._click), not those of the `click` package.
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    as_json = "--json" in sys.argv[1:]
    try:
        app(standalone_mode=False, prog_name="aduana")
    except typer.Abort:
        fail("aborted", 130, "aborted", as_json)
    except usage_error as exc:  # usage: an unknown option, a missing file, a value out of range
        if not as_json:
            exc.show()
            sys.exit(exc.exit_code)
        fail(exc.format_message(), exc.exit_code, "usage", as_json)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if state["debug"]:
            raise
        from features.warehouse import WarehouseBusy

        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ValidationError):  # a value a flow's parameters refuse: bad input, said by field
            message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        if isinstance(exc, UserError | ValidationError):
            fail(message, 2, "input", as_json)
        if isinstance(exc, WarehouseBusy):
            fail(message, EX_TEMPFAIL, "busy", as_json)
        fail(f"{type(exc).__name__}: {message} (--debug for details)", 1, "internal", as_json)
