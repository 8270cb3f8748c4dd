"""Refuse to test a stale build: the per-packet modules are compiled (setup.py), and a compiled
module is imported in place of its source, so an edit not rebuilt would go untested."""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "handshake"


def pytest_configure(config: pytest.Config) -> None:
    stale = [
        str(source.relative_to(PACKAGE.parent))
        for compiled in PACKAGE.rglob("*.so")
        if (source := compiled.with_name(compiled.name.split(".")[0] + ".py")).exists()
        and source.stat().st_mtime > compiled.stat().st_mtime
    ]
    if stale:
        pytest.exit(f"{', '.join(sorted(stale))} changed since compiled: rebuild with "
                    "`python3 setup.py build_ext --inplace` (or `pip install -e .`)", returncode=2)
