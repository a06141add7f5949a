"""Renderers turn a linear program into source text. Each one declares what its target can do, and codegen reads
those capabilities instead of asking which device it is."""
from __future__ import annotations
from lucidgrad.dtype import dtypes
from lucidgrad.uop.ops import UOp, Ops, GroupOp
from lucidgrad.uop.pattern import UPat, PatternMatcher

class Renderer:
  device = "NONE"
  has_threads = False     # GPU-style: output ranges become thread ids (gidx/lidx) instead of loops
  upcast_width = 4        # how many output elements one thread computes side by side in an elementwise kernel
  vector_bytes = 0        # widest vector load/store, 0 for none
  pre_render = PatternMatcher([])  # target-specific rewrites right before linearizing
  def render(self, name: str, uops: list[UOp]) -> str: raise NotImplementedError

_HALF = (dtypes.float16, dtypes.bfloat16)

def _via_float32(x: UOp) -> UOp | None:
  """Do float16/bfloat16 arithmetic in float32 and round once per op, as PyTorch's CPU kernels do."""
  if x.op is Ops.WHERE or not any(s.dtype.scalar() in _HALF for s in x.src): return None
  src = tuple(s.cast(dtypes.float32) if s.dtype.scalar() in _HALF else s for s in x.src)
  out = UOp(x.op, dtypes.bool if x.op in GroupOp.Comparison else dtypes.float32, src, x.arg)
  return out if x.op in GroupOp.Comparison else out.cast(x.dtype)

pm_half_via_float32 = PatternMatcher([(UPat(tuple(GroupOp.ALU - {Ops.WHERE}), name="x"), _via_float32)])
