"""Ingest benchmark: `python bench/ingest.py [--instances 1000] [--rounds 2]`.

One sender (DCMTK storescu, TCP_NODELAY=1, one association) sends the same synthetic files
(256x256, ~130 KB) to:
  * service      - the realtime service, full durability (fsync file + dir, ledger commit)
  * minimal-1M   - a minimal pynetdicom SCP writing files without fsync or ledger, TCP_NODELAY
                   set, same max PDU size as the service (1 MB): the like-for-like baseline
  * minimal-16K  - the same with pynetdicom's default max PDU (16 KB)
  * storescp     - DCMTK storescp writing files (no fsync)
  * service-mp   - the service as `axiom realtime --workers N` (N listener processes on one
                   port; default N as `axiom realtime` chooses: two per core on PostgreSQL), same durability
  * orthanc      - Orthanc (tests/peers/orthanc.py, its own storage and SQLite index), started here
  * landing-only - no network: as many writers as associations (threads spread over --workers
                   forked processes) land the same files through the landing zone with the
                   service's durability (file synced, ledger row committed): the landing
                   zone's own durable rate on this machine, against which the receive path's
                   share of the service's time shows
Rounds are interleaved so disk-speed drift hits every target alike. `--associations 1,4` also
measures 4 concurrent storescu associations (whole studies split over 4 folders). Then STOW-RS
into the service (httpx, 50 instances per request). Prints a table and the ratio service/minimal.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from axiom_dagster.synth import SynthSpec, generate_archive  # noqa: E402
from ingest_receivers import (  # noqa: E402
    DCMTK_ENV, MinimalSCP, MultiProcessService, Service, drop_pg_databases, state_store_url,
)
from tests.helpers import free_port  # noqa: E402

# By full path: pynetdicom installs its own storescu/storescp in .venv/bin.
STORESCU, STORESCP = "/usr/bin/storescu", "/usr/bin/storescp"


def proc_cpu(pids) -> tuple[float, float]:
    """CPU seconds (user, system) used so far by live processes `pids` and their live
    descendants, from /proc (no psutil here)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    user = system = 0.0
    todo, seen = list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        user += int(stats[pid][11]) / tick
        system += int(stats[pid][12]) / tick
        todo.extend(children.get(pid, []))
    return user, system


