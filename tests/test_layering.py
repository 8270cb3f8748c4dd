"""The engines know nothing of the runner (issue 12): what both need lives below both."""

from __future__ import annotations

import subprocess
import sys


def _imports(module: str) -> set[str]:
    """The handshake modules importing ``module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('handshake')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_kernel_engine_does_not_load_the_runner():
    loaded = _imports("handshake.kernel.engine")
    assert "handshake.variant_run" in loaded and "handshake.runner" not in loaded


def test_the_runner_does_not_load_the_kernel_engine():
    """Root-only machinery is loaded only when ``--engine kernel`` asks for it."""
    loaded = _imports("handshake.runner")
    assert "handshake.kernel.engine" not in loaded
