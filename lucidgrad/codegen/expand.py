"""Turning split ranges into code: UNROLL ranges are summed out of their REDUCE, UPCAST ranges copy the stores once per
value, LOOP/LOCAL ranges become thread ids on GPU-style targets; then runs of loads and stores at consecutive addresses
are grouped into vector loads and stores."""
from __future__ import annotations
from collections import defaultdict
import functools, itertools
from lucidgrad.dtype import dtypes, signed_int_like
from lucidgrad.helpers import DEBUG
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.pattern import UPat, PatternMatcher, timed, graph_rewrite
from lucidgrad.uop.symbolic import _terms, _build_sums, _range_of
from lucidgrad.codegen.lower import serial_ranges

_SUM_OPS = frozenset({Ops.ADD, Ops.SUB, Ops.MUL, Ops.NEG})

# ops that C (GCC vector extensions) and the interpreter apply lane by lane to vector values
VECTOR_ALU = {Ops.ADD, Ops.SUB, Ops.MUL, Ops.FDIV, Ops.NEG, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR}

def _vector_reduce(op: Ops, dt) -> bool:
  """Whether a reduce of `op` over lanes of dt may keep a vector accumulator: the lane-wise ALU ops, and MAX, which
  codegen builds as a vector compare and select (max-reducing a row lane by lane ran at 0.9 GB/s, a chain of selects)."""
  return (op in VECTOR_ALU or (op is Ops.MAX and _plain(dt))) and not dt.is_bool()

def _combine(op: Ops, vals: list[UOp]) -> UOp:
  """A balanced tree, so the unrolled lanes do not form one long dependency chain."""
  while len(vals) > 1: vals = [vals[i].alu(op, vals[i+1]) if i + 1 < len(vals) else vals[i] for i in range(0, len(vals), 2)]
  return vals[0]

def expand_unroll(red: UOp, chain: bool = False) -> UOp | None:
  """Unrolled lanes of a sum, product or max accumulate side by side in a vector and are combined once, after the
  loop; other reduces combine the lanes inside the loop.
  `chain` (GPU-style targets, whose lanes are registers): a reduce that upcast lanes copy anyway (a matmul's register
  tile) has its independent accumulators already, and a vector accumulator per copy multiplies its registers by the
  unroll (a 4 x 4 tile unrolled by 4: 64 registers, not 16; an 8 x 8 tile spilled). Its lanes fold into one
  accumulator in order instead (linearize.accumulate), each product a multiply-add: the sum rounds exactly as the
  loop without the unroll does."""
  unrolls = [r for r in red.src[1:] if r.op is Ops.RANGE and r.arg[1] is AxisType.UNROLL]
  if not unrolls: return None
  vals = [red.src[0]]
  for u in unrolls: vals = [v.substitute({u: UOp.const(u.dtype, c)}) for v in vals for c in range(u.src[0].arg)]
  rest = [r for r in red.src[1:] if r not in unrolls]
  if not rest: return _combine(red.arg, vals)
  if chain and red.dtype.count == 1 and any(r.op is Ops.RANGE and r.arg[1] is AxisType.UPCAST and r.src[0].arg > 1 for r in red.src[0].toposort):
    return red.replace(src=(UOp(Ops.VECTORIZE, red.dtype.vec(len(vals)), tuple(vals)), *rest))
  # more lanes than a vector accumulator takes (a dot product's 16 lanes, then the steps over a quant block's halves,
  # opt/__init__.py _block_steps): the innermost unroll's lanes are the accumulator, the outer copies summed into each
  # lane inside the loop
  n = len(vals) if len(vals) in (2, 4, 8, 16) else unrolls[-1].src[0].arg if len(unrolls) > 1 else 0
  if _vector_reduce(red.arg, red.dtype) and red.dtype.count == 1 and n in (2, 4, 8, 16):
    lanes = vals if len(vals) == n else [_combine(red.arg, vals[i::n]) for i in range(n)]
    acc = UOp(Ops.REDUCE, red.dtype.vec(n), (UOp(Ops.VECTORIZE, red.dtype.vec(n), tuple(lanes)), *rest), red.arg)
    return _combine(red.arg, [UOp(Ops.GEP, red.dtype, (acc,), i) for i in range(n)])
  return red.replace(src=(_combine(red.arg, vals), *rest))

pm_expand_unroll = PatternMatcher([(UPat(Ops.REDUCE, name="red"), lambda red, ctx: expand_unroll(red, chain=ctx))])

