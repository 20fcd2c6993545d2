"""``python -m switchyard.localapi openai|anthropic --port N --rpm R --tpm T ...``

Prints one line ``SWITCHYARD_LOCALAPI_URL=<base_url>`` on stdout once listening (useful with ``--port 0``),
then serves until SIGTERM or Ctrl-C. Faults and limits can be changed at run time with ``POST /_control``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from switchyard.localapi.anthropic_server import anthropic_server
from switchyard.localapi.openai_server import openai_server


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m switchyard.localapi", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dialect", choices=["openai", "anthropic"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (see the printed URL)")
    p.add_argument("--rpm", type=int, default=None, help="requests per sliding minute (default: unlimited)")
    p.add_argument("--tpm", type=int, default=None, help="tokens per sliding minute (default: unlimited)")
    p.add_argument("--api-key", default=None, help="require this key (default: any non-empty key)")
    p.add_argument("--context-window", type=int, default=None, help="reject longer prompts like the API")
    p.add_argument("--model", action="append", dest="models", help="listed by GET /v1/models (repeatable)")
    p.add_argument("--delay", type=float, default=0.0, help="hold every model response this many seconds")
    p.add_argument("--fail-next", type=int, default=0, help="fail the first N model requests ...")
    p.add_argument("--fail-status", type=int, default=503, help="... with this status")
    p.add_argument("--retry-after", type=float, default=None, help="... and this Retry-After")
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    make = openai_server if args.dialect == "openai" else anthropic_server
    options = {"host": args.host, "port": args.port, "rpm": args.rpm, "tpm": args.tpm,
               "api_key": args.api_key, "context_window": args.context_window, "delay_s": args.delay}
    if args.models:
        options["models"] = args.models
    server = make(**options)
    if args.fail_next > 0:
        server.fail_next(args.fail_next, status=args.fail_status, retry_after=args.retry_after)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with server:
        print(f"SWITCHYARD_LOCALAPI_URL={server.base_url}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
