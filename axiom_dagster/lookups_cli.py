"""`axiom crosswalk list|refresh|lookup`, `axiom ai review` and `axiom rules draft` (registered by
cli.py). Key values are printed only where the operator asked for them (lookup, review)."""
from __future__ import annotations

import sys
from pathlib import Path


def register(sub, rules_sub, config_of, store_of) -> None:
    """Add the commands; `config_of(args)` and `store_of(config)` come from cli.py."""
    p = sub.add_parser("crosswalk", help="list, refresh or query crosswalks")
    cw = p.add_subparsers(dest="crosswalk_command", required=True)
    q = cw.add_parser("list", help="configured crosswalks, their sources and promoted snapshots")
    q.set_defaults(func=lambda a: cmd_crosswalk_list(config_of(a)))
    q = cw.add_parser("refresh", help="snapshot a crosswalk's source now (promoted only if its checks pass)")
    q.add_argument("name")
    q.set_defaults(func=lambda a: cmd_crosswalk_refresh(config_of(a), a.name))
    q = cw.add_parser("lookup", help="look a key up in the promoted snapshot (several key columns: KEY KEY ...)")
    q.add_argument("name")
    q.add_argument("key", nargs="+")
    q.set_defaults(func=lambda a: cmd_crosswalk_lookup(config_of(a), a.name, a.key))

    p = sub.add_parser("ai", help="AI standardization cache")
    ai = p.add_subparsers(dest="ai_command", required=True)
    q = ai.add_parser("review", help="list cached answers, or correct one (--set ID VALUE); corrections win")
    q.add_argument("--vocabulary")
    q.add_argument("--unreviewed", action="store_true", help="only entries nobody has reviewed")
    q.add_argument("--set", nargs=2, metavar=("ID", "VALUE"), help="correct entry ID to VALUE")
    q.add_argument("--import", dest="import_file", type=Path, help="apply reviewed_value edits from an exported Parquet file")
    q.add_argument("--reviewer", default="cli")
    q.set_defaults(func=lambda a: cmd_ai_review(config_of(a), store_of, a))

    q = rules_sub.add_parser("draft", help="ask the model for YAML rules; validated and tested before saving")
    q.add_argument("request", help='e.g. "route CT heads from CT01 to research, de-identified"')
    q.add_argument("--config-file", type=Path, help="configuration the rules join (default: --config)")
    q.add_argument("--sample", type=Path, action="append", default=[], help="DICOM file to run the rule tester on")
    q.add_argument("--calling-ae", help="calling AE title the rule tester assumes for the samples")
    q.add_argument("--save", type=Path, help="write the drafted rules here (asks first)")
    q.add_argument("--yes", action="store_true", help="save without asking")
    q.set_defaults(func=lambda a: cmd_rules_draft(a, config_of))


def cmd_crosswalk_list(config) -> int:
    from axiom_dagster.crosswalks.lookup import snapshot_root
    from axiom_dagster.crosswalks.snapshot import SnapshotStore

    for name, spec in sorted(config.crosswalks.items()):
        if not spec.snapshotted:
            print(f"{name}\tfile {spec.path}")
            continue
        store = SnapshotStore(snapshot_root(config), name)
        cur, last = store.current(), store.last_refresh()
        state = f"promoted {cur['rows']} rows at {cur['promoted_at']}" if cur else "no promoted snapshot"
        if last and not last["promoted"]:
            state += f"; last refresh {last['refreshed_at']} NOT promoted (failed: {', '.join(c['name'] for c in last['checks'] if not c['passed'])})"
        src = spec.source.table or "query" if spec.source.type == "sql" else getattr(spec.source, "path", None) or spec.source.uri
        print(f"{name}\t{spec.source.type} {src}\tkeys {','.join(spec.keys)}\tcron {spec.cron or '-'}\t{state}")
    return 0


