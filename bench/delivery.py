"""Delivery benchmark: `python bench/delivery.py [--instances 2000] [--rounds 2]`.

The same landed synthetic files (256x256, ~130 KB, 50 instances per study) go to a real
Orthanc (fresh storage for every measurement, TCP_NODELAY=1) by:
  * C-STORE: this project's delivery (claim, one association per study with 4 studies in
    flight, every answer recorded in the state store) vs DCMTK `/usr/bin/storescu` (one
    association, no records)
  * STOW-RS: this project's delivery (50 instances per request, 4 requests in flight,
    per-instance results recorded) vs bare dicomweb-client `store_instances` (read + post
    50 per request, one at a time)
Rounds are interleaved so drift hits both alike. Prints inst/s, the senders' CPU time per
instance (this process and its reaped children: storescu, the C-STORE worker processes; not
Orthanc) and the ratios (target ≥ 0.9).

`--outage SECONDS`: instead, deliver the instances to Orthanc with the retry loop running
(a delivery call every second, as the sensor would request runs), kill Orthanc once a quarter
is confirmed, keep it down for SECONDS, start it again on the same storage, and report: instances lost (must be 0), duplicates in
Orthanc (must be 0), and the time from Orthanc's return until all are confirmed (target:
within one retry interval, `max_seconds` of the retry policy).
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dicomweb_client.api import DICOMwebClient  # noqa: E402
from pydicom import dcmread  # noqa: E402
from sqlalchemy import update  # noqa: E402

from axiom_dagster.config.models import AxiomConfig  # noqa: E402
from axiom_dagster.destinations.delivery import deliver_destination  # noqa: E402
from axiom_dagster.ingest.arrival import ArrivalMeta  # noqa: E402
from axiom_dagster.ingest.importer import iter_files  # noqa: E402
from axiom_dagster.ingest.landing import LandingZone  # noqa: E402
from axiom_dagster.store.schema import deliveries  # noqa: E402
from axiom_dagster.store.state import StateStore  # noqa: E402
from axiom_dagster.synth import SynthSpec, generate_archive  # noqa: E402
from tests.peers.orthanc import Orthanc  # noqa: E402

# Imported up front (once per process, as in a delivery run): the timings are rates.
import axiom_dagster.destinations.dicomweb  # noqa: E402,F401
import axiom_dagster.destinations.dimse  # noqa: E402,F401

DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")
STORESCU = "/usr/bin/storescu"


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (storescu, C-STORE workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def fresh_orthanc(work: Path, name: str) -> Orthanc:
    root = work / "orthanc" / name
    shutil.rmtree(root, ignore_errors=True)
    return Orthanc(root).start()


def storescu(orthanc: Orthanc, folder: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([STORESCU, "-aec", orthanc.aet, "+sd", "+r", "127.0.0.1", str(orthanc.dicom_port), str(folder)],
                          env=DCMTK_ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"storescu failed: {done.stderr[-2000:]}")
    return elapsed


def bare_stow(orthanc: Orthanc, paths: list[Path], per_request: int) -> float:
    client = DICOMwebClient(orthanc.dicomweb_url)
    started = time.perf_counter()
    for i in range(0, len(paths), per_request):
        client.store_instances([dcmread(p) for p in paths[i : i + per_request]])
    return time.perf_counter() - started


def ours(config: AxiomConfig, store: StateStore, name: str, destination: dict) -> float:
    retry_now = {"retry": {"initial_seconds": 0, "jitter": False}}
    config.destinations = [AxiomConfig.model_validate({"destinations": [{**retry_now, **destination}]}).destinations[0]]
    with store.engine.begin() as conn:  # every instance due again, as after a pipeline run
        conn.execute(update(deliveries).where(deliveries.c.destination == name).values(
            status="pending", attempts=0, first_attempt_at=None, next_attempt_at=None))
    started = time.perf_counter()
    report = deliver_destination(config, store, name, run_id="bench")
    total, confirmed = report.claimed, report.confirmed
    for _ in range(3):  # what the next delivery runs do: failures are retried (due at once here)
        if confirmed == total:
            break
        print(f"  retrying after: {report.summary()}", flush=True)
        report = deliver_destination(config, store, name, run_id="bench-retry")
        confirmed += report.confirmed
    elapsed = time.perf_counter() - started
    if confirmed != total or not total:
        raise RuntimeError(f"delivery incomplete: {report.summary()}")
    return elapsed


def outage(config: AxiomConfig, store: StateStore, work: Path, n: int, seconds: float, retry_max: float) -> None:
    import threading

    from axiom_dagster.store.deliveries import DeliveryState

    orthanc = fresh_orthanc(work, "outage")
    dest = {"name": "pacs", "type": "dicom", "host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": orthanc.aet,
            # max_age_seconds and multiplier are the defaults: they must outlast the outage.
            "retry": {"initial_seconds": retry_max / 4, "max_seconds": retry_max}}
    config.destinations = [AxiomConfig.model_validate({"destinations": [dest]}).destinations[0]]
    state = DeliveryState(store)
    done = threading.Event()
    calls = []

    def loop():
        while not done.is_set():
            calls.append(deliver_destination(config, store, "pacs", run_id=f"bench-{len(calls)}"))
            if sum(1 for r in state.rows("pacs") if r["status"] == "confirmed") == n:
                done.set()
            time.sleep(1)

    worker = threading.Thread(target=loop)
    started = time.perf_counter()
    worker.start()
    while sum(1 for r in state.rows("pacs") if r["status"] == "confirmed") < n // 4:
        time.sleep(0.05)
    orthanc.process.kill()  # down abruptly, mid-delivery (a crash, not a clean shutdown)
    orthanc.process.wait()
    down_at = time.perf_counter()
    time.sleep(seconds)
    orthanc.start()
    back_at = time.perf_counter()
    worker.join()
    all_confirmed = time.perf_counter()
    try:
        stored, unique = len(orthanc.instances()), len(orthanc.sop_instance_uids())
    finally:
        orthanc.stop()
    rows = state.rows("pacs")
    failures = sum(c.failed for c in calls)
    print(f"outage: Orthanc killed {down_at - started:.1f} s after the start, down {back_at - down_at:.0f} s; "
          f"{failures} failed attempts recorded and retried over {len(calls)} delivery calls")
    print(f"confirmed {sum(r['status'] == 'confirmed' for r in rows)} of {n}; lost {n - unique}; "
          f"duplicates in Orthanc {stored - unique}; max attempts {max(r['attempts'] for r in rows)}")
    print(f"all confirmed {all_confirmed - back_at:.1f} s after Orthanc returned (retry interval ≤ {retry_max:.0f} s); "
          f"exceptions opened {sum(c.exceptions for c in calls)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=2000)
    ap.add_argument("--per-study", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--per-request", type=int, default=50, help="STOW-RS instances per request")
    ap.add_argument("--outage", type=float, default=0, help="seconds Orthanc is down during a delivery (outage mode)")
    ap.add_argument("--retry-max", type=float, default=60, help="outage mode: the retry policy's max_seconds")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="axiom-bench-delivery-"))
    try:
        studies = max(1, args.instances // args.per_study)
        generate_archive(work / "synth", SynthSpec(studies, 1, args.per_study, seed=7))
        config = AxiomConfig(landing={"path": work / "landing", "quarantine_path": work / "quarantine"},
                             state_store={"url": f"sqlite:///{work / 'state.db'}"}, base_dir=work)
        store = StateStore(config.state_store_url)
        store.migrate()
        LandingZone.for_config(config, store).import_files(iter_files(work / "synth"), ArrivalMeta(source="bench"))
        rows = store.ledger_after(0, 10**7)
        n = len(rows)
        mb = sum(r.size for r in rows) / 1e6
        for dest in ("pacs", "web"):
            store.record_deliveries([dict(ledger_id=r.id, destination=dest, study_uid=r.study_uid, sop_uid=r.sop_uid,
                                          status="pending", location=None, error=None, batch_id=None, run_id=None,
                                          source_path=r.path, attempts=0) for r in rows])
        paths = [Path(r.path) for r in rows]
        print(f"{n} instances in {studies} studies, {mb:.0f} MB ({mb / n * 1000:.0f} KB each); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        if args.outage:
            outage(config, store, work, n, args.outage, args.retry_max)
            print("load average (1, 5, 15 min) at the end: %.1f %.1f %.1f" % os.getloadavg())
            return 0

        times: dict[str, list[float]] = {k: [] for k in ("storescu", "cstore", "bare_stow", "stow")}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        for rnd in range(args.rounds):
            for what in times:
                orthanc = fresh_orthanc(work, what)
                cpu_before = cpu_seconds()
                try:
                    if what == "storescu":
                        t = storescu(orthanc, config.landing_path)
                    elif what == "cstore":
                        t = ours(config, store, "pacs", {"name": "pacs", "type": "dicom", "host": "127.0.0.1",
                                                         "port": orthanc.dicom_port, "ae_title": orthanc.aet})
                    elif what == "bare_stow":
                        t = bare_stow(orthanc, paths, args.per_request)
                    else:
                        t = ours(config, store, "web", {"name": "web", "type": "dicomweb", "url": orthanc.dicomweb_url,
                                                        "batch_size": args.per_request})
                    cpu[what].append(cpu_seconds() - cpu_before)  # the sender's, Orthanc not yet reaped
                    stored = len(orthanc.instances())
                    if stored != n:
                        raise RuntimeError(f"{what}: Orthanc holds {stored} of {n} instances")
                finally:
                    orthanc.stop()
                times[what].append(t)
                print(f"round {rnd + 1}: {what:<10} {n / t:8.0f} inst/s ({t:.2f} s; sender CPU {cpu[what][-1] * 1000 / n:.2f} ms/inst; "
                      f"load {os.getloadavg()[0]:.1f})", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        print()
        print(f"{'sender → Orthanc':<52}{'inst/s':>8}{'MB/s':>8}{'CPU ms/inst':>12}")
        labels = {"storescu": "DCMTK storescu (1 association)", "cstore": "axiom C-STORE (1 assoc./study, 4 processes, recorded)",
                  "bare_stow": f"dicomweb-client store_instances ({args.per_request}/req)",
                  "stow": f"axiom STOW-RS ({args.per_request}/req, recorded)"}
        for k, label in labels.items():
            print(f"{label:<52}{n / med[k]:>8.0f}{mb / med[k]:>8.1f}{statistics.median(cpu[k]) * 1000 / n:>12.2f}")
        print()
        pairs = lambda a, b: ", ".join(f"{x / y:.2f}" for x, y in zip(times[a], times[b]))  # noqa: E731
        print(f"per round: C-STORE / storescu {pairs('storescu', 'cstore')}; STOW-RS / bare {pairs('bare_stow', 'stow')}")
        print(f"ratio C-STORE / storescu: {med['storescu'] / med['cstore']:.2f} (target ≥ 0.9)")
        print(f"ratio STOW-RS / bare store_instances: {med['bare_stow'] / med['stow']:.2f} (target ≥ 0.9)")
        print("load average (1, 5, 15 min) at the end: %.1f %.1f %.1f" % os.getloadavg())
        store.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
