"""`axiom sql`, `axiom catalog build` and `axiom catalog index`: registered by axiom_dagster/cli.py.

`axiom sql` must start fast (target under 0.3 s with the query): it reads the catalog
location from the configuration file with a YAML parse only (no pydantic, no pydicom)
and imports duckdb and nothing heavier.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

FORMATS = ("table", "csv", "json", "parquet")


def add_catalog_commands(sub) -> None:
    p = sub.add_parser(
        "sql", help="SQL over the catalog (views: instances, series, studies, superseded, instances_all); "
        "without a query: an interactive shell (or the query read from standard input)",
    )
    p.add_argument("query", nargs="?")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("-o", "--output", type=Path, help="write the result to this file")
    p.add_argument("--max-rows", type=int, default=100, help="rows shown by --format table")
    p.add_argument("--catalog", help="catalog root (folder, gs://bucket/path or s3://bucket/path)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("catalog", help="build the catalog from files already on disk")
    catalog = p.add_subparsers(dest="catalog_command", required=True)
    b = catalog.add_parser(
        "build", help="catalog a folder of DICOM files (no landing, no routing); resumable: "
        "files catalogued with the same size and mtime are skipped",
    )
    b.add_argument("folder", type=Path)
    b.add_argument("--catalog", help="catalog root (default: the configuration's catalog.path)")
    b.add_argument("--workers", type=int, default=0, help="processes (default: every core)")
    b.add_argument("--batch-size", type=int, default=20_000, help="instances per catalog file")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    b.set_defaults(func=cmd_catalog_build)
    x = catalog.add_parser(
        "index", help="index the SOP Instance UIDs of every catalog file in the state store now "
        "(the pipeline otherwise indexes files it had to read in full, 50,000 rows per batch)",
    )
    x.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    x.set_defaults(func=cmd_catalog_index)


def catalog_root(args) -> str:
    """--catalog, else $AXIOM_CATALOG, else catalog.path of the configuration file."""
    if getattr(args, "catalog", None):
        return args.catalog
    if os.environ.get("AXIOM_CATALOG"):
        return os.environ["AXIOM_CATALOG"]
    from axiom_dagster.config.settings import default_config_path

    path = Path(args.config) if getattr(args, "config", None) else default_config_path()
    if path is None:
        return os.path.abspath("var/catalog")
    import yaml

    from axiom_dagster.config.errors import ENV_REF, ConfigError

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {type(exc).__name__}") from exc
    value = str(((data or {}).get("catalog") or {}).get("path", "var/catalog"))

    def env(match) -> str:
        if match.group(1) in os.environ:
            return os.environ[match.group(1)]
        if match.group(2) is not None:
            return match.group(2)
        raise ConfigError(f"{path}: field catalog.path: environment variable {match.group(1)} is not set")

    value = ENV_REF.sub(env, value)
    return value if "://" in value else str((path.parent / value).resolve())


def _emit(con, query: str, args) -> None:
    from axiom_dagster.catalog.views import run_query

    run_query(con, query, args.format, args.output, args.max_rows)


def cmd_sql(args) -> int:
    import duckdb

    from axiom_dagster.catalog.views import connect

    con = connect(catalog_root(args))
    query = args.query
    if query is None and not sys.stdin.isatty():
        query = sys.stdin.read()
    if query is not None:
        try:
            _emit(con, query, args)
        except duckdb.Error as exc:
            print(f"SQL error: {exc}", file=sys.stderr)
            return 1
        return 0
    return _shell(con, args)


def _shell(con, args) -> int:
    import duckdb

    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    print("axiom sql: views instances, series, studies, superseded, instances_all. "
          "End a statement with ';'. .tables lists views, .quit leaves.")
    buffer = ""
    while True:
        try:
            line = input("axiom> " if not buffer else "   ..> ")
        except EOFError:
            print()
            return 0
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit"):
            return 0
        if not buffer and stripped == ".tables":
            stripped = "SELECT table_name FROM information_schema.tables ORDER BY 1;"
        buffer += stripped + "\n"
        if buffer.rstrip().endswith(";"):
            try:
                _emit(con, buffer, args)
            except duckdb.Error as exc:
                print(f"SQL error: {exc}")
            buffer = ""


def cmd_catalog_build(args) -> int:
    from axiom_dagster.catalog.build import build_catalog

    if not args.folder.is_dir():
        print(f"not a folder: {args.folder}", file=sys.stderr)
        return 2
    root = catalog_root(args)
    report = build_catalog(
        args.folder, root, workers=args.workers or os.cpu_count() or 1,
        batch_size=args.batch_size, progress=not args.no_progress, index=_configured_index(args, root),
    )
    print(report.summary())
    for path, reason in report.rejected[:50]:
        print(f"not catalogued {path}: {reason}")
    if len(report.rejected) > 50:
        print(f"... and {len(report.rejected) - 50} more not catalogued")
    return 0 if not report.rejected else 1


def _index_of(config):
    """The SOP Instance UID index of the configuration's catalog, in its state store."""
    from axiom_dagster.catalog.uid_index import UidIndex
    from axiom_dagster.store.state import StateStore

    store = StateStore(config.state_store_url)
    store.migrate()
    return UidIndex(store.engine, config.catalog_path)


def _configured_index(args, root: str):
    """The configuration's index when `root` is the configuration's catalog; None otherwise
    (another catalog: every file is read)."""
    from axiom_dagster.catalog.uid_index import catalog_id
    from axiom_dagster.config.errors import ConfigError
    from axiom_dagster.config.settings import load_default_config

    try:
        config = load_default_config(getattr(args, "config", None))
    except (ConfigError, OSError, ValueError):  # --catalog works without a usable configuration
        return None
    return _index_of(config) if catalog_id(config.catalog_path) == catalog_id(root) else None


def cmd_catalog_index(args) -> int:
    """The configuration's catalog indexed in its state store (catalog/uid_index.py)."""
    import time

    from axiom_dagster.catalog.storage import CatalogStorage
    from axiom_dagster.catalog.tables import data_files
    from axiom_dagster.config.settings import load_default_config

    config = load_default_config(getattr(args, "config", None))
    started = time.perf_counter()
    index = _index_of(config)
    files = data_files(CatalogStorage(config.catalog_path), "instances")
    plan = index.plan(files, [])
    index.forget(plan.gone)
    todo = plan.uncovered
    while todo:
        todo = todo[len(index.cover(todo)):]
    print(f"{len(plan.uncovered)} of {len(files)} instances files indexed ({len(files) - len(plan.uncovered)} were "
          f"already), {len(plan.gone)} files no longer in the catalog dropped, in {time.perf_counter() - started:.1f}s")
    return 0
