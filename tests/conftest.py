"""Refuse to test a stale build: the per-packet modules are compiled (setup.py), and a compiled
module is imported in place of its source, so an edit not rebuilt would go untested.

HYPOTHESIS_PROFILE=ci (what .ci/run sets) draws the same examples on every run, so that CI
judges a change and not the luck of a draw; a run without it explores new examples, as runs
by hand should."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

PACKAGE = Path(__file__).resolve().parents[1] / "handshake"


def pytest_configure(config: pytest.Config) -> None:
    manifest = PACKAGE / "compiled_from.json"  # written by setup.py's build: a hash per source
    if not manifest.exists():
        return  # not compiled in place: the sources are what runs
    built = json.loads(manifest.read_text())
    stale = [path for path, digest in built.items()
             if hashlib.sha256((PACKAGE.parent / path).read_bytes()).hexdigest() != digest]
    if stale:
        pytest.exit(f"{', '.join(sorted(stale))} changed since compiled: rebuild with "
                    "`python3 setup.py build_ext --inplace` (or `pip install -e .`)", returncode=2)
