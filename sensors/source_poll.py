"""Poll sensors, one per configured source, and the retrieval job each one enqueues.

A tick only queries (one bounded page) and requests runs; retrieval happens in the runs, on
the source's concurrency pool, so ticks stay far inside Dagster's 60 s limit. Landed studies
reach the study pipeline through the landing sensor like every other arrival.
"""

import hashlib
from datetime import datetime, timezone

from dagster import (
    Config,
    DefaultSensorStatus,
    OpExecutionContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    job,
    op,
    sensor,
)

from axiom_dagster.config.sources import DicomwebSource, DimseSource
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.sources.base import SourceError
from axiom_dagster.sources.poll import PollCursor, plan_poll
from axiom_dagster.sources.registry import open_source
from axiom_dagster.sources.retrieve import retrieve_studies, studies_from_state
from resources import AxiomResource, source_resource_key


def source_pool(name: str) -> str:
    """The Dagster concurrency pool of a source: limits how many ops retrieve from it at once
    (`dagster instance concurrency set <pool> <n>`, or `concurrency: pools: default_limit`)."""
    return f"axiom_source_{source_resource_key(name).removeprefix('source_')}"


class RetrieveConfig(Config):
    study_uids: list[str]


def build_retrieval_job(spec):
    key = source_resource_key(spec.name)

    @op(name=f"retrieve_{key}", pool=source_pool(spec.name), required_resource_keys={key, "axiom"},
        description=f"Retrieve the requested studies from source {spec.name} into the landing zone.")
    def retrieve(context: OpExecutionContext, config: RetrieveConfig):
        axiom: AxiomResource = context.resources.axiom
        cfg, store = axiom.config, axiom.store
        source = getattr(context.resources, key).open()
        try:
            studies = studies_from_state(store, spec.name, config.study_uids)
            zone = LandingZone.for_config(cfg, store)
            totals = retrieve_studies(source, zone, studies, concurrency=spec.backfill.concurrency, run_id=context.run_id)
        finally:
            source.close()
        context.log.info(
            f"{spec.name}: {totals.fetched_studies} of {totals.studies} studies retrieved, {totals.instances} instances, "
            f"{totals.skipped_instances} already landed, {totals.failed_studies} failed in {totals.seconds:.1f}s"
            + (f"; errors: {totals.errors}" if totals.errors else "")
        )
        if totals.failed_studies and not totals.fetched_studies:
            raise RuntimeError(f"no study could be retrieved from {spec.name}: {sorted(totals.errors)[:3]}")

    @job(name=f"retrieve_{key}_job", description=f"Retrieval runs requested by the poll sensor of {spec.name}.")
    def retrieval_job():
        retrieve()

    return retrieval_job


def build_poll_sensor(spec, retrieval_job):
    key = source_resource_key(spec.name)
    settings = spec.poll

    @sensor(
        name=f"poll_{key}", job=retrieval_job, minimum_interval_seconds=settings.interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if settings.enabled else DefaultSensorStatus.STOPPED,
        description=f"Polls {spec.name} ({spec.type}) for new studies in a StudyDate window; enqueues retrieval runs.",
    )
    def poll(context: SensorEvaluationContext, axiom: AxiomResource):
        cursor = PollCursor.parse(context.cursor)
        source = open_source(axiom.config, spec.name)
        try:
            plan = plan_poll(axiom.store, source, settings, cursor, datetime.now(timezone.utc))
        except SourceError as exc:
            # Recorded where failures live; the cursor stays, the next tick retries this page.
            axiom.store.record_exceptions([{"stage": "poll", "reason": f"{spec.name}: {exc}"[:1000]}])
            return SkipReason(f"poll failed, will retry: {exc}")
        finally:
            source.close()
        uids = [s.study_uid for s in plan.requested]
        tick = datetime.now(timezone.utc).isoformat()
        requests = []
        for i in range(0, len(uids), settings.studies_per_run):
            chunk = uids[i : i + settings.studies_per_run]
            digest = hashlib.sha1("\n".join([tick, *chunk]).encode()).hexdigest()[:16]
            requests.append(RunRequest(
                run_key=f"{key}-{digest}", run_config={"ops": {f"retrieve_{key}": {"config": {"study_uids": chunk}}}},
                # axiom/node: the instance's per-node run limit (config/dagster-postgres.yaml)
                tags={"axiom/source": spec.name, "axiom/node": spec.name, "axiom/studies": str(len(chunk))},
            ))
        context.log.info(
            f"{spec.name} window {plan.window[0]}..{plan.window[1]} offset {cursor.offset}: {plan.found} found, "
            f"{plan.skipped} complete or in flight, {len(uids)} requested in {len(requests)} runs"
        )
        return SensorResult(run_requests=requests, cursor=plan.cursor.dump())

    return poll


def pollable(spec) -> bool:
    return isinstance(spec, (DicomwebSource, DimseSource))
