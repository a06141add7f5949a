"""OptOps.TC: a matmul-shaped reduce computed by a warp's tensor core (docs/design/0024). The opt finds the reduce's
two operands and its output axes m and n, and rewrites the kernel: each warp holds 16 x 8 outputs as fragments, its
32 lanes one LOCAL range, the reduce a sum of WMMA ops over K / 16 steps, and whatever used the reduce a copy per
accumulator element."""
from __future__ import annotations
from dataclasses import dataclass, replace
from lucidgrad.dtype import dtypes
from lucidgrad.helpers import MATRIX_LOADS
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.symbolic import _terms
from lucidgrad.uop.pattern import UPat, PatternMatcher
from lucidgrad.codegen.lower import index_range, serial_ranges

TC_RID = 1 << 19  # the lane range's id: after every kernel axis, so it is the block's fastest thread id (threadIdx.x)

@dataclass(frozen=True)
class TCPlan:
  red: UOp      # the reduce the tensor core computes
  m: UOp        # output range along A's rows
  n: UOp        # output range along B's columns
  k: UOp        # the reduce range
  a: UOp        # A's element at (m, k), in the core's input dtype
  b: UOp        # B's element at (k, n)

def _ranges(x: UOp) -> set[UOp]: return {u for u in x.toposort if u.op is Ops.RANGE}

def tc_plan(sink: UOp, k: UOp, tc) -> TCPlan | str:
  """How tensor core `tc` computes the reduce over range `k`, or why it cannot."""
  reds = [u for u in sink.toposort if u.op is Ops.REDUCE and k in u.src[1:]]
  if len(reds) != 1: return f"{len(reds)} reduces loop over the axis, not one"
  red = reds[0]
  if red.arg is not Ops.ADD or red.dtype != tc.dtype_acc: return f"the reduce is not a {tc.dtype_acc} sum"
  if (body := red.src[0]).op is not Ops.MUL: return "the reduce does not sum products"
  if not all(x.op is Ops.CAST and x.src[0].dtype == tc.dtype_in for x in body.src): return f"the products are not of {tc.dtype_in} values"
  ops = [x.src[0] for x in body.src]
  deps = [_ranges(x) for x in ops]
  if not all(k in d for d in deps): return "an operand does not move with the reduce axis"
  serial = serial_ranges(sink)
  loops = [r for r in sink.toposort if r.op is Ops.RANGE and r.arg[1] is AxisType.LOOP and r not in serial]
  own = [[r for r in loops if r in deps[j] and r not in deps[1 - j]] for j in (0, 1)]
  if not own[0] or not own[1]: return "each operand needs an output axis the other does not move with"
  # n: the innermost output axis one operand alone moves with, so a C fragment's pairs of columns are neighbours
  n, bj = max(((r, j) for j in (0, 1) for r in own[j]), key=lambda c: c[0].arg[0])
  m = max(own[1 - bj], key=lambda r: r.arg[0])
  (M, N, K), sizes = tc.dims, (m.src[0].arg, n.src[0].arg, k.src[0].arg)
  if any(s % d for s, d in zip(sizes, (M, N, K))): return f"axes of {sizes} (m, n, k) do not divide into the core's {tc.dims}"
  return TCPlan(red, m, n, k, ops[1 - bj], ops[bj])

@dataclass(frozen=True)
class TCTile:
  """What staging a tensor-core kernel's operands needs after later opts have split its axes: the plan (operands as
  expressions of the original m, n, k ranges) and where each fragment's first row or column now is (`at`: "m", "n",
  "k" -> an expression of the kernel's current ranges, m_o * 16 at first), kept current by every split."""
  tc: object
  plan: TCPlan
  at: tuple[tuple[str, UOp], ...]
  staged: tuple[str, ...] = ()  # operands staged so far ("a", "b")
  stages: int = 1  # buffers each staged tile has (OptOps.PIPE): 2 lets the next step's fill overlap this step's mma
  def where(self, name: str) -> UOp: return dict(self.at)[name]
  def substitute(self, sub: dict[UOp, UOp]) -> TCTile:
    """The tile after an opt replaced the kernel's ranges (a split: r -> outer * n + inner; a swap; a pad): in where
    the fragments sit, and in the operands' other ranges (a batch, a conv's window loops)."""
    plan = replace(self.plan, a=self.plan.a.substitute(sub), b=self.plan.b.substitute(sub))
    return replace(self, plan=plan, at=tuple((n, e.substitute(sub)) for n, e in self.at))

