from .axiom import AxiomResource
from .destinations import DestinationsResource

__all__ = ["AxiomResource", "DestinationsResource"]
