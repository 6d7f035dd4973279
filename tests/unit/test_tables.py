"""moderator.tables.print_table: nothing in a table is cut, whatever the console's width."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from moderator.tables import print_table

LONG_ID = "bank.known_bad_pdq_from_the_partner_exchange_2026"


def _table() -> Table:
    table = Table(title="rules")
    for column in ("id", "when", "action"):
        table.add_column(column)
    table.add_row(LONG_ID, 'bank_match("known_bad_pdq") && scores.hate >= 0.912345', "block")
    return table


def test_a_narrow_console_off_a_terminal_prints_identifiers_and_figures_whole() -> None:
    out = io.StringIO()
    console = Console(file=out, width=40, force_terminal=False)
    print_table(console, _table())
    text = out.getvalue()
    assert LONG_ID in text and "0.912345" in text and "…" not in text
    # What rich alone does at that width: the reason for print_table.
    plain = io.StringIO()
    Console(file=plain, width=40, force_terminal=False).print(_table())
    assert LONG_ID not in plain.getvalue()


def test_a_table_that_fits_prints_at_the_console_width() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    print_table(console, _table())
    assert max(len(line) for line in out.getvalue().splitlines()) <= 200
