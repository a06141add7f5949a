"""The fast paths of codegen build exactly what the plain algorithms they replaced build: toposort's order, the op bits a
rewrite skips by, upcast expansion in one pass (against one substitute per lane), range sets carried between calls."""
import itertools
import numpy as np
import pytest
from lucidgrad import Tensor
from lucidgrad.device import Device
from lucidgrad.schedule import create_schedule
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.pattern import graph_rewrite
from lucidgrad import codegen
from lucidgrad.codegen.expand import expand_upcast, pm_expand_unroll
from lucidgrad.codegen.opt import Kernel, Opt, OptOps, hand_coded_opts
from lucidgrad.codegen.opt.kernel import pm_kernel_simplify
from lucidgrad.codegen.linearize import range_sets

def kernels(*ts: Tensor) -> list[UOp]: return [it.ast for it in create_schedule([t.uop for t in ts])[0] if it.kind == "kernel"]
def rand(*shape) -> Tensor: return Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32)).realize()

def program_kernels() -> list[tuple[UOp, list[Opt] | None]]:
  """Kernels with the opts to build them with (None: the heuristic's)."""
  a, b = rand(64, 48), rand(48, 32)
  x, w = rand(2, 4, 9, 9), rand(8, 4, 3, 3)
  rows = rand(2, 4, 16, 16)  # a padded conv with its row axis upcast (the heuristic blocks channels): see the expansion test
  rows_opts = [Opt(OptOps.UPCAST, 3, 16), Opt(OptOps.UPCAST, 2, 8)]
  w6 = rand(6, 4, 3, 3)  # output channels no vector divides: the weight is read as it is stored, the conv is one kernel
  heuristic = lambda asts: [(ast, None) for ast in asts]
  return heuristic(kernels(a @ b) + kernels(x.conv2d(w, padding=1))) + [(ast, rows_opts) for ast in kernels(rows.conv2d(w6, padding=1))] + \
         heuristic(kernels((a.exp() * 2).sum(axis=1)) + kernels(a.softmax(-1)) + kernels(x.max_pool2d(2)) + kernels(a.T.contiguous()))

def before_expansion(ast: UOp, opts: list[Opt] | None = None) -> UOp:
  """A kernel as codegen hands it to expand_upcast (see get_program)."""
  k = hand_coded_opts(Kernel(ast, Device["CPU"].renderer)) if opts is None else Kernel(ast, Device["CPU"].renderer).apply_opts(opts)
  sink = graph_rewrite(k.sink, pm_kernel_simplify)
  return graph_rewrite(sink, pm_expand_unroll)

def expand_by_substitute(sink: UOp) -> UOp:
  """The plain algorithm: for each UPCAST range, outermost first, each store that reads it is copied once per value."""
  stores = list(sink.src)
  for u in sorted({r for r in sink.toposort if r.op is Ops.RANGE and r.arg[1] is AxisType.UPCAST}, key=lambda r: r.arg[0]):
    stores = [s.substitute({u: UOp.const(u.dtype, c)}) if u in s.toposort else s for s in stores
              for c in (range(u.src[0].arg) if u in s.toposort else (0,))]
  return UOp.sink(*dict.fromkeys(stores))

@pytest.fixture(scope="module")
def graphs() -> list[UOp]: return [before_expansion(ast, opts) for ast, opts in program_kernels()]

def simplified(sink: UOp) -> UOp: return graph_rewrite(sink, pm_kernel_simplify)

