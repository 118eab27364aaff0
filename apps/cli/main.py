"""The ``ragent`` command line: every capability of the project is reachable from here.

Each command group lives in its own module and imports heavy libraries inside its commands, so that
``ragent --help`` stays fast.
"""

from __future__ import annotations

import logging
import os

import typer

from apps.cli import agent, api, backend, evaluate, kb, mcp, train, ui

app = typer.Typer(
    name="ragent",
    help="Happy-LLM applications on a model you serve yourself: serve a model, build knowledge bases, ask them, "
    "run agents, evaluate models, train your own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log debug messages to stderr, libraries' included (default: warnings of ours, "
        "errors of libraries; RAGENT_LOG_LEVEL=info|debug|... sets another level)."
    ),
) -> None:
    from apps.logs import LEVEL_ENV, configure_logging

    if verbose:
        os.environ[LEVEL_ENV] = "debug"  # processes we start (the app) log at the same level
    configure_logging(logging.DEBUG if verbose else None)
    # Nothing in this project may download weights from a model hub at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


backend.register(app)
app.add_typer(kb.app, name="kb")
app.add_typer(agent.app, name="agent")
app.add_typer(agent.sandbox_app, name="sandbox")
app.add_typer(evaluate.app, name="eval")
app.add_typer(train.app, name="train")
ui.register(app)
api.register(app)
mcp.register(app)

if __name__ == "__main__":
    app()
