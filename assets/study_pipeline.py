"""The study pipeline: one run validates, morphs, routes and catalogs a batch of studies.

A multi_asset so one pass over the files materializes all four assets; the lineage
arrival_ledger → validated → morphed → routed → instance_catalog shows in the UI.
Partitions are arrival days; several runs may add to one day.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    AssetSpec,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    define_asset_job,
    multi_asset,
)

from assets.crosswalks import crosswalk_key, sourced_crosswalks
from assets.executors import pipeline_executor
from axiom_dagster.catalog.schema import REQUIRED_COLUMNS
from axiom_dagster.config.settings import load_default_config
from axiom_dagster.pipeline.morphers import morpher_factory
from axiom_dagster.pipeline.run import BatchResult, run_batch
from resources import AxiomResource

# Read when the code location loads: the morph step depends on the sourced crosswalks' assets.
CONFIG = load_default_config()

arrival_partitions = DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1)

arrival_ledger = AssetSpec(
    "arrival_ledger",
    group_name="ingest",
    description="Append-only ledger of landed instances, written by the realtime service, "
    "pollers and `axiom land` (external to Dagster runs).",
    kinds={"sql"},
)


class StudyBatchConfig(Config):
    batch_id: int


@multi_asset(
    specs=[
        AssetSpec("validated_instances", deps=[arrival_ledger], description="Instances that parsed and passed validation; failures quarantined."),
        AssetSpec("morphed_instances", deps=["validated_instances", *(crosswalk_key(n) for n in sourced_crosswalks(CONFIG))], description="Instances after rule-based morphing, per destination."),
        AssetSpec("routed_instances", deps=["morphed_instances"], description="Per-destination copies written; deliveries in the state store."),
        AssetSpec("instance_catalog", deps=["routed_instances"], description="Instance-level Parquet catalog, one file per batch.", kinds={"parquet", "duckdb"}),
    ],
    check_specs=[
        AssetCheckSpec("sop_instance_uid_unique", asset="instance_catalog", description="No SOP Instance UID twice in the batch's catalog file."),
        AssetCheckSpec("required_columns_present", asset="instance_catalog", description="Identifying columns are never null."),
        AssetCheckSpec("every_arrival_accounted_for", asset="instance_catalog", description="Each arrival of the batch is catalogued, quarantined with a reason, superseded or a duplicate: nothing lost."),
        AssetCheckSpec("no_instance_quarantined", asset="validated_instances", description="Warns when instances of the batch went to quarantine (see the quarantine folder and the exceptions table)."),
    ],
    partitions_def=arrival_partitions,
    group_name="study_pipeline",
)
def study_pipeline(context: AssetExecutionContext, config: StudyBatchConfig, axiom: AxiomResource):
    cfg = axiom.config
    result = run_batch(
        cfg, axiom.store, config.batch_id, context.run.run_id,
        morpher_factory=morpher_factory(cfg), log=context.log.info,
    )
    base = {"batch_id": result.batch_id, "studies": result.studies, "seconds": round(result.seconds, 3)}
    validated = result.instances - _failed(result, "validate")
    quarantine = {
        "quarantined": result.quarantined, "arrivals_superseded": result.arrivals_superseded, "duplicates": result.duplicates,
        **{f"quarantined_{stage}": n for stage, n in sorted(result.stage_failures.items())},
        "quarantine_folder": MetadataValue.path(str(cfg.quarantine_path)),
    }
    yield MaterializeResult(asset_key="validated_instances", metadata={**base, "instances": result.instances, "valid": validated, "failures": _failed(result, "validate"), "bytes": result.bytes, **quarantine})
    ai = result.ai
    yield MaterializeResult(asset_key="morphed_instances", metadata={
        **base, "morphed": validated - _failed(result, "morph"), "failures": _failed(result, "morph"),
        "lookup_misses": result.lookup_misses,
        **({"ai_model_calls": ai.calls, "ai_tokens": ai.tokens, "ai_cached": ai.cached, "ai_misses": ai.misses, "ai_seconds": ai.seconds} if ai and ai.per_target else {}),
    })
    yield MaterializeResult(
        asset_key="routed_instances",
        metadata={
            **base, "deliveries": result.delivered, "failures": result.failed,
            "instances_per_second": round(result.instances / result.seconds, 1) if result.seconds else 0.0,
            **{f"seconds_{phase}": secs for phase, secs in result.phase_seconds.items()},
        },
    )
    yield MaterializeResult(
        asset_key="instance_catalog",
        metadata={**base, "rows": len(result.catalog_rows), "file": MetadataValue.path(result.catalog_file or ""),
                  "superseded": len(result.superseded)},
    )
    yield from _catalog_checks(result)
    yield from _accounting_checks(result)


def _accounting_checks(result: BatchResult):
    accounted = len(result.catalog_rows) + result.quarantined + result.arrivals_superseded + result.duplicates
    yield AssetCheckResult(
        check_name="every_arrival_accounted_for", asset_key="instance_catalog",
        passed=accounted == result.arrivals, severity=AssetCheckSeverity.ERROR,
        metadata={"arrivals": result.arrivals, "accounted": accounted},
    )
    yield AssetCheckResult(
        check_name="no_instance_quarantined", asset_key="validated_instances",
        passed=result.quarantined == 0, severity=AssetCheckSeverity.WARN,
        metadata={"quarantined": result.quarantined, **{f"stage_{k}": v for k, v in result.stage_failures.items()}},
    )


def _failed(result: BatchResult, stage: str) -> int:
    return result.stage_failures.get(stage, 0)


def _catalog_checks(result: BatchResult):
    uids = [r["sop_instance_uid"] for r in result.catalog_rows]
    dupes = len(uids) - len(set(uids))
    yield AssetCheckResult(
        check_name="sop_instance_uid_unique", asset_key="instance_catalog",
        passed=dupes == 0, severity=AssetCheckSeverity.ERROR, metadata={"duplicates": dupes},
    )
    nulls = {c: sum(1 for r in result.catalog_rows if r.get(c) in (None, "")) for c in REQUIRED_COLUMNS}
    yield AssetCheckResult(
        check_name="required_columns_present", asset_key="instance_catalog",
        passed=not any(nulls.values()), severity=AssetCheckSeverity.ERROR,
        metadata={f"null_{c}": n for c, n in nulls.items()},
    )


study_pipeline_job = define_asset_job(
    "study_pipeline_job",
    # The catalog tables of the day follow the batch, with their checks over the whole day.
    selection=AssetSelection.assets(study_pipeline) | AssetSelection.assets("catalog_instances", "catalog_series", "catalog_studies"),
    description="Validate, morph, route and catalog one batch of complete studies.",
    executor_def=pipeline_executor(),
)
