"""CSV for lists of flat records (rows, connections): lists become "; "-joined cells."""

from __future__ import annotations

import csv
import io
from typing import Any


def records_to_csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    fields = list(records[0]) if records else []
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(csv_cells(record))
    return out.getvalue().rstrip("\n")


def csv_cells(record: dict[str, Any]) -> dict[str, Any]:
    """A record's cells: lists joined with "; "."""
    return {k: ("; ".join(map(str, v)) if isinstance(v, list) else v) for k, v in record.items()}
