"""`axiom` command line: synth, land, run, sql, catalog build, migrate, rules, demo, realtime, apikey,
audit, exceptions, deliver, crosswalk, ai (sources and backfill: sources_cli.py).

Over 300 lines on purpose: it is the one argparse tree a user reads with --help; each command
body is a few lines that call into its subpackage, with imports deferred so start-up stays fast.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

from axiom_dagster.catalog.commands import add_catalog_commands
from axiom_dagster.config.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    from axiom_dagster.ingest.redaction import install_log_redaction

    install_log_redaction()
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

    p = sub.add_parser("land", help="land a folder of DICOM files into the landing zone and ledger; "
                                    "exit 0: all landed, 1: some rejected (listed), 2: could not run or crashed")
    p.add_argument("folder", type=Path)
    p.add_argument("--source", default="import", help="source name recorded in the ledger")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="follow symbolic links that lead outside the folder (default: report and skip them)")
    p.set_defaults(func=cmd_land)

    p = sub.add_parser("run", help="process what has landed now: drive the landing sensor and the study "
                                   "pipeline job headless, as the Dagster daemon would (no daemon needed)")
    p.add_argument("--wait", action="store_true",
                   help="keep going until every landed study is done or failed (quiet periods, retries)")
    p.add_argument("--poll-seconds", type=float, default=5.0)
    p.set_defaults(func=cmd_run)

    add_catalog_commands(sub)

    p = sub.add_parser("status", help="studies, batches, deliveries and open exceptions by status")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("migrate", help="create or upgrade the state store schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("rules", help="check rules, or test them on a DICOM file")
    rules_sub = p.add_subparsers(dest="rules_command", required=True)
    q = rules_sub.add_parser("check", help="validate and compile the rules of a configuration")
    q.add_argument("config_file", type=Path, nargs="?", help="default: --config, $AXIOM_CONFIG or config/axiom.yaml")
    q.set_defaults(func=cmd_rules_check)
    q = rules_sub.add_parser("test", help="show matching rules, reasons and per-destination tag diffs")
    q.add_argument("config_file", type=Path)
    q.add_argument("dicom_file", type=Path)
    q.add_argument("--calling-ae")
    q.add_argument("--called-ae")
    q.add_argument("--source-ip")
    q.add_argument("--source", default="import", help="source name (listener, poller or backfill)")
    q.set_defaults(func=cmd_rules_test)

    from axiom_dagster.lookups_cli import register as register_lookup_commands

    register_lookup_commands(sub, rules_sub, _config, _store)  # crosswalk, ai, rules draft

    p = sub.add_parser("demo", help="synthesize, land, run the sensor and pipeline headless, summarize")
    p.add_argument("--studies", type=int, default=40)
    p.add_argument("--series", type=int, default=5)
    p.add_argument("--instances", type=int, default=10)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("realtime", help="run the realtime ingest service (DICOM listeners + HTTP API)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--workers", type=int, default=None,
                   help="listener worker processes sharing the ports (the supervisor hands each DICOM connection to "
                        "the least-loaded worker); default: two per core with a "
                        "PostgreSQL state store, 1 with SQLite (its writers share one file lock)")
    p.set_defaults(func=cmd_realtime)

    p = sub.add_parser("apikey", help="create, revoke or list API keys of the HTTP API")
    keys = p.add_subparsers(dest="apikey_command", required=True)
    k = keys.add_parser("create", help="create a key; prints it once")
    k.add_argument("name")
    k.add_argument("--role", choices=["superuser", "admin", "user"], default="user")
    k.set_defaults(func=cmd_apikey_create)
    k = keys.add_parser("revoke", help="revoke a key by name or prefix")
    k.add_argument("name")
    k.set_defaults(func=cmd_apikey_revoke)
    k = keys.add_parser("list", help="list keys (never the secrets)")
    k.set_defaults(func=cmd_apikey_list)

    p = sub.add_parser("audit", help="list or verify the tamper-evident audit log")
    audits = p.add_subparsers(dest="audit_command", required=True)
    k = audits.add_parser("verify", help="check the hash chain; exit 1 if a row was altered or deleted")
    k.add_argument("--expect", metavar="SEQ:HASH", help="a head recorded earlier that the chain must still contain")
    k.set_defaults(func=cmd_audit_verify)
    k = audits.add_parser("list", help="audit entries after a sequence number")
    k.add_argument("--after", type=int, default=0)
    k.add_argument("--limit", type=int, default=100)
    k.add_argument("--action")
    k.set_defaults(func=cmd_audit_list)

    from axiom_dagster.sources_cli import register as register_sources

    register_sources(sub, lambda q: None)  # --config is added to every subcommand below

    from axiom_dagster.destinations.commands import add_commands as add_delivery_commands

    add_delivery_commands(sub, _config, _store)

    # `--config` may also follow any subcommand (`axiom apikey create NAME --config FILE`).
    _accept_config_everywhere(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from axiom_dagster.deid.uidmap import MissingSecretError  # pydicom: imported only here

        if not isinstance(exc, MissingSecretError):
            raise
        print(f"missing secret: {exc}", file=sys.stderr)
        return 2


def _accept_config_everywhere(subparsers) -> None:
    for subparser in subparsers.choices.values():
        if "--config" not in subparser._option_string_actions:
            subparser.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for action in subparser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _accept_config_everywhere(action)


def _config(args):
    from axiom_dagster.config.settings import load_default_config

    return load_default_config(args.config)


def _store(config):
    from axiom_dagster.store.state import StateStore

    store = StateStore(config.state_store_url)
    store.migrate()
    return store


def _actor() -> str:
    """Who runs the command, for the audit log: $AXIOM_ACTOR, else the OS user."""
    import getpass
    import os

    return os.environ.get("AXIOM_ACTOR") or f"cli:{getpass.getuser()}"


def _note_config(args, store) -> None:
    """Record the configuration file in the audit log when its content changed."""
    from axiom_dagster.config.settings import default_config_path
    from axiom_dagster.store.audit import record_config_file

    path = args.config or default_config_path()
    if path:
        record_config_file(store, _actor(), path)


def cmd_synth(args) -> int:
    from axiom_dagster.synth import SynthSpec, generate_archive

    spec = SynthSpec(args.studies, args.series, args.instances, args.rows, args.columns, args.seed, args.start_date, args.days)
    started = time.perf_counter()
    paths = generate_archive(args.out, spec)
    print(f"wrote {len(paths)} instances ({spec.studies} studies) to {args.out} in {time.perf_counter() - started:.1f}s")
    return 0


def cmd_land(args) -> int:
    from axiom_dagster.ingest.arrival import ArrivalMeta
    from axiom_dagster.ingest.importer import iter_files
    from axiom_dagster.ingest.landing import LandingZone
    from axiom_dagster.ingest.redaction import describe_exception

    config = _config(args)
    if not args.folder.is_dir():
        print(f"not a folder: {args.folder}", file=sys.stderr)
        return 2
    zone = LandingZone.for_config(config, _store(config))
    started = time.perf_counter()
    try:
        report = zone.import_files(iter_files(args.folder, args.follow_symlinks), ArrivalMeta(source=args.source))
    except Exception as exc:  # what was landed before is in the ledger (flushed on the way out)
        print(f"axiom land stopped: {describe_exception(exc)}; files landed before are in the ledger",
              file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    print(f"landed {report.landed} instances ({report.bytes / 1e6:.1f} MB) in {seconds:.1f}s; "
          f"{len(report.rejected)} rejected; {report.skipped_links} links inside the folder skipped")
    for path, reason in report.rejected:
        print(f"rejected {path}: {reason}")
    return 0 if not report.rejected else 1


def cmd_run(args) -> int:
    from axiom_dagster.config.settings import default_config_path
    from axiom_dagster.demo import run_pending

    config_path = args.config or (str(default_config_path()) if default_config_path() else None)
    store = _store(_config(args))  # a configuration error ends here, before Dagster starts
    failed_before = {b["id"] for b in store.failed_batches(10_000)}
    runs, cursor = run_pending(config_path, wait=args.wait, poll_seconds=args.poll_seconds)
    print(f"{runs} pipeline runs; ledger cursor {cursor}; studies: {store.study_counts()}")
    failed_now = [b for b in store.failed_batches(10_000) if b["id"] not in failed_before]
    for b in failed_now:
        print(f"batch {b['id']} failed after {b['attempts']} attempts: {b['last_failure']}", file=sys.stderr)
    return 1 if failed_now else 0


def cmd_status(args) -> int:
    config = _config(args)
    store = _store(config)
    print(f"ledger: {store.ledger_count()} instances")
    for section, counts in store.status_summary().items():
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
        print(f"{section}: {shown}")
    for b in store.failed_batches():
        print(f"batch {b['id']} ({b['partition']}) failed after {b['attempts']} attempts: {b['last_failure']}")
    return 0


def cmd_migrate(args) -> int:
    config = _config(args)
    store = _store(config)
    _note_config(args, store)
    print(f"state store at revision {store.schema_revision()}")
    return 0


def _rules_config_file(args) -> Path:
    from axiom_dagster.config.settings import default_config_path

    chosen = args.config_file or args.config or default_config_path()
    if chosen is None:
        raise ConfigError("no configuration file: give one, or --config, or set $AXIOM_CONFIG")
    return Path(chosen)


def _compiled_rules(config_file: Path):
    """Load a configuration and compile its rules; errors name the file, line and field."""
    import yaml

    from axiom_dagster.config.models import load_config, locate, parse_field_path
    from axiom_dagster.rules import ConfigError as RulesError
    from axiom_dagster.rules import compile_rules

    config = load_config(config_file)
    try:
        return config, compile_rules(config, None, config.base_dir)
    except RulesError as exc:
        root = yaml.compose(config_file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        path, _, message = str(exc).partition(": ")
        raise ConfigError(locate(root, str(config_file), parse_field_path(path), message or str(exc))) from None


def cmd_rules_check(args) -> int:
    args.config_file = _rules_config_file(args)
    config, engine = _compiled_rules(args.config_file)
    rules = sum(len(rs.rules) for rs in config.rulesets)
    print(f"{args.config_file}: OK - {len(config.rulesets)} rulesets, {rules} rules, "
          f"{len(config.destinations)} destinations, {len(config.crosswalks)} crosswalks")
    return 0


def cmd_rules_test(args) -> int:
    from pydicom import dcmread

    from axiom_dagster.ingest.arrival import ArrivalMeta
    from axiom_dagster.rules.explain import explain

    config, engine = _compiled_rules(args.config_file)
    ds = dcmread(args.dicom_file)
    meta = ArrivalMeta(source=args.source, calling_ae=args.calling_ae, called_ae=args.called_ae, source_ip=args.source_ip)
    print(explain(engine, ds, meta, [d.name for d in config.destinations]).text())
    return 0


def cmd_demo(args) -> int:
    from axiom_dagster.demo import run_demo

    return run_demo(_config(args), args.config, studies=args.studies, series=args.series, instances=args.instances)


def cmd_realtime(args) -> int:
    from realtime.service import main as realtime_main

    config = _config(args)
    _note_config(args, _store(config))
    from realtime.workers import default_worker_count

    workers = args.workers if args.workers is not None else default_worker_count(config.state_store_url)
    if workers > 1:
        from axiom_dagster.config.settings import default_config_path
        from realtime.logs import setup_logging
        from realtime.workers import Supervisor

        setup_logging(args.log_level)
        return Supervisor(config, args.config or default_config_path(), workers, args.log_level).run()
    return realtime_main(config, args.log_level)


def cmd_apikey_create(args) -> int:
    from axiom_dagster.store.apikeys import create_key

    try:
        key, secret = create_key(_store(_config(args)).engine, args.name, args.role, actor=_actor())
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"created API key {key.name!r} (role {key.role}, prefix {key.prefix}); it is shown only once:", file=sys.stderr)
    print(secret)
    return 0


def cmd_apikey_revoke(args) -> int:
    from axiom_dagster.store.apikeys import revoke_key

    if revoke_key(_store(_config(args)).engine, args.name, actor=_actor()):
        print(f"revoked {args.name}")
        return 0
    print(f"no active API key named or prefixed {args.name!r}", file=sys.stderr)
    return 1


def cmd_apikey_list(args) -> int:
    from axiom_dagster.store.apikeys import list_keys

    for k in list_keys(_store(_config(args)).engine):
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        print(f"{k.id}\t{k.name}\t{k.role}\t{k.prefix}\tcreated {k.created_at:%Y-%m-%d %H:%M}\t{state}")
    return 0


def cmd_audit_verify(args) -> int:
    from axiom_dagster.store.audit import verify

    report = verify(_store(_config(args)), expect=args.expect)
    for problem in report.problems:
        print(f"TAMPERED: {problem}", file=sys.stderr)
    print(f"{report.entries} entries; head {report.head_seq}:{report.head_hash} - {'OK' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1


def cmd_audit_list(args) -> int:
    from axiom_dagster.store.audit import entries

    for e in entries(_store(_config(args)), after=args.after, limit=args.limit, action=args.action):
        print(f"{e.seq}\t{e.at:%Y-%m-%dT%H:%M:%S}Z\t{e.actor}\t{e.action}\t{e.target or '-'}\t{e.details}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
