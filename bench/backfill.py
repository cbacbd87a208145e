"""Backfill benchmark: `python bench/backfill.py [--studies 200 --instances 25 --rounds 2 --poll-studies 10000]`.

The default archive is 10,000 instances (200 studies of 2 x 25): a backfill rate is a steady
state. `axiom backfill` pays a fixed ~1.5-2 s per command (the first pipeline run waits for
a few studies; the last one runs after the retrieval ends, alone) that a peer writing files
does not; at 2,000 instances (`--studies 40`, the default before 2026-12-02) that was 30-40 %
of the measured time, at 10,000 about 8 %.

A real Orthanc (DICOMweb plugin, TCP_NODELAY=1) holds a synthetic archive (256x256, ~130 KB
per instance). In the same run, interleaved per round:
  * raw-wado     - dicomweb-client alone: retrieve_study per study, each data set written to a
                   file (pydicom save_as, no fsync); sequential
  * e2e-wado     - `axiom backfill` in process over the DICOMweb source: query per day, WADO-RS
                   retrieval landed durably (fsync + ledger), then the landing sensor and
                   study_pipeline_job (validate, route to a folder, Parquet catalog)
  * raw-getscu   - DCMTK /usr/bin/getscu alone, one C-GET per study, files written (-od)
  * e2e-cget     - `axiom backfill` over the DIMSE source (C-FIND + C-GET), same pipeline
  * e2e-wado-link, e2e-cget-link - the same into a folder destination with `link_unchanged`
                   (unchanged instances hard-linked to their landed files, not copied)
  * land-wado, land-cget - the same with --no-pipeline: retrieval and durable landing only
  * raw-wado-2, raw-getscu-2 - the two peers in as many streams as `axiom backfill` retrieves
                   at once (backfill.concurrency, default 2): the studies split between two
                   threads, each running the peer over its share (dicomweb-client in a
                   thread: the GIL shares one core; getscu: separate processes)
Every target starts alike: its output stays until the round ends (a deletion would slow the
next target's file creation, see settle_deletions), then the round's outputs are deleted and
left to age 61 s before the next round; each target is preceded by os.sync().
Ratios e2e/raw use the best round of each; the target is against the single-stream peers
(the issue's definition), the ratio against the two-stream peers is shown beside it.
Each line also gives the CPU per instance of each party (from /proc and getrusage):
Orthanc's process, the peer tool (getscu: child processes; dicomweb-client: this process),
and for `axiom backfill` the pipeline (the main thread while it runs the landing sensor and
pipeline jobs, plus their worker processes) and the rest (retrieval and landing: the
retrieval thread or processes), with the load average. Then a poll tick over --poll-studies
studies (one tiny instance each, loaded through Orthanc's REST API): the tick evaluated as
the daemon would (QIDO page, ledger and state lookups, run requests), with the default page
size and with the whole window in one page.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from dicomweb_client.api import DICOMwebClient  # noqa: E402

from axiom_dagster.config.models import AxiomConfig, FilesystemDestination, PipelineConfig  # noqa: E402
from axiom_dagster.config.sources import BackfillConfig  # noqa: E402
from axiom_dagster.synth import SynthSpec, generate_archive  # noqa: E402
from tests.peers.orthanc import Orthanc, free_port  # noqa: E402

DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")
FIRST, LAST = "2024-01-01", "2024-01-31"
STREAMS = BackfillConfig().concurrency  # studies `axiom backfill` retrieves at once by default


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / _TICK


def own_cpu() -> tuple[float, float]:
    """(this process, its reaped children) CPU seconds."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


