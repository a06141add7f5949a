"""Kernel optimisations as data: an `Opt` splits one axis of a `Kernel` (opt/kernel.py) and gives a part a new kind.
UPCAST (an output axis) and UNROLL (a reduce axis) are expanded into straight-line code; LOCAL becomes a thread id on
GPU-style targets. `hand_coded_opts` picks a few by simple rules; BEAM (opt/search.py) searches the same space."""
from __future__ import annotations
import functools
from lucidgrad.helpers import NOOPT, THREADS, DEBUG, prod
from lucidgrad.uop.ops import UOp, Ops, AxisType, GroupOp
from lucidgrad.uop.pattern import graph_rewrite
from lucidgrad.uop.symbolic import symbolic
from lucidgrad.codegen.opt.kernel import Opt, OptOps, Kernel, kernel_ranges, row_reduces, _untileable, lanes_of, max_lanes
from lucidgrad.codegen.opt import kernel as _kernel
from lucidgrad.codegen.lower import serial_ranges
from lucidgrad.codegen.opt.tensor_core import tc_plan
from lucidgrad.codegen import KernelOptError as KernelOptError  # re-exported beside the opts it is raised for

@functools.lru_cache(maxsize=4096)
def _unclamped(idx: UOp) -> UOp:
  """idx with each `where(x < c, x, last)` read as x: a padded output axis reads its extra lanes at its last index
  (opt/kernel.py pad_range), so its loads still walk memory as the unpadded axis does, which is what the rules here
  weigh (a padded 56-pixel row showed no stride: its conv lost the loop order that keeps its FMAs fed, and a weight
  gradient with padded channels its reduce tile)."""
  clamps = {u: u.src[1] for u in idx.toposort if u.op is Ops.WHERE and u.src[0].op is Ops.CMPLT and u.src[0].src[0] is u.src[1]
            and u.src[2].op is Ops.CONST}
  return idx.substitute(clamps) if clamps else idx

def stride_of(idx: UOp, r: UOp) -> int | None:
  """opt/kernel.py's stride_of, on the index as a padded axis's unclamped lanes read it (_unclamped)."""
  return _kernel.stride_of(_unclamped(idx), r)



# Each upcast or unrolled lane is a copy, in the expanded kernel and in its source, of every op that depends on the
# lane's axis; codegen's time grows with the copies and the C compiler's faster than that. The expanded body stays
# within this many ops (measured on the 2-core machine: a random-bits kernel of 2,600 ops took 0.35 s of codegen and
# 0.5-0.8 s of gcc, 2.4 s under test load; 730 ops, 0.17 + 0.13 s; docs/design/0008-kernel-cost-model.md).
LANE_OPS_BUDGET = 1024

def expanded_ops(sink: UOp, lanes: dict[UOp, int], idt) -> int:
  """The ops (ALU, casts, reduce updates) the body expands to when each range in `lanes` is split into that many lanes:
  an op is copied once for each combination of lanes of the split ranges it depends on. Affine index math (ranges
  times constants, plus constants) is left out: it folds into each lane's address. Other index math counts like value
  math: a random-bits counter is ~80 divides, compares and selects an element, beside Threefry's ~120 uint32 ops."""
  depends: dict[UOp, frozenset[UOp]] = {}
  affine: set[UOp] = set()
  ops = 0
  for u in sink.toposort:
    depends[u] = frozenset((u,)) if u in lanes else frozenset().union(*(depends[s] for s in u.src))
    if u.op in (Ops.RANGE, Ops.CONST) or (u.op in (Ops.ADD, Ops.MUL) and u.dtype == idt and all(s in affine for s in u.src)): affine.add(u)
    elif u.op in GroupOp.Elementwise or u.op is Ops.REDUCE: ops += prod(lanes[r] for r in depends[u])
    # past a reduce its own lanes are combined: what reads it is copied once per lane of the other split ranges only
    if u.op is Ops.REDUCE: depends[u] -= frozenset(u.src[1:])
  return ops

def _lanes_fit(sink: UOp, lanes: dict[UOp, int], idt, budget: int, lane_cap: int) -> bool:
  return expanded_ops(sink, lanes, idt) <= budget and not (lane_cap and lanes_of(sink, lanes) > lane_cap)

def within_lane_budget(sink: UOp, opts: list[Opt], idt, budget: int = LANE_OPS_BUDGET, lane_cap: int = 0) -> list[Opt]:
  """`opts` (naming the axes of `sink`) with the last-chosen upcasts and unrolls halved (dropped at 1) until the body
  they expand to fits the budget, and (given `lane_cap`, the renderer's max_lanes) no op is copied more times than
  Kernel.check allows: a list the heuristic chose must apply (a quant block's step unroll on top of a register block
  passed it: 768 lanes of 512)."""
  chosen, opts, axes = opts, list(opts), kernel_ranges(sink)
  def split() -> dict[UOp, int]:
    lanes: dict[UOp, int] = {}
    for o in opts:
      if o.op in (OptOps.UPCAST, OptOps.UNROLL): lanes[axes[o.axis]] = lanes.get(axes[o.axis], 1) * o.amount
    return lanes
  while (lanes := split()) and not _lanes_fit(sink, lanes, idt, budget, lane_cap):
    i = max(i for i, o in enumerate(opts) if o.op in (OptOps.UPCAST, OptOps.UNROLL))
    o, half = opts[i], opts[i].amount // 2  # still divides the axis when it divides the amount
    pad = next((j for j, p in enumerate(opts) if p.op is OptOps.PADTO and p.axis == o.axis and p.amount == o.amount), None)
    size = axes[o.axis].src[0].arg
    if half > 1 and o.amount % half == 0: opts[i] = Opt(o.op, o.axis, half)
    elif pad is not None and half > 1 and -size % half <= size // 32:  # a padded block halves with its padding (13 rows of
      opts[i], opts[pad] = Opt(o.op, o.axis, half), Opt(OptOps.PADTO, o.axis, half)  # 128, 2 padded -> 6, 4 padded: not 1 row)
      if size % half == 0: opts.pop(pad)
    else:  # dropped, and with it the padding that was only there to make the axis a multiple of it
      dropped = opts.pop(i)
      opts = [p for p in opts if not (p.op is OptOps.PADTO and p.axis == dropped.axis and p.amount == dropped.amount)]
  if DEBUG >= 3 and opts != chosen:
    print(f"opts {chosen} -> {opts}: the body expands to {expanded_ops(sink, split(), idt)} ops, within {budget}")
  return opts

OPERAND_REGISTERS = 4  # vector registers a register block's inner loop needs besides its accumulators: two loaded vectors, a broadcast, one spare

