"""The fedsec ``ServerApp`` (Flower Message API).

``app`` is what ``flwr run .`` loads: it reads the experiment from the Flower
run config (the flattened ``section.key`` keys of ``[tool.flwr.app.config]``
plus ``--run-config`` overrides). ``make_server_app(cfg)`` is what
``simulations/run.py`` uses with a config it has already resolved.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsec.app.server import run_experiment
from fedsec.config import Config

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment described by the run config."""
    run_experiment(grid, Config.from_flat(dict(context.run_config)))


def make_server_app(cfg: Config, resume: bool = False) -> ServerApp:
    """A ServerApp bound to an already resolved config (``resume``: from its last checkpoint)."""
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        run_experiment(grid, cfg, resume=resume)

    return server_app
