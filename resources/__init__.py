from .axiom import AxiomResource
from .destinations import DestinationsResource
from .sources import SourceResource, source_resource_key

__all__ = ["AxiomResource", "DestinationsResource", "SourceResource", "source_resource_key"]
