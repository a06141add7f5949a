"""Tensor methods for math beyond the elementwise core: scans, sorting, einsum, norms, rounding, NaN handling and the
activation zoo, each built from the Tensor API to stay numerically stable. A mixin of `Tensor`."""
from __future__ import annotations

class MathMixin:
  pass
