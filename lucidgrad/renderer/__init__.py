"""Renderers turn a linear program into source text. Each one declares what its target can do, and codegen reads
those capabilities instead of asking which device it is."""
from __future__ import annotations
from dataclasses import dataclass
from lucidgrad.dtype import DType, dtypes, min_max
from lucidgrad.uop.ops import UOp, Ops, GroupOp
from lucidgrad.uop.pattern import UPat, PatternMatcher

@dataclass(frozen=True)
class TensorCore:
  """A warp-wide matrix multiply-accumulate D = A @ B + C of dims (M, N, K) (docs/design/0024). Each of the `threads`
  lanes holds some elements of each operand; `a`, `b` and `c` say which: (lane, element) -> (row, column), where lane
  is an int or a UOp (codegen builds index math with it) and element an int. This is the layout of PTX's
  mma.m16n8k16 for 16-bit floats with float32 accumulators."""
  name: str
  dims: tuple[int, int, int]
  dtype_in: DType
  dtype_acc: DType = dtypes.float32
  threads: int = 32
  shared_operands = False  # A and B come from registers (fragments); a WarpgroupCore reads them from shared memory
  @property
  def elements(self) -> tuple[int, int, int]:
    """Elements of A, B and C each lane holds."""
    m, n, k = self.dims
    return m * k // self.threads, k * n // self.threads, m * n // self.threads
  # groupID = lane >> 2 and threadID_in_group = lane & 3, in the PTX ISA's words
  @staticmethod
  def a(lane, i: int): return lane // 4 + 8 * ((i >> 1) & 1), (lane % 4) * 2 + (i & 1) + 8 * (i >> 2)
  @staticmethod
  def b(lane, i: int): return (lane % 4) * 2 + (i & 1) + 8 * (i >> 1), lane // 4
  @staticmethod
  def c(lane, i: int): return lane // 4 + 8 * (i >> 1), (lane % 4) * 2 + (i & 1)

MMA_16816 = tuple(TensorCore(f"mma_m16n8k16_{d.name}", (16, 8, 16), d) for d in (dtypes.float16, dtypes.bfloat16))

