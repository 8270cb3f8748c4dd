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
    net.add_argument("--jitter-distribution", help="uniform (default), normal, pareto or paretonormal")
    net.add_argument(
        "--jitter-reorders",
        action="store_true",
        default=None,
        help="let jitter reorder packets as netem's does (default: packets keep their order)",
    )
    net.add_argument("--loss", help="random loss each way, e.g. 1%%")
    net.add_argument("--rate", help="bottleneck rate each way, e.g. 10mbit")
    net.add_argument("--reorder", help="share of packets sent without delay, e.g. 5%%")
    net.add_argument("--duplicate", help="share of packets duplicated, e.g. 1%%")
    net.add_argument("--seed", type=int, help="random seed (same seed, same run; default 1)")


def _add_knob_flags(parser: argparse.ArgumentParser) -> None:
    knobs = parser.add_argument_group("what adds round trips")
    knobs.add_argument("--key-type", help="server key and chain: p256 (default) or rsa2048")
    knobs.add_argument("--intermediates", type=int, help="intermediate certificates in the chain (default 1)")
    knobs.add_argument("--response-size", metavar="SIZE",
                       help="HTTP response body, e.g. 20KB (default 64 bytes): a first TLS record over the "
                            "initial window costs a round trip")
    knobs.add_argument("--server-time", metavar="DURATION",
                       help="the server holds each request this long before answering, e.g. 250ms (a slow "
                            "origin): server time, not a round trip")
    knobs.add_argument("--hrr", action="store_true", default=None, help="server accepts only P-256: HelloRetryRequest")
    knobs.add_argument("--retry", action="store_true", default=None, help="QUIC server demands a Retry")
    knobs.add_argument("--cold", action="store_true", default=None, help="no warm-up: no ticket, no TFO cookie")
    knobs.add_argument("--page", metavar="COUNTxSIZE",
                       help="fetch a page: COUNT objects of SIZE, the HTML first, then the rest at once "
                            "(e.g. 30x20KB); rows get page_ms")
    knobs.add_argument("--http", metavar="VERSION",
                       help="HTTP over TLS/TCP: 2 (default: ALPN h2, as browsers and curl) or 1.1")
    knobs.add_argument("--post", metavar="SIZE",
                       help="the request is a POST with a body of SIZE, e.g. 200B (up to 16KiB; default: a GET)")
    knobs.add_argument("--split-writes", action="store_true", default=None,
                       help="with --post: the client writes the header section and the body apart, with Nagle "
                            "on (no TCP_NODELAY), as many programs do: the body may wait for an ACK")
    knobs.add_argument("--nodelay", action="store_true", default=None,
                       help="with --split-writes: the client sets TCP_NODELAY, so Nagle holds nothing back")
    knobs.add_argument(
        "--reject-0rtt", dest="accept_early_data", action="store_false", default=None, help="server refuses early data"
    )
    knobs.add_argument(
        "--drop",
        action="append",
        metavar="SELECTOR",
        help="drop one packet: first-syn, first-synack, client-hello, server-hello, client-initial, server-initial, "
        "or server-data:N (the server's Nth full-sized packet: a loss inside a page's answers)",
    )
    parser.add_argument("--scenario", metavar="FILE", help="a TOML scenario (see scenarios/); flags override it")


_FLAG_FIELDS = {
    "network": (
        "rtt", "delay", "jitter", "jitter_distribution", "jitter_reorders", "loss", "rate", "reorder", "duplicate", "seed",
    ),
    "server": ("key_type", "intermediates", "hrr", "retry", "accept_early_data", "response_size", "server_time"),
    "client": ("cold", "drop", "http", "post", "split_writes", "nodelay"),
    "page": ("page",),
}
_SCENARIO_KEYS = {"server_time": "time", "page": "objects"}
"""Flags whose scenario field is named otherwise (``--server-time`` is ``[server] time``, ``--page``
``[page] objects``)."""