def _lane_terms(n: UOp, bit: dict[UOp, int], mask: dict[UOp, int]) -> tuple[dict[UOp, int], int] | None:
  """n as {term: coefficient} + constant where every term holding an upcast range is that range, as simplifying each
  copy of n (the ranges constants) writes it: a constant multiple of a sum holding one, (rest + u) * k, becomes
  rest * k + u * k -- rest stays one product unless it is one term -- and other terms are kept as they are. None if an
  upcast range sits deeper (under a div, a mod, a product of two ranges)."""
  terms, const = _terms(n)
  out: dict[UOp, int] = {}
  def add(t: UOp, k: int): out[t] = out.get(t, 0) + k
  for t, k in terms.items():
    if t in bit or t not in mask: add(t, k); continue
    if t.op is not Ops.MUL or t.src[1].op is not Ops.CONST or t.src[0].op not in _SUM_OPS: return None
    if (inner := _lane_terms(t.src[0], bit, mask)) is None: return None
    scale = k * t.src[1].arg
    rest = {x: kx for x, kx in inner[0].items() if x not in bit}
    if len(rest) == 1 and (kx := next(iter(rest.values()))) > 0: add(next(iter(rest)), kx * scale)
    elif rest: add(UOp(Ops.MUL, n.dtype, (_build_sums(rest, (0,), n.dtype)[0], t.src[1])), k)
    for x, kx in inner[0].items():
      if x in bit: add(x, kx * scale)
    const += scale * inner[1]
  return {t: k for t, k in out.items() if k != 0}, const

@timed("expand_upcast")
def expand_upcast(sink: UOp, max_bytes: int = 0, simplify: PatternMatcher | None = None) -> UOp:
  """Each store is copied once per value of the UPCAST ranges it depends on, the first range outermost, with those
  ranges replaced by constants. One pass over the graph: a node gets one copy per combination of the upcast ranges it
  depends on, so work shared by lanes (a row index read by every column) is built once, not once per store.
  An integer sum in which the upcast ranges are plain terms (`i*4096 + u0*512 + u1`, multiples of sums distributed)
  is not copied node by node: its lanes are the rest of the sum, built once, plus a constant each -- the form
  simplifying each copy would reach, without building and folding the copies (most of a matmul's index math).
  With `max_bytes` (the renderer's vector_bytes), the lanes of a store that group_vectors would group are grouped as
  they are built: no scalar store and index per lane (a matmul's 128 of each) is built, simplified and regrouped.
  With `simplify` (the matcher the caller simplifies the result with), each copied address (and a grouped store's gate)
  is simplified as it is built, before the loads and math on it: where a lane's address folds (a padded row's clamp that is always true there), all it
  feeds (a matmul's 16 multiplies and accumulators per row) is built once, not built and rebuilt by the caller."""
  ups = sorted({r for r in sink.find(Ops.RANGE) if r.arg[1] is AxisType.UPCAST}, key=lambda r: r.arg[0])
  if not ups: return sink
  bit = {u: 1 << i for i, u in enumerate(ups)}
  mask: dict[UOp, int] = {}           # the upcast ranges a node depends on, as bits in `ups` order
  lanes: dict[UOp, list[UOp]] = {}    # node -> its copies, one per combination of its ranges' values (product order)
  combos: dict[int, list[tuple]] = {} # mask -> those combinations
  picks: dict[tuple, list[int]] = {}  # (mask of a node, mask of a source) -> for each copy of the node, the source's copy
  def combos_of(m: int) -> list[tuple]:
    if m not in combos: combos[m] = list(itertools.product(*(range(u.src[0].arg) for u in ups if m & bit[u])))
    return combos[m]
  def picks_of(m: int, sub: int) -> list[int]:
    if (m, sub) not in picks:
      keep = [i for i, u in enumerate(u for u in ups if m & bit[u]) if sub & bit[u]]
      index = {c: j for j, c in enumerate(combos_of(sub))}
      picks[(m, sub)] = [index[tuple(c[i] for i in keep)] for c in combos_of(m)]
    return picks[(m, sub)]
  nodes = sink.toposort
  for n in nodes:
    m = bit.get(n, 0)
    for s in n.src: m |= mask.get(s, 0)
    if m: mask[n] = m
  # which nodes need copies, users first: a sum whose lanes are built from its terms does not need its sources' copies
  linear: dict[UOp, tuple[dict[UOp, int], int]] = {}
  needed = set(sink.src)
  grouped = _stores_to_group(sink, mask, bit) if max_bytes else set()
  for n in reversed(nodes):
    if n not in needed or n not in mask or n in bit: continue
    if n in grouped:  # its value's lanes are copies; its index's are the sum's base plus a constant, built only where used
      linear[n.src[0].src[1]] = _lane_terms(n.src[0].src[1], bit, mask)
      needed.update((n.src[1], n.src[0].src[2]))
      continue
    if n.op in _SUM_OPS and n.dtype.is_int() and n.dtype.count == 1 and (tc := _lane_terms(n, bit, mask)) is not None:
      linear[n] = tc
      continue
    needed.update(n.src)
  for n in nodes:
    if n not in needed or (m := mask.get(n, 0)) == 0: continue
    if n in grouped:
      terms, const = linear[n.src[0].src[1]]
      coefs = [terms.get(u, 0) for u in ups if m & bit[u]]
      offs = [const + sum(k * v for k, v in zip(coefs, c)) for c in combos_of(m)]
      vals, gates = ([lanes[s][p] for p in picks_of(m, mask[s])] if s in mask else [s] * len(offs) for s in (n.src[1], n.src[0].src[2]))
      if simplify is not None and n.src[0].src[2] in mask: gates = list(graph_rewrite(UOp.sink(*gates), simplify, name="expand upcast").src)
      lanes[n] = _grouped_store_lanes(n, {t: k for t, k in terms.items() if t not in bit}, offs, vals, gates, max_bytes)
      continue
    if n in bit: lanes[n] = [UOp.const(n.dtype, c[0]) for c in combos_of(m)]; continue
    if n in linear:
      terms, const = linear[n]
      rest = {t: k for t, k in terms.items() if t not in bit}
      coefs = [terms.get(u, 0) for u in ups if m & bit[u]]
      lanes[n] = _build_sums(rest, [const + sum(k * v for k, v in zip(coefs, c)) for c in combos_of(m)], n.dtype)
      continue
    count = len(combos_of(m))
    columns = [[lanes[s][p] for p in picks_of(m, mask[s])] if s in mask else [s] * count for s in n.src]  # each source, per copy
    if n.op is Ops.BARRIER:  # one barrier after every lane's stores, not one per lane (a group's partials of 4 lanes)
      lanes[n] = [UOp(Ops.BARRIER, n.dtype, tuple(dict.fromkeys(x for col in columns for x in col)), n.arg)] * count
      continue
    op, dt, arg = n.op, n.dtype, n.arg
    lanes[n] = [UOp(op, dt, src, arg) for src in zip(*columns)]
    if simplify is not None and op is Ops.INDEX: lanes[n] = list(graph_rewrite(UOp.sink(*lanes[n]), simplify, name="expand upcast").src)
  if DEBUG >= 6:
    print(f"expand_upcast: {len(ups)} upcast ranges, {len(linear)} sums as base + lane constant, "
          f"{sum(len(v) for n, v in lanes.items() if n not in linear and n not in bit)} nodes copied per lane")
  return UOp.sink(*dict.fromkeys(c for s in sink.src for c in (lanes[s] if s in lanes else (s,))))

