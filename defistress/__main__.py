"""`python -m defistress` is the `defistress` command."""

from defistress.sim.cli.app import app

app(prog_name="defistress")
