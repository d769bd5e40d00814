"""`defistress dashboard [SCENARIO]`: serve the live dashboard (sim/experiments/dashboard.py) with solara.

The server binds 127.0.0.1 unless told otherwise and runs until interrupted (Ctrl-C). The page needs the optional
`dashboard` extra (solara, ipyvue<2, ipyvuetify<2, altair for Mesa's imports): `pip install "defistress[dashboard]"`.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import typer

APP_MODULE = "defistress.sim.experiments.dashboard_app"
EXIT_BAD_INPUT = 2
EXTRA = 'pip install "defistress[dashboard]"'


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    @app.command()
    def dashboard(
        scenario: str = typer.Argument("eth-crash", help="built-in scenario the page opens with (a menu picks others)"),
        host: str = typer.Option("127.0.0.1", help="address to serve on (127.0.0.1: this machine only)"),
        port: int = typer.Option(8765, min=1, max=65535, help="port to serve on"),
        accounts: int = typer.Option(1500, min=100, max=20_000, help="accounts per population the page starts with"),
        hours: float = typer.Option(6.0, min=0.0, max=48.0, help="hours to run (0: the scenario's own length)"),
        blocks_per_step: int = typer.Option(25, min=1, max=300, help="blocks per step of the page (25: 5 minutes)"),
    ):
        """Open a live dashboard (Mesa SolaraViz): pick a scenario, move the sliders, run, and watch prices, the oracle
        against the reference, liquidations, bad debt and the network fill in block by block."""
        from defistress.scenarios.registry import builtin_names

        if scenario not in builtin_names():
            fail(f"scenario {scenario!r}: allowed built-in names {', '.join(builtin_names())}", EXIT_BAD_INPUT)
        if importlib.util.find_spec("solara") is None:
            fail(f"the dashboard needs solara: {EXTRA}", EXIT_BAD_INPUT)
        env = {
            **os.environ,
            "DEFISTRESS_DASHBOARD_SCENARIO": scenario,
            "DEFISTRESS_DASHBOARD_ACCOUNTS": str(accounts),
            "DEFISTRESS_DASHBOARD_HOURS": str(hours),
            "DEFISTRESS_DASHBOARD_BLOCKS_PER_STEP": str(blocks_per_step),
        }
        cmd = [sys.executable, "-m", "solara", "run", APP_MODULE, "--host", host, "--port", str(port), "--no-open"]
        cmd += ["--production", "--log-level", "warning"]
        typer.echo(f"dashboard of {scenario} on http://{host}:{port} (Ctrl-C to stop)", err=True)
        sys.stderr.flush()
        # the process becomes the solara server (same pid), so stopping this command stops the server
        os.execve(sys.executable, cmd, env)