@timed("ranges_to_threads")
def grid_loops(sink: UOp, global_max: tuple[int, ...]) -> list[UOp]:
  """The LOOP ranges ranges_to_threads makes block ids: the innermost, one per grid dimension while each fits that
  dimension's limit (innermost first); a scatter's serial loop stays a loop in every thread (docs/design/0017)."""
  serial, loops = serial_ranges(sink), []
  for r in reversed(sorted((r for r in sink.find(Ops.RANGE) if r.arg[1] is AxisType.LOOP and r not in serial), key=lambda r: r.arg[0])):
    if len(loops) == len(global_max) or r.src[0].arg > global_max[len(loops)]: break
    loops.insert(0, r)
  return loops

def ranges_to_threads(sink: UOp, global_max: tuple[int, ...] = (2**31 - 1, 65535, 65535)) -> tuple[UOp, list[int], list[int]]:
  """GPU-style: the innermost LOOP ranges (a scatter's serial ones excepted) become block ids (gidx), one per grid
  dimension while each fits that dimension's limit (`global_max`, innermost first); the ranges outside stay loops
  in every thread. LOCAL and GROUP ranges become thread ids (lidx)."""
  rngs = sorted(sink.find(Ops.RANGE), key=lambda r: r.arg[0])
  loops = grid_loops(sink, global_max)
  max_dims = len(global_max)
  locs = [r for r in rngs if r.arg[1] in (AxisType.LOCAL, AxisType.GROUP)][-max_dims:]
  sub, gsize, lsize = {}, [], []
  for kind, group, sizes in (("gidx", loops, gsize), ("lidx", locs, lsize)):
    for i, r in enumerate(reversed(group)):  # dimension 0 is the fastest-moving, as on CUDA
      sub[r] = UOp(Ops.SPECIAL, r.dtype, (), (f"{kind}{i}", r.src[0].arg))
      sizes.append(r.src[0].arg)
  return (sink.substitute(sub) if sub else sink), gsize or [1], lsize or [1]

def _stores_to_group(sink: UOp, mask: dict[UOp, int], bit: dict[UOp, int]) -> set[UOp]:
  """The stores whose lanes group_vectors would group alone: of a scalar, to a buffer no other store writes, at an index
  that is a sum in the upcast ranges (built as base + constant, which simplifying leaves as it is)."""
  writers: dict[UOp, int] = defaultdict(int)
  for s in sink.src:
    if s.op is Ops.STORE: writers[s.src[0].src[0]] += 1
  out = set()
  for s in sink.src:
    if s.op is not Ops.STORE or s not in mask or s.src[0].op is not Ops.INDEX or len(s.src) != 2 or s.src[1].dtype.count != 1: continue
    buf, idx, valid = s.src[0].src
    if writers[buf] == 1 and idx in mask and idx.op in _SUM_OPS and idx.dtype.is_int() and idx.dtype.count == 1 and \
       (terms := _lane_terms(idx, bit, mask)) is not None and not _strided_innermost(terms[0], mask[s], bit): out.add(s)
  return out