def evaluate(u: UOp, env: dict[UOp, int], memo: dict) -> object:
  """u's value with every RANGE at its value in `env`: a load is a number made from its buffer and address (0 where its
  gate is off), a REDUCE is its body at this point of its loops. Two graphs that give the same values read the same
  elements under the same gates and compute the same things from them."""
  from lucidgrad.uop.symbolic import exec_alu
  if u in memo: return memo[u]
  if u.op is Ops.RANGE: out = env[u]
  elif u.op is Ops.CONST: out = u.arg
  elif u.op is Ops.LOAD:
    buf, idx, gate = u.src[0].src
    out = (buf.arg[0] * 1000003 + evaluate(idx, env, memo)) % 65521 if evaluate(gate, env, memo) else 0
  elif u.op is Ops.REDUCE: out = evaluate(u.src[0], env, memo)
  elif u.op is Ops.STORE: out = (evaluate(u.src[0].src[1], env, memo), evaluate(u.src[0].src[2], env, memo), evaluate(u.src[1], env, memo))
  else: out = exec_alu(u.op, u.dtype, tuple(evaluate(s, env, memo) for s in u.src))
  memo[u] = out
  return out

def test_upcast_expansion_reaches_what_simplifying_each_lane_copy_reaches(graphs):
  """expand_upcast builds the lanes of an index that is a sum in its upcast ranges as its rest plus a constant, the
  form simplifying each lane's copy reaches. It reaches it exactly, but where that form was not one sum: a multiple
  of a sum whose constant was negative in some lanes stayed undistributed there (`(y*8+ky-1)*56` in the first row of a
  padded conv, `(y*8+ky)*56 + 56` in the others); expand_upcast gives every lane one base. Every store still writes the
  same address under the same gate, the same value from the same loads (checked at random loop indexes)."""
  upcast = [g for g in graphs if any(r.op is Ops.RANGE and r.arg[1] is AxisType.UPCAST for r in g.toposort)]
  assert len(upcast) >= 3
  rng, same = np.random.default_rng(0), 0
  for g in graphs:
    new, old = simplified(expand_upcast(g)), simplified(expand_by_substitute(g))
    if new is old: same += 1; continue
    assert len(new.src) == len(old.src) and len([u for u in new.toposort if u.op is not Ops.CONST]) <= len([u for u in old.toposort if u.op is not Ops.CONST])
    ranges = {r for r in old.toposort + new.toposort if r.op is Ops.RANGE}
    for _ in range(20):
      env = {r: int(rng.integers(r.src[0].arg)) for r in ranges}
      memo_new, memo_old = {}, {}
      assert [evaluate(s, env, memo_new) for s in new.src] == [evaluate(s, env, memo_old) for s in old.src]
  assert len(graphs) - 2 <= same < len(graphs)

def test_stores_grouped_during_expansion_are_those_group_vectors_makes_of_the_lanes(graphs):
  """expand_upcast given the vector width builds a store's lanes as the vector stores group_vectors would make of them,
  where it alone would group them. Built before simplifying, a run's address at a constant base (0+8) is then folded
  too, which group_vectors leaves as it is: simplified once more, the two agree."""
  from lucidgrad.codegen.expand import group_vectors
  grouped = 0
  for g in graphs:
    direct = simplified(expand_upcast(g, 32))
    assert simplified(group_vectors(direct, 32)) is simplified(group_vectors(simplified(expand_upcast(g)), 32))
    assert simplified(group_vectors(simplified(expand_upcast(g, 32, pm_kernel_simplify)), 32)) is simplified(group_vectors(direct, 32))
    grouped += any(s.op is Ops.STORE and s.src[1].dtype.count > 1 for s in direct.src)
  assert grouped >= 3

