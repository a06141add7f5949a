"""Tensor methods for indexing and reshaping data: advanced indexing, assignment into slices, gather/scatter,
cat/stack/split and friends, padding modes and interpolation. A mixin of `Tensor`; it uses only the Tensor API."""
from __future__ import annotations

class ShapeMixin:
  pass
