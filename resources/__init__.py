from .axiom import AxiomResource
from .sources import SourceResource, source_resource_key

__all__ = ["AxiomResource", "SourceResource", "source_resource_key"]
