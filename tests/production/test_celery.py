"""Two Celery workers (processes on 127.0.0.1, RabbitMQ broker) process two batches of the
study pipeline concurrently, and the result equals the in-process executor's."""
from __future__ import annotations

import time

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from axiom_dagster.catalog.tables import connect
from axiom_dagster.store.state import StateStore
from tests.helpers import land_folder, make_config, small_archive, write_config_file
from tests.production import celery_support as cs

# All Celery tests share RabbitMQ's `dagster` queue (and purge it): one at a time (conftest.py).
pytestmark = pytest.mark.usefixtures("rabbitmq_queue")

# Columns that name the run rather than the data.
# Columns that differ between two deployments by design (paths, times, ids).
RUN_COLUMNS = ("run_id", "batch_id", "ledger_id", "received_at", "file_path", "file_mtime")


def _landed_batches(root, inputs) -> tuple:
    """A configuration under `root`, the inputs landed, one batch per study."""
    root.mkdir(parents=True, exist_ok=True)
    config = make_config(root, f"sqlite:///{root / 'state.db'}", workers=1)
    config_file = write_config_file(config, root / "axiom.yaml")
    store = StateStore(config.state_store_url)
    store.migrate()
    land_folder(config, store, inputs)
    rows = store.ledger_after(0, 10_000)
    store.note_arrivals(rows)
    batches = [store.create_batch(rows[0].arrival_date, [uid]) for uid in sorted({r.study_uid for r in rows})]
    return config, config_file, store, batches


def _catalog(config) -> list[tuple]:
    con = connect(config.catalog_path)
    df = con.execute("SELECT * EXCLUDE (%s) FROM instances ORDER BY sop_instance_uid" % ", ".join(RUN_COLUMNS)).fetchall()
    return [tuple(map(str, row)) for row in df]


def test_two_celery_workers_process_two_batches_concurrently(tmp_path, postgres_url, monkeypatch):
    if not cs.rabbitmq_available():
        pytest.skip("RabbitMQ on 127.0.0.1:5672 is not reachable")
    inputs = tmp_path / "in"
    small_archive(inputs, studies=2, series=2, instances=150)  # 2 studies: one batch each

    # In-process executor: the reference result.
    monkeypatch.delenv("AXIOM_EXECUTOR", raising=False)
    ref_config, ref_file, ref_store, ref_batches = _landed_batches(tmp_path / "inprocess", inputs)
    monkeypatch.setenv("AXIOM_CONFIG", str(ref_file))
    from axiom_dagster.definitions import defs

    job = defs.resolve_job_def("study_pipeline_job")
    for batch in ref_batches:
        assert job.execute_in_process(run_config={"ops": {"study_pipeline": {"config": {"batch_id": batch.id}}}},
                                      instance=DagsterInstance.ephemeral(), partition_key=batch.partition).success

    # Celery: both run workers submit their step first, then two workers start and each takes one.
    config, config_file, store, batches = _landed_batches(tmp_path / "celery", inputs)
    deployment = cs.make_deployment(tmp_path / "celery", config_file, postgres_url.rsplit("/", 1)[1])
    cs.purge_queue()
    runs = [cs.launch_run(deployment, b.id, b.partition) for b in batches]
    workers = []
    try:
        cs.wait_for_queue(2, runs)
        workers = [cs.CeleryWorker(deployment, f"batch{i}") for i in (1, 2)]
        for batch, p in zip(batches, runs):
            assert p.wait(300) == 0, (deployment.dagster_home / f"run-{batch.id}.log").read_text()[-3000:]
    finally:
        cs.stop_all(runs, workers)

    for key, value in deployment.env().items():
        if key.startswith("DAGSTER_"):
            monkeypatch.setenv(key, value)
    with DagsterInstance.get() as instance:
        records = instance.get_run_records()
        assert len(records) == 2 and {r.dagster_run.status for r in records} == {DagsterRunStatus.SUCCESS}
        steps = cs.step_executions(instance, [r.dagster_run.run_id for r in records])
    a, b = steps
    assert a.celery_worker != b.celery_worker and a.pid != b.pid
    assert {a.celery_worker.split("@")[0], b.celery_worker.split("@")[0]} == {"batch1", "batch2"}
    assert a.started < b.finished and b.started < a.finished, "the two batches did not overlap"

    # Same routed files, byte for byte, and the same catalog rows as in process.
    assert cs.tree_digest(config.destination_path(config.destinations[0])) == \
        cs.tree_digest(ref_config.destination_path(ref_config.destinations[0]))
    assert len(cs.tree_digest(config.destination_path(config.destinations[0]))) == 600
    assert _catalog(config) == _catalog(ref_config)
    assert {b.status for b in map(store.batch, [b.id for b in batches])} == {"done"}
    store.dispose()
    ref_store.dispose()


