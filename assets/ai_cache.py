"""The AI answer cache exported as a Parquet asset a person can review (corrections come back
through `axiom ai review`, or `axiom ai review --import` of an edited export)."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from assets.crosswalks import write_table
from axiom_dagster.ai.cache import AICache, ai_cache
from axiom_dagster.crosswalks.lookup import snapshot_root
from resources import AxiomResource

COLUMNS = [c.name for c in ai_cache.columns]


@asset(
    key=AssetKey(["ai", "standardization_cache"]),
    deps=["morphed_instances"],
    group_name="ai",
    kinds={"parquet"},
    description="Every cached model answer (provider, model, prompt version, input, output) and "
    "the reviewed corrections, which win over the model.",
)
def ai_cache_export(context: AssetExecutionContext, axiom: AxiomResource):
    rows = AICache(axiom.store.engine).entries()
    path = snapshot_root(axiom.config) / "_reports" / "ai_standardization_cache.parquet"
    write_table(rows, COLUMNS, path)
    reviewed = sum(1 for r in rows if r["reviewed_value"] is not None)
    context.log.info(f"ai cache export: {len(rows)} entries, {reviewed} reviewed")
    return MaterializeResult(metadata={"entries": len(rows), "reviewed": reviewed, "file": MetadataValue.path(str(path))})
