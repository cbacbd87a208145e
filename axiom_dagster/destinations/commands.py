"""`axiom exceptions list|retry|resolve` and `axiom deliver`: the exception queue and
delivery from the command line (the same state-store operations as the HTTP API)."""
from __future__ import annotations

import argparse
import getpass


def add_commands(sub, config_loader, store_opener) -> None:
    p = sub.add_parser("exceptions", help="list, requeue (retry) or resolve exceptions")
    ex = p.add_subparsers(dest="exceptions_command", required=True)
    q = ex.add_parser("list", help="open exceptions (all with --all)")
    q.add_argument("--all", action="store_true", help="include resolved ones")
    q.add_argument("--stage", help="landing | validate | morph | route | deliver")
    q.set_defaults(func=lambda a: _list(a, store_opener(config_loader(a))))
    q = ex.add_parser("retry", help="requeue a delivery failure (to its destination, or --to another)")
    q.add_argument("id", type=int)
    q.add_argument("--to", dest="destination", help="another configured destination")
    q.add_argument("--by", default=None, help="who (default: the current user)")
    q.set_defaults(func=lambda a: _retry(a, config_loader(a), store_opener))
    q = ex.add_parser("resolve", help="mark an exception resolved")
    q.add_argument("id", type=int)
    q.add_argument("--note", default="resolved", help="what was done (no patient data)")
    q.add_argument("--by", default=None, help="who (default: the current user)")
    q.set_defaults(func=lambda a: _resolve(a, store_opener(config_loader(a))))

    p = sub.add_parser("deliver", help="send every due instance now (what a delivery run does)")
    p.add_argument("--destination", action="append", help="only this destination (repeatable)")
    p.set_defaults(func=lambda a: _deliver(a, config_loader(a), store_opener))
    for parser in (p, *ex.choices.values()):
        parser.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _who(args) -> str:
    return f"cli:{args.by or getpass.getuser()}"


def _list(args, store) -> int:
    from axiom_dagster.store.deliveries import DeliveryState

    rows = DeliveryState(store).list_exceptions(open_only=not args.all, stage=args.stage)
    for r in rows:
        state = f"resolved by {r['resolved_by']} at {r['resolved_at']:%Y-%m-%d %H:%M} ({r['resolution']})" if r["resolved_at"] else "open"
        print(f"{r['id']}\t{r['created_at']:%Y-%m-%d %H:%M:%S}\t{r['stage']}\t{r['destination'] or '-'}\t"
              f"study {r['study_uid'] or '-'}\tinstance {r['sop_uid'] or '-'}\tretries {r['retries']}\t{state}\t{r['reason']}")
    print(f"{len(rows)} exceptions")
    return 0


def _retry(args, config, store_opener) -> int:
    from axiom_dagster.store.deliveries import DeliveryState

    if args.destination and args.destination not in {d.name for d in config.destinations}:
        print(f"unknown destination {args.destination!r}")
        return 2
    return _act(lambda: DeliveryState(store_opener(config)).requeue(args.id, _who(args), args.destination))


def _resolve(args, store) -> int:
    from axiom_dagster.store.deliveries import DeliveryState

    return _act(lambda: DeliveryState(store).resolve(args.id, _who(args), args.note))


def _act(action) -> int:
    try:
        done = action()
    except (LookupError, ValueError) as exc:
        print(str(exc).strip("'\""))
        return 1
    print(f"exception {done['id']}: {done['resolution']} (by {done['resolved_by']})")
    return 0


def _deliver(args, config, store_opener) -> int:
    # Imported here: `axiom sql` and other commands must not pay for pydicom and the clients.
    from axiom_dagster.destinations.delivery import deliver_all

    reports = deliver_all(config, store_opener(config), names=args.destination)
    for report in reports.values():
        print(report.summary())
    return 1 if any(r.exceptions for r in reports.values()) else 0