def apply_tc(sink: UOp, plan: TCPlan, tc) -> tuple[UOp, TCTile]:
  (M, N, K), (ea, eb, ec), dt = tc.dims, tc.elements, plan.k.dtype
  m_o, n_o = (index_range(r.src[0].arg // d, AxisType.LOOP, r.arg[0] + (0,), dt) for r, d in ((plan.m, M), (plan.n, N)))
  k_o = index_range(plan.k.src[0].arg // K, AxisType.REDUCE, plan.k.arg[0] + (0,), dt)
  lane = index_range(tc.threads, AxisType.LOCAL, (TC_RID,), dt)
  def fragment(x: UOp, layout, count: int, rows: tuple, cols: tuple) -> UOp:
    """x at each element this lane holds: (range, its outer part, the core's size) for the rows and the columns."""
    def at(i):
      r, c = layout(lane, i)
      return x.substitute({rows[0]: rows[1] * rows[2] + r, cols[0]: cols[1] * cols[2] + c})
    return UOp(Ops.VECTORIZE, tc.dtype_in.vec(count), tuple(at(i) for i in range(count)))
  a = fragment(plan.a, tc.a, ea, (plan.m, m_o, M), (plan.k, k_o, K))
  b = fragment(plan.b, tc.b, eb, (plan.k, k_o, K), (plan.n, n_o, N))
  acc = tc.dtype_acc.vec(ec)
  zero = UOp(Ops.VECTORIZE, acc, tuple(UOp.const(tc.dtype_acc, 0.0) for _ in range(ec)))
  red = UOp(Ops.REDUCE, acc, (UOp(Ops.WMMA, acc, (a, b, zero), tc), *[k_o if r is plan.k else r for r in plan.red.src[1:]]), Ops.ADD)
  out: list[UOp] = []
  for i in range(ec):  # what used the reduce, once per accumulator element, at that element's row and column
    r, c = tc.c(lane, i)
    out += sink.substitute({plan.red: UOp(Ops.GEP, tc.dtype_acc, (red,), i), plan.m: m_o * M + r, plan.n: n_o * N + c}).src
  return UOp.sink(*dict.fromkeys(out)), TCTile(tc, plan, (("m", m_o * M), ("n", n_o * N), ("k", k_o * K)))

def has_tc(sink: UOp) -> bool: return any(u.op is Ops.WMMA for u in sink.toposort)

def _zero(x: UOp) -> bool: return x.op is Ops.VECTORIZE and all(s.op is Ops.CONST and s.arg == 0 for s in x.src)

def fold_into_wmma(add: UOp) -> UOp | None:
  """x + WMMA(a, b, c) is WMMA(a, b, x + c): the accumulator becomes the instruction's C operand, and an unrolled k's
  sum of WMMAs a chain of them (run after control flow, where a reduce's update is `acc + value`)."""
  for x, w in (add.src, add.src[::-1]):
    if w.op is Ops.WMMA:
      a, b, c = w.src
      return w.replace(src=(a, b, x if _zero(c) else x + c))
  return None

pm_fold_wmma = PatternMatcher([(UPat(Ops.ADD, name="add"), fold_into_wmma)])

# ---- staged operands (docs/design/0026) ----
STAGE_PAD = 8  # elements after each line of a staged tile: consecutive lines start 4 banks further on (for 32 or 128
               # element lines), so the 32 lanes of a fragment read (8 lines x 4 pairs) hit 32 different banks

def _local_part(expr: UOp, kinds: tuple) -> tuple[UOp, UOp, int] | str:
  """expr = base + local, local the terms of ranges of `kinds` (a block's own: its warps, a warp's fragments), base the
  rest (the block's place in the grid, the reduce loop); and local's largest value. A reason string where a range of
  those kinds appears other than as a plain term."""
  terms, const = _terms(expr, distribute=True)
  local, base, top = UOp.const(expr.dtype, 0), UOp.const(expr.dtype, const), 0
  for t, c in terms.items():
    if t.op is Ops.RANGE and t.arg[1] in kinds:
      local, top = local + t * c, top + c * (t.src[0].arg - 1)
    elif any(u.op is Ops.RANGE and u.arg[1] in kinds for u in t.toposort): return f"{t.op.name} of a block's range in a fragment's place"
    else: base = base + t * c
  return base, local, top

def stage_plan_tc(sink: UOp, tile: TCTile, kr: UOp, operand: str, shared_max: int) -> tuple | str:
  """How STAGE at reduce loop `kr` stages `operand` ("a" or "b") of a tensor-core kernel, or why it cannot: the block's
  tile of the operand for one step of `kr` (rows: its m or n extent, columns: its k extent), and the base and local
  parts of where the block's fragments sit."""
  tc, plan = tile.tc, tile.plan
  dim, value = ("m", plan.a) if operand == "a" else ("n", plan.b)
  if operand in tile.staged: return f"operand {operand} is staged already"
  rows, ks = _local_part(tile.where(dim), (AxisType.LOCAL, AxisType.UPCAST)), _local_part(tile.where("k"), (AxisType.UNROLL,))
  if isinstance(rows, str): return rows
  if isinstance(ks, str): return ks
  if kr not in {u for u in ks[0].toposort if u.op is Ops.RANGE}: return "the axis is not the tensor core's reduce loop"
  own = {plan.m if operand == "a" else plan.n, plan.k}
  for u in value.toposort:  # the operand's other ranges must be the same for the whole block and every step of kr
    if u.op is Ops.RANGE and u not in own and (u.arg[1] in (AxisType.LOCAL, AxisType.UPCAST, AxisType.UNROLL, AxisType.GROUP) or
                                               (u.arg[1] is AxisType.REDUCE and u.arg[0] > kr.arg[0])):
      return f"the operand moves with a {u.arg[1].name} range inside the block or the loop"
  M, N, K = tc.dims
  n_rows, n_k = rows[2] + (M if operand == "a" else N), ks[2] + K
  size = (n_rows * n_k + STAGE_PAD * max(n_rows, n_k)) * tc.dtype_in.itemsize * tile.stages  # padded along either axis (stage_tc)
  if tc.shared_operands:  # swizzled tiles (stage_tc): whole 128-byte rows along the contiguous axis, 1024-byte aligned
    if tc.dtype_in.itemsize != 2: return "the swizzled tiles hold 16-bit elements"
    if _k_fast(value, plan, operand):
      if n_k % SWIZZLE_ELEMS: return f"a k extent of {n_k} a step is no whole number of {SWIZZLE_ELEMS}-element swizzle rows"
    elif n_rows % SWIZZLE_ELEMS: return f"{n_rows} rows a tile are no whole number of {SWIZZLE_ELEMS}-element swizzle rows"
    size = n_rows * n_k * tc.dtype_in.itemsize * tile.stages + SWIZZLE_ALIGN
  other = sum(u.arg[1] * u.dtype.itemsize for u in sink.toposort if u.op is Ops.DEFINE_LOCAL)
  if size + other > shared_max: return f"{size + other} bytes of tiles pass the renderer's {shared_max}"
  return dim, value, rows, ks, n_rows, n_k

def stage_tc(sink: UOp, tile: TCTile, kr: UOp, operand: str, shared_max: int) -> tuple[UOp, TCTile]:
  """STAGE on a tensor-core kernel: the block's tile of `operand` for one step of `kr` is computed once into local
  memory (padded by STAGE_PAD after each line), the block's threads filling it together, 16 bytes a thread a step where
  the operand is contiguous along the fill's fast axis; each fragment element then reads the tile. The tile holds the
  operand's value, whatever it is (a cast, a conv's gated window read).
  One buffer (tile.stages 1): the fill sits between a barrier at the top of each step and one after it. S buffers
  (OptOps.PIPE, docs/design/0026 addendum): steps 0..S-2 are filled before the loop; each step, after one barrier
  (every thread done with step k-1's buffer, step k's fill landed), fills step k+S-1's tile into that buffer and reads
  step k's -- the fills are copies the GPU runs in the background (cp.async) while the mma runs."""
  from lucidgrad.codegen.opt.kernel import STAGE_RID
  tc, plan = tile.tc, tile.plan
  dim, value, (row_base, row_local, _), (k_base, k_local, _), n_rows, n_k = stage_plan_tc(sink, tile, kr, operand, shared_max)
  dt, true = kr.dtype, UOp.const(dtypes.bool, True)
  rowr = plan.m if operand == "a" else plan.n
  # the tile is laid out like the operand's memory, its contiguous axis contiguous: the fill then reads and writes 16
  # bytes a thread (a transposing fill's 2-byte writes all hit one bank); fragments read pairs of k values as one
  # 4-byte word where k is that axis, else one element at a time
  loads = _global_loads(value)
  k_fast = _k_fast(value, plan, operand)
  pitch = (n_k if k_fast else n_rows) + STAGE_PAD
  def addr(row: UOp, kk: UOp) -> UOp: return row * pitch + kk if k_fast else kk * pitch + row
  number = len({u for u in sink.toposort if u.op is Ops.DEFINE_LOCAL})
  tile_elems, S = (n_rows if k_fast else n_k) * pitch, tile.stages
  if tc.shared_operands:
    # the layout wgmma reads (PTX ISA, "shared memory matrix layout", 128-byte swizzle): 128-byte rows along the
    # contiguous axis, in atoms of 64 elements of it; where (row, kk) would sit unswizzled is `linear`, and the 16-byte
    # chunk bits of every address are XORed with its row-in-8 bits (the hardware does the same to the addresses it
    # computes from a descriptor, so fills write through `addr` and descriptors name `linear` places)
    tile_elems = n_rows * n_k
    def linear(row: UOp, kk: UOp) -> UOp:
      return (kk // SWIZZLE_ELEMS) * (n_rows * SWIZZLE_ELEMS) + row * SWIZZLE_ELEMS + kk % SWIZZLE_ELEMS if k_fast else \
        (row // SWIZZLE_ELEMS) * (n_k * SWIZZLE_ELEMS) + kk * SWIZZLE_ELEMS + row % SWIZZLE_ELEMS
    def addr(row: UOp, kk: UOp) -> UOp: return swizzled(linear(row, kk))
  local = UOp(Ops.DEFINE_LOCAL, tc.dtype_in.as_ptr(), (), (number, S * tile_elems))
  # the fill: thread t of T takes elements (c*T + t)*V + v, along the tile's contiguous axis
  threads = sorted({u for u in sink.toposort if u.op is Ops.RANGE and u.arg[1] is AxisType.LOCAL}, key=lambda u: u.arg[0])
  tid, T = UOp.const(dt, 0), 1
  for t in reversed(threads): tid, T = tid + t * T, T * t.src[0].arg
  fast = n_k if k_fast else n_rows
  V = next(v for v in (16 // tc.dtype_in.itemsize, 4, 2, 1) if fast % v == 0 and (n_rows * n_k) % (T * v) == 0) if (n_rows * n_k) % T == 0 else 1
  if tc.shared_operands and V != 16 // tc.dtype_in.itemsize:  # a swizzled chunk is 16 bytes: its values stay neighbours only whole
    from lucidgrad.codegen import KernelOptError
    raise KernelOptError(f"a swizzled tile of {n_rows} x {n_k} is not filled in whole 16-byte chunks by {T} threads")
  steps = -(-(n_rows * n_k) // (T * V))
  def fill(step: UOp, slot: UOp | None, order: UOp | None, copy: int) -> tuple[UOp, ...]:
    """The stores that fill buffer `slot` with the tile of reduce step `step`, their reads after `order`: the END of
    the copy loop, or the stores themselves where one pass of the threads fills the tile."""
    c = index_range(steps, AxisType.COPY, (STAGE_RID + number, copy), dt) if steps > 1 else UOp.const(dt, 0)
    at = value if order is None else value.substitute({ld: ld.replace(src=(ld.src[0], order)) for ld in loads})
    k_at = k_base.substitute({kr: step})
    stores, vals = [], []
    for v in range(V):
      flat = (c * T + tid) * V + v
      gate = true if steps * T * V == n_rows * n_k else flat < n_rows * n_k
      def place(f: UOp) -> tuple[UOp, UOp]: return (f // n_k, f % n_k) if k_fast else (f % n_rows, f // n_rows)
      # a gated-off slot past the tile reads the tile's first element instead (its store is off): never past the operand
      rr, kk = place(flat if gate is true else gate.where(flat, flat.const_like(0)))
      vals.append(at.substitute({rowr: row_base + rr, plan.k: k_at + kk}))
      stores.append(UOp(Ops.STORE, dtypes.void, (UOp(Ops.INDEX, local.dtype, (local, _in_buffer(addr(*place(flat)), slot), gate)), vals[-1])))
    if V > 1:  # the V values are neighbours in the tile too: one vector store
      index = stores[0].src[0]
      stores = [UOp(Ops.STORE, dtypes.void, (index.replace(dtype=tc.dtype_in.vec(V).as_ptr()), UOp(Ops.VECTORIZE, tc.dtype_in.vec(V), tuple(vals))))]
    return (UOp(Ops.END, dtypes.void, (c, *stores)),) if steps > 1 else tuple(stores)
  if S == 1:
    before = UOp(Ops.BARRIER, dtypes.void, (kr,))  # the fill's reads start after every thread is done with the tile's last contents
    order, slot = (UOp(Ops.BARRIER, dtypes.void, fill(kr, None, before, 0)),), None
  else:
    # steps 0..S-2 into buffers 0..S-2 before the loop (after a barrier inside the loops around it: a conv's window
    # loops, whose last pass may still read those buffers), each step's copies one commit group; at the top of each
    # step one barrier that waits until at most S-2 groups are in flight (step k's has landed, and every thread is done
    # with step k-1's buffer); then step k+S-1's fill into that buffer, committed, and the fragments read buffer k % S.
    # A second operand's fills join the first's groups and barrier, so a step is one group whichever operand it fills
    def fix(u: UOp, done: dict) -> UOp: return u.substitute(done) if done else u
    olds = {u.arg[1]: u for u in sink.toposort if u.op is Ops.BARRIER and isinstance(u.arg, tuple) and u.arg[0] == "commit"}
    old_top = next((u for u in sink.toposort if u.op is Ops.BARRIER and isinstance(u.arg, tuple) and u.arg[0] == "wait"), None)
    outer = tuple(sorted({u for u in value.toposort if u.op is Ops.RANGE and u.arg[1] is AxisType.REDUCE and u is not plan.k}, key=lambda u: u.arg[0]))
    done: dict[UOp, UOp] = {}
    prev = UOp(Ops.BARRIER, dtypes.void, outer) if outer else None
    for step in range(S - 1):
      ends = fill(kr.const_like(step), kr.const_like(step * tile_elems) if step else None, prev, step)
      prev = UOp(Ops.BARRIER, dtypes.void, (*(fix(x, done) for x in olds[step].src), *ends) if step in olds else ends, ("commit", step))
      if step in olds: done[olds[step]] = prev
    before = UOp(Ops.BARRIER, dtypes.void, (kr, prev), ("wait", S - 2))
    if old_top is not None: done[old_top] = before
    n = kr.src[0].arg
    # the last S-1 steps fill the last tile again, into buffers no later step reads: never past the operand
    ahead = kr.alu(Ops.CMPLT, kr.const_like(n - S + 1)).where(kr + (S - 1), kr.const_like(n - 1))
    ends = fill(ahead, ((kr + (S - 1)) % S) * tile_elems, before, S - 1)
    commit = UOp(Ops.BARRIER, dtypes.void, (*(fix(x, done) for x in olds[S - 1].src), *ends) if S - 1 in olds else ends, ("commit", S - 1))
    if S - 1 in olds: done[olds[S - 1]] = commit
    if done: sink = sink.substitute(done)
    order, slot = (before, commit), (kr % S) * tile_elems
  src = 0 if operand == "a" else 1
  if tc.shared_operands:
    # the instruction reads the operand itself, through a descriptor of where its first element sits (unswizzled) and
    # the strides between its 8-row groups (SBO) and, along a contiguous M or N, between 64-element atoms (LBO)
    elem = tc.dtype_in.itemsize
    lbo, sbo = (16, 8 * SWIZZLE_ELEMS * elem) if k_fast else (n_k * SWIZZLE_ELEMS * elem, 8 * SWIZZLE_ELEMS * elem)
    index = UOp(Ops.INDEX, local.dtype, (local, _in_buffer(linear(row_local, k_local), slot), true))
    desc = UOp(Ops.LOAD, dtypes.uint64, (index, *order), ("desc", not k_fast, lbo, sbo))
    wmmas = {w: w.replace(src=tuple(desc if j == src else x for j, x in enumerate(w.src))) for w in sink.toposort if w.op is Ops.WMMA}
    return sink.substitute(wmmas), replace(tile, staged=tile.staged + (operand,))
  # each fragment element reads the tile: A's (row m, column k), B's (row k, column n) -- B's tile is stored n-major
  lane = next(u for u in sink.toposort if u.op is Ops.RANGE and u.arg[0] == (TC_RID,))
  layout, count = (tc.a, tc.elements[0]) if operand == "a" else (tc.b, tc.elements[1])
  def at(i: int) -> UOp:
    r, c_ = layout(lane, i)
    row, kk = (r, c_) if operand == "a" else (c_, r)
    return UOp(Ops.LOAD, tc.dtype_in, (UOp(Ops.INDEX, local.dtype, (local, _in_buffer(addr(row_local + row, k_local + kk), slot), true)), *order))
  frag = matrix_load(local, lane, count, k_fast, lambda row, kk: addr(row_local + row, k_local + kk), slot, order) if MATRIX_LOADS and \
    tc.dtype_in.itemsize == 2 and count in (4, 8) else UOp(Ops.VECTORIZE, tc.dtype_in.vec(count), tuple(at(i) for i in range(count)))
  wmmas = {w: w.replace(src=tuple(frag if j == src else x for j, x in enumerate(w.src))) for w in sink.toposort if w.op is Ops.WMMA}
  return sink.substitute(wmmas), replace(tile, staged=tile.staged + (operand,))

SWIZZLE_ELEMS = 64     # 16-bit elements in one 128-byte row of a swizzled tile (WarpgroupCore)
SWIZZLE_ALIGN = 1024   # bytes: the swizzle's pattern repeats every 8 rows, and a tile starts on a repeat

def swizzled(e: UOp) -> UOp:
  """The 128-byte swizzle of element index `e` of a 16-bit tile that starts 1024-byte aligned: the 16-byte chunk bits
  of its byte address (4-6, the element's 3-5) XOR its row-in-8 bits (7-9, the element's 6-8)."""
  return e.alu(Ops.XOR, (e // 64) % 8 * 8)

def _global_loads(value: UOp) -> list[UOp]:
  return [u for u in value.toposort if u.op is Ops.LOAD and u.src[0].op is Ops.INDEX and u.src[0].src[0].op is Ops.DEFINE_GLOBAL]

def _k_fast(value: UOp, plan: TCPlan, operand: str) -> bool:
  """Whether operand's staged tile runs contiguously along k (as its memory does), else along its rows (m or n)."""
  from lucidgrad.codegen.opt.kernel import stride_of
  loads, rowr = _global_loads(value), plan.m if operand == "a" else plan.n
  return any(stride_of(ld.src[0].src[1], plan.k) == 1 for ld in loads) or not any(stride_of(ld.src[0].src[1], rowr) == 1 for ld in loads)

def _in_buffer(where: UOp, slot: UOp | None) -> UOp:
  """A place in a staged tile, in the buffer that starts at `slot` (None: the tile's only buffer)."""
  return where if slot is None else slot + where

def matrix_load(local: UOp, lane: UOp, count: int, k_fast: bool, addr, slot: UOp | None, order: tuple) -> UOp:
  """A fragment of `count` 16-bit elements read from a staged tile as count/2 8x8 matrices, one 32-bit register each:
  the warp's lanes 8j..8j+7 give the addresses of matrix j's rows, and lane L receives row L/4, columns 2(L%4) and
  2(L%4)+1 of each (`trans`: column L/4, rows 2(L%4) and 2(L%4)+1) -- PTX's ldmatrix. A's registers are the matrices
  (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15); B's (k 0-7), (k 8-15), n 0-7: the core's layouts
  (renderer.TensorCore). A tile with k contiguous has the operand's rows as its rows; one with them contiguous is read
  transposed. `addr(row, k)` is an element's place in the tile. The PYTHON emulator gathers the same elements."""
  regs, j, r = count // 2, (lane // 8) % (count // 2), lane % 8  # lanes past the last matrix repeat its addresses (unused)
  row, kk = ((j % 2) * 8, (j // 2) * 8) if count == 8 else (None, j * 8)  # the matrix's first row and k of the fragment
  where = (addr(r if row is None else row + r, kk) if k_fast else addr(0 if row is None else row, kk + r))
  index = UOp(Ops.INDEX, local.dtype.base().vec(count).as_ptr(), (local, _in_buffer(where, slot), UOp.const(dtypes.bool, True)))
  return UOp(Ops.LOAD, local.dtype.base().vec(count), (index, *order), ("matrix", regs, not k_fast))

def pair_matrix_loads(sink: UOp) -> UOp:
  """Two-register fragment reads (B's ldmatrix.x2) of one tile, at the same step, whose row addresses differ by a
  constant, as one four-register read (x4): lanes 16-31 give the second fragment's rows, which an x2 leaves unused, so
  the warp issues half as many B reads (after expansion, which makes the fragments of a register tile)."""
  loads = [u for u in sink.toposort if u.op is Ops.LOAD and isinstance(u.arg, tuple) and u.arg[0] == "matrix" and u.arg[1] == 2]
  if len(loads) < 2: return sink
  lane = next(u for u in sink.toposort if u.op is Ops.RANGE and u.arg[0] == (TC_RID,))
  def split(i: UOp) -> tuple[UOp, int]:  # an index as (the rest, its constant term)
    return (i.src[0], i.src[1].arg) if i.op is Ops.ADD and i.src[1].op is Ops.CONST else (i, 0)
  groups: dict[tuple, list[tuple[int, UOp]]] = {}
  for ld in loads:
    local, where, gate = ld.src[0].src
    rest, c = split(where)
    groups.setdefault((local, rest, gate, ld.src[1:], ld.arg), []).append((c, ld))
  sub = {}
  for (local, rest, gate, order, arg), members in groups.items():
    members.sort(key=lambda m: m[0])
    for (c1, first), (c2, second) in zip(members[0::2], members[1::2]):
      where = rest + c1 + (lane // 16) * (c2 - c1) if c1 else rest + (lane // 16) * c2
      index = UOp(Ops.INDEX, local.dtype.base().vec(8).as_ptr(), (local, where, gate))
      both = UOp(Ops.LOAD, first.dtype.scalar().vec(8), (index, *order), ("matrix", 4, arg[2]))
      for half, ld in enumerate((first, second)):
        sub[ld] = UOp(Ops.VECTORIZE, ld.dtype, tuple(UOp(Ops.GEP, ld.dtype.scalar(), (both,), 4 * half + e) for e in range(4)))
  return sink.substitute(sub) if sub else sink