def cmd_crosswalk_refresh(config, name: str) -> int:
    from axiom_dagster.crosswalks.files import CrosswalkError
    from axiom_dagster.crosswalks.lookup import refresh_crosswalk
    from axiom_dagster.crosswalks.sources import CrosswalkSourceError

    try:
        result = refresh_crosswalk(config, name)
    except (CrosswalkError, CrosswalkSourceError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for c in result.checks:
        print(f"  {'ok  ' if c.passed else 'FAIL'} {c.name} {c.detail}")
    if result.promoted:
        print(f"{name}: {result.rows} rows promoted ({result.file})")
        return 0
    print(f"{name}: {result.rows} rows NOT promoted; the previous snapshot stays in use", file=sys.stderr)
    return 1


def cmd_crosswalk_lookup(config, name: str, key: list[str]) -> int:
    from axiom_dagster.crosswalks.files import CrosswalkError, normalise_key
    from axiom_dagster.crosswalks.lookup import open_crosswalk, snapshot_root

    if name not in config.crosswalks:
        print(f"no crosswalk named {name!r}", file=sys.stderr)
        return 1
    spec = config.crosswalks[name]
    try:
        cw = open_crosswalk(name, spec, config.base_dir, snapshot_root(config))
        keys = spec.keys or cw.columns()[: len(key)]
        if len(keys) != len(key):
            print(f"{name} has {len(keys)} key column(s) {keys}; got {len(key)} value(s)", file=sys.stderr)
            return 1
        row = cw.index(keys).get(tuple(normalise_key(k, spec.case_insensitive) for k in key))
    except CrosswalkError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if row is None:
        print("not found", file=sys.stderr)
        return 1
    for column, value in zip(cw.columns(), row):
        print(f"{column}\t{'' if value is None else value}")
    return 0


def cmd_ai_review(config, store_of, args) -> int:
    from axiom_dagster.ai.cache import AICache

    cache = AICache(store_of(config).engine)
    if args.set:
        entry, value = args.set
        if not cache.review(int(entry), value, args.reviewer):
            print(f"no cache entry {entry}", file=sys.stderr)
            return 1
        print(f"entry {entry} corrected; it wins over the model from the next run on")
        return 0
    if args.import_file:
        import pyarrow.parquet as pq

        current = {e["id"]: e["reviewed_value"] for e in cache.entries()}
        applied = 0
        for row in pq.read_table(args.import_file, columns=["id", "reviewed_value"]).to_pylist():
            if row["reviewed_value"] not in (None, "") and current.get(row["id"], row["reviewed_value"]) != row["reviewed_value"]:
                applied += cache.review(int(row["id"]), row["reviewed_value"], args.reviewer)
        print(f"applied {applied} correction(s)")
        return 0
    for e in cache.entries(args.vocabulary, args.unreviewed):
        reviewed = f"\treviewed: {e['reviewed_value']} ({e['reviewed_by']})" if e["reviewed_value"] is not None else ""
        print(f"{e['id']}\t{e['vocabulary']}\t{e['provider']}/{e['model']}@{e['prompt_version'][:8]}\t"
              f"{e['input_value']!r} -> {e['output_value']!r}{reviewed}")
    return 0


def cmd_rules_draft(args, config_of) -> int:
    from axiom_dagster.rules.draft import DraftError, draft_rules

    config = config_of(args) if args.config_file is None else _load(args.config_file)
    try:
        draft = draft_rules(config, args.request, args.sample, args.calling_ae)
    except DraftError as exc:
        print(f"draft rejected: {exc}", file=sys.stderr)
        return 1
    print(draft.yaml_text)
    print(draft.tester_report)
    if args.save is None:
        print("(not saved: give --save FILE to keep these rules)", file=sys.stderr)
        return 0
    if not args.yes:
        answer = input(f"save these rules to {args.save}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not saved", file=sys.stderr)
            return 1
    args.save.write_text(draft.yaml_text, encoding="utf-8")
    print(f"saved to {args.save}")
    return 0


def _load(path: Path):
    from axiom_dagster.config.models import load_config

    return load_config(path)
