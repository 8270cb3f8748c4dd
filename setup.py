"""Builds handshake. Everything is in setup.cfg but this: the per-packet path of ``inspect``
(capture reading, packet decoding, the TCP, TLS and QUIC analysis) is compiled with mypyc, which
turns the same type-annotated Python into C extension modules, 5-6x faster here. Where it cannot be
compiled (no C compiler, HANDSHAKE_PURE_PYTHON=1), the package installs as plain Python and
behaves the same, only slower."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
COMPILED = sorted(
    str(path.relative_to(HERE))
    for pattern in ("handshake/analysis/**/*.py", "handshake/trace/*.py", "handshake/net/tcp.py",
                    "handshake/net/sack.py", "handshake/net/cubic.py",
                    "handshake/net/receive_window.py")
    for path in HERE.glob(pattern)
    if path.name != "__init__.py"
)


MANIFEST = "handshake/compiled_from.json"
"""SHA-256 of each compiled source as it was built: tests refuse a build older than its sources."""


class OptionalBuildExt(build_ext):
    """A failed compilation leaves the pure-Python package, which works, and says so."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # noqa: BLE001 - any compiler or mypyc failure
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)  # half a build would not import
            print(f"handshake: not compiled ({error}); installing the pure-Python package", file=sys.stderr)
            return
        if self.extensions:
            manifest = (HERE if self.inplace else Path(self.build_lib)) / MANIFEST
            manifest.write_text(json.dumps({path: hashlib.sha256((HERE / path).read_bytes()).hexdigest()
                                            for path in COMPILED}, indent=1))


def compiled_modules() -> list:
    if os.environ.get("HANDSHAKE_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    # group_name: mypyc's shared library gets a fixed name (handshake_compiled__mypyc), not a hash of
    # the module list, so an editable install keeps finding it after a rebuild.
    return mypycify(["--ignore-missing-imports", "--follow-imports=silent", *COMPILED], opt_level="3",
                    group_name="handshake_compiled")


setup(ext_modules=compiled_modules(), cmdclass={"build_ext": OptionalBuildExt})
