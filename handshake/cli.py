"""The command line: parse, call the runner or the analysis, render. Nothing else lives here.

Bad input ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from handshake.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _add_network_flags(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("network (netem units)")
    net.add_argument("--rtt", help="round-trip time, e.g. 100ms (default 100ms; split evenly each way)")
    net.add_argument("--delay", help="one-way delay, e.g. 50ms (instead of --rtt)")
    net.add_argument("--jitter", help="delay variation, e.g. 5ms")
    net.add_argument(
        "--jitter-distribution",
        default="uniform",
        help="uniform (default), normal, pareto or paretonormal",
    )
    net.add_argument("--loss", help="random loss each way, e.g. 1%%")
    net.add_argument("--rate", help="bottleneck rate each way, e.g. 10mbit")
    net.add_argument("--reorder", help="share of packets sent without delay, e.g. 5%%")
    net.add_argument("--duplicate", help="share of packets duplicated, e.g. 1%%")
    net.add_argument("--seed", type=int, default=1, help="random seed (same seed, same run; default 1)")


def build_parser() -> argparse.ArgumentParser:
    from handshake import __version__

    parser = _Parser(
        prog="handshake",
        description="How many round trips HTTPS costs, counted from real TLS bytes on a modeled network.",
    )
    parser.add_argument("--version", action="version", version=f"handshake {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    compare = commands.add_parser(
        "compare",
        help="run every HTTPS variant over the same network and count its round trips",
        description="Run HTTPS variants (real TLS/HTTP bytes) over a netem-style link and count round trips "
        "from the packet trace.",
    )
    _add_network_flags(compare)
    compare.add_argument("--variants", help="comma-separated variant names (default: all)")
    compare.add_argument("--format", default="table", help="table (default), markdown, json or csv")
    compare.add_argument("--capture", metavar="DIR", help="write one pcap and one NSS key log per variant here")
    compare.add_argument("--engine", default="sim", help="sim (virtual time, the default)")
    return parser


def _network(args: argparse.Namespace):
    from handshake.net.link import LinkConfig
    from handshake.units import parse_duration, parse_percent, parse_rate

    if args.rtt is not None and args.delay is not None:
        raise UsageError("give --rtt or --delay, not both")
    if args.delay is not None:
        delay_s = parse_duration(args.delay, "delay")
    else:
        delay_s = parse_duration(args.rtt or "100ms", "rtt") / 2
    return LinkConfig(
        delay_s=delay_s,
        jitter_s=parse_duration(args.jitter, "jitter") if args.jitter else 0.0,
        jitter_distribution=args.jitter_distribution,
        loss=parse_percent(args.loss, "loss") if args.loss else 0.0,
        rate_bps=parse_rate(args.rate, "rate") if args.rate else float("inf"),
        reorder=parse_percent(args.reorder, "reorder") if args.reorder else 0.0,
        duplicate=parse_percent(args.duplicate, "duplicate") if args.duplicate else 0.0,
        seed=args.seed,
    )


def _compare(args: argparse.Namespace) -> int:
    from handshake.report.rows import FORMATS, render
    from handshake.runner import compare
    from handshake.variants import select

    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}: choose from " + ", ".join(FORMATS))
    if args.engine != "sim":
        raise UsageError(f"unknown engine {args.engine!r}: this build has the sim engine")
    link = _network(args)
    variants = select(args.variants)
    rows = compare(variants, link, capture_dir=args.capture)
    network = link.describe()
    print(render([row.as_dict() for row in rows], args.format, engine="sim", network=network))
    return 0


def _glue_negative_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Let `--rtt -5ms` reach the value check: argparse takes "-5ms" for an option otherwise."""
    actions = list(_all_actions(parser))
    known = {flag for action in actions for flag in action.option_strings}
    takes_value = {flag for action in actions if action.nargs != 0 for flag in action.option_strings}
    out: list[str] = []
    for token in argv:
        if out and out[-1] in takes_value and token.startswith("-") and token not in known:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_actions(sub)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(_glue_negative_values(list(sys.argv[1:] if argv is None else argv), parser))
        if args.command == "compare":
            return _compare(args)
        raise UsageError(f"unknown command {args.command!r}")
    except UsageError as error:
        print(f"handshake: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("handshake: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
