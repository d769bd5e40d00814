"""The module `solara run` serves for `defistress dashboard`: its `Page` is the dashboard (experiments/dashboard.py).

Kept apart so that importing the dashboard's model and settings needs no solara; only serving the page does.
"""

from __future__ import annotations

import solara

from defistress.sim.experiments.dashboard import page


@solara.component
def Page():  # noqa: N802 - the name `solara run` looks for
    return page()