def _accumulator_room(renderer, amount: int | None, stores: list[UOp]) -> int | None:
  """How many lanes the second block axis may have: each lane holds one accumulator vector per vector of the first
  axis's `amount` lanes, and a block with more accumulators than registers spills (AVX2's 16: 8x16 floats measured
  at half the speed of 6x16). None: no limit (the renderer does not say, or there is no first block)."""
  if not renderer.vector_registers or not amount or not stores: return None
  lanes = max(1, renderer.vector_bytes // stores[0].src[1].dtype.itemsize)
  return max(1, (renderer.vector_registers - OPERAND_REGISTERS) // -(-amount // lanes))

def _second_block(size: int, width: int, room: int | None, threads: int = 1) -> int | None:
  """The lanes of the second block axis. Without a register count: the widest of (width, 4, 2) that divides it. With
  one: up to `width` lanes that fit the room, in the fewest blocks, the axis padded to a multiple (6 of 1024 rows: 12
  accumulators; 4 rows would leave the FMA pipes a third idle). Where that leaves few blocks
  and they split unevenly over the CPU threads (more than 1/8 idle), the most lanes, down to half, whose blocks split
  evenly: the last thread's share is the kernel's time when the axis is the one threaded (64 output channels of a conv's
  weight gradient: 5 blocks of 13 ran as 3 + 2, 6 blocks of 11 run as 3 + 3), and nearly the same work when it is not."""
  if room is None: return next((a for a in (width, 4, 2) if size % a == 0), None)
  # each block is one pass over the reduce, padded lanes included: the fewest blocks first, and of amounts that take as
  # many, the least padding (ResNet-18's 56-pixel rows: 4 lanes in 14 blocks ran at 108 GFLOP/s, 6 in 10 at 152-157)
  fits = sorted(range(min(width, room, size), 1, -1), key=lambda a: (-(-size // a), a))
  def idle(a: int) -> float: return -(-(n := -(-size // a)) // threads) * threads / n - 1
  if fits and threads > 1 and -(-size // fits[0]) < 4 * threads and idle(fits[0]) > 1 / 8:
    return next((a for a in fits if 2 * a >= fits[0] and idle(a) <= 1 / 8), fits[0])
  return fits[0] if fits else None

# rows that must share a transposed panel: its copy is a scalar move per element, about what 21 rows of the outer
# product's FMAs take (a panel of 32 columns x K: 32K moves against M x K cycles of 2 FMA ports). Measured, interleaved,
# against the dot-product form: 16 x 512 x 1024 53 vs 87 GFLOP/s; 24 x 768 x 768 146 vs 101; 32 x 768 x 768 166 vs 80
TRANSPOSED_PANEL_ROWS = 24
# a block's first axis that walks memory but is not the output's contiguous axis (a conv's output channels, NCHW out)
# may take two vectors, as the contiguous axis may. Measured on AVX-512: the 64->64 3x3 conv at 56 x 56, kernel alone,
# 290 -> 315 GFLOP/s, ResNet-18's forward kernels 311 -> 285 ms, its train step 1.26 -> 1.19 s. The cost is compile
# time: every conv's body doubles, and that step's first call (empty cache) takes 35 s of gcc against 28 (its wall
# time 10.5 -> 13.7 s, against issue 10's bar of 15)
WALKER_BLOCKS_WIDE = True
TRANSPOSED_PANELS = True  # x @ W.T may stage W's panel with its columns innermost (False: the dot-product form; bench scripts compare the two)
DOT_STEPS = 8  # vectors a dot product's contiguous axis should take, at the least, before its lanes are summed
COSTLY_EPILOGUE = 16  # ALU ops after the reduce (a conv's batch norm, relu and residual: 4; a tanh gelu: ~40)

def _lanes(op: OptOps, axis: int, size: int, amounts: tuple[int, ...], width: int) -> list[Opt]:
  """`op` (UPCAST or UNROLL) of the first of `amounts` that divides the axis; where none does, an axis of two vectors
  or more pads to whole vectors if that adds at most 1/8 of it (a softmax over 1003 columns ran scalar at 0.06x torch,
  an argmax over 1001 at 0.08x): a padded reduce's extra lanes add its identity, a padded output's store nothing
  (opt/kernel.py pad_range)."""
  if (amount := next((a for a in amounts if size % a == 0), None)): return [Opt(op, axis, amount)]
  if size >= 2 * width and -size % width <= size // 8: return [Opt(OptOps.PADTO, axis, width), Opt(op, axis, width)]
  return []

def _epilogue_ops(sink: UOp) -> int:
  """The ALU ops that read a reduce's result: what runs once per output, after the reduce loop."""
  after: set[UOp] = set()
  for u in sink.toposort:
    if u.op is Ops.REDUCE or any(s in after for s in u.src): after.add(u)
  return sum(1 for u in after if u.op in GroupOp.ALU)

BLOCK_STEPS_MAX = 4  # vectors of a dot product unrolled to cover one block of a blocked load (a quant block: 2)

def _block_steps(k: Kernel, axis: int, n: int) -> list[Opt]:
  """After a dot product's UNROLL(axis, n): where a load's index divides the reduce loop that is left by c (a quant
  block's scale and min, `k // 32` read beside 16-lane vectors: `step // 2`), c steps unrolled, so each step reads
  whole blocks -- one scale load, convert and broadcast per block, not per vector, and a byte's two nibbles from one
  load (a Q4_1 matvec 1.3x; docs/design/0033). The steps' vectors are summed into one vector accumulator
  (codegen/expand.py)."""
  split = k.copy().apply_opt(Opt(OptOps.UNROLL, axis, n))
  r, size = split.axes[axis], split.sizes()[axis]
  idxs = [u.src[0].src[1] for u in split.sink.toposort if u.op is Ops.LOAD and r in u.src[0].src[1].toposort]
  if not idxs: return []
  divs = {x.src[1].arg for x in graph_rewrite(UOp.sink(*idxs), symbolic, name="block steps").toposort
          if x.op is Ops.IDIV and x.src[1].op is Ops.CONST and r in x.src[0].toposort}
  c = max((d for d in divs if 1 < d <= BLOCK_STEPS_MAX and size % d == 0), default=None)
  return [Opt(OptOps.UNROLL, axis, c)] if c else []

def _dot_product_block(k: Kernel, dots: list[tuple[int, int]], reuse: list[int], in_reduce: list[UOp]) -> list[Opt]:
  """Opts for a matmul whose operands are both contiguous along a reduce axis only (`dots`: (axis, lanes), one per reduce): each unrolled into one
  vector accumulator per output of an a x b block of two reuse axes (each step loads a + b vectors for a * b FMAs,
  lanes summed once after the loop), the block as large as fits the vector registers; and
  the loops ordered so that the inner block loop re-reads the smaller operand (it stays in cache) while the larger
  one is streamed once (GPT-2's c_proj: x is 1.5 MB, W 9.4 MB)."""
  rngs, sizes = k.axes, k.sizes()
  inner = reuse[-1]
  moving_inner = [l for l in in_reduce if stride_of(l.src[1], rngs[inner]) != 0]
  outer = next((i for i in reversed(reuse) if i != inner and all(stride_of(l.src[1], rngs[i]) == 0 for l in moving_inner)), None)
  # a reduce no vector divides pads to whole vectors (dot_axis): its extra lanes add the reduce's identity
  opts = [o for dot, n in dots for o in ([Opt(OptOps.PADTO, dot, n), Opt(OptOps.UNROLL, dot, n)] if sizes[dot] % n else
                                         [Opt(OptOps.UNROLL, dot, n)] + _block_steps(k, dot, n))]
  regs = k.renderer.vector_registers or 16
  # the share of a block's lanes that are outputs: a block that pads its axis computes the padding's lanes too
  def useful(a: int, size: int) -> float: return size / (-(-size // a) * a)
  # a matrix times one vector: no block of rows. The vector's loads hit L1 whatever the block; the matrix's rows read
  # side by side are that many short streams (a Q8_0 row is 612 bytes), which the hardware prefetcher does not follow,
  # while one row after another is one sequential stream (the 49152 x 576 logits, single thread, from memory:
  # float32 15 rows 8.5 -> 1 row 4.4 ms, 26 GB/s; Q8_0 7 rows 5.3 -> 2.3 ms; in L2 a Q4_1 576 x 576 the same, 32.5 us)
  if outer is None: return opts
  # the block a x b with the most FMAs per vector loaded (a * b for a + b loads: the loads are the limit; GPT-2's c_proj
  # measured 119 GFLOP/s at 4 x 3, 111 at 3 x 3, 88 at 6 x 2, 30 at 14 x 1 on AVX2) whose registers
  # fit: a * b accumulators, the b vectors of the outer operand (live across the step) and one of the inner operand at
  # a time (used by its b FMAs, then dead); ties: the larger block. Under a costly epilogue `a` is a power of two: the
  # inner axis's lanes are the output's contiguous ones, and the epilogue (GPT-2's gelu after c_fc) runs on them as
  # vectors only in whole vectors (AVX-512's best 5 x 5 ran at 39 GFLOP/s with its gelu on 4 + 1 lanes, 4 x 6 at 83)
  whole = _epilogue_ops(k.sink) >= COSTLY_EPILOGUE
  blocks = [(a * b / (a + b) * useful(a, sizes[inner]) * useful(b, sizes[outer]), a * b, a, b) for a in range(1, regs) for b in range(1, regs)
            if (not whole or a & (a - 1) == 0) and a * b + b + 1 <= regs and a <= sizes[inner] and b <= sizes[outer]]
  _, _, a, b = max(blocks)
  for ax, n in ((inner, a), (outer, b)):
    if n > 1: opts += [Opt(OptOps.PADTO, ax, n)] * bool(sizes[ax] % n) + [Opt(OptOps.UPCAST, ax, n)]
  def nbytes(ls: list[UOp]) -> int: return sum(l.src[0].arg[1] * l.src[0].dtype.itemsize for l in ls)
  moving_outer = [l for l in in_reduce if stride_of(l.src[1], rngs[outer]) != 0]
  if outer < inner and nbytes(moving_inner) > nbytes(moving_outer): opts.append(Opt(OptOps.SWAP, outer, inner))
  return opts

def _unshifted_reduce_innermost(k: Kernel) -> Opt | None:
  """SWAP that makes the innermost reduce loop one whose steps read no value a block lane read the step before. A
  conv's kx moves its input loads as far as its output x does, so step kx+1 reads the x block shifted by one pixel (at
  stride 2, step kx+2 does): GCC then carries the block's scalars from step to step in registers (moves, separate
  broadcasts) instead of folding each load into its FMA as a broadcast operand. The channel loop reads new values every
  step (outer-product convs, 32x64x56x56: 216 -> 356 GFLOP/s on AVX-512, 1.5-1.7x on four other shapes). The longest
  such loop goes in."""
  rngs, sizes = k.axes, k.sizes()
  lanes = [r for r in rngs if r.arg[1] is AxisType.UPCAST]
  reduces = [i for i, r in enumerate(rngs) if r.arg[1] is AxisType.REDUCE and sizes[i] > 1]
  idxs = [u.src[0].src[1] for u in k.sink.toposort if u.op is Ops.LOAD]
  def shifts(i: int) -> bool:  # some step of loop i reads what another lane read: a lane's stride is a multiple within reach
    def within(st: int, lane: int | None) -> bool: return bool(lane) and lane % st == 0 and 0 < lane // st < sizes[i]
    return any((st := stride_of(x, rngs[i])) and any(within(st, stride_of(x, u)) for u in lanes) for x in idxs)
  if not reduces or not shifts(reduces[-1]): return None
  fresh = [i for i in reduces if not shifts(i)]
  return Opt(OptOps.SWAP, max(fresh, key=lambda i: sizes[i]), reduces[-1]) if fresh else None

def _reduce_groups(sink: UOp, rngs: list[UOp]) -> list[list[int]]:
  """The axes of each REDUCE of the kernel, one list per reduce (several reduces over one set of loops share it)."""
  groups = {tuple(sorted(rngs.index(r) for r in u.src[1:] if r in rngs)) for u in sink.toposort if u.op is Ops.REDUCE}
  return [list(g) for g in sorted(groups) if g]

def hand_coded_opts(k: Kernel, threads: bool = True, budget: int = LANE_OPS_BUDGET) -> Kernel:
  """Matmul-like kernels (some input does not move along an output axis, so a loaded value serves many outputs)
  upcast two output axes into a block of vector accumulators; other reduces unroll the reduce axis that loads walk
  contiguously, into a vector accumulator; elementwise kernels upcast the output axis that is contiguous in memory.
  `threads=False` leaves out the THREAD split and `budget` bounds the ops the lanes expand to (a split kernel's boxes
  share both, codegen/split.py)."""
  if NOOPT: return k
  if k.renderer.has_local: return gpu_opts(k)
  sink, renderer, rngs = k.sink, k.renderer, k.axes
  sizes = [r.src[0].arg for r in rngs]
  loads = [u.src[0] for u in sink.toposort if u.op is Ops.LOAD]
  stores = [u for u in sink.toposort if u.op is Ops.STORE]
  serial = serial_ranges(sink)  # a scatter's scattered loop takes no opt (docs/design/0017)
  loop_axes = [i for i, r in enumerate(rngs) if r.arg[1] is AxisType.LOOP and r not in serial]
  reduce_axes = [i for i, r in enumerate(rngs) if r.arg[1] is AxisType.REDUCE]
  width = renderer.upcast_width
  out_idx = stores[0].src[0].src[1] if stores else None
  # matmul-likeness is judged on the loads inside the reduce: a bias added after it (stride 0 along the batch) reuses nothing
  red_rngs = {rngs[i] for i in reduce_axes}
  in_reduce = [l for l in loads if any(r in red_rngs for r in l.src[1].toposort)] or loads
  def strides(i): return [stride_of(l.src[1], rngs[i]) for l in in_reduce]
  contig_out = [i for i in loop_axes if out_idx is not None and stride_of(out_idx, rngs[i]) == 1]
  opts: list[Opt] = []
  stage: list[int] = []  # buffers to stage at the first block axis (or, with rows_tile, at the rows' block)
  rows_tile: tuple[int, int, list[int]] | None = None  # _rows_block's (reduce axis, tile or 0, buffers staged per tile)
  dots: list[tuple[int, int]] = []
  first_walks = False  # the first block axis was chosen for its vector loads: its lanes become the vector
  if reduce_axes:
    reuse = [i for i in loop_axes if 0 in strides(i) and any(s != 0 for s in strides(i))]
    # a vector along an output axis is worth it only where a load moving along that axis walks memory contiguously:
    # else each of its lanes is a scalar load of its own (x @ W.T: an output row's columns are rows of W, K apart).
    # Where no output axis has one but the loads all walk a reduce axis contiguously, the vectors go along that
    # reduce axis instead: the dot-product form (q @ k.T, every Linear layer's x @ W.T; measured 4-5x the column block)
    # (one such axis per reduce: a ResNet block's conv and its 1x1 shortcut conv, summed in one kernel, each unroll theirs)
    # An axis that is contiguous only in runs (attention's output read as (T, H*D): H*D is H runs of D) shows no stride:
    # it counts where its lanes, split off by the vector, are contiguous (the split folds the index's // and %).
    # The vector is the target's, or half of it where that does not divide the axis (24 channels on AVX-512) or where
    # the axis would take fewer than DOT_STEPS vectors: each output's lanes are summed after the loop, and over a short
    # axis that sum is a large share (MNIST's conv2, 32 channels x 3 x 3: 16 lanes 74-84 GFLOP/s, 8 lanes 116-119)
    def walks(st: list) -> bool: return 1 in st and set(st) <= {0, 1}
    def lane_strides(i: int, n: int, lanes: OptOps = OptOps.UNROLL) -> list:
      split = k.copy().apply_opt(Opt(lanes, i, n))
      lane = next(r for r in split.axes if r.arg[1] is (AxisType.UNROLL if lanes is OptOps.UNROLL else AxisType.UPCAST))
      idxs = [l.src[0].src[1] for l in split.sink.toposort if l.op is Ops.LOAD and lane in l.src[0].src[1].toposort]
      return [stride_of(x, lane) for x in graph_rewrite(UOp.sink(*idxs), symbolic, name="lane strides").src] if idxs else [0]
    def dot_axis(group: list[int]) -> tuple[int, int] | None:
      for i in reversed(group):
        fit = [n for n in (width, width // 2) if n >= 4 and sizes[i] % n == 0]
        # none divides it: whole vectors over the axis padded, where that adds at most 1/8 (as _lanes pads; argmax over
        # 1001 columns reading a computed arange ran its rows 4 at a time, each lane a scalar product)
        padded = not fit and sizes[i] >= 2 * width and -sizes[i] % width <= sizes[i] // 8
        if padded: fit = [width]
        if not fit: continue
        n = next((n for n in fit if sizes[i] // n >= DOT_STEPS), fit[-1])
        # (lanes split off a padded axis are not probed: only loads that walk it plainly take the padded form)
        if walks(strides(i)) or (not padded and None in strides(i) and walks(lane_strides(i, n))): return i, n
      return None
    dots = [] if not reuse or any(1 in strides(i) for i in reuse) else \
      [a for g in _reduce_groups(sink, rngs) if (a := dot_axis(g)) is not None]
    def outer_block(wide: tuple[int, ...], transpose: bool = False) -> tuple[list[Opt], list[int], int, int | None, bool]:
      """The opts of a block whose first axis carries the vectors, the buffers to stage, the two block axes, and whether
      the first's lanes are vectors (its loads walk it, or a transposed panel of them is staged). `wide`: the lanes the
      contiguous output axis may take, widest first; `transpose`: also stage a panel that is contiguous but not along
      the first axis (its copy puts the lanes innermost)."""
      # the first block axis carries the vectors: an axis along which every load that moves walks memory contiguously
      # (vector loads) and that takes a whole vector, the contiguous output axis first among those (a vector store too:
      # a 28-pixel row that walks too takes only 4 lanes, a conv's 64 output channels two vectors; elsewhere the outputs are
      # stored as strided runs, once per reduce: a conv's output channels, its weights stored channels-last-out); else
      # the contiguous output axis, else the innermost reuse axis whose size splits well (a conv's output channels when
      # its width is 14)
      # the widest that divides the axis, or pads it by at most 1/32 (394 columns: 16 lanes over 400; else no block at
      # all, a scalar product; 1000: a whole AVX-512 vector of 32 over 1024 rather than 8 lanes, half a vector)
      def split(i, amounts): return next((a for a in amounts if sizes[i] % a == 0 or a < sizes[i] and -sizes[i] % a <= sizes[i] // 32), None)
      # where no axis takes a block that way (77 x 77 outputs: every amount pads 77 by 3 or more), an axis of a vector
      # or more takes the fewest vector ops over its padded length, the least padding on a tie: 16 lanes over 80 (5
      # vectors) before 32 over 96 (6) -- anything beats scalar loops (a batch of 77 x 64 x 77 products: 1.1 GFLOP/s)
      def padded_split(i, amounts):
        if sizes[i] < width: return None
        return min((a for a in amounts if a < sizes[i]), key=lambda a: (-(-sizes[i] // a) * -(-a // width), -sizes[i] % a), default=None)
      # judged on the loads of the heaviest reduce: a conv's input gradient summed in one kernel with a pool's backward
      # (a 3x3 window beside 64 x 3 x 3) gathers the pool's few loads along the conv's vector
      heavy = {rngs[i] for i in max(_reduce_groups(sink, rngs), key=lambda g: prod(sizes[i] for i in g))}
      heavy_loads = [l for l in in_reduce if heavy & set(l.src[1].toposort)]
      def vector_loads(i):
        st = [stride_of(l.src[1], rngs[i]) for l in heavy_loads]
        # an axis contiguous in runs of a vector or more (a weight kept as 32-column panels: docs/design/0039) walks
        # where its lanes, split off by the vector, do
        if None in st and sizes[i] % width == 0: st = lane_strides(i, width, OptOps.UPCAST)
        return any(s != 0 for s in st) and all(s in (0, 1) for s in st)
      narrow = (width, width // 2, 4)
      def candidates(split):
        walkers = [(i, split(i, wide if i in contig_out or WALKER_BLOCKS_WIDE else narrow), True) for i in dict.fromkeys([*contig_out, *reversed(reuse)]) if i in reuse and vector_loads(i)]
        walkers.sort(key=lambda b: not (b[1] and b[1] >= width))  # one that takes a whole vector first (stable)
        return walkers + [(i, split(i, wide), False) for i in contig_out if i in reuse] + [(i, split(i, narrow), False) for i in reversed(reuse)]
      first, amount, first_walks = next(((i, a, v) for split_ in (split, padded_split) for i, a, v in candidates(split_) if a), (reuse[-1], None, False))
      block: list[Opt] = [Opt(OptOps.PADTO, first, amount)] * bool(sizes[first] % amount) + [Opt(OptOps.UPCAST, first, amount)] if amount else []
      stage: list[int] = []
      # the second: an axis along which the loads that move along `first` stay still, so each of them serves the whole
      # block too (a matmul's rows for its column block; a conv's output channels for its row of pixels, where a
      # second pixel axis would reuse only the weights: 8 broadcasts an input vector, measured 46 -> 100 GFLOP/s)
      moving = [l for l in in_reduce if stride_of(l.src[1], rngs[first]) != 0]
      still_for_moving = [i for i in reversed(reuse) if i != first and all(stride_of(l.src[1], rngs[i]) == 0 for l in moving)]
      second = next(iter(still_for_moving), next((i for i in reversed(reuse) if i != first), None))
      # the CPU threads split the outermost loop that loops: `second`'s blocks, where it is outermost
      def threads_of(i: int) -> int:
        outermost = i < first and all(sizes[j] == 1 for j in loop_axes if j < i)
        return int(THREADS) if threads and renderer.has_cpu_threads and outermost else 1
      if second is not None and (amount2 := _second_block(sizes[second], width, _accumulator_room(renderer, amount, stores), threads_of(second))):
        if sizes[second] % amount2: block.append(Opt(OptOps.PADTO, second, amount2))
        block.append(Opt(OptOps.UPCAST, second, amount2))
        # when the input that stays still along `second` is far larger than the caches, loop `second` innermost so
        # each panel of that input is read from cache by every block of `second` (measured: 2x at 2048^3). Where the
        # panel (what the loops inside `first` read of it) is scattered -- B's 16 columns of each 4 KB row -- and fits
        # the renderer's scratch, loop `first` outermost and stage the panel there: every block of `second` then reads
        # one contiguous copy (6x16 at 1024^3: 1.8x; docs/design/0010-staging.md)
        still = [l for l in loads if stride_of(l.src[1], rngs[second]) == 0]
        def scattered_panel(l: UOp) -> bool:
          inner = [i for i in range(min(first, second) + 1, len(rngs)) if i != first]
          strides = {i: stride_of(l.src[1], rngs[i]) for i in [first, *inner]}
          if None in strides.values(): return False
          slots = amount * prod(sizes[i] for i in inner if strides[i])
          span = 1 + (amount - 1) * abs(strides[first]) + sum((sizes[i] - 1) * abs(strides[i]) for i in inner)
          return (span > slots or (transpose and abs(strides[first]) != 1)) and slots * l.src[0].dtype.itemsize <= renderer.scratch_max
        # a transposed panel is copied element by element: it pays where enough rows share it (TRANSPOSED_PANEL_ROWS).
        # The rows that share it are `second`'s and those of every other loop inside it along which it stays still (a
        # conv's weight panel serves each row of pixels of an image: 14 x 14 at 256 channels, 166 -> 302 GFLOP/s)
        def sharing_rows(l: UOp) -> int:
          inner = [i for i in range(min(first, second) + 1, len(rngs)) if i not in (first, second) and i in loop_axes]
          return sizes[second] * prod(sizes[i] for i in inner if stride_of(l.src[1], rngs[i]) == 0)
        def shared(l: UOp) -> bool: return sharing_rows(l) >= (max(2 * amount2, TRANSPOSED_PANEL_ROWS) if transpose else 2 * amount2)
        stage = [l.src[0].arg[0] for l in still if amount and renderer.scratch_max and shared(l) and scattered_panel(l)]
        def footprint(l: UOp) -> int:  # bytes of `l` the loops from the outer block axis inward read (a conv: one image)
          strides = [stride_of(l.src[1], rngs[i]) for i in range(min(first, second), len(rngs))]
          if None in strides: return l.src[0].arg[1] * l.src[0].dtype.itemsize
          return l.src[0].dtype.itemsize * (1 + sum((sizes[i] - 1) * abs(s) for i, s in zip(range(min(first, second), len(rngs)), strides)))
        if stage and not transpose and (rows := _rows_block(k, first, amount, second, amount2)) is not None:
          return block + rows[0], rows[1], first, second, first_walks, rows[2]
        # or where it passes the thread's cache and what moves along `second` fits there (a weight kept as panels,
        # docs/design/0039: c_attn's 7 MB of panels were read once per row block; x's 128 rows are 384 KB). Not where
        # both pass it: a conv's weight gradient then re-read its larger operand per block (34 -> 48-54 ms)
        cache, moving_rows = k.renderer.cache_bytes, [l for l in loads if stride_of(l.src[1], rngs[second]) != 0]
        big = max(footprint(l) for l in still) if still else 0
        if second < first and still and (stage or big > (8 << 20) or (cache and big > cache and all(footprint(l) <= cache for l in moving_rows))):
          block.append(Opt(OptOps.SWAP, second, first))
      return block, stage, first, second, first_walks or (transpose and bool(stage)), None
    # x @ W.T's columns (nn.Linear's weight is (out, in)): no output axis walks memory, so the dot-product form is the
    # default (or, where no vector divides the reduce, a block of strided loads). But where W's panel of a column block
    # (2 vectors of columns x every k) fits the scratch and two or more row blocks share it, staging it with the
    # columns innermost makes them a vector as in a @ b (GPT-2's c_attn at 128 tokens, 128 x 768 x 2304: 152 -> 273
    # GFLOP/s; docs/design/0010, transposed panels). A conv (more than two reuse axes) keeps its layout's form.
    gathers_only = len(reuse) == 2 and not any(1 in strides(i) for i in reuse)  # no output axis walks memory
    staged = next((p for w in ((2 * width,), (width,)) if gathers_only and TRANSPOSED_PANELS
                   and (p := outer_block(w, transpose=True))[1] and p[2] in contig_out), None)
    if staged is not None: dots = []
    if dots: opts += _dot_product_block(k, dots, reuse, in_reduce)
    elif reuse:
      block, stage, first, second, first_walks, rows_tile = staged or outer_block((2 * width, width, width // 2, 4))
      opts += block
      # a vector of fewer lanes than the target's, in pieces (a small window's kx: 3 lanes as 2 + 1, 7 as 4 + 2 + 1: a
      # conv's weight gradient over its input's few channels) leaves the FMA pipes mostly idle. Four steps of the
      # innermost reduce loop that four divides, unrolled, make each accumulator a 4-lane vector over reduce steps,
      # summed once after the loop (the MNIST net's conv1 weight gradient 2.4-2.7 -> 1.1 ms; BEAM found the same step).
      # (the vector is the first axis's lanes where they walk memory, else the innermost upcast's: codegen/expand.py)
      ups = [o for o in block if o.op is OptOps.UPCAST]
      vector = next((o for o in ups if o.axis == first), None) if first_walks else max(ups, key=lambda o: o.axis, default=None)
      lanes = vector.amount if vector is not None else 0
      # Only where the body fits the lane budget so, with the block's other axis halved if it must be: halved to 2 steps
      # the unroll is slower than none (ResNet-18's stem weight gradient, 16 output channels x 7 lanes: 88 ms as it was,
      # 261 with 2 steps, 56 with 8 channels and 4 steps)
      if 2 < lanes < width and lanes & (lanes - 1) and not stage and rows_tile is None and \
         (red4 := next((i for i in reversed(reduce_axes) if sizes[i] % 4 == 0), None)) is not None:
        def unrolled(block_opts: list[Opt]) -> list[Opt] | None:
          got = block_opts + [Opt(OptOps.UNROLL, red4, 4)]
          return got if within_lane_budget(sink, got, k.idt, budget) == got else None
        other = next((o for o in ups if o is not vector and o.amount % 4 == 0 and not any(p.op is OptOps.PADTO and p.axis == o.axis for p in block)), None)
        halved = [Opt(OptOps.UPCAST, o.axis, o.amount // 2) if o is other else o for o in opts] if other is not None else None
        if (got := unrolled(opts) or (halved and unrolled(halved))): opts = got
    else:
      # each reduce (a softmax kernel holds a max and a sum, docs/design/0018) unrolls the axis its loads walk
      # contiguously into a vector accumulator; a reduce of at most `width` elements, or a window of several axes of at
      # most 2 x `width` (3x3 the largest common pool), is unrolled whole: its loops would run a few steps each, and
      # unrolled, the output axis carries the vectors (ResNet's 3x3 stride-2 max pool: 10 -> 2.2 ms)
      # (nested reduces unrolled whole multiply their lanes: together at most 2 x `width`, or a cross entropy's three
      # reduces of 16, 10 and 16 became 1,280 lanes on AVX-512, 2.5 s of gcc)
      windows, contiguous_unrolled, whole = True, False, 1
      walks_output = any(1 in strides(i) and all(s in (0, 1) for s in strides(i)) for i in contig_out)
      for red_axes in _reduce_groups(sink, rngs):
        n = prod(sizes[i] for i in red_axes)
        if (n <= width or (n <= 2 * width and sum(sizes[i] > 1 for i in red_axes) > 1)) and whole * n <= 2 * width:
          opts.extend(Opt(OptOps.UNROLL, i, sizes[i]) for i in red_axes if sizes[i] > 1)
          whole *= n
          continue
        windows = False
        red = next((i for i in reversed(red_axes) if 1 in strides(i)), None)
        contiguous_unrolled |= red is not None
        # no contiguous reduce axis, but loads that move along the contiguous output axis one element a step (a column
        # sum): unrolled lanes would be scalar loads, and that output axis (below) gives the vector accumulator
        if red is None and not walks_output: red = red_axes[-1]
        if red is not None: opts += _lanes(OptOps.UNROLL, red, sizes[red], (width, 4), width)
      # the contiguous output axis is upcast as an elementwise kernel's would be where the reduces do not move along it
      # (their values are computed once per row and read by every element of it), where they are unrolled whole (a
      # 2x2 pool's 4 outputs read 8 consecutive floats of each row), or where no contiguous reduce axis is unrolled and
      # the loads move along it one element a step (a column sum: a vector accumulator of 8 columns, vector loads)
      def upcast_output(i: int) -> bool:
        return windows or all(s == 0 for s in strides(i)) or (not contiguous_unrolled and all(s in (0, 1) for s in strides(i)))
      if (ax := next((i for i in contig_out if upcast_output(i)), None)) is not None:
        opts += _lanes(OptOps.UPCAST, ax, sizes[ax], (width, width // 2, 4), width)
  elif contig_out:
    # the widest vector that divides the row: half the target's (an AVX2-sized one on AVX-512); else a row of more
    # than 4 and at most two vectors whole, as vectors of the powers of two it sums to (7 = 4 + 2 + 1: bias and relu
    # over ResNet's 7x7 maps, 16x512x7x7, ran a lane at a time in 782 us, 137 us so; 14 = 8 + 4 + 2: 191 -> 114 us);
    # else a quarter
    row = sizes[contig_out[0]]
    amount = next((a for a in (width, width // 2) if row % a == 0), row if 4 < row <= 2 * width else 4 if row % 4 == 0 else None)
    if amount: opts.append(Opt(OptOps.UPCAST, contig_out[0], amount))
    # a transpose: the loads walk another axis contiguously, so each vector stored gathers its lanes from as many
    # runs. That axis's loop goes innermost, inside the stored axis's blocks: each block then streams its lanes' runs
    # (16 at a time) instead of every block's at once (NCHW -> NHWC of 32x64x56x56: 2.0 -> 1.1 ms from the caches,
    # 3.4 -> 2.2 ms from memory)
    moving = lambda i: [st for st in (stride_of(l.src[1], rngs[i]) for l in loads) if st != 0]
    walked = [i for i in loop_axes if i < contig_out[0] and (st := moving(i)) and set(st) == {1}]
    if walked and any(st not in (0, 1) for st in moving(contig_out[0])): opts.append(Opt(OptOps.SWAP, walked[-1], contig_out[0]))
  # the budget is in ops of the expanded body, lane by lane; a dot product's unrolled lanes become one vector op each
  # (the compiler sees one op per 8 or 16 lanes), so on a wider target its budget grows with the vector: a register
  # block of the same FMAs per load has twice the lanes there (AVX-512's 4 x 6 of 16-lane accumulators). A block whose
  # first axis is the vector grows it twice as much: every op of the block, its epilogue's too, is a vector op (the
  # MNIST example's conv2 input gradient, 13 pixels x 16 channels under a relu mask: 45 -> 120-190 GFLOP/s)
  opts = within_lane_budget(sink, opts, k.idt, budget * max(1, width // 4) if first_walks else budget * max(1, width // 8) if dots else budget,
                           lane_cap=max_lanes(renderer))
  # the rules name axes as they were before any opt: the splits go from the last axis back, so no split moves an axis
  # a later one names; then the swaps exchange the outer parts, so the lanes keep their order (a row's broadcast used
  # by both column vectors before the next row's: the other order kept six broadcasts live and spilled, 0.5x at 6x16)
  splits = sorted((o for o in opts if o.op is not OptOps.SWAP), key=lambda o: -o.axis)
  k.apply_opts(splits)
  def now(a: int) -> int: return a + sum(1 for o in splits if o.op is not OptOps.PADTO and o.axis < a)
  swaps = [Opt(OptOps.SWAP, now(o.axis), now(o.amount)) for o in opts if o.op is OptOps.SWAP]
  k.apply_opts(swaps)
  if first_walks:
    # the vector's lanes are the innermost upcast's (codegen/expand.py): a first axis ahead of the second swaps with it
    ups = [i for i, r in enumerate(k.axes) if r.arg[1] is AxisType.UPCAST]
    vec = axis_of(k, (rngs[first].arg[0], AxisType.UPCAST))
    if ups and vec != ups[-1]: k.apply_opt(Opt(OptOps.SWAP, vec, ups[-1]))
    if (swap := _unshifted_reduce_innermost(k)) is not None: k.apply_opt(swap)
  if stage and rows_tile is None: at = now(second)  # the first block axis, now outermost: the lanes are the innermost slots
  elif stage:  # or the rows' block (_rows_block), outermost, inside the reduce's tiles where it has them
    if rows_tile[1]: k.apply_opt(Opt(OptOps.TILE, now(rows_tile[0]), rows_tile[1]))
    at = now(min(first, second)) + bool(rows_tile[1])  # the TILE loop nests outside every other
    for buf in rows_tile[2]:  # B's tile, once per tile: every rows block then reads its columns as one contiguous run
      try: k.apply_opt(Opt(OptOps.STAGE, at - 1, buf))
      except KernelOptError: pass  # a batch's tile loop holds every product's tile: past the scratch
  for buf in stage:
    try: k.apply_opt(Opt(OptOps.STAGE, at, buf))
    except KernelOptError: pass  # the panel estimate missed (another staged buffer took the room)
  if reduce_axes and not stage and (tile := reduce_tile(k)) is not None: k.apply_opt(tile)
  # CPU threads split the outermost loop that still loops, when the kernel has work enough to pay for the hand-off
  if threads and renderer.has_cpu_threads and THREADS > 1 and estimated_work(k) >= MIN_THREAD_WORK:
    serial = serial_ranges(k.sink)
    if (ax := next((i for i, r in enumerate(k.axes) if r.arg[1] is AxisType.LOOP and r.src[0].arg > 1 and r not in serial), None)) is not None:
      k.apply_opt(Opt(OptOps.THREAD, ax, min(int(THREADS), k.sizes()[ax])))
  return k

# the most of the L2 that the column operand's share of one reduce tile may take, for a rows-outer block that reads it in
# place: every rows block reads that tile again, so it must stay in the L2 beside the staged rows block, whatever the
# machine's FMA rate against its L3 (4 L2s were right on a 1-FMA-port AVX-512 machine, where a tile streamed from the
# L3 kept up; on a 2-port one, 320 GFLOP/s NumPy, 1024^3 ran 157 GFLOP/s so, 254 with half the L2 and 264 with a
# quarter, the kernel alone 263 and 292-296; 1000x2048x4096, 4096x1024^2, 2048x512x2048, 3000^2x500: 1.5-1.7x with
# half, 1.4-2.0x with a quarter, the logits product the same). That tile is also staged, once per tile (what BEAM
# found): 1024^3 / 2048^3 285 / 265 -> 290 / 298 GFLOP/s, 1000x2048x4096 245 -> 279, 3000^2 x 500 214 -> 238 (once its
# peeled 20 columns kept their own vector block: split._reduce_plan)
ROWS_PANEL_CACHE_SHARE = 0.25
# column blocks that share one staged rows block at the least: its copy (an element at a time, ~1 cycle each) costs
# 1/n of the n blocks' FMAs (1024 x N x 1024: N = 64, 2 blocks, 170 -> 111 GFLOP/s; 128, 171 -> 150; 256, 172 -> 180)
ROWS_BLOCK_SHARERS = 8

def _rows_block(k: Kernel, first: int, amount: int, second: int, amount2: int) -> tuple[list[Opt], list[int], tuple[int, int, list[int]]] | None:
  """The rows-outer form of an outer-product block (a @ b: `first` the columns, B's vectors; `second` the rows), where
  the columns-outer form would stage B's panel: A's block of `amount2` rows, whose values are broadcast one row at a
  time, is staged reduce-major at the rows loop, so every reduce step reads one run of it instead of one value from
  each of `amount2` rows (that many streams: the 14 x 32 block at 1024^3 on AVX-512, 166 -> 202 GFLOP/s, NumPy 196),
  and B's rows are read in place. Each rows block then reads all of B's tile: the reduce is tiled (TILE) so that tile
  takes at most ROWS_PANEL_CACHE_SHARE of the L2 (on a 1-port AVX-512 machine: 2048^3 untiled 63 GFLOP/s, 256 or 512
  of 2048 188-191; 1000x4096x2048: 1024 of 2048, 16 MB a tile, 162, 512 and 256, 200), and a tile is staged once per
  tile where it fits the scratch. Returns (opts to add, buffers to stage at the rows loop, (reduce axis, tile or 0,
  buffers to stage at the tile loop)), or None where the form does not apply: plain matmuls and batches of them only
  (two reuse axes, one reduce), ROWS_BLOCK_SHARERS column blocks at least to share A's block, A's rows a cache line apart or more, and a tile where one is needed that
  the kernel can take (an epilogue after the reduce cannot carry a running sum: docs/design/0010, rows-outer blocks),
  and A larger than the L2."""
  rngs, sizes, cache = k.axes, k.sizes(), k.renderer.cache_bytes
  reduces = [i for i, r in enumerate(rngs) if r.arg[1] is AxisType.REDUCE]
  others = [i for i, r in enumerate(rngs) if r.arg[1] is AxisType.LOOP and i not in (first, second)]
  loads = [u.src[0] for u in k.sink.toposort if u.op is Ops.LOAD and any(r.arg[1] is AxisType.REDUCE for r in u.src[0].src[1].toposort if r.op is Ops.RANGE)]
  if len(reduces) != 1 or not cache or sizes[first] < ROWS_BLOCK_SHARERS * amount: return None
  red = reduces[0]
  rows_op = [l for l in loads if stride_of(l.src[1], rngs[first]) == 0 and stride_of(l.src[1], rngs[second]) != 0]
  cols_op = [l for l in loads if stride_of(l.src[1], rngs[first]) != 0]
  if len(rows_op) != 1 or not cols_op or any(stride_of(l.src[1], rngs[second]) != 0 for l in cols_op): return None
  # another axis along which one operand moves and the other stays still is a conv's (it keeps its form); one along
  # which both move is a batch's
  if any(len({stride_of(l.src[1], rngs[i]) == 0 for l in rows_op + cols_op}) > 1 for i in others): return None
  row_stride, item = stride_of(rows_op[0].src[1], rngs[second]), rows_op[0].src[0].dtype.itemsize
  if row_stride is None or abs(row_stride) * item < 64: return None
  # the streams cost where every column block reads A's rows from beyond the L2 (256^3: A's 256 KB stays in it, and
  # the copy only costs: 109 -> 98 GFLOP/s)
  if _touched(rows_op[0], [rngs[second], rngs[red]], [sizes[second], sizes[red]]) * item <= cache: return None
  def tile_bytes(n: int) -> int: return sum(_touched(l, [rngs[first], rngs[red]], [sizes[first], n]) * l.src[0].dtype.itemsize for l in cols_op)
  tile = 0
  if tile_bytes(sizes[red]) > ROWS_PANEL_CACHE_SHARE * cache:
    fit = [n for n in range(8, sizes[red]) if sizes[red] % n == 0 and tile_bytes(n) <= ROWS_PANEL_CACHE_SHARE * cache]
    if not fit or _untileable(k.sink, rngs[red]) is not None: return None
    tile = fit[-1]
  swap = [Opt(OptOps.SWAP, first, second)] if first < second else []  # the rows loop outermost
  # a tile of B is staged too where it fits the scratch: read in place, each reduce step's vectors come from a row of
  # its own, rows a page apart at 4 KB of columns
  staged_tile = [l.src[0].arg[0] for l in cols_op] if tile and tile_bytes(tile) <= k.renderer.scratch_max // 2 else []
  return swap, [rows_op[0].src[0].arg[0]], (red, tile, staged_tile)

def _touched(load: UOp, rngs: list[UOp], sizes: list[int]) -> int:
  """Elements of a load's buffer that loops of these sizes read: the axes of one stride sweep one run together (a conv
  input's y + ky: 24 + 3 - 1 rows, not 24 x 3); an index not affine in the ranges reads, at worst, the whole buffer."""
  runs: dict[int, int] = {}
  for r, n in zip(rngs, sizes):
    if (st := stride_of(load.src[1], r)) is None: return load.src[0].arg[1]
    if st: runs[abs(st)] = runs.get(abs(st), 0) + n - 1
  return min(prod(n + 1 for n in runs.values()), load.src[0].arg[1])

def reduce_tile(k: Kernel) -> Opt | None:
  """TILE for a kernel whose output blocks each stream the whole reduce through a cache too small for what the reduce
  reads: the outermost reduce axis split into blocks whose data fits half the cache, so every output block reads that
  block of the inputs from the cache, and the output carries the running sum between blocks (opt/kernel.py). Only
  where the output is small beside the inputs: each block reads and writes it once more (a weight gradient sums 128
  images into 18,432 outputs: 20 -> 134 GFLOP/s; a conv's forward, as large as its input, is left alone)."""
  cache, rngs, sizes = k.renderer.cache_bytes, k.axes, k.sizes()
  red = next((i for i, r in enumerate(rngs) if r.arg[1] is AxisType.REDUCE), None)
  stores = [u for u in k.sink.toposort if u.op is Ops.STORE]
  if not cache or red is None or len(stores) != 1: return None
  reduce_rngs = {r for r in rngs if r.arg[1] is AxisType.REDUCE}
  loads = [u.src[0] for u in k.sink.toposort if u.op is Ops.LOAD and reduce_rngs & set(u.src[0].src[1].toposort)]
  def nbytes(n: int) -> int:
    return sum(_touched(l, rngs, sizes[:red] + [n] + sizes[red + 1:]) * l.src[0].dtype.itemsize for l in loads)
  total, out = nbytes(sizes[red]), stores[0].src[0].src[0].arg[1] * stores[0].src[0].src[0].dtype.itemsize
  if total <= cache: return None
  fit = [a for a in range(2, sizes[red]) if sizes[red] % a == 0 and nbytes(a) <= cache // 2]
  if not fit or out * (sizes[red] // fit[-1]) > total: return None
  try: k.copy().apply_opt(tile := Opt(OptOps.TILE, red, fit[-1]))
  except KernelOptError: return None  # the output is not the reduce alone (an epilogue), or is read
  return tile

MIN_THREAD_WORK = 1 << 18  # FLOPs + bytes below which one thread is faster (measured: a thread hand-off costs ~20 us)

def estimated_work(k: Kernel) -> int:
  """FLOPs (each value op once per iteration of every axis) plus the bytes of every buffer the kernel touches."""
  alus = sum(1 for u in k.sink.toposort if u.op in GroupOp.ALU and u.dtype.scalar() != k.idt and not u.dtype.is_bool())
  params = {u for u in k.sink.toposort if u.op is Ops.DEFINE_GLOBAL}
  return prod(k.sizes()) * alus + sum(p.arg[1] * p.dtype.itemsize for p in params)

# ---- GPU-style targets (blocks of threads; renderer.has_local) ----
BLOCK_THREADS = 256  # threads a block gets where the kernel has them: 8 warps, several blocks resident per multiprocessor
TILE_THREADS = 8     # a matmul-like kernel's block: 8 x 8 threads, each a register tile of upcast x upcast outputs
MAX_GROUP = 16       # threads at most that split one output's reduce in a matmul-like kernel
STAGED_TILE = ((8, 8), (4, 16), 8)  # a staged block tile: (upcast, threads) along m and n, and the reduce steps a stage
SM_THREADS = 2048   # threads one multiprocessor runs at once (Hopper)
ROW_REGISTER_BYTES = 256  # a row kernel thread's share of its row kept in registers (64 floats): room left for the rest

def running_threads(k: Kernel) -> int:
  """Threads a GPU-style launch of the kernel runs: its output loops (the grid) times its block."""
  return prod(s for s, t in zip(k.sizes(), k.kinds()) if t in (AxisType.LOOP, AxisType.LOCAL, AxisType.GROUP))

def _tensor_core(k: Kernel, only: int | None = None) -> tuple[int, int] | None:
  """Put the kernel's matmul-shaped reduce on the first tensor core that takes it (the innermost reduce axis first), or
  on core `only`; the positions of its m and n axes among the kernel's axes before, or None where no core takes any."""
  before = [r.arg[0] for r in k.axes]
  for i in reversed(range(len(k.axes))):
    for j, tc in enumerate(k.renderer.tensor_cores):
      if only is not None and j != only: continue
      if isinstance(plan := tc_plan(k.sink, k.axes[i], tc), str): continue
      try: k.apply_opt(Opt(OptOps.TC, i, j))
      except KernelOptError: continue
      return before.index(plan.m.arg[0]), before.index(plan.n.arg[0])
  return None

def _merged_for_tc(k: Kernel) -> Kernel | None:
  """The kernel with its tensor-core reduce's loops merged into one, and each operand's own output loops into one
  (MERGE, slowest first by the operand's strides), where a core takes the merged reduce; None where nothing merges or
  no core would. A 3x3 conv is then a matmul over 9 x C_in steps and batch x rows x columns pixels: its tiles stage
  and pipeline like a matmul's (design 0026's fourteenth-session addendum), where its channel loop alone had 2 steps
  a window position and its 56-pixel rows made thin tiles."""
  serial = serial_ranges(k.sink)
  reds = [u for u in k.sink.toposort if u.op is Ops.REDUCE]
  red_axes = [r for r in k.axes if r.arg[1] is AxisType.REDUCE and r not in serial]
  if len(reds) != 1 or not red_axes or set(reds[0].src[1:]) != set(red_axes) or reds[0].src[0].op is not Ops.MUL: return None
  operands = [[u.src[0] for u in x.toposort if u.op is Ops.LOAD and u.src[0].op is Ops.INDEX and u.src[0].src[0].op is Ops.DEFINE_GLOBAL]
              for x in reds[0].src[0].src]
  if not all(operands): return None
  moves = [{r for ld in lds for r in ld.src[1].toposort if r.op is Ops.RANGE} for lds in operands]
  loops = [r for r in k.axes if r.arg[1] is AxisType.LOOP and r not in serial]
  own = [[r for r in loops if r in moves[j] and r not in moves[1 - j]] for j in (0, 1)]
  groups = [g for g in (red_axes, *own) if len(g) > 1]
  if not groups: return None
  def stride(r: UOp, lds: list[UOp]) -> int | None:
    st = [stride_of(ld.src[1], r) for ld in lds]
    return None if None in st else sum(st)
  merged = k.copy()
  for g, lds in zip((red_axes, *own), (operands[0] + operands[1], operands[0], operands[1])):
    if len(g) < 2: continue
    st = {r: stride(r, lds) for r in g}
    if None in st.values(): return None  # an axis the operand does not read linearly
    order = sorted(g, key=lambda r: (-st[r], r.arg[0]))  # slowest first; ties: the outer loop
    ids = [r.arg[0] for r in order]
    for slow, fast in zip(ids, ids[1:]):
      at = {r.arg[0]: i for i, r in enumerate(merged.axes)}
      try: merged.apply_opt(Opt(OptOps.MERGE, at[slow], at[fast]))
      except KernelOptError: return None
  k_axis = next(r for r in merged.axes if r.arg[1] is AxisType.REDUCE and r not in serial)
  return merged if any(not isinstance(tc_plan(merged.sink, k_axis, tc), str) for tc in merged.renderer.tensor_cores) else None

def axis_of(k: Kernel, ident: tuple) -> int:
  """Where axis `ident` (the range id and kind it had before some opts) is now: a split leaves its kind to one part,
  whose range id extends the original's."""
  rid, kind = ident
  return next(j for j, r in enumerate(k.axes) if r.arg[1] is kind and r.arg[0][:len(rid)] == rid)

def _row_in_registers(k: Kernel, tied: list[tuple]) -> Kernel:
  """A row kernel whose thread's share of the row fits ROW_REGISTER_BYTES keeps it in registers: its ROW loop becomes
  output lanes and each tied reduce's loop lanes alike, so every pass indexes the same elements with the same
  expressions and they are one load and one computation (softmax over 16384-float rows: each row read once and each
  exp computed once, not read three times and exp'd twice). Longer rows keep their loops."""
  at = [i for i, kind in enumerate(k.kinds()) if kind is AxisType.ROW]
  if len(at) != 1 or (rest := k.sizes()[at[0]]) == 1: return k
  lanes = rest * prod(s for s, kind in zip(k.sizes(), k.kinds()) if kind is AxisType.UPCAST)
  if lanes * max(u.dtype.itemsize for u in k.sink.toposort if u.op is Ops.LOAD) > ROW_REGISTER_BYTES: return k
  trial = k.copy()
  try:
    trial.apply_opt(Opt(OptOps.UPCAST, at[0], rest))
    for ident in tied: trial.apply_opt(Opt(OptOps.UNROLL, axis_of(trial, ident), rest))  # each tied reduce's loop left
  except (KernelOptError, StopIteration): return k
  return trial

def _staged_tiles(k: Kernel, m: tuple, n: tuple, red: tuple, inputs: list[int]) -> Kernel | None:
  """A matmul-like kernel with outputs for at least a block per multiprocessor: each block a 64 x 64 tile (8 x 16
  threads, each 8 x 4 outputs), its inputs' slices for 8 steps of the reduce staged in local memory by the whole block
  at once, so each value read from global memory serves 64 outputs of the block, not 4 of the thread (an H100, float32,
  against the unstaged 32 x 32 tiles: 4096^3 28.9 -> 36.4 TFLOP/s, 1024^3 11.9 -> 22.6, a.T @ b 26.8 -> 40.5).
  m, n, red: (range id, kind) of the output axes and the reduce; None where the tiles do not fit."""
  (um, tm), (un, tn), step = STAGED_TILE
  t = k.copy()
  try:
    for ident, tile in ((m, um * tm), (n, un * tn)):  # pad an axis no tile divides, where little is wasted
      if (size := t.sizes()[axis_of(t, ident)]) % tile:
        if -size % tile > size // 8: return None
        t.apply_opt(Opt(OptOps.PADTO, axis_of(t, ident), tile))
    if prod(t.sizes()[axis_of(t, x)] // tile for x, tile in ((m, um * tm), (n, un * tn))) < t.renderer.gpu_threads // SM_THREADS: return None
    for ident, amount in ((m, um), (n, un)): t.apply_opt(Opt(OptOps.UPCAST, axis_of(t, ident), amount))
    t.apply_opt(Opt(OptOps.UNROLL, axis_of(t, red), step))
    for ident, amount in ((m, tm), (n, tn)): t.apply_opt(Opt(OptOps.LOCAL, axis_of(t, ident), amount))
    for buf in inputs: t.apply_opt(Opt(OptOps.STAGE, axis_of(t, red), buf))
  except (KernelOptError, StopIteration): return None
  return t

def _on_tensor_core(k: Kernel, positions) -> Kernel | None:
  """The kernel on the first of the renderer's tensor cores that takes its reduce, with its tiles; a warpgroup core
  only where its tiles come out (_warpgroup_tiles), else the next core. `positions(kernel, mn)`: where the m and n
  axes (as TC numbered them) are in that kernel now."""
  for j, tc in enumerate(k.renderer.tensor_cores):
    trial = k.copy()
    if (mn := _tensor_core(trial, only=j)) is None: continue
    tiled = _warpgroup_tiles(trial, positions(trial, mn)) if tc.shared_operands else _tensor_core_tiles(trial, positions(trial, mn))
    if tiled is not None: return tiled
  return None

def _k_loop(k: Kernel) -> int | None:
  """The tensor core's k loop among the kernel's axes now."""
  return next((i for i, x in enumerate(k.kinds()) if x is AxisType.REDUCE and k.axes[i] in k.tc_tile.where("k").toposort), None)

def _warpgroup_tiles(k: Kernel, mn: list[int]) -> Kernel | None:
  """After TC on a warpgroup core (wgmma, docs/design/0026's twentieth-session addendum): two warpgroups a block along
  m (a 128 x N tile), four instructions a k-step (64 elements: one 128-byte swizzle row), and both operands' tiles
  staged in the swizzled layout the instruction reads, in as many buffers as fit (PIPE) -- the shape of the probe that
  ran 8192^3 float16 at 564 TFLOP/s on an H100 (bench/bench_wgmma_probe.py, 0.73x cuBLAS). None where both operands
  do not stage (the core reads nothing else) or where the grid would leave multiprocessors idle: a smaller core's
  tiles fill them better."""
  ids = [(k.axes[i].arg[0], k.axes[i].arg[1]) for i in mn]
  red_at = [i for i, x in enumerate(k.kinds()) if x is AxisType.REDUCE]
  if (at := _k_loop(k)) is not None and (last := max(red_at, key=lambda i: k.axes[i].arg[0])) != at:
    try: k.apply_opt(Opt(OptOps.SWAP, at, last))  # the k loop innermost, as in _tensor_core_tiles
    except KernelOptError: return None
  m_at = axis_of(k, ids[0])
  if k.sizes()[m_at] % 2 == 0: k.apply_opt(Opt(OptOps.LOCAL, m_at, 2))
  if prod(s for s, kind in zip(k.sizes(), k.kinds()) if kind is AxisType.LOOP) < k.renderer.gpu_threads // SM_THREADS: return None
  m_loop, grid = axis_of(k, ids[0]), sum(kind is AxisType.LOOP for kind in k.kinds())
  if k.kinds()[m_loop] is AxisType.LOOP and grid < len(k.renderer.global_max) and k.sizes()[m_loop] % RASTER_GROUP == 0 and k.sizes()[m_loop] > RASTER_GROUP:
    k.apply_opt(Opt(OptOps.RASTER, m_loop, RASTER_GROUP))
  bufs = sorted({u.arg[0] for x in (k.tc_tile.plan.a, k.tc_tile.plan.b) for u in x.toposort if u.op is Ops.DEFINE_GLOBAL})
  if len(bufs) != 2 or (at := _k_loop(k)) is None or k.sizes()[at] % 4: return None
  for buffers in (4, 3, 2, 1):
    if buffers > 1 and k.sizes()[at] // 4 < max(PIPE_MIN_STEPS, buffers): continue
    try: tiled = k.copy().apply_opts([Opt(OptOps.UNROLL, at, 4), *([Opt(OptOps.PIPE, at, buffers)] if buffers > 1 else []), *[Opt(OptOps.STAGE, at, b) for b in bufs]])
    except KernelOptError: continue
    if len(tiled.tc_tile.staged) == 2: return tiled
  return None

def _tensor_core_tiles(k: Kernel, mn: list[int]) -> Kernel:
  """After OptOps.TC: a warp's register tile of 4 x 8 fragments (64 x 64 outputs: each A fragment serves 8 B
  fragments), 2 x 2 warps a block, four k-steps a loop, and both operands' block tiles staged in local memory once per
  loop step (docs/design/0026). 8192^3 float16 on an H100: 39.0 TFLOP/s with 2 x 4 fragments and one k-step unstaged,
  76.5 with this register tile, 217 staged, 268 with four k-steps a stage."""
  def k_loop() -> int | None:  # the core's k loop among the kernel's axes now
    return next((i for i, x in enumerate(k.kinds()) if x is AxisType.REDUCE and k.axes[i] in k.tc_tile.where("k").toposort), None)
  def apply(op: OptOps, at: int, amounts) -> int:
    for a in amounts:
      try: k.apply_opt(Opt(op, at, a)); return a
      except KernelOptError: pass
    return 1
  # the k loop innermost among the reduces (a conv's channels inside its window loops): its operand tiles are then the
  # same for every step of the loops outside it, so they can be staged
  red_at = [i for i, x in enumerate(k.kinds()) if x is AxisType.REDUCE]
  if (at := k_loop()) is not None and (last := max(red_at, key=lambda i: k.axes[i].arg[0])) != at:
    apply(OptOps.SWAP, at, (last,))
  ids = [(k.axes[i].arg[0], k.axes[i].arg[1]) for i in mn]
  ups = [apply(OptOps.UPCAST, axis_of(k, ident), [a for a in amounts if k.sizes()[axis_of(k, ident)] % a == 0])
         for ident, amounts in zip(ids, ((4, 2), (8, 4, 2)))]
  # where n takes fewer than 8 fragments (a conv's 56-pixel row is 7), the rest of the tile comes from another output
  # axis along which A stays still and B moves (the conv's rows: each weight fragment serves 8 rows; BEAM found it,
  # 64x128x56² float16 on an H100: 61 -> 155 TFLOP/s)
  if ups[1] < 8:
    n_axes = {axis_of(k, ident) for ident in ids}
    more = [i for i, x in enumerate(k.kinds()) if x is AxisType.LOOP and i not in n_axes and
            k.axes[i] not in k.tc_tile.plan.a.toposort and k.axes[i] in k.tc_tile.plan.b.toposort]
    for i in reversed(more):
      if apply(OptOps.UPCAST, i, [a for a in (8 // ups[1], 4 // ups[1], 2 // ups[1]) if a > 1 and k.sizes()[i] % a == 0]) > 1: break
  # 2 x 2 warps a block, or 2 x 4 (a 128 x 256 tile: a quarter less L2 traffic per mma, which bounds an 8192^3 float16
  # product: ncu, H100, L2 93.8% busy at 318 TFLOP/s) where the grid still runs WIDE_TILE_WAVES blocks a multiprocessor
  sms = k.renderer.gpu_threads // SM_THREADS
  for ident, wide in zip(ids, (2, 4)):
    at, blocks = axis_of(k, ident), prod(s for s, kind in zip(k.sizes(), k.kinds()) if kind is AxisType.LOOP)
    apply(OptOps.LOCAL, at, [a for a in (wide, 2) if k.sizes()[at] % a == 0 and (a == 2 or blocks // a >= WIDE_TILE_WAVES * sms)])
  # blocks launched together walk RASTER_GROUP rows of m tiles before n moves on: their operand tiles then overlap in
  # L2 (a square-ish working set of ~132 blocks), not one row of A tiles against every column of B
  # (only where the group is a grid dimension of its own: a batched product's batch loop would otherwise stay a loop)
  m_loop, grid = axis_of(k, ids[0]), sum(kind is AxisType.LOOP for kind in k.kinds())
  if k.kinds()[m_loop] is AxisType.LOOP and grid < len(k.renderer.global_max):
    apply(OptOps.RASTER, m_loop, [g for g in (RASTER_GROUP,) if k.sizes()[m_loop] % g == 0 and k.sizes()[m_loop] > g])
  bufs = sorted({u.arg[0] for x in (k.tc_tile.plan.a, k.tc_tile.plan.b) for u in x.toposort if u.op is Ops.DEFINE_GLOBAL})
  # the operands' tiles in several buffers (PIPE), each step's copies landing while earlier steps' mma run, where the
  # k loop runs PIPE_MIN_STEPS steps or more (its first fills are not overlapped: a conv's 2 channel steps per window
  # position ran 165 -> 145 TFLOP/s) and the tiles fit: the most k-steps a stage, then the most buffers. 8192^3
  # float16 (bench/bench_gpu_tc.py): H200 251 TFLOP/s one buffer of 4 k-steps, 303 two of 2, 344 two of 4; H100 316
  # two of 4, 327 three of 4
  if (at := k_loop()) is not None:
    for unroll, buffers in ((4, 3), (4, 2), (2, 3), (2, 2)):
      if k.sizes()[at] % unroll or k.sizes()[at] // unroll < max(PIPE_MIN_STEPS, buffers): continue
      try: piped = k.copy().apply_opts([Opt(OptOps.UNROLL, at, unroll), Opt(OptOps.PIPE, at, buffers), *[Opt(OptOps.STAGE, at, b) for b in bufs]])
      except KernelOptError: continue
      if len(piped.tc_tile.staged) == len(bufs): return piped
  if (at := k_loop()) is not None: apply(OptOps.UNROLL, at, [a for a in (4, 2) if k.sizes()[at] % a == 0])
  if (at := k_loop()) is not None:  # each operand whose block tile stages (B's does not where rows are upcast)
    for buf in bufs: apply(OptOps.STAGE, at, [buf])
  return k

WIDE_TILE_WAVES = 4  # blocks a multiprocessor the grid must keep for a warp tile twice as wide along n
RASTER_GROUP = 16    # m tiles a group of consecutive blocks walks (RASTER)
PIPE_MIN_STEPS = 4  # k-loop steps a pass below which double-buffered tiles do not pay for their unoverlapped first fill

def _transposed_axis(k: Kernel, loads: list[UOp], loops: list[int], contig_out: int) -> int | None:
  """The output loop along which every load that moves with the output's contiguous loop `contig_out` is contiguous
  instead, where no load is contiguous along `contig_out` (a copy into another layout); else None."""
  rngs = k.axes
  moving = [l for l in loads if stride_of(l.src[1], rngs[contig_out]) not in (0, 1)]
  if not moving or any(stride_of(l.src[1], rngs[contig_out]) == 1 for l in loads): return None
  return next((i for i in loops if i != contig_out and all(stride_of(l.src[1], rngs[i]) == 1 for l in moving)), None)

def gpu_opts(k: Kernel) -> Kernel:
  """Opts for a target whose output loops become blocks and threads: neighbouring threads must touch neighbouring
  addresses (a warp's loads then coalesce into few memory transactions), and a block needs enough threads to hide
  memory latency. Three shapes of kernel:
  - matmul-like (an input that stays still along some output axis, another that moves): a 16 x 16 block of threads,
    each a register tile of `upcast_width` x `upcast_width` outputs, so each loaded value serves a tile row;
  - a reduce whose loads walk one of its axes contiguously (a row sum, softmax, a dot product): `upcast_width`
    consecutive elements per thread, and a block of threads shares each output (GROUP: thread t sums elements t, t + T,
    ..., then the block combines its partials through local memory);
  - everything else (elementwise, a column reduce): `upcast_width` consecutive outputs per thread along the contiguous
    output axis, and threads side by side along it (a column reduce's threads each own a column: their loads in
    one step are neighbours).
  An axis that no amount divides keeps fewer threads; an opt the renderer refuses is skipped."""
  width, sink = k.renderer.upcast_width, k.sink
  serial = serial_ranges(sink)
  def axes(kind: AxisType) -> list[int]: return [i for i, r in enumerate(k.axes) if r.arg[1] is kind and r not in serial]
  def apply(op: OptOps, i: int, amounts) -> int:
    """The first amount (largest first) that divides what is left of axis i (as numbered before any opt: a split
    leaves its kind to one part, whose range id extends the original's) and that the kernel takes; 1 if none."""
    at = pos(i)
    for a in amounts:
      if (a > 1 or op is OptOps.ROW) and k.sizes()[at] % a == 0:
        try: k.apply_opt(Opt(op, at, a)); return a
        except KernelOptError: pass
    return 1
  def pos(i: int) -> int: return axis_of(k, ids[i])
  def powers(n: int) -> list[int]: return [1 << j for j in range(n.bit_length() - 1, 0, -1)]
  stores = [u for u in sink.toposort if u.op is Ops.STORE]
  loads = [u.src[0] for u in sink.toposort if u.op is Ops.LOAD]
  if not stores: return k
  out_idx, rngs = stores[0].src[0].src[1], k.axes
  ids = [(r.arg[0], r.arg[1]) for r in rngs]
  loops, reduces = axes(AxisType.LOOP), axes(AxisType.REDUCE)
  red_rngs = {rngs[i] for i in reduces}
  in_reduce = [l for l in loads if red_rngs & set(l.src[1].toposort)]
  def strides(i: int, ls: list[UOp]) -> list[int | None]: return [stride_of(l.src[1], rngs[i]) for l in ls]
  contig_out = next((i for i in reversed(loops) if stride_of(out_idx, rngs[i]) == 1), None)
  reuse = [i for i in loops if in_reduce and 0 in strides(i, in_reduce) and any(s != 0 for s in strides(i, in_reduce))]
  walked = next((i for i in reversed(reduces) if 1 in (st := strides(i, in_reduce)) and set(st) <= {0, 1}), None)
  if k.renderer.tensor_cores and (merged := _merged_for_tc(k)) is not None:
    before = [(r.arg[0], r.arg[1]) for r in merged.axes]
    if (tiled := _on_tensor_core(merged, lambda t, mn: [axis_of(t, before[i]) for i in mn])) is not None: return tiled
  if k.renderer.tensor_cores and (tiled := _on_tensor_core(k, lambda t, mn: [axis_of(t, ids[i]) for i in mn])) is not None: return tiled
  # a row kernel (softmax, layer norm: reduces computed once per row beside the row's outputs): a block per row, its
  # threads sharing the reduces and the output row; a grid dimension per output would compute the reduces again
  if (row := next((i for i in reversed(loops) if row_reduces(sink, rngs[i])), None)) is not None:
    # `width` neighbours a thread (vector loads): the output row and each reduce tied to it are split alike, so their
    # extents stay equal and ROW still ties them
    if k.sizes()[row] % width == 0:
      apply(OptOps.UPCAST, row, (width,))
      for x in row_reduces(sink, rngs[row]): apply(OptOps.UNROLL, rngs.index(x), (width,))
    n = k.sizes()[pos(row)]
    # the most threads up to a block's that divide the row, whole warps first (1000: 250 threads; a prime: one)
    tied = [(x.arg[0], x.arg[1]) for x in row_reduces(sink, rngs[row])]
    apply(OptOps.ROW, row, sorted((a for a in range(1, min(n, BLOCK_THREADS) + 1) if n % a == 0), key=lambda a: (a % 32 == 0, a), reverse=True))
    return _row_in_registers(k, tied)
  if len(reuse) >= 2 and reduces and (staged := _staged_tiles(k, ids[reuse[-2]], ids[reuse[-1]], ids[reduces[-1]],
                                                             sorted({l.src[0].arg[0] for l in in_reduce}))) is not None:
    return staged
  if len(reuse) >= 2:
    # an axis no register tile and block divides (GPT-2's 50257 logits) is padded to one that does, where it wastes little
    for i in reuse[-2:]:
      if (n := k.sizes()[pos(i)]) % (width * TILE_THREADS) and -n % (width * TILE_THREADS) <= n // 8:
        try: k.apply_opt(Opt(OptOps.PADTO, pos(i), width * TILE_THREADS))
        except KernelOptError: pass
    for i in reuse[-2:]: apply(OptOps.UPCAST, i, (width, 2))
    # `width` steps of the reduce per loop: vector loads where the reduce walks an input (a Linear's x @ W.T walks both)
    if reduces: apply(OptOps.UNROLL, reduces[-1], (width, 2))
    for i in reuse[-2:]: apply(OptOps.LOCAL, i, powers(TILE_THREADS))
    # too few outputs to keep the GPU busy (a Linear on 128 tokens: 6144 threads' register tiles): a block's threads
    # split the reduce as well (GROUP), each summing every g-th step, until the grid holds half the threads it can run
    if reduces and (need := -(-k.renderer.gpu_threads // 2 // running_threads(k))) > 1:
      apply(OptOps.GROUP, reduces[-1], powers(min(MAX_GROUP, 1 << (need - 1).bit_length())))
  elif walked is not None and (not reuse or len(loops) == 0):
    apply(OptOps.UNROLL, walked, (width, 2))
    apply(OptOps.GROUP, walked, powers(BLOCK_THREADS))
  elif contig_out is not None and (across := _transposed_axis(k, loads, loops, contig_out)) is not None:
    # a transposing copy (a conv's channels-last input: written along channels, read along pixels): each thread stores
    # 16 bytes along the output's contiguous axis, and a warp's threads lie along the input's, so both its reads and
    # its stores coalesce (64x128x58x58 float16 on an H100: 138 -> 68 us; a warp along the output's axis reads 2 bytes
    # a sector)
    apply(OptOps.UPCAST, contig_out, (max(width, 16 // stores[0].src[1].dtype.scalar().itemsize), width, 2))
    if k.axes[pos(across)].arg[0] < k.axes[pos(contig_out)].arg[0]:  # the input's axis innermost: its threads are lidx0
      k.apply_opt(Opt(OptOps.SWAP, pos(across), pos(contig_out)))
      across, contig_out = contig_out, across  # a swap trades the axes' ids, by which `pos` finds them
    n = k.sizes()[pos(across)]
    apply(OptOps.LOCAL, across, [a for a in (64, 32, 16) if n % a == 0] or ([n] if n <= BLOCK_THREADS // 2 else []))
    threads = prod(s for s, t in zip(k.sizes(), k.kinds()) if t is AxisType.LOCAL)
    apply(OptOps.LOCAL, contig_out, powers(max(1, BLOCK_THREADS // threads)))
  elif contig_out is not None:
    # one vector a thread (more threads, not more work a thread, hide memory latency: gelu over 2^28 floats on an H100
    # 0.711 ms with 4 floats a thread, 0.842 with 8, 1.29 with 16), while a warp's worth of threads is left (a tensor
    # of 8 takes 8 threads, not one thread of 8)
    apply(OptOps.UPCAST, contig_out, [a for a in (width, 2) if k.sizes()[pos(contig_out)] // a >= 32])
    apply(OptOps.LOCAL, contig_out, powers(BLOCK_THREADS))
  # a block still short of threads takes them from the loop axes, innermost first (a 7 x 7 image's rows)
  for i in reversed(loops):
    if (threads := prod(s for s, t in zip(k.sizes(), k.kinds()) if t in (AxisType.LOCAL, AxisType.GROUP))) >= BLOCK_THREADS // 4: break
    apply(OptOps.LOCAL, i, [a for a in powers(BLOCK_THREADS // threads) + [7, 5, 3] if a * threads <= BLOCK_THREADS])
  return k