def test_guarded_stores_grouped_during_expansion_are_those_group_vectors_makes(graphs):
  """A padded axis guards its stores: lanes under one gate (a row of a padded row block) group as they are built; lanes
  whose neighbours are under other gates (a padded column block: some gates always true, others not) are left to
  group_vectors, which groups what their gates simplify to. Either way the vector stores are those group_vectors makes."""
  from lucidgrad.codegen.expand import group_vectors
  from lucidgrad.codegen.opt.kernel import Opt, OptOps
  ast = kernels(rand(50, 48) @ rand(48, 40))[0]
  rows = [Opt(OptOps.PADTO, 0, 6), Opt(OptOps.UPCAST, 0, 6), Opt(OptOps.UPCAST, 2, 8)]  # 50 rows in blocks of 6
  cols = [Opt(OptOps.PADTO, 1, 16), Opt(OptOps.UPCAST, 1, 16)]  # 40 columns in blocks of 16
  gated_vector_stores = []
  for opts in (rows, cols):
    k = Kernel(ast, Device["CPU"].renderer).apply_opts(opts)
    g = graph_rewrite(graph_rewrite(k.sink, pm_kernel_simplify), pm_expand_unroll)
    direct = simplified(expand_upcast(g, 32))
    assert simplified(group_vectors(direct, 32)) is simplified(group_vectors(simplified(expand_upcast(g)), 32))
    # addresses and gates simplified as they are built: the gates group as group_vectors sees them, simplified
    assert simplified(group_vectors(simplified(expand_upcast(g, 32, pm_kernel_simplify)), 32)) is simplified(group_vectors(direct, 32))
    gated_vector_stores.append(sum(s.op is Ops.STORE and s.src[1].dtype.count > 1 and s.src[0].src[2].op is not Ops.CONST for s in direct.src))
  # each row of a block that may pass row 50 (the last block starts at 48): its 8 columns as one vector, under the row's gate
  assert gated_vector_stores[0] == sum(48 + row >= 50 for row in range(6))

def reference_toposort(root: UOp) -> list[UOp]:
  seen, out, stack = {root}, [], [(s, False) for s in reversed(root.src)]
  while stack:
    n, done = stack.pop()
    if done: out.append(n); continue
    if n in seen: continue
    seen.add(n)
    stack.append((n, True))
    stack.extend((s, False) for s in reversed(n.src) if s not in seen)
  return out + [root]

def test_toposort_order_op_bits_and_find(graphs):
  from lucidgrad.uop.ops import _OP_BIT
  for g in graphs + [expand_upcast(g) for g in graphs]:
    for n in itertools.islice(g.toposort[::-1], 0, None, 7):
      assert n.toposort == reference_toposort(n)
      assert n.ops_below == sum(_OP_BIT[op] for op in {x.op for x in n.toposort})
    for ops in [(Ops.REDUCE,), (Ops.LOAD,), (Ops.RANGE, Ops.CONST), (Ops.WMMA,)]:
      assert g.find(*ops) == [n for n in g.toposort if n.op in ops]

def test_range_sets_carried_between_calls_are_those_of_a_fresh_call(graphs):
  memo: dict = {}
  for g in graphs:
    for n in g.toposort[::5] + [g]:
      fresh = range_sets(n)
      carried = range_sets(n, memo)
      assert all(carried[u] == fresh[u] for u in n.toposort)

def test_a_kernel_built_again_is_lowered_once_and_gives_the_same_program(monkeypatch):
  from lucidgrad.codegen import lower
  (ast,) = kernels(rand(40, 24) @ rand(24, 8))
  calls = []
  real = lower._lower_kernel
  monkeypatch.setattr(lower, "_lower_kernel", lambda a, idt: calls.append(idt) or real(a, idt))
  first = codegen.get_program(ast, Device["CPU"].renderer)
  assert sorted(map(str, calls)) == ["dtypes.int32", "dtypes.int64"]  # once to choose the index dtype, once to use it
  again = codegen.get_program(ast, Device["CPU"].renderer)
  assert len(calls) == 2 and again.src == first.src

def test_a_rewrite_by_a_node_only_matcher_is_remembered_on_its_root():
  from lucidgrad.uop.pattern import RewriteStats
  from lucidgrad.uop.symbolic import symbolic
  r = UOp.range(64)
  sink = UOp.sink(((r * 4 + 3) // 4 % 64) + 0)
  out = graph_rewrite(sink, symbolic)
  assert out.src[0] is r
  before = RewriteStats.nodes_visited
  assert graph_rewrite(sink, symbolic) is out and RewriteStats.nodes_visited == before
  # a rewrite with a ctx may depend on it: not remembered
  assert graph_rewrite(sink, symbolic, ctx=object()) is out and RewriteStats.nodes_visited > before