def _strided_innermost(terms: dict[UOp, int], m: int, bit: dict[UOp, int]) -> bool:
  """Whether the innermost upcast range of a store (mask m) moves its index by a stride other than 1: its lanes are
  then stored as strided runs (group_vectors), and its neighbours along another range are not grouped instead (a conv's
  output channels, the vector of its weights, are a plane apart in NCHW; its pixels, contiguous there, are a gather of
  its channels-last input)."""
  inner = max((u for u in bit if m & bit[u]), key=lambda u: bit[u])
  return terms.get(inner, 0) not in (0, 1)

def _grouped_store_lanes(st: UOp, rest: dict[UOp, int], offs: list[int], vals: list[UOp], gates: list[UOp], max_bytes: int) -> list[UOp]:
  """The stores group_vectors makes of st's lanes (index rest + offs[i], value vals[i], gate gates[i]), in its order: a
  run's vector store where its first lane was, a lane in no run as a scalar store. A lane's index is
  _build_sums(rest, [offs[i]]): where rest has a positive term and every offset fits the dtype, that is base + offset
  (base - -offset) on one base, which is what group_vectors reads (_base_offset) -- and only the lanes left scalar need
  their index built. Lanes group under one gate, as group_vectors groups them."""
  index, buf, dt = st.src[0], st.src[0].src[0], st.src[0].src[1].dtype
  def scalar(lane_idxs, lanes): return [UOp(Ops.STORE, st.dtype, (index.replace(src=(buf, i, gates[l])), vals[l]), st.arg) for i, l in zip(lane_idxs, lanes)]
  lo, hi = _range_of(dt)
  if not any(k > 0 for k in rest.values()) or not all(lo <= o <= hi for o in offs):  # other forms: from each lane's index
    at = [_base_offset(i) for i in _build_sums(rest, offs, dt)]
  else:
    base = _build_sums(rest, [0], dt)[0]
    at = [(base, o) for o in offs]
  gate_at = dict(zip(at, gates))
  # two lanes at one address are left to group_vectors' rules; so are neighbours under two gates: simplified, the gates
  # may become one (both always true), and group_vectors would then group across them
  if len(gate_at) != len(offs) or any(gate_at.get((base, off + 1), g) is not g for (base, off), g in gate_at.items()):
    return scalar(_build_sums(rest, offs, dt), range(len(offs)))
  by_base: dict[tuple[UOp, UOp], dict[int, int]] = defaultdict(dict)  # (base, gate) -> offset -> lane
  for lane, ((base, off), gate) in enumerate(zip(at, gates)): by_base[(base, gate)][off] = lane
  first: dict[int, UOp] = {}
  in_run: set[int] = set()
  for (base, gate), by_off in by_base.items():
    for start, w in _runs(list(by_off), _vector_widths(_vec(buf.dtype, 1), max_bytes)):
      run = [by_off[start + k] for k in range(w)]
      ptr = UOp(Ops.INDEX, _vec(buf.dtype, w, True), (buf, base + start if start else base, gate))
      first[run[0]] = UOp(Ops.STORE, dtypes.void, (ptr, UOp(Ops.VECTORIZE, _vec(buf.dtype, w), tuple(vals[l] for l in run))))
      in_run.update(run)
  left = [l for l in range(len(offs)) if l not in in_run]
  alone = dict(zip(left, scalar(_build_sums(rest, [offs[l] for l in left], dt), left))) if left else {}
  return [first[l] if l in first else alone[l] for l in range(len(offs)) if l in first or l in alone]

# ---- vector loads and stores ----
@functools.cache
def _vec(dt, n: int, ptr: bool = False):
  """dt's scalar base as a vector of n (a pointer to one): a DType is built in Python, so each is built once."""
  out = dt.base().vec(n) if dt.ptr else dt.vec(n)
  return out.as_ptr() if ptr else out

def _base_offset(idx: UOp) -> tuple[UOp, int]:
  if idx.op is Ops.ADD and idx.src[1].op is Ops.CONST: return idx.src[0], idx.src[1].arg
  if idx.op is Ops.SUB and idx.src[1].op is Ops.CONST: return idx.src[0], -idx.src[1].arg
  if idx.op is Ops.CONST: return UOp.const(idx.dtype, 0), idx.arg
  return idx, 0

