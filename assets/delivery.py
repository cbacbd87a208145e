"""The delivery job: one op per configured destination, run in parallel (multiprocess
executor); each op is in the Dagster concurrency pool `axiom_destination_<name>`, so the
instance's pool limit bounds how many deliveries one destination gets at once (dagster.yaml
sets 1 per pool; `dagster instance concurrency set POOL N` changes one). A slow or dead
destination holds only its own op; the catalog was written by the study pipeline already.
"""

import re

from dagster import OpExecutionContext, job, op

from resources import DestinationsResource

POOL_PREFIX = "axiom_destination_"


def op_name(destination: str) -> str:
    return "deliver_" + re.sub(r"[^A-Za-z0-9_]", "_", destination)


def pool_name(destination: str) -> str:
    return POOL_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", destination)


def _delivery_op(destination: str):
    @op(
        name=op_name(destination),
        pool=pool_name(destination),
        description=f"Send every due instance to destination {destination!r}; record each answer.",
        tags={"axiom/destination": destination},
    )
    def deliver(context: OpExecutionContext, destinations: DestinationsResource) -> None:
        report = destinations.deliver(destination, run_id=context.run_id)
        context.log.info(report.summary())
        if report.exceptions:
            context.log.warning(f"{destination}: {report.exceptions} instances gave up; see `axiom exceptions list`")

    return deliver


def build_delivery_job(destinations: list[str]):
    """The job for these destination names (from the configuration at load time)."""
    ops = [_delivery_op(name) for name in destinations]

    @job(name="delivery_job", description="Deliver due instances to every destination, in parallel, one pool per destination.",
         tags={"axiom/kind": "delivery"})
    def delivery_job():
        for deliver in ops:
            deliver()

    return delivery_job
