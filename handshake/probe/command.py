"""``handshake probe``: the flags made into a target and options, the result printed."""

from __future__ import annotations

import argparse

from handshake.errors import UsageError
from handshake.units import parse_duration

from .run import PROBE_VARIANTS, ProbeOptions, run_probe
from .target import parse_target


def _read_cacert(path: str) -> bytes:
    try:
        data = open(path, "rb").read()
    except OSError as error:
        raise UsageError(f"--cacert {path}: {error.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UsageError(f"--cacert {path}: no PEM certificate in it")
    return data


def run_probe_command(args: argparse.Namespace) -> int:
    from handshake.report.probe_view import PROBE_FORMATS, render_probe

    if args.format not in PROBE_FORMATS:
        raise UsageError(f"unknown format {args.format!r}: choose from " + ", ".join(PROBE_FORMATS))
    variants = PROBE_VARIANTS
    if args.variants:
        variants = tuple(name.strip() for name in args.variants.split(",") if name.strip())
    if args.insecure and args.cacert:
        raise UsageError("--insecure verifies nothing: --cacert would not be used")
    timeout_s = parse_duration(args.timeout, "--timeout") if args.timeout else 10.0
    if timeout_s <= 0:
        raise UsageError(f"--timeout {args.timeout}: give a time over zero, e.g. 10s")
    options = ProbeOptions(
        runs=args.runs, variants=variants, ca_pem=_read_cacert(args.cacert) if args.cacert else None,
        insecure=args.insecure, quic=args.quic,
        timeout_s=timeout_s,
        capture_path=args.capture, keylog_path=args.keylog,
    )
    target = parse_target(args.url, resolve=args.resolve, local_address=args.interface)
    result = run_probe(target, options)
    print(render_probe(result, args.format))
    return 0 if any(row.round_trips is not None for row in result.rows) else 1