def _runs(offsets: list[int], widths: tuple[int, ...]) -> list[tuple[int, int]]:
  """(start, width) chunks of consecutive offsets, widest first."""
  out, s, i = [], sorted(set(offsets)), 0
  while i < len(s):
    j = i
    while j + 1 < len(s) and s[j+1] == s[j] + 1: j += 1
    k = i
    while k <= j:
      w = next((w for w in widths if k + w - 1 <= j), 1)
      if w > 1: out.append((s[k], w))
      k += w
    i = j + 1
  return out

def _vector_widths(dt, max_bytes: int, min_bytes: int = 8) -> tuple[int, ...]:
  if dt.is_bool() or dt.itemsize * 2 > max_bytes: return ()
  return tuple(w for w in (16, 8, 4, 2) if dt.itemsize * w <= max_bytes and dt.itemsize * w >= min_bytes)

@timed("group_vectors")
def group_vectors(sink: UOp, max_bytes: int, vector_alu: bool = False, lane_gates: bool = False, min_bytes: int = 8,
                  strided_stores: bool = False) -> UOp:
  """Loads (and stores) of one buffer at base+0, base+1, ... become one vector load (store) and lane picks. With
  `lane_gates` (the renderer's `gated_vector_loads`), loads under different gates group too: the vector load's gate is
  a VECTORIZE of the lanes' gates (a padded conv's row: its first and last lanes are gated by the border, the rest
  not). With `vector_alu`, pm_vectorize then turns the stored lanes into vector ops before the loads are replaced by
  their picks: a vector op whose lanes are a grouped load's lanes in order reads the vector, so the scalar lanes around
  the picks (a matmul's 128 multiplies and reduces) are never rebuilt only to be regrouped. With `strided_stores` (the
  renderer's), a strided run of stores of one vector's lanes becomes one STORE of the vector whose arg is the stride."""
  loads = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))  # (buf, base, gates, after) -> offset -> gate -> loads
  def ranges(x: UOp) -> frozenset[UOp]: return frozenset(r for r in x.toposort if r.op is Ops.RANGE)
  for u in sink.find(Ops.LOAD):
    if u.src[0].op is Ops.INDEX and u.dtype.count == 1:
      buf, idx, valid = u.src[0].src
      base, off = _base_offset(idx)
      # lanes under different gates group only where no gate brings in a loop the address does not: the vector load
      # is placed inside every loop any lane's gate reads, out of reach of a lane read in another loop nest (a
      # kernel of two stores read x[1] in its second nest and x[0] under `k < 1` in its first: one vector in the first
      # nest's k loop, undeclared in the second; fuzz seed 50258)
      gates = (ranges(valid) - ranges(base)) if lane_gates else valid
      loads[(buf, base, gates, u.src[1:])][off][valid].append(u)  # u.src[1:]: a barrier a local read waits for
  rep: dict[UOp, UOp] = {}
  def group(buf, base, after, by_off: dict[int, tuple[UOp, list[UOp]]]):
    for start, w in _runs(list(by_off), _vector_widths(_vec(buf.dtype, 1), max_bytes, min_bytes)):
      gates = [by_off[start + lane][0] for lane in range(w)]
      gate = gates[0] if all(g is gates[0] for g in gates) else UOp(Ops.VECTORIZE, _vec(dtypes.bool, w), tuple(gates))
      vec = UOp(Ops.LOAD, _vec(buf.dtype, w), (UOp(Ops.INDEX, _vec(buf.dtype, w, True), (buf, base + start if start else base, gate)), *after))
      for lane in range(w):
        for u in by_off[start + lane][1]: rep[u] = UOp(Ops.GEP, u.dtype, (vec,), lane)
  for (buf, base, _, after), offs in loads.items():
    # an address loaded under two gates is a lane of two vectors: those addresses group by gate, among themselves
    multi = {off: by_gate for off, by_gate in offs.items() if len(by_gate) > 1}
    for valid in dict.fromkeys(g for by_gate in multi.values() for g in by_gate):
      group(buf, base, after, {off: (valid, by_gate[valid]) for off, by_gate in multi.items() if valid in by_gate})
    group(buf, base, after, {off: next(iter(by_gate.items())) for off, by_gate in offs.items() if off not in multi})
  # stores under one gate (a padded axis's lanes past its end share `block < last`) group like unguarded ones
  # stores whose innermost lanes are strided runs (a SWAP of two UPCASTs put a non-contiguous axis innermost: the
  # vector goes along it) are left to _strided_store_runs, not grouped along the contiguous axis
  strided_inner = {s for run in _strided_store_runs(sink, {s: [s] for s in sink.src}, max_bytes) if _step(run) != 1 for s in run} if vector_alu else set()
  stores = defaultdict(dict)
  for s in sink.src:
    if s.op is Ops.STORE and s.src[1].dtype.count == 1 and s not in strided_inner:
      buf, idx, gate = s.src[0].src
      base, off = _base_offset(idx)
      stores[(buf, base, gate)][off] = s
  new_stores = {s: [s] for s in sink.src}
  for (buf, base, gate), by_off in stores.items():
    for start, w in _runs(list(by_off), _vector_widths(_vec(buf.dtype, 1), max_bytes, min_bytes)):
      lanes = [by_off[start + k] for k in range(w)]
      ptr = UOp(Ops.INDEX, _vec(buf.dtype, w, True), (buf, base + start if start else base, gate))
      val = UOp(Ops.VECTORIZE, _vec(buf.dtype, w), tuple(s.src[1] for s in lanes))
      new_stores[lanes[0]] = [UOp(Ops.STORE, dtypes.void, (ptr, val))]
      for s in lanes[1:]: new_stores[s] = []
  strided = _strided_store_runs(sink, new_stores, max_bytes) if vector_alu else []
  for run in strided:  # each lane stored from a pick of one vector value, kept below only if the value became vector math
    val = UOp(Ops.VECTORIZE, _vec(run[0].src[1].dtype, len(run)), tuple(s.src[1] for s in run))
    for k, s in enumerate(run): new_stores[s] = [s.replace(src=(s.src[0], UOp(Ops.GEP, s.src[1].dtype, (val,), k)))]
  origin = [s for s in sink.src for _ in new_stores[s]]  # the sink's store each new store came from
  out = UOp.sink(*[x for s in sink.src for x in new_stores[s]])
  if vector_alu: out = graph_rewrite(out, pm_vectorize, ctx=(rep, max_bytes), name="vectorize")
  if strided and len(out.src) == len(origin):
    # a strided run whose lanes did not become one vector op over at least one vector load (a gather of scattered
    # lanes feeding a vector accumulator is no faster than scalar code) goes back to its scalar stores
    in_run = {s for run in strided for s in run}
    def vector_math(st: UOp) -> bool:
      v = st.src[1].src[0] if st.src[1].op is Ops.GEP else None
      return v is not None and v.op is not Ops.VECTORIZE and any(u.op is Ops.LOAD and u.dtype.count > 1 for u in v.toposort)
    out = UOp.sink(*[st if s not in in_run or vector_math(st) else s for st, s in zip(out.src, origin)])
    if strided_stores: out = _one_strided_store_per_run(out, origin, strided)
  if not rep: return out
  out = out.substitute(rep)
  # a replaced load can sit under another's replacement: a block's scratch read waits for the barrier after the copy
  # whose own loads were grouped too, and a substitute never substitutes into the values it puts in. Only a load that
  # waits for something (src[1:]) carries others in its replacement, so most kernels stop here
  if not any(len(u.src) > 1 for u in rep): return out
  for _ in range(8):  # each round reaches one level deeper; a kernel nests a copy under a copy at most a few deep
    if not (left := {u: v for u, v in rep.items() if u in set(out.toposort)}): return out
    out = out.substitute(left)
  raise RuntimeError(f"group_vectors: {len(left)} grouped loads still unreplaced after 8 rounds")

