"""The scheduler's cost model (docs/design/0008-kernel-cost-model.md): is a node's work, left fused into every kernel
that reads it, dearer than a buffer for it; and how big may one kernel grow. Counts, not clocks: ALU ops, bytes, launches."""
from __future__ import annotations
from lucidgrad.uop.ops import UOp, Ops, GroupOp

# The machine, in ALU ops (one elementwise op on one element), measured on the 2-core CPU this project targets with
# lucidgrad's own kernels (docs/design/0008): vectorized elementwise code runs 5-6 Gop/s and moves 8 GB/s, so a byte
# costs about one op; a launch (the call and the threads' hand-off) takes 3 us, about 16k ops at that rate.
OPS_PER_BYTE = 1
LAUNCH_OPS = 1 << 14

# Nodes one kernel may hold after lowering (a node once per distinct index it is read at). Compile time grows faster
# than the source: a kernel of ~1000 lowered nodes compiles in well under a second, ten times that took minutes.
MAX_KERNEL_NODES = 1024

# A reduce of at least this many elements inside another reduce gets a kernel of its own. Not a cost the model can
# weigh (no work is repeated): the opts are tuned for one reduce per kernel, and a conv's input gradient ran 8x faster
# cut; a small one saves a launch fused. Kept as measured, see docs/design/0008.
NESTED_REDUCE_MIN = 1 << 14

# Codegen writes EXP2, LOG2, SIN and COS as ALU code (docs/design/0015): in a kernel each is the ops it becomes, and a
# kernel of 1024 float32 sines (166k ops) took gcc 25 s. Counted from the rewrite (tests/test_schedule.py keeps these
# true); float16/bfloat16 go through float32.
EXPANDED_OPS = {(Ops.EXP2, "float32"): 28, (Ops.LOG2, "float32"): 32, (Ops.SIN, "float32"): 156, (Ops.COS, "float32"): 155,
                (Ops.EXP2, "float64"): 34, (Ops.LOG2, "float64"): 39, (Ops.SIN, "float64"): 71, (Ops.COS, "float64"): 70}

# A contraction (a sum of products, every matmul and conv) runs what is fused after it once per output, on the lanes of
# its register block (a dot product's 4 to 8 outputs side by side, not a vector of 8 or 16). An epilogue of at least
# this many value nodes (a tanh gelu is ~50) then costs more there than writing the output once more and running it in
# an elementwise kernel of whole vectors (GPT-2's c_fc + gelu: 99 GFLOP/s fused; the matmul alone ran at 240 and the
# gelu at memory speed, docs/design/0021). A bias, a batch norm's scale and shift, a relu and a residual add are ~6.
EPILOGUE_NODES = 32
CONTRACTION_MIN = 64  # products summed per output for a reduce to count as a contraction

def epilogue_pays(n: UOp, epilogue_nodes: int) -> bool:
  """Does contraction `n`, under a fused epilogue of `epilogue_nodes` value nodes, run faster with a buffer of its own?"""
  if n.op is not Ops.REDUCE_AXIS or n.arg[0] is not Ops.ADD or epilogue_nodes < EPILOGUE_NODES: return False
  x = n.src[0]
  while x.op is Ops.CAST: x = x.src[0]
  # and big enough that the epilogue's own launch is a small part of it
  return x.op is Ops.MUL and n.src[0].size >= CONTRACTION_MIN * n.size and n.size * n.dtype.itemsize * OPS_PER_BYTE > LAUNCH_OPS

def lowered_size(u: UOp) -> int:
  """The value nodes `u` becomes in a kernel: 1, or what a transcendental expands to."""
  if u.op not in _TRANSCENDENTAL: return 1
  return EXPANDED_OPS.get((u.op, u.dtype.scalar().name if u.dtype.itemsize >= 4 else "float32"), 1)
_TRANSCENDENTAL = frozenset({Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.COS})

