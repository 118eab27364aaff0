"""`ragent agent` and `ragent sandbox` commands (placeholder until the agent issue lands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run tool-using agents.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Run code in the sandbox.", no_args_is_help=True)
