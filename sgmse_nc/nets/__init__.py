"""Score networks: NCSN++ (SGMSE+'s backbone) and the ways a condition enters it."""
from .conditioning import GlobalConditioning
from .ncsnpp import NCSNpp, count_parameters

__all__ = ["NCSNpp", "GlobalConditioning", "count_parameters"]