def work_below(u: UOp, realized, limit: int, expanded: bool = False) -> tuple[int, bool]:
  """Elementwise ops that computing `u` once takes (a reduce: its input), down to buffers, reduces and values with a
  buffer of their own (each counted once, however often it is used), and whether any of it reads memory. Stops once it
  has counted past `limit` ops and found a read. `expanded`: a transcendental counts as the ops codegen writes it as (what
  a kernel's size holds); else as one (the buffer decisions were measured that way, docs/design/0008)."""
  ops, reads, stack, seen = 0, False, list(u.src) if u.op is Ops.REDUCE_AXIS else [u], set()
  while stack and not (reads and ops > limit):
    n = stack.pop()
    if n in seen: continue
    seen.add(n)
    # a reduce is read from its own buffer or computed once per element of it: either way it is not work repeated here
    if n.op in (Ops.BUFFER, Ops.REDUCE_AXIS) or (n in realized and n is not u): reads = True; continue
    ops += (lowered_size(n) if expanded else 1) if n.op in GroupOp.Elementwise else 0
    stack.extend(n.src)
  return ops, reads

def buffer_pays(u: UOp, evaluations: float, realized) -> tuple[bool, int]:
  """Does a buffer for `u` cost less than fusing it, where the fused kernels compute each of its elements `evaluations`
  times? Fused repeats (evaluations - 1) x its ops per element (a reduce: its loop, the reduced length x the ops in it);
  a buffer costs writing it and reading it back once more, plus a launch. Elementwise work that reads no memory is index
  math (a mask, an arange): codegen folds it, so it stays fused. Returns the answer and the ops per element counted."""
  # an empty value costs nothing either way (and has no per-element cost to divide by)
  if evaluations <= 1 or u.size == 0 or not (u.op is Ops.REDUCE_AXIS or (u.op in GroupOp.ALU and u.dtype.is_float())): return False, 0
  buffer_ops = 2 * u.dtype.itemsize * u.size * OPS_PER_BYTE + LAUNCH_OPS
  need = buffer_ops / ((evaluations - 1) * u.size)   # more ops per element than this and the buffer pays
  if u.op is Ops.REDUCE_AXIS:
    loop = u.src[0].size // max(u.size, 1)
    ops = loop * (1 + work_below(u, realized, int(need) // max(loop, 1) + 1)[0])
    return ops > need, ops
  # past a kernel's worth of ops the size bound decides, and the walk stays linear in the kernel
  ops, reads = work_below(u, realized, min(int(need), MAX_KERNEL_NODES))
  return reads and ops > need, ops

def kernel_full(u: UOp, reach: dict[UOp, set], lowered: dict[UOp, int], realized) -> str | None:
  """Why `u` starts a kernel of its own to keep one within MAX_KERNEL_NODES; None if it need not. `reach`: kernel root
  -> the paths it reaches `u` along; `lowered`: root -> value nodes its kernel holds so far. A full kernel sheds `u`
  only if that moves real work out, an eighth of a kernel or more (the nodes below `u`, once per path): shedding every
  small branch past the bound made 52 one-op kernels of a gelu gradient. Past twice the bound every node goes."""
  if (size := max(lowered[r] + len(ps) * lowered_size(u) for r, ps in reach.items())) <= MAX_KERNEL_NODES: return None
  moves = max(len(ps) for ps in reach.values()) * max(1, work_below(u, realized, MAX_KERNEL_NODES, expanded=True)[0])
  if moves * 8 >= MAX_KERNEL_NODES or size > 2 * MAX_KERNEL_NODES: return f"its kernel would lower to {size}+ value nodes"
  return None

# A reduce to one value has no output loop for the CPU threads to share. Split into this many partial reduces (or the
# largest divisor of its outer reduced axis below it), written to a buffer and reduced again, its blocks are shared:
# enough for every thread count up to it, few enough that the second kernel is one launch of a few values.
REDUCE_PARTIALS = 64

def split_pays(x: UOp) -> bool:
  """Does reducing `x` in partial blocks, each core taking its share, save more than the launch of the second kernel?
  With the work halved on two cores, half its bytes must outweigh a launch."""
  return x.size * x.dtype.itemsize * OPS_PER_BYTE > 2 * LAUNCH_OPS

def reduce_once_pays(reduced: UOp, copies: int) -> bool:
  """Does computing reduce `reduced` once and broadcasting it to `copies` times its size save more than the buffer it
  may then need (written and read back once, plus a launch)? The work saved is the reduce's input, once per copy past
  the first (each element at least one op)."""
  saved = (copies - 1) * reduced.src[0].size
  return saved > 2 * reduced.dtype.itemsize * reduced.size * OPS_PER_BYTE + LAUNCH_OPS