@dataclass(frozen=True)
class WarpgroupCore(TensorCore):
  """Hopper's wgmma (sm_90a): D = A @ B + C of dims (64, N, 16) over a warpgroup of 128 threads, A and B read by the
  hardware from staged tiles in shared memory through descriptors (docs/design/0026, twentieth-session addendum), so
  its kernels must stage both operands (tensor_core.stage_tc). Warp w of the group holds D's rows 16w..16w+15 in
  mma.m16n8k16's C layout, repeated over N/8 column fragments. A's layout is mma's A layout per warp, 16 rows
  apart; B's is a plain order over the 16 x N values, since a lane never holds B: either layout only says which
  lane carries which element before the operands are staged (the PYTHON emulator runs such kernels unstaged too)."""
  threads: int = 128
  shared_operands: bool = True
  @staticmethod
  def a(lane, i: int):
    r, c = TensorCore.a(lane % 32, i)
    return 16 * (lane // 32) + r, c
  def b(self, lane, i: int):
    flat = lane * self.elements[1] + i
    return flat % 16, flat // 16
  @staticmethod
  def c(lane, i: int):
    r, c = TensorCore.c(lane % 32, i % 4)
    return 16 * (lane // 32) + r, 8 * (i // 4) + c

WGMMA_64N16 = tuple(WarpgroupCore(f"wgmma_m64n{n}k16_{d.name}", (64, n, 16), d) for n in (256,) for d in (dtypes.float16, dtypes.bfloat16))

class Renderer:
  device = "NONE"
  def launch_local_bytes(self, uops: list) -> int: return 0  # local memory a launch asks for, beyond what the kernel declares
  has_local = False       # GPU-style: output ranges become block and thread ids (gidx/lidx), blocks share local memory
  has_cpu_threads = False # a THREAD axis splits a loop over CPU threads (the `core`/`ncores` arguments)
  local_max = 0           # threads in a block (has_local)
  shared_max = 0          # bytes of local memory a block may use (has_local)
  scratch_max = 0         # bytes of scratch one program call may stage inputs in (OptOps.STAGE); 0: no staging
  prefetch = False        # renders PREFETCH, a hint to fetch an address into the caches (codegen/linearize.prefetch_next_block)
  global_max = (2**31 - 1, 65535, 65535)  # blocks along each grid dimension (has_local)
  gpu_threads = 132 * 2048  # threads the device runs at once (has_local): an H100's or H200's 132 multiprocessors
  tensor_cores: tuple[TensorCore, ...] = ()  # warp-wide matrix multiply units (OptOps.TC)
  upcast_width = 4        # how many output elements one thread computes side by side in an elementwise kernel
  vector_bytes = 0        # widest vector load/store, 0 for none
  vector_registers = 0    # vector registers (0: unknown): a register block keeps its accumulators within them
  cache_bytes = 0         # a thread's cache (0: unknown): a long reduce re-read by many output blocks is tiled to fit it
  min_vector_bytes = 8    # the narrowest vector load or store that lanes are grouped into
  vector_alu = False      # vector values support arithmetic (GCC vector types do, CUDA's float4 does not)
  strided_stores = False  # a vector stored a lane each at a constant stride is one STORE (arg: the stride), rendered as a loop
  gated_vector_loads = False  # a vector load may have a gate per lane (its INDEX's gate a VECTORIZE of bools)
  native_transcendentals = False  # EXP2/LOG2/SIN/COS stay the target's own functions; else codegen writes them as ALU ops (docs/design/0015)
  # float32 (and half) SIN/COS stay the target's own (sinf, cosf): for a target whose own beat codegen's, which pays
  # for the big-argument reduction in every lane (on CPU codegen's measured 1.17x libm's: docs/design/0015)
  native_float32_sin_cos = False
  pre_render = PatternMatcher([])  # target-specific rewrites right before linearizing
  def render(self, name: str, uops: list[UOp]) -> str: raise NotImplementedError

def may_overflow(u: UOp) -> bool:
  """Whether a signed integer + - * or negation can leave its dtype's range, judged from its operands' bounds. C and
  CUDA leave that undefined, and the compiler then assumes it never happens; a renderer computes such an op in
  unsigned, where it wraps as the PYTHON reference and the constant folder do. Index math has proven bounds, renders
  plainly and keeps the loop optimisations that wrapping everywhere (-fwrapv) costs (3x on a conv's backward)."""
  dt = u.dtype.scalar()
  if not dt.is_int() or dt.is_unsigned() or u.op not in (Ops.ADD, Ops.SUB, Ops.MUL, Ops.NEG): return False
  if u.op is Ops.NEG: vals = [-u.src[0].vmin, -u.src[0].vmax]
  else:
    (a0, a1), (b0, b1) = ((s.vmin, s.vmax) for s in u.src)
    vals = [a0 + b0, a1 + b1] if u.op is Ops.ADD else [a0 - b1, a1 - b0] if u.op is Ops.SUB else [a0 * b0, a0 * b1, a1 * b0, a1 * b1]
  lo, hi = min_max(dt)
  return min(vals) < lo or max(vals) > hi

_HALF = (dtypes.float16, dtypes.bfloat16)

def _via_float32(x: UOp) -> UOp | None:
  """Do float16/bfloat16 arithmetic in float32 and round once per op, as PyTorch's CPU kernels do."""
  if x.op is Ops.WHERE or not any(s.dtype.scalar() in _HALF for s in x.src): return None
  src = tuple(s.cast(dtypes.float32) if s.dtype.scalar() in _HALF else s for s in x.src)
  out = UOp(x.op, dtypes.bool if x.op in GroupOp.Comparison else dtypes.float32, src, x.arg)
  return out if x.op in GroupOp.Comparison else out.cast(x.dtype)

pm_half_via_float32 = PatternMatcher([(UPat(tuple(GroupOp.ALU - {Ops.WHERE}), name="x"), _via_float32)])
