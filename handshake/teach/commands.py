"""The teaching subcommands: `run SCENARIO`, `explain`, `budget`, `sweep`. Parse, call, render — as cli.py."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys

from handshake.errors import UsageError


def add_parsers(commands, add_network_flags, add_knob_flags) -> None:
    run = commands.add_parser("run", help="run a scenario file (network, server, variants)")
    run.add_argument("scenario_file", metavar="SCENARIO", help="a TOML scenario, e.g. scenarios/transatlantic.toml")
    run.add_argument("--format", default="table", help="table (default), markdown, json or csv")
    run.add_argument("--capture", metavar="DIR", help="write one pcap and one NSS key log per variant here")
    run.add_argument("--runs", type=int, default=1, help="seeded repeats per variant, with the spread")

    explain = commands.add_parser(
        "explain",
        help="run one variant and draw its ladder from the trace",
        description="Runs VARIANT on the virtual-time engine and draws the measured connection: every "
        "packet with its time, round and what it carries, read from the trace.",
    )
    explain.add_argument("variant", metavar="VARIANT", help="a variant name, e.g. tls13-0rtt")
    add_network_flags(explain)
    add_knob_flags(explain)
    explain.add_argument("--mermaid", action="store_true", help="print a Mermaid sequence diagram instead")

    budget = commands.add_parser(
        "budget",
        help="which variants reach the first byte within a time budget",
        description="Runs each variant and compares its time to first byte with the budget. With --rtt A:B, "
        "finds the largest RTT in that range at which each variant still fits.",
    )
    add_network_flags(budget)
    add_knob_flags(budget)
    budget.add_argument("--budget", required=True, help="time to first byte allowed, e.g. 250ms")
    budget.add_argument("--variants", help="comma-separated variant names (default: all)")
    budget.add_argument("--format", default="table", help="table (default), json or csv")

    sweep = commands.add_parser(
        "sweep",
        help="TTFB against RTT (or a page's load against loss) for many runs, with a plot",
        description="Runs every RTT × variant × seed in parallel processes; --plot draws TTFB against RTT. "
                    "--x loss runs every loss of --loss A:B:STEP at one RTT instead, and with --page draws "
                    "page_ms against loss; --http 1.1,2 runs each TCP variant over both (QUIC: HTTP/3).",
    )
    add_network_flags(sweep)
    add_knob_flags(sweep)
    sweep.add_argument("--variants", help="comma-separated variant names (default: all)")
    sweep.add_argument("--seeds", type=int, default=1, help="runs per point, seeds seed..seed+N-1 (default 1)")
    sweep.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    sweep.add_argument("--cluster", metavar="ADDRESS", help="run on a Dask cluster: a scheduler (tcp://host:8786) "
                       "or local:N for N local workers (pip install 'handshake[cluster]')")
    sweep.add_argument("--x", choices=("rtt", "loss"), default="rtt",
                       help="what varies: rtt (--rtt A:B:STEP, the default) or loss (--loss A:B:STEP at one --rtt)")
    sweep.add_argument("--plot", metavar="FILE.png", help="write a PNG of TTFB (with --page: page_ms) against the x")
    sweep.add_argument("--format", default="table",
                       help="table (default), csv, jsonl (both written run by run as they finish) or json")


def _split_rtt(args: argparse.Namespace, *, with_step: bool, required: bool):
    from handshake.teach.ranges import parse_rtt_range

    if args.rtt is None or ":" not in args.rtt:
        if required:
            raise UsageError("sweep needs --rtt A:B:STEP, e.g. --rtt 10ms:300ms:10ms")
        return None
    if args.delay is not None:
        raise UsageError("give --rtt or --delay, not both")
    low, high, step = parse_rtt_range(args.rtt, with_step=with_step)
    args.rtt = f"{low * 1000:.6f}ms"  # the range's start stands for the rest of the network
    return low, high, step


def _run(args: argparse.Namespace, scenario_of) -> int:
    from handshake.report.rows import FORMATS, render
    from handshake.runner import compare

    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}: choose from " + ", ".join(FORMATS))
    if not 1 <= args.runs <= 100_000:
        raise UsageError(f"--runs must be from 1 to 100000, not {args.runs}")
    from handshake.scenario import load_scenario

    scenario = load_scenario(args.scenario_file)
    rows = compare(scenario.variants, scenario.link, options=scenario.options, capture_dir=args.capture, runs=args.runs)
    print(render([row.as_dict() for row in rows], args.format, engine="sim", network=scenario.link.describe(),
                 server_time=scenario.options.server_time_s > 0))
    return 0


def _explain(args: argparse.Namespace, scenario_of) -> int:
    from handshake.report.ladder import render_ladder
    from handshake.report.mermaid import render_mermaid
    from handshake.teach.explain import explain, summary

    args.variants = args.variant
    scenario = scenario_of(args)
    explanation = explain(scenario.variants[0], scenario.link, scenario.options)
    if args.mermaid:
        title = f"{explanation.row.variant} at {scenario.link.rtt_s * 1000:g} ms RTT"
        print(render_mermaid(explanation.connection, title))
    else:
        print(summary(explanation))
        print()
        print(render_ladder(explanation.connection))
        page = explanation.page
        if page is not None and page.blocking is not None:
            from handshake.teach.waterfall import render_waterfall

            print()
            print(f"the page, lane by lane ({scenario.options.page.label}; the ladder above is its first connection):")
            print(render_waterfall(page.blocking, page.start_s))
    return 0


def _budget(args: argparse.Namespace, scenario_of) -> int:
    from tabulate import tabulate

    from handshake.teach.budget import at_rtt, largest_rtt
    from handshake.units import parse_duration

    if args.format not in ("table", "json", "csv"):
        raise UsageError(f"unknown format {args.format!r}: choose from table, json, csv")
    budget_s = parse_duration(args.budget, "budget")
    rtt_range = _split_rtt(args, with_step=False, required=False)
    scenario = scenario_of(args)
    if rtt_range is None:
        rows = at_rtt(scenario.variants, scenario.link, scenario.options, budget_s)
    else:
        rows = largest_rtt(scenario.variants, scenario.link, scenario.options, budget_s, rtt_range[0], rtt_range[1])
    data = [row.as_dict() for row in rows]
    if rtt_range is None:
        for row in data:
            del row["max_rtt_ms"]
    if args.format == "json":
        print(json.dumps({"budget_ms": budget_s * 1000, "network": scenario.link.describe(), "rows": data}, indent=2))
        return 0
    if args.format == "csv":
        from handshake.report.csv_out import records_to_csv

        print(records_to_csv(data))
        return 0
    headers = ["variant", "fits", "TTFB ms", "margin ms", "RTTs"] + (["largest RTT ms"] if rtt_range else [])
    body = [
        [r["variant"], "yes" if r["fits"] else "no", _num(r["ttfb_ms"]), _num(r["margin_ms"]), _num(r["round_trips"])]
        + ([_num(r["max_rtt_ms"])] if rtt_range else [])
        for r in data
    ]
    where = f"RTT {rtt_range[0] * 1000:g}–{rtt_range[1] * 1000:g} ms" if rtt_range else f"RTT {scenario.link.rtt_s * 1000:g} ms"
    print(f"budget {budget_s * 1000:g} ms to the first byte, {where}\n")
    print(tabulate(body, headers=headers, disable_numparse=True))
    return 0


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _sweep(args: argparse.Namespace, scenario_of) -> int:
    from handshake.teach.ranges import parse_loss_range, rtt_points
    from handshake.teach.sweep import ProgressBar, line_order, sweep_chunks

    if args.format not in ("table", "json", "csv", "jsonl"):
        raise UsageError(f"unknown format {args.format!r}: choose from table, csv, jsonl, json")
    if not 1 <= args.seeds <= 10_000:
        raise UsageError(f"--seeds must be from 1 to 10000, not {args.seeds}")
    if args.jobs is not None and not 1 <= args.jobs <= 256:
        raise UsageError(f"--jobs must be from 1 to 256, not {args.jobs}")
    if args.jobs is not None and args.cluster:
        raise UsageError("--jobs is for local processes: a --cluster has its own workers")
    https = _sweep_https(args)
    losses = None
    if args.x == "loss":
        if args.loss is None or ":" not in args.loss:
            raise UsageError("sweep --x loss needs --loss A:B:STEP, e.g. --loss 0%:5%:1%")
        if args.rtt is not None and ":" in args.rtt:
            raise UsageError("sweep --x loss runs at one --rtt, not a range")
        losses = parse_loss_range(args.loss)
        args.loss = None  # each run's own loss is the range's
    else:
        low, high, step = _split_rtt(args, with_step=True, required=True)
    scenario = scenario_of(args)
    rtts = [scenario.link.delay_s * 2] if losses is not None else rtt_points(low, high, step)
    x = "loss_pct" if losses is not None else "rtt_ms"
    y = "page_ms" if scenario.options.page is not None else "ttfb_ms"
    with contextlib.ExitStack() as stack:
        client = None
        if args.cluster:
            from handshake.cluster import cluster_client

            client = stack.enter_context(cluster_client(args.cluster))
        chunks = sweep_chunks(scenario.variants, scenario.link, scenario.options, rtts, seeds=args.seeds,
                              losses=losses, https=https, jobs=args.jobs, cluster=client, progress=ProgressBar())
        lines, failed, runs = _write_sweep(chunks, args.format, x, y, extended=bool(losses or https or y == "page_ms"))
    lines = {name: lines[name] for name in line_order(scenario.variants, https) if name in lines}
    if args.plot:
        from handshake.report.plot import plot_series

        hidden = ("rtt_ms", "delay_ms") if x == "rtt_ms" else ("delay_ms", "loss", "loss_pct")
        network = ", ".join(f"{k}={v}" for k, v in scenario.link.describe().items() if k not in hidden)
        page = scenario.options.page
        what = f"Page load ({page.label})" if page is not None else "TTFB"
        against = {"rtt_ms": "RTT", "loss_pct": "loss"}[x]
        plot_series(lines, args.plot, title=f"{what} against {against}" + (f" ({network})" if network else ""),
                    x=x, y=y)
    if args.format == "json":
        print(json.dumps({"network": scenario.link.describe(), "series": lines, "runs": runs}))
    elif args.format == "table":
        from tabulate import tabulate

        body = [
            [name, f"{r[x]:g}", _num(r[f"{y}_median"]), f"{_num(r[f'{y}_min'])}–{_num(r[f'{y}_max'])}", f"{r['complete']}/{r['runs']}"]
            for name, rows in lines.items()
            for r in rows
        ]
        headers = ["variant", {"rtt_ms": "RTT ms", "loss_pct": "loss %"}[x],
                   {"ttfb_ms": "TTFB ms (median)", "page_ms": "page ms (median)"}[y], "spread", "complete"]
        print(tabulate(body, headers=headers, disable_numparse=True))
    if args.plot:
        print(f"plot: {args.plot}", file=sys.stderr if args.format in ("csv", "jsonl") else sys.stdout)
    for reason, count in failed.items():
        print(f"handshake: {count} run{'s' * (count != 1)} failed on every try: {reason}", file=sys.stderr)
    return 1 if failed else 0


def _sweep_https(args: argparse.Namespace) -> list[str] | None:
    """``--http 1.1,2`` in a sweep: each TCP variant over each (the scenario then reads none)."""
    if args.http is None or "," not in args.http:
        return None
    https = [h.strip() for h in args.http.split(",")]
    for http in https:
        if http not in ("1.1", "2"):
            raise UsageError(f"unknown --http {http!r}: choose from 1.1, 2 (QUIC speaks HTTP/3)")
    if len(set(https)) != len(https):
        raise UsageError(f"--http {args.http!r} names a version twice")
    args.http = None
    return https


def _write_sweep(chunks, fmt: str, x: str = "rtt_ms", y: str = "ttfb_ms",
                 extended: bool = False) -> tuple[dict, dict[str, int], list[dict]]:
    """Write CSV or JSON lines run by run as the chunks come (nothing kept but the aggregates);
    keep the runs only for the JSON document. Returns the series, failures by reason, runs kept.
    ``extended``: a loss sweep, several HTTP versions or a page: the CSV says which and what."""
    from handshake.teach.sweep import Series

    lines = Series(x, y)
    failed: dict[str, int] = {}
    runs: list[dict] = []
    rows = csv.writer(sys.stdout, lineterminator="\n")
    if fmt == "csv":
        rows.writerow(["variant", "rtt_ms", "seed", "round_trips", "ttfb_ms", "error"] if not extended else
                      ["variant", "http", "rtt_ms", "loss_pct", "seed", "round_trips", "ttfb_ms", "page_ms",
                       "head_of_line_ms", "error"])
        sys.stdout.flush()
    for points in chunks:
        lines.add(points)
        for p in points:
            if p.error is not None:
                failed[p.error] = failed.get(p.error, 0) + 1
        if fmt == "csv":
            if extended:
                rows.writerows([p.variant, p.http or "", f"{p.rtt_ms:g}", _num(p.loss_pct), p.seed, _num(p.round_trips),
                                _num(p.ttfb_ms), _num(p.page_ms), _num(p.head_of_line_ms), p.error or ""]
                               for p in points)
            else:
                rows.writerows([p.variant, f"{p.rtt_ms:g}", p.seed, _num(p.round_trips), _num(p.ttfb_ms), p.error or ""]
                               for p in points)
            sys.stdout.flush()
        elif fmt == "jsonl":
            sys.stdout.write("".join(json.dumps(p.as_dict()) + "\n" for p in points))
            sys.stdout.flush()
        elif fmt == "json":
            runs.extend(p.as_dict() for p in points)
    return lines.result(), failed, runs


COMMANDS = {"run": _run, "explain": _explain, "budget": _budget, "sweep": _sweep}