class PipelineCpu:
    """CPU of the in-process pipeline: sources_cli._process_landed's thread time plus the
    worker processes it reaps (the retrieval's worker processes live until retrieval ends)."""

    def __init__(self):
        from axiom_dagster import sources_cli

        self.seconds = 0.0
        self.runs = 0
        original = sources_cli._process_landed

        def measured(args):
            thread, (_, children) = time.thread_time(), own_cpu()
            self.inside = True
            started = time.perf_counter()
            runs = 0
            try:
                runs = original(args)
                return runs
            finally:
                self.inside = False
                cpu = time.thread_time() - thread + own_cpu()[1] - children
                self.seconds += cpu
                self.runs += 1
                if os.environ.get("BENCH_TIMELINE"):
                    print(f"  pipeline {started % 1000:8.2f} -> {time.perf_counter() % 1000:8.2f}: {runs} runs, CPU {cpu:.2f}s")

        sources_cli._process_landed = measured
        # The retrieval's worker processes are reaped when it closes them, possibly while a
        # pipeline run is being measured: that CPU is the retrieval's, not the pipeline's.
        from axiom_dagster.sources import workers

        close = workers.ProcessRetrieval.close
        pipeline = self

        def measured_close(retrieval):
            children = own_cpu()[1]
            close(retrieval)
            if os.environ.get("BENCH_TIMELINE"):
                print(f"  retrieval closed at {time.perf_counter() % 1000:8.2f}")
            pipeline.seconds -= own_cpu()[1] - children if pipeline.inside else 0.0

        workers.ProcessRetrieval.close = measured_close
        self.inside = False