def _one_strided_store_per_run(sink: UOp, origin: list[UOp], runs: list[list[UOp]]) -> UOp:
  """Each strided run whose stores are lanes 0..w-1 of one vector value, in order, as one STORE of that vector at the
  first lane's address, its arg the stride."""
  now = dict(zip(origin, sink.src))
  merged: dict[UOp, UOp | None] = {}  # a run's first store -> the strided store, its others -> None
  for run in runs:
    lanes = [now[s] for s in run]
    v = lanes[0].src[1].src[0] if lanes[0].src[1].op is Ops.GEP else None
    if v is None or v.dtype.count != len(lanes) or \
       any(st.src[1].op is not Ops.GEP or st.src[1].src[0] is not v or st.src[1].arg != k for k, st in enumerate(lanes)): continue
    merged[lanes[0]] = UOp(Ops.STORE, dtypes.void, (lanes[0].src[0], v), _step(run))
    for st in lanes[1:]: merged[st] = None
  if not merged: return sink
  return UOp.sink(*[merged.get(st, st) for st in sink.src if merged.get(st, st) is not None])

def _step(run: list[UOp]) -> int: return _base_offset(run[1].src[0].src[1])[1] - _base_offset(run[0].src[0].src[1])[1]

def _strided_store_runs(sink: UOp, new_stores: dict[UOp, list[UOp]], max_bytes: int) -> list[list[UOp]]:
  """Runs of scalar stores, consecutive in the sink (the lanes of the innermost upcast axis), into one buffer under one
  gate at base + k * stride: a weight gradient's input channels are 9 apart in (Cout, Cin, 3, 3), yet its input is
  contiguous along them, so the lanes' sums are one vector accumulator when their stores take a lane each."""
  runs, cur = [], []
  def flush():
    widths = _vector_widths(_vec(cur[0].src[1].dtype, 1), max_bytes) if cur else ()
    i = 0
    while i < len(cur):
      w = next((w for w in widths if i + w <= len(cur)), 1)
      if w > 1: runs.append(cur[i:i + w])
      i += w
  for s in sink.src:
    if not (s.op is Ops.STORE and new_stores[s] == [s] and s.src[1].dtype.count == 1 and s.src[0].op is Ops.INDEX):
      flush(); cur = []; continue
    buf, idx, gate = s.src[0].src
    base, off = _base_offset(idx)
    if cur:
      (pbuf, _, pgate), (pbase, poff) = cur[-1].src[0].src, _base_offset(cur[-1].src[0].src[1])
      step = off - poff
      same = pbuf is buf and pgate is gate and pbase is base and step != 0 and \
        (len(cur) < 2 or step == poff - _base_offset(cur[-2].src[0].src[1])[1])
      if not same: flush(); cur = []
    cur.append(s)
  flush()
  return runs

