"""Crosswalk benchmark (one command): a 1,000,000-key snapshot loaded and looked up.

    python bench/crosswalk_bench.py [--keys N]

A snapshot is staged from an Arrow table (mrn -> research_id, site) as `axiom crosswalk
refresh` would, then timed, medians of 3:
(a) load: open the promoted snapshot and build the lookup index (what a run does once),
    vs the peer: the same Parquet file read into a dict of row dicts (pyarrow to_pylist),
    the way the first FileCrosswalk did. Target: < 2 s.
(b) lookups: 1,000,000 index.get calls on hits and misses (a rule's path), vs the peer:
    polars joining the same 1,000,000 keys against the table (vectorized, no per-key call).
    Target: >= 1,000,000 keys/s.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from axiom_dagster.config.crosswalks import CrosswalkSpec  # noqa: E402
from axiom_dagster.crosswalks.lookup import open_crosswalk  # noqa: E402
from axiom_dagster.crosswalks.snapshot import SnapshotStore  # noqa: E402


def median(fn, reps=3) -> tuple[float, float, object]:
    """(wall s, CPU s of this process, result): on a shared machine the CPU time is what the
    work costs; the wall time also counts waiting for a core."""
    walls, cpus, out = [], [], None
    for _ in range(reps):
        out = None  # freeing the previous result (a million rows) is not part of the next load
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    n = parser.parse_args().keys
    root = Path(tempfile.mkdtemp(prefix="axiom-xw-bench-"))
    spec = CrosswalkSpec.model_validate({"source": {"type": "file", "path": "unused.csv"},
                                         "keys": ["mrn"], "values": ["research_id", "site"], "max_row_drift": 1.0})
    table = pa.table({
        "mrn": [f"MRN{i:09d}" for i in range(n)],
        "research_id": [f"R-{i * 7919 % 10**9:09d}" for i in range(n)],
        "site": [f"S{i % 17}" for i in range(n)],
    })
    t0 = time.perf_counter()
    result = SnapshotStore(root, "patients").stage(table, spec)
    stage_s = time.perf_counter() - t0
    assert result.promoted
    path = SnapshotStore(root, "patients").current_file()

    load_s, load_cpu, index = median(lambda: open_crosswalk("patients", spec, root, root).index(["mrn"]))
    peer_load_s, peer_load_cpu, peer = median(lambda: {r["mrn"]: r for r in pq.read_table(path).to_pylist()})
    assert len(index) == len(peer) == n

    rng = random.Random(1)
    keys = [(f"MRN{rng.randrange(int(n * 1.1)):09d}",) for _ in range(1_000_000)]  # ~9 % misses
    get = index.get

    def lookups():
        hits = 0
        for k in keys:
            if get(k) is not None:
                hits += 1
        return hits

    look_s, look_cpu, hits = median(lookups)
    probe = pl.DataFrame({"mrn": [k[0] for k in keys]})
    frame = pl.read_parquet(path)
    peer_look_s, peer_look_cpu, joined = median(lambda: probe.join(frame, on="mrn", how="left"))
    assert joined["research_id"].null_count() == len(keys) - hits
    plain = {k: None for k in table.column("mrn").to_pylist()}
    plain_keys = [k[0] for k in keys]

    def plain_lookups():  # the floor: a bare dict of str keys, no key tuple, no method call
        return sum(1 for k in plain_keys if k in plain)

    plain_s, plain_cpu, _ = median(plain_lookups)

    print(f"crosswalk with {n:,} keys; snapshot staged (checks + Parquet) in {stage_s:.2f} s, {path.stat().st_size / 1e6:.1f} MB")
    m = len(keys)
    print(f"(a) load + index : wall {load_s:.2f} s, CPU {load_cpu:.2f} s (target < 2 s); peer dict of row dicts: "
          f"wall {peer_load_s:.2f} s, CPU {peer_load_cpu:.2f} s; ratio peer/ours (CPU) {peer_load_cpu / load_cpu:.2f}")
    print(f"(b) lookups      : {m / look_s:,.0f} keys/s wall, {m / look_cpu:,.0f} keys/s CPU ({hits:,} hits; target >= 1,000,000/s)")
    print(f"    peers        : polars join {m / peer_look_s:,.0f} keys/s wall ({m / peer_look_cpu:,.0f} CPU); "
          f"bare dict membership {m / plain_s:,.0f} keys/s wall ({m / plain_cpu:,.0f} CPU); "
          f"ours / bare dict (CPU) {plain_cpu / look_cpu:.2f}")


if __name__ == "__main__":
    main()
