"""`axiom` command line: synth, land, sql, migrate, demo."""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

from .config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="axiom", description="Axiom on Dagster: DICOM data engineering.")
    parser.add_argument("--config", help="configuration YAML (default: $AXIOM_CONFIG or config/axiom.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate a synthetic DICOM archive")
    p.add_argument("out", type=Path)
    p.add_argument("--studies", type=int, default=10)
    p.add_argument("--series", type=int, default=2, help="series per study")
    p.add_argument("--instances", type=int, default=10, help="instances per series")
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--columns", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start-date", type=date.fromisoformat, default=date(2024, 1, 1))
    p.add_argument("--days", type=int, default=30, help="StudyDate spread in days")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("land", help="land a folder of DICOM files into the landing zone and ledger")
    p.add_argument("folder", type=Path)
    p.add_argument("--source", default="import", help="source name recorded in the ledger")
    p.set_defaults(func=cmd_land)

    p = sub.add_parser("sql", help="run SQL over the catalog (views: instances, series, studies, instances_all)")
    p.add_argument("query")
    p.add_argument("--max-rows", type=int, default=100)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("migrate", help="create or upgrade the state store schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="synthesize, land, run the sensor and pipeline headless, summarize")
    p.add_argument("--studies", type=int, default=40)
    p.add_argument("--series", type=int, default=5)
    p.add_argument("--instances", type=int, default=10)
    p.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def _config(args):
    from .settings import load_default_config

    return load_default_config(args.config)


def _store(config):
    from .state import StateStore

    store = StateStore(config.state_store_url)
    store.migrate()
    return store


def cmd_synth(args) -> int:
    from .synth import SynthSpec, generate_archive

    spec = SynthSpec(args.studies, args.series, args.instances, args.rows, args.columns, args.seed, args.start_date, args.days)
    started = time.perf_counter()
    paths = generate_archive(args.out, spec)
    print(f"wrote {len(paths)} instances ({spec.studies} studies) to {args.out} in {time.perf_counter() - started:.1f}s")
    return 0


def cmd_land(args) -> int:
    from .arrival import ArrivalMeta
    from .landing import LandingZone, iter_files

    config = _config(args)
    zone = LandingZone(config.landing_path, config.quarantine_path, _store(config))
    if not args.folder.is_dir():
        print(f"not a folder: {args.folder}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    report = zone.import_files(iter_files(args.folder), ArrivalMeta(source=args.source))
    seconds = time.perf_counter() - started
    print(f"landed {report.landed} instances ({report.bytes / 1e6:.1f} MB) in {seconds:.1f}s")
    for path, reason in report.rejected:
        print(f"quarantined {path}: {reason}")
    return 0 if not report.rejected else 1


def cmd_sql(args) -> int:
    from .catalog import connect

    config = _config(args)
    con = connect(config.catalog_path)
    con.sql(args.query).show(max_rows=args.max_rows, max_width=200)
    return 0


def cmd_migrate(args) -> int:
    config = _config(args)
    store = _store(config)
    print(f"state store at revision {store.schema_revision()}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(_config(args), args.config, studies=args.studies, series=args.series, instances=args.instances)


if __name__ == "__main__":
    sys.exit(main())