def settle_deletions(folders: list[Path], seconds: float = 61.0) -> None:
    """Delete a round's outputs, then wait until ext4 reuses their inodes freely.

    On ext4 without a journal (this VM's root filesystem: /sys/fs/ext4/<dev>/journal_task
    says <none>), a new file skips every inode deleted in the last 60 s (300 s more while
    its inode table block is dirty), checking each: after 10,000 deletions a create cost
    0.4-0.9 ms instead of 0.02 ms, measured. A target run right after another target's
    deletions paid that for every file it made (ours make two per instance, a peer one),
    so outputs are deleted between rounds only, synced, and left to age."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    os.sync()
    print(f"(waiting {seconds:.0f}s: deleted inodes age out before the next round)")
    time.sleep(seconds)


def upload(orthanc: Orthanc, paths, threads: int = 4) -> None:
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(threads) as pool:
        def one(p):
            client.post(f"{orthanc.url}/instances", content=Path(p).read_bytes()).raise_for_status()
        list(pool.map(one, paths))


def study_uids(orthanc: Orthanc) -> list[str]:
    found = httpx.post(f"{orthanc.url}/tools/find", json={"Level": "Study", "Query": {}, "Expand": True}, timeout=120).json()
    return [s["MainDicomTags"]["StudyInstanceUID"] for s in found]


def in_streams(retrieve, orthanc: Orthanc, uids, out: Path, streams: int) -> int:
    """`retrieve` over the studies split among `streams` threads (one study list each), as
    `axiom backfill` retrieves `backfill.concurrency` studies at once: the peer on as many
    cores as we use."""
    with ThreadPoolExecutor(streams) as pool:
        return sum(pool.map(lambda part: retrieve(orthanc, part, out), [uids[i::streams] for i in range(streams)]))


def raw_wado(orthanc: Orthanc, uids, out: Path) -> int:
    client = DICOMwebClient(orthanc.dicomweb_url)
    n = 0
    for uid in uids:
        folder = out / uid
        folder.mkdir(parents=True)
        for ds in client.retrieve_study(uid):
            ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
            n += 1
    return n


def raw_getscu(orthanc: Orthanc, uids, out: Path) -> int:
    for uid in uids:
        folder = out / uid
        folder.mkdir(parents=True)
        r = subprocess.run(["/usr/bin/getscu", "-aet", "AXIOM", "-aec", orthanc.aet, "-S", "-k", "QueryRetrieveLevel=STUDY",
                            "-k", f"StudyInstanceUID={uid}", "-od", str(folder), "127.0.0.1", str(orthanc.dicom_port)],
                           env=DCMTK_ENV, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"getscu failed: {r.stderr[-1000:]}")
    return sum(1 for uid in uids for _ in (out / uid).iterdir())


def e2e(root: Path, source: dict, pipeline: bool = True, link: bool = False) -> tuple[int, float]:
    """`axiom backfill` in process into a fresh state store, landing zone, folder and catalog;
    `link`: the folder destination hard-links unchanged instances (`link_unchanged`)."""
    import yaml

    from axiom_dagster.catalog.tables import connect
    from axiom_dagster import sources_cli
    from axiom_dagster.cli import main

    root.mkdir(parents=True)
    config = AxiomConfig(
        landing={"path": root / "landing", "quarantine_path": root / "quarantine"},
        state_store={"url": f"sqlite:///{root / 'state.db'}"}, catalog={"path": str(root / "catalog")},
        pipeline=PipelineConfig(quiet_period_seconds=0), sources=[source],
        destinations=[FilesystemDestination(name="folder", path=root / "routed", link_unchanged=link)], base_dir=root,
    )
    path = root / "axiom.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    os.environ["AXIOM_CONFIG"] = str(path)
    sources_cli._instance.cache_clear()  # a fresh Dagster instance: its landing cursor starts at 0
    gc.collect()  # the old instance's SQLite connections close here, not in a retrieval thread
    started = time.perf_counter()
    code = main(["--config", str(path), "backfill", source["name"], "--from", FIRST, "--to", LAST, "--no-progress",
                 *([] if pipeline else ["--no-pipeline"])])
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"axiom backfill exited {code}")
    if not pipeline:
        from axiom_dagster.store.state import StateStore

        return StateStore(config.state_store_url).ledger_count(), seconds
    rows = connect(str(root / "catalog")).sql("SELECT count(*) FROM instances").fetchall()[0][0]
    return rows, seconds


def poll_tick(orthanc: Orthanc, work: Path, page_size: int) -> tuple[float, int]:
    import yaml
    from dagster import build_sensor_context

    from assets.backfill import source_definitions
    from resources import AxiomResource

    root = work / f"poll-{page_size}"
    root.mkdir()
    lookback = (date.today() - date(2024, 1, 1)).days + 1
    config = AxiomConfig(
        state_store={"url": f"sqlite:///{root / 'state.db'}"}, base_dir=root,
        sources=[{"name": "bench-web", "type": "dicomweb", "url": orthanc.dicomweb_url,
                  "poll": {"lookback_days": lookback, "page_size": page_size, "max_studies_per_tick": page_size}}],
    )
    path = root / "axiom.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    defs = source_definitions(config, str(path), with_axiom=True)
    sensor = defs.resolve_sensor_def("poll_source_bench_web")
    resource = AxiomResource(config_path=str(path))
    resource.store  # migrate outside the timed tick, as a running daemon would have
    started = time.perf_counter()
    with build_sensor_context(resources={"axiom": resource}) as ctx:
        result = sensor(ctx)
    seconds = time.perf_counter() - started
    return seconds, sum(len(r.run_config["ops"]["retrieve_source_bench_web"]["config"]["study_uids"]) for r in result.run_requests)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--series", type=int, default=2)
    ap.add_argument("--instances", type=int, default=25, help="instances per series")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--poll-studies", type=int, default=10_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--targets", default="raw-wado,raw-wado-2,e2e-wado,e2e-wado-link,land-wado,raw-getscu,raw-getscu-2,e2e-cget,e2e-cget-link,land-cget",
                    help="comma-separated subset of the measured targets (ratios need both sides)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="axiom-bench-backfill-", dir=args.workdir))
    orthanc = Orthanc(work / "orthanc")
    orthanc.modalities = {"AXIOM": free_port()}
    results: dict[str, list[float]] = {}
    try:
        orthanc.start()
        spec = SynthSpec(args.studies, args.series, args.instances, rows=args.rows, columns=args.rows, seed=11, days=28)
        upload(orthanc, generate_archive(work / "archive", spec))
        uids = study_uids(orthanc)
        n = spec.instances
        print(f"Orthanc loaded: {len(uids)} studies, {n} instances of {args.rows}x{args.rows}")
        web = {"name": "bench-web", "type": "dicomweb", "url": orthanc.dicomweb_url}
        dimse = {"name": "bench-dimse", "type": "dimse", "host": "127.0.0.1", "port": orthanc.dicom_port,
                 "remote_ae": orthanc.aet, "ae_title": "AXIOM", "retrieve": "get"}
        import axiom_dagster.definitions  # noqa: F401  imports (~3 s) are not part of any rate

        pipeline_cpu = PipelineCpu()
        orthanc_pid = orthanc.process.pid

        for r in range(args.rounds):
            if r:
                settle_deletions(outputs)
            outputs = []
            for name, run in [
                ("raw-wado", lambda d: (raw_wado(orthanc, uids, d), None)),
                ("raw-wado-2", lambda d: (in_streams(raw_wado, orthanc, uids, d, STREAMS), None)),
                ("e2e-wado", lambda d: e2e(d, web)),
                ("e2e-wado-link", lambda d: e2e(d, web, link=True)),
                ("land-wado", lambda d: e2e(d, web, pipeline=False)),
                ("raw-getscu", lambda d: (raw_getscu(orthanc, uids, d), None)),
                ("raw-getscu-2", lambda d: (in_streams(raw_getscu, orthanc, uids, d, STREAMS), None)),
                ("e2e-cget", lambda d: e2e(d, dimse)),
                ("e2e-cget-link", lambda d: e2e(d, dimse, link=True)),
                ("land-cget", lambda d: e2e(d, dimse, pipeline=False)),
            ]:
                if name not in args.targets.split(","):
                    continue
                folder = work / f"{name}-{r}"
                if name.startswith("raw"):
                    folder.mkdir()
                # The previous target's files (a peer does not sync) and deletions are written
                # back here, not inside this target's durability syncs (syncfs, os.sync).
                os.sync()
                cpu_before, pacs_before, pipe_before = own_cpu(), process_cpu(orthanc_pid), pipeline_cpu.seconds
                started = time.perf_counter()
                count, seconds = run(folder)
                seconds = seconds or time.perf_counter() - started
                if count != n:
                    raise RuntimeError(f"{name}: {count} instances, expected {n}")
                cpu_after = own_cpu()
                ms = lambda secs: 1000 * secs / n  # noqa: E731
                ours = cpu_after[0] - cpu_before[0] + cpu_after[1] - cpu_before[1]
                pipe = pipeline_cpu.seconds - pipe_before
                parts = f"orthanc {ms(process_cpu(orthanc_pid) - pacs_before):4.2f}"
                if name.startswith("raw"):
                    parts += f", peer {ms(ours):4.2f}"
                else:
                    parts += f", retrieval+landing {ms(ours - pipe):4.2f}, pipeline {ms(pipe):4.2f}"
                results.setdefault(name, []).append(n / seconds)
                print(f"round {r + 1} {name:11s} {n} instances in {seconds:6.2f}s = {n / seconds:7.1f} inst/s; "
                      f"CPU ms/inst: {parts} (wall {ms(seconds):4.2f}); load {os.getloadavg()[0]:.1f}")
                outputs.append(folder)
        if results:
            best = {k: max(v) for k, v in results.items()}
            print("\nbest of rounds (instances/s):", ", ".join(f"{k} {v:.1f}" for k, v in best.items()))
            for ours, peer, label in [("e2e-wado", "raw-wado", "target >= 0.70"), ("e2e-cget", "raw-getscu", "target >= 0.70"),
                                      ("e2e-wado-link", "raw-wado", "target >= 0.70, folder with link_unchanged"),
                                      ("e2e-cget-link", "raw-getscu", "target >= 0.70, folder with link_unchanged"),
                                      ("e2e-wado", "raw-wado-2", f"the peer in {STREAMS} streams, as we retrieve"),
                                      ("e2e-cget", "raw-getscu-2", f"the peer in {STREAMS} streams, as we retrieve"),
                                      ("land-wado", "raw-wado", "retrieval + landing only"),
                                      ("land-cget", "raw-getscu", "retrieval + landing only")]:
                if ours in best and peer in best:
                    print(f"ratio {ours} / {peer} = {best[ours] / best[peer]:.2f}  ({label}); per round: "
                          + ", ".join(f"{a / b:.2f}" for a, b in zip(results[ours], results[peer])))

        if args.poll_studies:
            orthanc.stop()
            shutil.rmtree(orthanc.root, ignore_errors=True)
            big = Orthanc(work / "orthanc-poll")
            big.start()
            orthanc = big
            started = time.perf_counter()
            tiny = SynthSpec(args.poll_studies, 1, 1, rows=8, columns=8, seed=12, days=300)
            upload(big, generate_archive(work / "poll-archive", tiny), threads=4)
            print(f"\nOrthanc loaded with {args.poll_studies} studies in {time.perf_counter() - started:.0f}s")
            client = DICOMwebClient(big.dicomweb_url)
            for page in (1000, args.poll_studies):
                seconds, requested = poll_tick(big, work, page)
                started = time.perf_counter()
                found = client.search_for_studies(limit=page, fields=["StudyDate", "NumberOfStudyRelatedInstances"],
                                                  search_filters={"StudyDate": "20240101-20991231"})
                qido = time.perf_counter() - started
                print(f"poll tick, page size {page:6d}: {seconds:.2f}s, {requested} studies requested (target < 5 s); "
                      f"the same QIDO-RS search alone with dicomweb-client: {qido:.2f}s for {len(found)} studies")
    finally:
        orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
