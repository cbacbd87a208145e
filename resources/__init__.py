from .axiom import AxiomResource

__all__ = ["AxiomResource"]
