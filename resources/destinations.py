"""The Dagster resource for delivery: sends what is due to one destination, and tells which
destinations have due instances. Thin: the work is axiom_dagster.destinations.delivery."""

from dagster import ConfigurableResource
from datetime import datetime, timezone

from axiom_dagster.destinations.delivery import DeliveryReport, deliver_destination
from axiom_dagster.store.deliveries import DeliveryState
from resources.axiom import AxiomResource


class DestinationsResource(ConfigurableResource):
    axiom: AxiomResource

    def deliver(self, destination: str, run_id: str | None = None) -> DeliveryReport:
        return deliver_destination(self.axiom.config, self.axiom.store, destination, run_id=run_id)

    def due_counts(self) -> dict[str, int]:
        """Due instances per configured destination (pending, retry time reached, stale sent)."""
        counts = DeliveryState(self.axiom.store).due_counts(datetime.now(timezone.utc), self.axiom.config.delivery.sent_lease_seconds)
        known = {d.name for d in self.axiom.config.destinations}
        return {name: n for name, n in counts.items() if name in known}