# ---- vector arithmetic: a VECTORIZE of lanes that all do the same thing becomes that thing on vectors ----
def _same(lanes, pred) -> bool: return all(pred(l) for l in lanes)

_WIDE_FLOATS = (dtypes.float32, dtypes.float64)

def vector_cast(u: UOp) -> bool:
  """float32 -> int casts of at most 4 bytes convert their lanes at once: C has vector instructions for them
  (renderer/c.py _vf2i32); to int64 AVX2 has none, and emulating them measured slower than lane by lane. So do
  float32 <-> float64 casts (one instruction each way), and ints of at most 4 bytes to float32 (widen, then one convert:
  a quantised weight's unpacked nibbles)."""
  if u.op is not Ops.CAST: return False
  src, dst = u.src[0].dtype.scalar(), u.dtype.scalar()
  return (src == dtypes.float32 and dst.is_int() and dst.itemsize <= 4) or (src in _WIDE_FLOATS and dst in _WIDE_FLOATS) or \
    (dst == dtypes.float32 and src.is_int() and src.itemsize <= 4)

def _plain(dt) -> bool:
  """A lane dtype vector ops take as it is: not bool, not a half float (rewritten to float32 per lane later)."""
  return not dt.is_bool() and not (dt.is_float() and dt.itemsize == 2)

_BOOL_OPS = (Ops.AND, Ops.OR, Ops.XOR, Ops.NEG)
_COMPARE = (Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ)

def _bool_vector(lanes: tuple[UOp, ...], width: int | None = None) -> UOp | None:
  """Bool lanes as one vector op: comparisons of like operands, and & | ^ not of such, all comparing operands of one
  width (a target's vector compare gives a mask that wide). A bool vector is only ever made here, as the condition
  of a vector WHERE (a VECTORIZE of bools elsewhere is a vector load's lane gates, kept)."""
  first, k = lanes[0], len(lanes)
  if width is None:  # the width of the first comparison found, going down the first operands
    c = first
    while c.op in _BOOL_OPS and c.dtype.is_bool(): c = c.src[0]
    width = c.src[0].dtype.itemsize if c.op in _COMPARE else None
  if not _same(lanes, lambda l: l.op is first.op and l.dtype == first.dtype and len(l.src) == len(first.src)): return None
  if first.op in _COMPARE and _plain(first.src[0].dtype) and _same(lanes, lambda l: l.src[0].dtype == first.src[0].dtype) and \
     (width is None or first.src[0].dtype.itemsize == width):
    cols = [UOp(Ops.VECTORIZE, _vec(s.dtype, k), tuple(l.src[i] for l in lanes)) for i, s in enumerate(first.src)]
    return UOp(first.op, _vec(dtypes.bool, k), tuple(cols))
  if first.op in _BOOL_OPS and first.dtype.is_bool():
    cols = [_bool_vector(tuple(l.src[i] for l in lanes), width) for i in range(len(first.src))]
    return None if any(c is None for c in cols) else UOp(first.op, _vec(dtypes.bool, k), tuple(cols))
  return None

# ops that GCC expands lane by lane, in scalar code, on a vector wider than the target's (compares, selects, conversions
# of float64x8 on AVX2); arithmetic it splits into native halves by itself
_SPLIT = (Ops.WHERE, Ops.MAX, Ops.CAST)

