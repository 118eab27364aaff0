"""`ragent app`: the Streamlit app (placeholder until the apps issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `app` command to the main CLI."""