def test_a_batch_whose_celery_worker_dies_is_redelivered_and_completes(tmp_path, postgres_url, monkeypatch):
    """SIGKILL the worker in the middle of a batch: RabbitMQ redelivers the unacknowledged
    step to the other worker, which re-runs the batch (idempotent) to the same result."""
    if not cs.rabbitmq_available():
        pytest.skip("RabbitMQ on 127.0.0.1:5672 is not reachable")
    inputs = tmp_path / "in"
    small_archive(inputs, studies=1, series=2, instances=300)
    config, config_file, store, (batch,) = _landed_batches(tmp_path / "celery", inputs)
    deployment = cs.make_deployment(tmp_path / "celery", config_file, postgres_url.rsplit("/", 1)[1])
    routed = config.destination_path(config.destinations[0])
    cs.purge_queue()
    run = cs.launch_run(deployment, batch.id, batch.partition)
    first = second = None
    try:
        cs.wait_for_queue(1, [run])
        first = cs.CeleryWorker(deployment, "doomed")
        deadline = time.monotonic() + 180
        while len(list(routed.rglob("*.dcm"))) < 50:
            assert time.monotonic() < deadline and first.process.poll() is None, "the batch did not start"
            time.sleep(0.05)
        first.process.kill()
        first.process.wait()
        second = cs.CeleryWorker(deployment, "survivor")
        assert run.wait(300) == 0, (deployment.dagster_home / f"run-{batch.id}.log").read_text()[-3000:]
    finally:
        cs.stop_all([run], [w for w in (first, second) if w is not None])

    assert len(list(routed.rglob("*.dcm"))) == 600
    assert store.batch(batch.id).status == "done"
    con = connect(config.catalog_path)
    assert con.execute("SELECT count(*), count(DISTINCT sop_instance_uid) FROM instances").fetchone() == (600, 600)
    for key, value in deployment.env().items():
        if key.startswith("DAGSTER_"):
            monkeypatch.setenv(key, value)
    with DagsterInstance.get() as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == DagsterRunStatus.SUCCESS
        workers = [e.dagster_event.engine_event_data.metadata["Celery worker"].value
                   for e in instance.all_logs(record.dagster_run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
                   if "Celery worker" in e.dagster_event.engine_event_data.metadata]
    # The batch step started on the doomed worker and was finished by the survivor, which
    # also ran the job's later step (the catalog tables).
    names = [w.split("@")[0] for w in workers]
    assert names[:2] == ["doomed", "survivor"] and set(names) == {"doomed", "survivor"}
    store.dispose()


def test_one_celery_worker_takes_the_waiting_steps_one_at_a_time_in_a_pool_thread(tmp_path, postgres_url, monkeypatch):
    """One worker, four batches waiting: it takes every step task (the batch's, then its
    catalog's), one at a time (prefetch 1, concurrency 1), in its one pool thread. With the
    solo pool a finished task's acknowledgement could wait behind the event loop's poll (up
    to 10 s, measured in bench/celery.py), and RabbitMQ (prefetch 1) held the next task back
    until then (assets/executors.py)."""
    if not cs.rabbitmq_available():
        pytest.skip("RabbitMQ on 127.0.0.1:5672 is not reachable")
    inputs = tmp_path / "in"
    small_archive(inputs, studies=4, series=1, instances=10)
    config, config_file, store, batches = _landed_batches(tmp_path / "celery", inputs)
    deployment = cs.make_deployment(tmp_path / "celery", config_file, postgres_url.rsplit("/", 1)[1])
    cs.purge_queue()
    runs = [cs.launch_run(deployment, b.id, b.partition) for b in batches]
    worker = None
    try:
        cs.wait_for_queue(len(batches), runs)
        worker = cs.CeleryWorker(deployment, "alone")
        for batch, p in zip(batches, runs):
            assert p.wait(300) == 0, (deployment.dagster_home / f"run-{batch.id}.log").read_text()[-3000:]
    finally:
        cs.stop_all(runs, [worker] if worker else [])
    store.dispose()

    for key, value in deployment.env().items():
        if key.startswith("DAGSTER_"):
            monkeypatch.setenv(key, value)
    with DagsterInstance.get() as instance:
        tasks = sorted(cs.celery_tasks(instance, [r.dagster_run.run_id for r in instance.get_run_records()]),
                       key=lambda t: t.started)
    assert len(tasks) == 2 * len(batches) and {t.celery_worker.split("@")[0] for t in tasks} == {"alone"}
    assert all(nxt.started >= prev.finished for prev, nxt in zip(tasks, tasks[1:]))
    assert "concurrency: 1 (thread)" in worker.log.read_text()  # the worker's start-up banner
