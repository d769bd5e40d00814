"""`defistress graph`: draw a scenario's network (after a run, nodes coloured by losses)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from defistress.scenarios.loader import ScenarioError, load


def register(app: typer.Typer) -> None:
    @app.command()
    def graph(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML"),
        out: Path = typer.Option(Path("network.png"), help="PNG file to write"),
        run: bool = typer.Option(
            False, "--run", help="run the scenario first: protocol nodes sized by debt and coloured by bad debt"
        ),
        seed: int | None = typer.Option(None, help="seed for --run"),
        set_: list[str] = typer.Option([], "--set", help="overrides, as for `run`"),
    ):
        """Draw the network of protocols, assets, oracles, venues and agents with typed edges."""
        from matplotlib.figure import Figure

        from defistress.sim.engine import network
        from defistress.sim.report import plots

        err = Console(stderr=True, soft_wrap=True)
        try:
            loaded = load(scenario, set_)
            result = None
            if run:
                from defistress.sim.experiments.runs import run_scenario

                result = run_scenario(loaded, seed)
            g = (
                result.graph
                if result is not None and result.graph is not None
                else network.build_graph(loaded.scenario)
            )
        except (ScenarioError, ValueError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        fig = Figure(figsize=plots.NETWORK_FIGSIZE, layout="constrained")
        plots.plot_network(result if result is not None else g, ax=fig.add_subplot())
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        Console().print(f"{g.number_of_nodes()} nodes, {g.number_of_edges()} edges -> [bold]{out}[/]")
