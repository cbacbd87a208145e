"""Where the pipeline writes each destination's copy, and the state a fresh copy starts in.

A folder destination's copy is the delivery itself (confirmed once synced). A network
destination's copy goes to the staging folder (outbox/<destination>/<study>/<sop>.dcm) and
starts `pending`; the delivery step sends it and records the destination's answer.
"""
from __future__ import annotations

from pathlib import Path

from axiom_dagster.config.destinations import FilesystemDestination
from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.destinations.paths import safe_component

STAGING_TEMPLATE = "{StudyInstanceUID}/{SOPInstanceUID}.dcm"


def route_roots(config: AxiomConfig) -> list[tuple[str, Path, str, bool]]:
    """(destination name, folder, path template, link unchanged instances) for every
    configured destination. A network destination's outbox copy of an unchanged instance is
    a hard link to the landed file where it can be: the outbox is ours, its files are only
    read and then removed once confirmed, so no consumer can rewrite the shared inode."""
    roots = []
    for dest in config.destinations:
        if isinstance(dest, FilesystemDestination):
            roots.append((dest.name, config.destination_path(dest), dest.path_template, dest.link_unchanged))
        else:
            roots.append((dest.name, config.staging_path / safe_component(dest.name), STAGING_TEMPLATE, True))
    return roots


def initial_states(config: AxiomConfig, rows: list[dict]) -> list[dict]:
    """The pipeline's per-copy records as delivery rows: folder copies confirmed, network
    copies pending with the staged file as their source."""
    network = {d.name for d in config.destinations if not isinstance(d, FilesystemDestination)}
    out = []
    for row in rows:
        if row["status"] != "delivered":
            out.append(row)
        elif row["destination"] in network:
            out.append({**row, "status": "pending", "source_path": row["location"], "location": None, "attempts": 0})
        else:
            out.append({**row, "status": "confirmed"})
    return out