def _scenario(args: argparse.Namespace):
    """The scenario file (if any) with the flags given on the command line laid over it."""
    from handshake.scenario import load_scenario_mapping, scenario_from_mapping

    data, origin, text = {}, "command line", None
    if args.scenario:
        data, text = load_scenario_mapping(args.scenario)
        origin = args.scenario
    for section, fields in _FLAG_FIELDS.items():
        for field in fields:
            value = getattr(args, field)
            if value is not None:
                data.setdefault(section, {})[_SCENARIO_KEYS.get(field, field)] = value
    if args.variants is not None:
        data["variants"] = args.variants
    return scenario_from_mapping(data, origin, text)


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
    _add_knob_flags(compare)
    compare.add_argument("--variants", help="comma-separated variant names (default: all)")
    compare.add_argument("--format", default="table", help="table (default), markdown, json or csv")
    compare.add_argument("--capture", metavar="DIR", help="write one pcap and one NSS key log per variant here")
    compare.add_argument(
        "--engine",
        default="sim",
        help="sim (virtual time, the default) or kernel (real Linux TCP/UDP in network namespaces "
        "behind the delay shim; needs root)",
    )
    compare.add_argument(
        "--runs", type=int, default=1, help="run each variant N times with seeds seed..seed+N-1 and show the spread"
    )
    _add_shim_parser(commands)
    _add_inspect_parser(commands)
    _add_probe_parser(commands)
    from handshake.teach.commands import add_parsers

    add_parsers(commands, _add_network_flags, _add_knob_flags)
    return parser


def _add_inspect_parser(commands) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="explain the handshakes in a capture: per connection, what was negotiated and its round trips",
        description="Read a pcap or pcapng file (as a stream) and report, per TCP and QUIC connection, the TLS "
        "facts and the round trips to the first response byte, counted by the same rules as compare.",
    )
    inspect.add_argument("files", nargs="+", metavar="FILE",
                         help="pcap or pcapng capture; several files, directories and globs are read as one archive")
    inspect.add_argument("--keylog", metavar="FILE", help="NSS key log (SSLKEYLOGFILE): decrypts TLS 1.2, TLS 1.3 and QUIC")
    inspect.add_argument("--format", default="table", help="table (default), markdown, json, csv or jsonl (one "
                         "connection a line; an archive's CSV and JSON lines are written file by file)")
    inspect.add_argument("--ladder", action="store_true", help="draw each connection's packets as a ladder")
    inspect.add_argument("--jobs", type=int, help="worker processes (default: one per CPU for captures over 4 MB, "
                         "and for an archive of several files)")
    inspect.add_argument("--cluster", metavar="ADDRESS", help="read on a Dask cluster: a scheduler (tcp://host:8786) "
                         "or local:N; its workers read the files by the same paths (pip install 'handshake[cluster]')")


def _inspect(args: argparse.Namespace) -> int:
    from handshake.inspect import archive_of, check_format, inspect_file, is_archive, render

    check_format(args.format)
    if args.jobs is not None and args.cluster:
        raise UsageError("--jobs is for local processes: a --cluster has its own workers")
    if not args.cluster and not is_archive(args.files):
        inspection = inspect_file(args.files[0], args.keylog, steps=args.ladder, jobs=args.jobs)
        print(render(inspection, args.format, ladder=args.ladder, name=args.files[0]))
        return 0
    from handshake.archive import ArchiveInspection
    from handshake.report.inspect_view import STREAMED, render_archive, stream_archive, summary_text

    streamed = args.format in STREAMED and not args.ladder
    with archive_of(args.files, args.keylog, steps=args.ladder, jobs=args.jobs, cluster=args.cluster) as (files, outcomes):
        if streamed:
            failures, notes, totals = stream_archive(outcomes, args.format, sys.stdout)
        else:
            archive = ArchiveInspection.collect(files, outcomes)
            failures = archive.failures
    if streamed:
        # The rows went to stdout as they came; what is about all of them goes to stderr.
        print("\n".join([*(f"note: {note}" for note in notes if ": not read: " not in note), summary_text(totals)]),
              file=sys.stderr)
    elif len(failures) < len(archive.files):
        print(render_archive(archive, args.format, ladder=args.ladder))
    for path, reason in failures.items():
        print(f"handshake: error: {path}: {reason}", file=sys.stderr)
    return 2 if failures else 0


def _add_probe_parser(commands) -> None:
    probe = commands.add_parser(
        "probe",
        help="what a real server supports, and what each variant costs against it from here",
        description="Connect to the server the URL names with every TLS variant it allows (TLS 1.2/1.3, resumption, "
        "0-RTT, TFO, QUIC/HTTP-3 and its 0-RTT), at most two connections a variant and run, and count each "
        "one's round trips from the packets (as root; otherwise inferred from socket timings).",
    )
    probe.add_argument("url", metavar="URL", help="https://host[:port]/path")
    probe.add_argument("--runs", type=int, default=1, help="repeat every variant N times (1-20) and show the spread")
    probe.add_argument("--variants", help="comma-separated variant names (default: every TLS variant)")
    probe.add_argument("--quic", action="store_true", help="try QUIC on the URL's port even if no HTTP/3 is advertised")
    probe.add_argument("--insecure", "-k", action="store_true", help="accept a certificate that does not verify")
    probe.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in this PEM file, not the system's")
    probe.add_argument("--resolve", action="append", metavar="HOST:PORT:ADDRESS",
                       help="connect to ADDRESS for HOST:PORT instead of resolving it (as curl's option)")
    probe.add_argument("--interface", metavar="ADDRESS", help="bind the probe's sockets to this local address")
    probe.add_argument("--timeout", metavar="DURATION", help="how long each connection may take (default 10s)")
    probe.add_argument("--capture", metavar="FILE", help="write the probe's packets as a pcap (0600; needs root)")
    probe.add_argument("--keylog", metavar="FILE", help="write the probe's TLS secrets as an NSS key log (0600)")
    probe.add_argument("--format", default="table", help="table (default), markdown or json")


