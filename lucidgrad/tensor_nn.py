"""Neural-net functionals on the Tensor API: convolutions, pooling, normalisation, dropout, attention, losses, and
the random distributions and initialisers they need. A mixin of `Tensor`."""
from __future__ import annotations

class NNMixin:
  pass
