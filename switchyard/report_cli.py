"""``switchyard report [--batch B] [--since DATE] [--json] [--png FILE]``."""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_USAGE = 0, 2


def cmd_report(args: argparse.Namespace) -> int:
    """Print the report (a table, or JSON with --json) and write the charts with --png. 2 on bad input."""
    from switchyard.cli import connected_settings
    from switchyard.db import get_engine
    from switchyard.report import UnknownBatch, build_report, latency_sample, parse_since

    since = None
    if args.since:
        try:
            since = parse_since(args.since)
        except ValueError:
            print(f"error: --since {args.since!r}: expected an ISO date or datetime, e.g. 2024-05-01 or "
                  "2024-05-01T08:00:00+00:00 (UTC when no offset is given)", file=sys.stderr)
            return EXIT_USAGE
    settings = connected_settings()
    assert settings.database_url
    engine = get_engine(settings.database_url)
    try:
        report = build_report(engine, settings.catalog, batch=args.batch, since=since)
    except UnknownBatch as exc:
        print(f"error: --batch: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        from rich.console import Console

        from switchyard.report_render import render_text

        # Piped output keeps wide tables readable instead of wrapping at rich's 80-column default.
        render_text(report, Console(width=None if sys.stdout.isatty() else 160))
    if args.png:
        from switchyard.report_render import write_png

        path = write_png(report, latency_sample(engine, report), args.png)
        # stderr, so that stdout stays valid JSON with --json.
        print(f"wrote charts to {path}", file=sys.stderr)
    return EXIT_OK