def _probe(args: argparse.Namespace) -> int:
    from handshake.probe.command import run_probe_command

    return run_probe_command(args)


def _add_shim_parser(commands) -> None:
    shim = commands.add_parser(
        "shim",
        help="run a command behind the delay shim, in a network namespace of its own (needs root)",
        description="Run CMD in a client network namespace (198.18.0.1) joined to a server namespace "
        "(198.19.0.1) by a userspace delay shim that applies the network flags to every packet, "
        "like Mahimahi's mm-delay. Exits with CMD's status.",
    )
    _add_network_flags(shim)
    shim.add_argument("--capture", metavar="FILE", help="write the client's view of the traffic as a pcap")
    shim.add_argument(
        "--server", metavar="CMD", help="shell command to start in the server namespace first; CMD runs once it listens"
    )
    shim.add_argument("--cleanup", action="store_true", help="remove what killed runs left behind, then exit")
    shim.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    # _scenario() reads every scenario flag; shim has only the network ones.
    shim.set_defaults(scenario=None, variants=None, **dict.fromkeys(
        field for section, fields in _FLAG_FIELDS.items() if section != "network" for field in fields))


def _shim(args: argparse.Namespace) -> int:
    from handshake.kernel.command import run_cleanup, run_shim
    from handshake.kernel.signals import Terminated

    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.cleanup:
        if command:
            raise UsageError("--cleanup takes no command")
        removed = run_cleanup()
        print(f"removed {len(removed)} leftover namespace{'s' * (len(removed) != 1)}" + "".join(f"\n  {n}" for n in removed))
        return 0
    if not command:
        raise UsageError("give the command to run: handshake shim [flags] -- CMD [ARGS...]")
    link = _scenario(args).link
    try:
        return run_shim(link, command, server=args.server, capture=args.capture)
    except Terminated as stop:
        print(f"handshake: {stop}", file=sys.stderr)
        return stop.exit_status


def _compare(args: argparse.Namespace) -> int:
    from handshake.report.rows import FORMATS, render
    from handshake.runner import ENGINES, compare

    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}: choose from " + ", ".join(FORMATS))
    if args.engine not in ENGINES:
        raise UsageError(f"unknown engine {args.engine!r}: choose from " + ", ".join(ENGINES))
    if not 1 <= args.runs <= 100_000:
        raise UsageError(f"--runs must be from 1 to 100000, not {args.runs}")
    scenario = _scenario(args)
    terminated: tuple[type[BaseException], ...] = ()
    if args.engine == "kernel":
        from handshake.kernel.signals import Terminated

        terminated = (Terminated,)
    try:
        rows = compare(
            scenario.variants, scenario.link, options=scenario.options, capture_dir=args.capture,
            runs=args.runs, engine=args.engine,
        )
    except terminated as stop:  # SIGTERM / SIGHUP during a kernel run: torn down, then this
        print(f"handshake: {stop}", file=sys.stderr)
        return stop.exit_status
    network = scenario.link.describe()
    print(render([row.as_dict() for row in rows], args.format, engine=args.engine, network=network,
                 server_time=scenario.options.server_time_s > 0))
    return 0


def _glue_negative_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Let `--rtt -5ms` reach the value check: argparse takes "-5ms" for an option otherwise."""
    actions = list(_all_actions(parser))
    known = {flag for action in actions for flag in action.option_strings}
    takes_value = {flag for action in actions if action.nargs != 0 for flag in action.option_strings}
    out: list[str] = []
    for index, token in enumerate(argv):
        if token == "--":  # what follows belongs to the command `shim` runs
            return out + argv[index:]
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
        if args.command == "shim":
            return _shim(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "probe":
            return _probe(args)
        from handshake.teach.commands import COMMANDS

        if args.command in COMMANDS:
            return COMMANDS[args.command](args, _scenario)
        raise UsageError(f"unknown command {args.command!r}")
    except UsageError as error:
        print(f"handshake: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("handshake: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
