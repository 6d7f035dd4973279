"""Printing a rich table so that nothing in it is ever cut.

Off a terminal (a pipe, a file, a CI log) rich assumes 80 columns and squeezes a wide table
until rule ids read `bank.know…`. Every command prints its tables here instead: at their
natural width, on a wider console when they need one, so identifiers, paths and figures come
out whole whatever the width.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def print_table(console: Console, table: Table) -> None:
    needed = Measurement.get(console, console.options.update_width(1_000_000), table).maximum
    if needed <= console.width:
        console.print(table)
        return
    wide = Console(
        file=console.file,
        width=needed,
        force_terminal=console.is_terminal,
        color_system=console.color_system,  # type: ignore[arg-type]
        no_color=console.no_color,
        quiet=console.quiet,
    )
    wide.print(table)
