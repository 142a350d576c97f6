"""Profiles benchmark: ``msgcenter profile import`` of a large CSV, and what targeting costs.

Measures, in one run:
  * **import** — ``msgcenter profile import`` (a separate process) of a generated CSV of
    ``--rows`` profiles (default 1,000,000) into a fresh database: rows/s over the whole
    command, and the process's peak resident memory (``ru_maxrss``);
  * **targeting** — with those profiles loaded, ``msgcenter worker`` draining ``--events``
    event-based events to a local SMTP sink (Postfix's ``smtp-sink`` when installed),
    then as many profile-based events (the same type switched to ``--targeting profile``,
    each event naming a profile by ``externalId``, its address from the profile): rate of
    each over the span of the delivery log, and the profile-based rate's cost against the
    event-based one (the target: at most 10 %).

Usage: ``python bench/profiles.py [--rows 1000000] [--events 5000] [--database URL]
[--quick]``.  A script, not a test: numbers vary ±30 % with what else runs on the machine.
"""

from __future__ import annotations

import argparse
import atexit
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import deliver  # noqa: E402
from sqlalchemy import delete, func, select  # noqa: E402

from soap_service import catalog, clock  # noqa: E402
from soap_service.models import Targeting  # noqa: E402
from soap_service.store import Database  # noqa: E402
from soap_service.store.events import insert_events  # noqa: E402
from soap_service.tables import delivery_log, events  # noqa: E402


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("externalId,email,firstName,lastName,language,country,attributes.tier\n")
        for i in range(rows):
            f.write(f"P{i},user{i}@example.com,First{i},Last{i},"
                    f"{'fr-CA' if i % 3 == 0 else 'en'},CA,{'gold' if i % 7 == 0 else ''}\n")


def run_import(settings_url: str, csv_path: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, the command's summary) of one import process."""
    env = {**os.environ, "MC_DATABASE_URL": settings_url, "MC_SQLITE_SYNCHRONOUS": "normal"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "soap_service.cli", "--json", "profile",
                           "import", str(csv_path), "--quiet"], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"import failed: {proc.stderr[-2000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:
        print("  (peak RSS of this child is at most an earlier child's)", file=sys.stderr)
    return elapsed, peak_kib / 1024, proc.stdout.strip().replace("\n", " ")


def queue(db: Database, n: int, *, profile_based: bool, profiles: int) -> None:
    now = clock.utcnow()
    for first in range(0, n, 1000):
        rows = []
        for i in range(first, min(first + 1000, n)):
            p = (i * 7919) % profiles  # spread over the table, not the first rows only
            row = {"queue": "rt", "event_type": "order_confirmation", "priority": 1,
                   "ctx_xml": deliver.CTX.format(n=i), "process_at": now,
                   "created_at": now, "updated_at": now, "external_id": f"P{p}",
                   "email": None if profile_based else f"user{p}@example.com"}
            rows.append(row)
        insert_events(db, rows)


def drain_rate(settings_url: str, db: Database, n: int, sink_port: int) -> float:
    env = {**os.environ, "MC_DATABASE_URL": settings_url, "MC_SQLITE_SYNCHRONOUS": "normal",
           "MC_SMTP_PORT": str(sink_port)}
    proc = subprocess.Popen([sys.executable, "-m", "soap_service.cli", "worker"], env=env,
                            cwd=str(ROOT), stderr=subprocess.DEVNULL)
    try:
        while True:
            with db.connect() as conn:
                done = conn.execute(select(func.count()).select_from(events).where(
                    events.c.status != "pending", events.c.status != "processing")).scalar_one()
            if done >= n:
                break
            if proc.poll() is not None:
                raise SystemExit("the worker exited early")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
    with db.connect() as conn:
        processed = conn.execute(select(func.count()).select_from(events).where(
            events.c.status == "processed")).scalar_one()
        if processed != n:
            raise SystemExit(f"only {processed} of {n} events were processed")
        first, last = conn.execute(select(func.min(delivery_log.c.created_at),
                                          func.max(delivery_log.c.created_at))).one()
        conn.commit()
    with db.begin() as conn:  # the next measurement starts from an empty queue and log
        conn.execute(delete(delivery_log))
        conn.execute(delete(events))
    return n / max((last - first).total_seconds(), 1e-3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--database", help="a PostgreSQL server URL (default: SQLite)")
    ap.add_argument("--quick", action="store_true", help="100,000 rows, 2,000 events")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.events = 100_000, 2000
    atexit.register(deliver.drop_created)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings, db = deliver.fresh_db(args.database, tmp)
        kind = "PostgreSQL" if settings.database_url.startswith("postgresql") else "SQLite"
        csv_path = tmp / "profiles.csv"
        write_csv(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"profile import on {kind}: {args.rows:,} rows ({size_mb:.0f} MB)")
        seconds, peak, summary = run_import(settings.database_url, csv_path)
        print(f"  {args.rows / seconds:,.0f} rows/s ({seconds:.1f} s), peak RSS {peak:.0f} MiB")
        print(f"  {summary}")
        sink, port, _ = deliver.start_sink("smtp-sink" if deliver.shutil.which("smtp-sink")
                                           or Path("/usr/sbin/smtp-sink").exists()
                                           else "aiosmtpd", tmp)
        try:
            queue(db, args.events, profile_based=False, profiles=args.rows)
            plain = drain_rate(settings.database_url, db, args.events, port)
            catalog.update_event_type(db, "order_confirmation", targeting=Targeting.PROFILE)
            queue(db, args.events, profile_based=True, profiles=args.rows)
            targeted = drain_rate(settings.database_url, db, args.events, port)
        finally:
            sink.terminate()
            sink.wait(10)
        cost = (1 - targeted / plain) * 100
        print(f"worker on {kind} with {args.rows:,} profiles, {args.events:,} events each:")
        print(f"  event-based   {plain:,.0f} events/s")
        print(f"  profile-based {targeted:,.0f} events/s  (targeting cost {cost:.1f} %; "
              f"target <= 10 %)")


if __name__ == "__main__":
    main()