def vectorize_lanes(v: UOp, ctx: tuple[dict[UOp, UOp], int] | None = None) -> UOp | None:
  """ctx: (scalar loads -> their picks (GEP) of a vector load, not yet substituted; the widest vector in bytes), from
  group_vectors. A WHERE, MAX or CAST wider than that is built as two halves."""
  rep, max_bytes = ctx if ctx is not None else ({}, 0)
  lanes, k, first = v.src, len(v.src), v.src[0]
  if first.dtype.count != 1 or not _same(lanes, lambda l: l.op is first.op and l.dtype == first.dtype and len(l.src) == len(first.src)): return None
  if rep and first in rep: lanes = tuple(rep.get(l, l) for l in lanes); first = lanes[0]
  if first.op is Ops.GEP and first.src[0].dtype.count == k and _same(enumerate(lanes), lambda il: il[1].op is Ops.GEP and il[1].src[0] is first.src[0] and il[1].arg == il[0]):
    return first.src[0]
  if first.op is Ops.GEP: return None  # lanes of loads: picked, not computed
  # one value in every lane (a row's max or sum read by the row's vectors) is computed once and broadcast: as a vector
  # op it would be computed per lane, and so would every op under it (a 16-lane max's tree: 15 vector compares and
  # selects on 16 broadcasts, not 15 scalar ones and one broadcast)
  if _same(lanes, lambda l: l is first): return None
  if (out := _vector_op(lanes, first, k)) is None: return None
  if first.op in _SPLIT and max_bytes and k % 2 == 0 and max(first.dtype.itemsize, first.src[-1].dtype.itemsize) * k > max_bytes:
    halves = [UOp(Ops.VECTORIZE, _vec(first.dtype, k // 2), lanes[i:i + k // 2]) for i in (0, k // 2)]
    return UOp(Ops.VECTORIZE, v.dtype, tuple(UOp(Ops.GEP, first.dtype, (h,), j) for h in halves for j in range(k // 2)))
  return out

def _vector_op(lanes: tuple[UOp, ...], first: UOp, k: int) -> UOp | None:
  """The vector op doing what the lanes do, or None."""
  def column(i): return UOp(Ops.VECTORIZE, _vec(first.src[i].dtype, k), tuple(l.src[i] for l in lanes))
  if vector_cast(first) and _same(lanes, lambda l: l.src[0].dtype == first.src[0].dtype): return UOp(Ops.CAST, _vec(first.dtype, k), (column(0),))
  # a bool made a number (a max-pool's gradient mask) is a select of 1 and 0 under the lanes' comparisons
  if first.op is Ops.CAST and first.src[0].dtype.is_bool() and _plain(first.dtype) and \
     (cond := _bool_vector(tuple(l.src[0] for l in lanes))) is not None:
    return UOp(Ops.WHERE, _vec(first.dtype, k), (cond, UOp.const(_vec(first.dtype, k), 1), UOp.const(_vec(first.dtype, k), 0)))
  # float16/bfloat16 arithmetic is rewritten to float32 per lane later, so it stays scalar
  if first.op in VECTOR_ALU and not first.dtype.is_bool() and (first.op is not Ops.FDIV or first.dtype.is_float()) and \
     not (first.dtype.is_float() and first.dtype.itemsize == 2):
    return UOp(first.op, _vec(first.dtype, k), tuple(column(i) for i in range(len(first.src))))
  # a fused multiply-add (a transcendental's polynomial step): the vector fma, which rounds each lane once as the scalar one does
  if first.op is Ops.MULACC and first.dtype in (dtypes.float32, dtypes.float64):
    return UOp(Ops.MULACC, _vec(first.dtype, k), tuple(column(i) for i in range(3)))
  if first.op is Ops.BITCAST and _same(lanes, lambda l: l.src[0].dtype == first.src[0].dtype):
    return UOp(Ops.BITCAST, _vec(first.dtype, k), (column(0),))
  if first.op is Ops.MAX and _plain(first.dtype): return UOp(Ops.MAX, _vec(first.dtype, k), (column(0), column(1)))
  if first.op is Ops.WHERE and _plain(first.dtype) and _same(lanes, lambda l: l.src[0] is first.src[0]):
    # one condition for every lane (a gather's index in range, per row): a mask of it, broadcast
    mask = first.src[0].cast(signed_int_like(first.dtype))
    cond = UOp(Ops.CMPNE, _vec(dtypes.bool, k), (UOp(Ops.VECTORIZE, _vec(mask.dtype, k), (mask,) * k), UOp.const(_vec(mask.dtype, k), 0)))
    return UOp(Ops.WHERE, _vec(first.dtype, k), (cond, column(1), column(2)))
  if first.op is Ops.WHERE and _plain(first.dtype) and (cond := _bool_vector(tuple(l.src[0] for l in lanes))) is not None:
    return UOp(Ops.WHERE, _vec(first.dtype, k), (cond, column(1), column(2)))
  # (a reduce whose value is a vector folds its lanes into a scalar accumulator in order: it has no vector form)
  if first.op is Ops.REDUCE and _vector_reduce(first.arg, first.dtype) and first.src[0].dtype.count == 1 and \
     _same(lanes, lambda l: l.arg == first.arg and l.src[1:] == first.src[1:]):
    return UOp(Ops.REDUCE, _vec(first.dtype, k), (column(0), *first.src[1:]), first.arg)
  return None

pm_vectorize = PatternMatcher([(UPat(Ops.VECTORIZE, name="v"), vectorize_lanes)])