def postgres_pids() -> list[int]:
    """The PostgreSQL server's main process(es) on this machine (its backends are children)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    raw = fh.read()
            except OSError:
                continue
            name = raw[raw.index("(") + 1:raw.rindex(")")]
            if name in ("postgres", "postmaster") and raw.rsplit(")", 1)[1].split()[1] == "1":
                out.append(int(entry))
    return out


def self_cpu() -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


CPU: dict[tuple[str, int], list[tuple[float, float]]] = {}  # receiver CPU s (user, system) per (target, assocs)
PG_CPU: dict[tuple[str, int], list[float]] = {}  # PostgreSQL server CPU s during the sends of a target
SENDER_CPU: dict[tuple[str, int], list[float]] = {}  # the storescu senders' CPU s (they share the 2 cores)
LOADS: list[float] = []
PG_ENABLED = False


def send(port: int, folders: list[Path], cpu=None, key=None) -> float:
    """One storescu association per folder, all started at once; wall time until all end.
    `cpu`: a callable giving the receiver's CPU seconds so far, recorded under `key`."""
    # Write back what earlier targets (and the archive's generation) left dirty, so that no
    # target's flushes pay for another's files.
    os.sync()
    cpu_before = cpu() if cpu else (0.0, 0.0)
    pg = postgres_pids() if key and key[0].startswith("service") and PG_ENABLED else []
    pg_before = sum(proc_cpu(pg)) if pg else 0.0
    LOADS.append(os.getloadavg()[0])
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [subprocess.Popen([STORESCU, "-aec", "AXIOM", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                              env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for folder in folders]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the senders: the only children reaped meanwhile
    if key:
        SENDER_CPU.setdefault(key, []).append(children.ru_utime + children.ru_stime
                                              - children_before.ru_utime - children_before.ru_stime)
    if cpu:
        after = cpu()
        CPU.setdefault(key, []).append((after[0] - cpu_before[0], after[1] - cpu_before[1]))
    if pg:
        PG_CPU.setdefault(key, []).append(sum(proc_cpu(pg)) - pg_before)
    for p, err in zip(procs, errors):
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err[-2000:]}")
    return elapsed


def split_folders(src: Path, files: list[Path], k: int) -> list[Path]:
    """k folders of hard links to the files, whole studies per folder (one association each)."""
    if k == 1:
        return [src]
    folders = [src.parent / f"split{k}-{i}" for i in range(k)]
    studies = sorted({f.parents[1] for f in files})  # src/<patient>/<study>/<series>/<file>
    for i, study_dir in enumerate(studies):
        for f in files:
            if f.parents[1] == study_dir:
                dest = folders[i % k] / study_dir.name / f.parent.name
                dest.mkdir(parents=True, exist_ok=True)
                os.link(f, dest / f.name)
    return folders


def land_only(root: Path, files: list[Path], writers: int, processes: int, url: str, key) -> float:
    """Wall time for `writers` threads spread over `processes` forked processes to land
    `files` (already read into memory) with LandingZone.land: temp file, group commit (rename,
    syncfs, ledger INSERT committed). CPU of the processes is recorded under `key`."""
    import multiprocessing

    from axiom_dagster.ingest.arrival import ArrivalMeta
    from axiom_dagster.ingest.landing import LandingZone, read_instance_ids
    from axiom_dagster.ingest.part10 import dataset_sha256
    from axiom_dagster.store.state import StateStore

    items = [(read_instance_ids(f), f.read_bytes()) for f in files]
    StateStore(url).migrate()
    go = multiprocessing.get_context("fork").Event()

    def process(index: int) -> None:
        zone = LandingZone(root / "landing", root / "q", StateStore(url))
        mine = list(range(index, writers, processes))

        def writer(w: int) -> None:
            for ids, data in items[w::writers]:
                meta = ArrivalMeta(source="bench", calling_ae="STORESCU", called_ae="AXIOM", source_ip="127.0.0.1",
                                   association_id=f"bench-{w}", received_at=datetime.now(timezone.utc))
                zone.land(ids, lambda fh, data=data: fh.write(data), meta, sha256=dataset_sha256(data))

        threads = [threading.Thread(target=writer, args=(w,)) for w in mine]
        go.wait()
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    procs = [multiprocessing.get_context("fork").Process(target=process, args=(i,)) for i in range(min(processes, writers))]
    for p in procs:
        p.start()
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    LOADS.append(os.getloadavg()[0])
    started = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(key, []).append((after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime))
    if any(p.exitcode for p in procs):
        raise RuntimeError("a landing-only process failed")
    return elapsed


def stow(url: str, key: str, files: list[Path], per_request: int = 50) -> float:
    boundary = "benchboundary"
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        for i in range(0, len(files), per_request):
            def body():
                for f in files[i:i + per_request]:
                    yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    yield f.read_bytes()
                    yield b"\r\n"
                yield f"--{boundary}--\r\n".encode()

            r = client.post(url, content=body(), headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
            if r.status_code != 200:
                raise RuntimeError(f"STOW-RS {r.status_code}: {r.text[:500]}")
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--associations", default="1",
                    help="comma-separated numbers of concurrent storescu associations to run, e.g. 1,4")
    ap.add_argument("--targets", default="service,minimal-1M,minimal-16K,storescp",
                    help="comma-separated subset of service,service-mp,orthanc,landing-only,minimal-1M,minimal-16K,storescp")
    ap.add_argument("--workers", type=int, default=None,
                    help="listener processes of service-mp (default: what `axiom realtime` starts for the state store)")
    ap.add_argument("--compare-root", type=Path, default=None,
                    help="another checkout of this repository (e.g. `git archive main`): adds target service-mp-old, "
                         "the multi-process service run from that code, measured right after service-mp")
    ap.add_argument("--no-stow", action="store_true", help="skip the STOW-RS measurement")
    ap.add_argument("--pg", nargs="?", const="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", default=None,
                    help="state store of service and service-mp on PostgreSQL (admin URL; a fresh database per round)")
    ap.add_argument("--workdir", type=Path, default=None, help="where files are written (default: the system temp folder)")
    args = ap.parse_args()
    targets = args.targets.split(",")
    if args.workers is None:
        from realtime.workers import default_worker_count

        args.workers = default_worker_count(args.pg or "sqlite://")
    global PG_ENABLED
    PG_ENABLED = bool(args.pg)
    assoc_counts = [int(k) for k in args.associations.split(",")]

    import logging

    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="axiom-bench-", dir=args.workdir))
    try:
        src = work / "src"
        n = args.instances
        t = time.perf_counter()
        files = generate_archive(src, SynthSpec(studies=max(1, n // 100), series_per_study=4, instances_per_series=25,
                                                rows=256, columns=256, seed=7))[:n]
        if len(files) != n:
            raise SystemExit("--instances must be a multiple of 100")
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"{n} instances, {size_mb:.1f} MB ({size_mb / n * 1000:.0f} KB each), generated in {time.perf_counter() - t:.1f}s; "
              f"work dir {work}", flush=True)

        folders = {k: split_folders(src, files, k) for k in assoc_counts}
        results: dict[tuple[str, int], list[float]] = {(t, k): [] for k in assoc_counts for t in targets}
        for rnd in range(args.rounds):
            for k in assoc_counts:
                tag = f"{k}a{rnd}"
                if "service" in targets:
                    # fresh state each round: same ledger size for every round
                    root = work / f"svc{tag}"
                    root.mkdir()
                    svc = Service(root, state_store_url(root, args.pg))
                    results["service", k].append(send(svc.port, folders[k], self_cpu, ("service", k)))
                    landed = svc.svc.store.ledger_count()
                    svc.stop()
                    assert landed == n, f"service ledger has {landed} rows, expected {n}"
                    shutil.rmtree(root, ignore_errors=True)
                for target, folder, code in (("service-mp", "mp", ROOT), ("service-mp-old", "mpold", args.compare_root)):
                    if target not in targets:
                        continue
                    root = work / f"{folder}{tag}"
                    mp = MultiProcessService(root, args.workers, state_store_url(work, args.pg) if args.pg
                                             else f"sqlite:///{root / 'state.db'}", code=code)
                    results[target, k].append(send(mp.port, folders[k], lambda: proc_cpu([mp.proc.pid]), (target, k)))
                    landed = mp.ledger_count()
                    mp.stop()
                    assert landed == n, f"{target} ledger has {landed} rows, expected {n}"
                    shutil.rmtree(root, ignore_errors=True)
                if "landing-only" in targets:
                    root = work / f"landonly{tag}"
                    url = state_store_url(work, args.pg) if args.pg else f"sqlite:///{root / 'state.db'}"
                    root.mkdir()
                    results["landing-only", k].append(land_only(root, files, k, args.workers, url, ("landing-only", k)))
                    shutil.rmtree(root, ignore_errors=True)
                if "orthanc" in targets:
                    from tests.peers.orthanc import Orthanc

                    orthanc = Orthanc(work / f"orthanc{tag}").start()
                    results["orthanc", k].append(send(orthanc.dicom_port, folders[k], lambda: proc_cpu([orthanc.process.pid]),
                                                      ("orthanc", k)))
                    stored = len(orthanc.instances())
                    orthanc.stop()
                    assert stored == n, f"Orthanc stored {stored} instances, expected {n}"
                    shutil.rmtree(work / f"orthanc{tag}", ignore_errors=True)
                for label, pdu in (("minimal-1M", 1_048_576), ("minimal-16K", 16_382)):
                    if label in targets:
                        out = work / f"{label}{tag}"
                        out.mkdir()
                        scp = MinimalSCP(out, pdu)
                        results[label, k].append(send(scp.port, folders[k], self_cpu, (label, k)))
                        scp.stop()
                        shutil.rmtree(out, ignore_errors=True)
                if "storescp" in targets:
                    out = work / f"storescp{tag}"
                    out.mkdir()
                    port = free_port()
                    proc = subprocess.Popen([STORESCP, "-aet", "AXIOM", "-od", str(out), str(port)], env=DCMTK_ENV,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(0.3)
                    results["storescp", k].append(send(port, folders[k], lambda: proc_cpu([proc.pid]), ("storescp", k)))
                    proc.terminate()
                    proc.wait(10)
                    shutil.rmtree(out, ignore_errors=True)
                line = "  ".join(f"{t} {n / results[t, k][-1]:.0f}/s ({sum(CPU[t, k][-1]) / n * 1000:.2f} ms CPU)"
                                 for t in targets)
                print(f"round {rnd + 1}, {k} association(s): {line}", flush=True)

        stow_s = None
        if not args.no_stow and "service" in targets:
            svc = Service(work / "stow")
            stow_s = stow(f"http://127.0.0.1:{svc.http_port}/api/v1/dicomweb/studies", svc.key, files)
            landed = svc.svc.store.ledger_count()
            svc.stop()
            assert landed == n, landed

        print()
        print(f"load average (1 min) at the sends: {min(LOADS):.1f}-{max(LOADS):.1f}")
        print(f"{'target':<34}{'assocs':>7}{'inst/s':>10}{'MB/s':>10}{'best inst/s':>13}{'CPU ms/inst':>13}{'of it sys':>11}{'+ PG ms':>9}{'senders ms':>12}")
        names = {"service": "service (durable: fsync+ledger)", "orthanc": "Orthanc",
                 "service-mp": f"service, {args.workers} worker processes",
                 "service-mp-old": f"old code, {args.workers} workers", "minimal-1M": "minimal pynetdicom SCP, 1 MB PDU",
                 "minimal-16K": "minimal pynetdicom SCP, 16 KB PDU", "storescp": "DCMTK storescp",
                 "landing-only": "landing only (durable, no network)"}
        med = {}
        for (t, k), v in results.items():
            m = statistics.median(v)
            med[t, k] = m
            cpu = CPU.get((t, k)) or [(float("nan"), float("nan"))]
            cpu_ms = statistics.median(u + s for u, s in cpu) / n * 1000
            sys_ms = statistics.median(s for _, s in cpu) / n * 1000
            pg_ms = statistics.median(PG_CPU[t, k]) / n * 1000 if PG_CPU.get((t, k)) else float("nan")
            sender_ms = statistics.median(SENDER_CPU[t, k]) / n * 1000 if SENDER_CPU.get((t, k)) else float("nan")
            print(f"{names[t]:<34}{k:>7}{n / m:>10.0f}{size_mb / m:>10.1f}{n / min(v):>13.0f}{cpu_ms:>13.2f}"
                  f"{sys_ms:>11.2f}{pg_ms:>9.2f}{sender_ms:>12.2f}")
        if stow_s is not None:
            print(f"{'STOW-RS into service (50/request)':<34}{1:>7}{n / stow_s:>10.0f}{size_mb / stow_s:>10.1f}{'':>13}")
        print()
        for k in assoc_counts:
            if "service-mp-old" in targets and "service-mp" in targets:
                print(f"{k} association(s): service-mp / old code: {med['service-mp-old', k] / med['service-mp', k]:.2f}")
            if "service-mp" in targets:
                for t, what, goal in (("orthanc", "Orthanc", 1.0), ("storescp", "DCMTK storescp", 0.5)):
                    if t in targets:
                        print(f"{k} association(s): ratio service ({args.workers} workers) / {what}: "
                              f"{med[t, k] / med['service-mp', k]:.2f}  (target >= {goal})")
                if "landing-only" in targets:
                    print(f"{k} association(s): ratio service ({args.workers} workers) / landing only: "
                          f"{med['landing-only', k] / med['service-mp', k]:.2f}")
                    if "storescp" in targets:
                        print(f"{k} association(s): ratio landing only / DCMTK storescp: "
                              f"{med['storescp', k] / med['landing-only', k]:.2f}  (durable landing alone, no network)")
            if "service" not in targets:
                continue
            for t, what in (("minimal-1M", "minimal SCP (same 1 MB PDU)"), ("minimal-16K", "minimal SCP (default 16 KB PDU)"),
                            ("storescp", "DCMTK storescp")):
                if t in targets:
                    target_note = "  (target >= 0.9)" if t == "minimal-1M" else ""
                    print(f"{k} association(s): ratio service / {what}: {med[t, k] / med['service', k]:.2f}{target_note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        drop_pg_databases()
    return 0


if __name__ == "__main__":
    sys.exit(main())
