"""Human-readable terminal output (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from schemas.tables import JOB_STATES


def print_status(batch: str, counts: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"batch {batch}: {counts['done']}/{counts['total']} finished")
    table.add_column("model")
    for state in JOB_STATES:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right")
    for model, states in sorted(counts["models"].items()):
        table.add_row(model, *(str(states.get(s, 0)) for s in JOB_STATES), str(sum(states.values())))
    table.add_row("[b]all[/b]", *(f"[b]{counts['states'].get(s, 0)}[/b]" for s in JOB_STATES),
                  f"[b]{counts['total']}[/b]")
    console.print(table)
