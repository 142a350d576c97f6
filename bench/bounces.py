"""Bounce costs: the signed return path per message, parsing a DSN, recording reports.

Measures, in one run (a script, not a test: numbers vary ±30 % with the machine's load):
  * **VERP** — ``make_return_path`` (what every email costs the worker with
    ``MC_BOUNCE_DOMAIN`` set) and ``parse_return_path`` (what every bounce costs);
  * **parse** — ``read_reports`` on the corpus's Postfix DSN;
  * **record** — ``record_reports`` of N hard reports with valid tokens, one transaction
    each, to a SQLite file (``synchronous=full``, the default) or ``--database URL``.

Usage: ``python bench/bounces.py [--reports 2000] [--database URL]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import timeit
from pathlib import Path

from soap_service.bounces.parse import read_reports
from soap_service.bounces.record import record_reports
from soap_service.bounces.verp import make_return_path, parse_return_path
from soap_service.config import load_settings
from soap_service.models import BounceKind, BounceReport
from soap_service.store import connect, schema

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bounce.example.com"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--database", default="")
    args = parser.parse_args()
    n = 100_000
    made = timeit.timeit(lambda: make_return_path(123456789, 1, "s3cret", DOMAIN), number=n)
    path = make_return_path(123456789, 1, "s3cret", DOMAIN)
    read = timeit.timeit(lambda: parse_return_path(path, ["s3cret"], DOMAIN), number=n)
    print(f"make_return_path   {made / n * 1e6:8.2f} µs")
    print(f"parse_return_path  {read / n * 1e6:8.2f} µs")
    raw = (ROOT / "tests" / "fixtures" / "bounces" / "postfix-dsn-hard.eml").read_bytes()
    parsed = timeit.timeit(lambda: read_reports(raw), number=2000)
    print(f"read_reports (Postfix DSN) {parsed / 2000 * 1e3:6.2f} ms")
    url = args.database or f"sqlite:///{tempfile.mkdtemp(prefix='mc-bench-')}/bounces.db"
    settings = load_settings({"MC_DATABASE_URL": url, "MC_BOUNCE_DOMAIN": DOMAIN,
                              "MC_SECRET": "s3cret"})
    db = connect(settings)
    schema.upgrade(db)
    reports = [BounceReport(BounceKind.HARD, recipient=f"u{i}@example.net", status="5.1.1",
                            diagnostic=f"550 5.1.1 user unknown ({time.time()})",
                            return_path=make_return_path(i + 1, 1, "s3cret", DOMAIN),
                            source="dsn") for i in range(args.reports)]
    started = time.perf_counter()
    for report in reports:
        record_reports(db, settings, [report], "smtp")
    elapsed = time.perf_counter() - started
    print(f"record_reports     {len(reports) / elapsed:8.0f} reports/s ({db.engine.dialect.name})")


if __name__ == "__main__":
    main()
