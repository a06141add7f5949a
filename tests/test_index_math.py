"""Index math keeps its value through simplification, and every node stays within its vmin/vmax: random expressions shaped
like lowering's, checked on every assignment of small ranges and proved by z3 for large ones; known-tricky cases by hand;
and the cases the fuzzer found, minimised."""
import importlib.util
import numpy as np
import pytest
from lucidgrad.dtype import dtypes, min_max
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.uop.pattern import PatternMatcher, UPat, graph_rewrite
from lucidgrad.uop.symbolic import symbolic
from lucidgrad.testing import index_fuzz
from lucidgrad.testing.index_fuzz import IndexGen, check, check_points, check_z3, all_assignments, simplify, minimise, repro

HAVE_Z3 = importlib.util.find_spec("z3") is not None  # without it, the by-hand cases fall back to evaluation

def K(v, dt=dtypes.index) -> UOp: return UOp.const(dt, v)
def rng(end: int, k: int) -> UOp: return UOp.range(end, rid=(k,))

def assert_keeps_value(e: UOp, use_z3: bool = HAVE_Z3):
  f, _ = check(e, use_z3=use_z3)
  if f is not None: pytest.fail(repro(minimise(f, use_z3)))

# ---- random expressions ----
@pytest.mark.parametrize("chunk", range(4))
def test_small_random_expressions_keep_value_on_every_assignment(chunk):
  gen, failures = IndexGen(1000 + chunk), []
  for _ in range(500):
    f, how = check(gen.expr(small=True))
    assert how == "exhaustive"
    if f is not None: failures.append(f)
  if failures: pytest.fail(f"{len(failures)} of 500 fail; the first, minimised:\n{repro(minimise(failures[0], False))}")

@pytest.mark.parametrize("chunk", range(4))
def test_z3_proves_random_expressions(chunk):
  pytest.importorskip("z3")
  gen, failures, unproved = IndexGen(2000 + chunk), [], 0
  for _ in range(250):
    # where z3 gives up (it does on a few percent of the large ones) evaluation takes over: every assignment up to 2**20
    f, how = check(gen.expr(), use_z3=True, timeout_ms=1000)
    unproved += how == "unknown+sampled"
    if f is not None: failures.append(f)
  if failures: pytest.fail(f"{len(failures)} of 250 fail; the first, minimised:\n{repro(minimise(failures[0], True))}")
  assert unproved <= 5, f"{unproved} of 250 were only sampled"

def test_intervals_hold_on_every_assignment():
  """The checker's own intervals pick the evaluator's number type and bound z3's quotients: they must be sound."""
  gen = IndexGen(7)
  for _ in range(300):
    e = gen.expr(small=True)
    nodes = index_fuzz.toposort_of(e, simplify(e))
    raw, _ = index_fuzz.intervals(nodes)
    vals, _ = index_fuzz.evaluate(nodes, all_assignments([u for u in nodes if u.op is Ops.RANGE]), set())
    for u in nodes:
      lo, hi = min_max(u.dtype) if u.dtype.is_int() else (0, 0)
      # a node whose interval fits its dtype is never wrapped, so its value must lie in the interval
      if u.dtype.is_int() and lo <= raw[u][0] and raw[u][1] <= hi:
        assert raw[u][0] <= vals[u].min() and vals[u].max() <= raw[u][1], f"{index_fuzz.show(u)}: {vals[u].min()}..{vals[u].max()} outside {raw[u]}"

# ---- known-tricky cases ----
@pytest.mark.parametrize("make", [
  lambda r: (r - 5) // 3, lambda r: (r - 5) % 3, lambda r: (-r) // 4, lambda r: (-r) % 4, lambda r: (r * -3 + 7) // 4,
  lambda r: (r * -3 + 7) % 4, lambda r: ((r - 6) // 2) // 3, lambda r: ((r - 6) % 4) % 2, lambda r: (r - 6) // -4,
  lambda r: (r - 6) % -4, lambda r: ((r - 9) // 3) < 0, lambda r: ((r - 9) % 3) >= 0,
])
def test_negative_numerators_truncate_like_c(make):
  assert_keeps_value(make(rng(20, 0)))

def test_c_semantics_of_the_evaluator():
  r = rng(15, 0)
  div, mod = (r - 7) // 2, (r - 7) % 2
  vals, _ = index_fuzz.evaluate((div + mod).toposort, all_assignments([r]), set())
  np.testing.assert_array_equal(vals[div], [-3, -3, -2, -2, -1, -1, 0, 0, 0, 1, 1, 2, 2, 3, 3])
  np.testing.assert_array_equal(vals[mod], [-1, 0, -1, 0, -1, 0, -1, 0, 1, 0, 1, 0, 1, 0, 1])

def test_reshape_chain():
  # (4, 6, 5) viewed as (8, 15) and then as (2, 60): each axis of the first read back through both reshapes
  a, b = rng(8, 0), rng(15, 1)
  lin = a * 15 + b
  for e in [lin // 30, (lin // 5) % 6, lin % 5, ((lin // 60) * 60 + lin % 60) // 30 % 4, (((lin // 5) % 6) * 5 + lin % 5) // 3 % 10]:
    assert_keeps_value(e)
  assert simplify((lin // 15) % 8) is a and simplify(lin % 15) is b

def test_conv_window_index():
  # ((2*y + ky) * W + x) // W % H: a stride-2 conv's input row, read back through the (H, W) input
  y, ky, x = rng(14, 0), rng(3, 1), rng(28, 2)
  W, H = 28, 29
  e = ((y * 2 + ky) * W + x) // W % H
  assert_keeps_value(e)
  assert simplify(e) is simplify(y * 2 + ky), "2*y + ky <= 28 < H: the mod and the division drop out"
  padded = ((y * 2 + ky - 1) * W + x) // W % 28  # with a padding of 1 the row can be -1: no fold may assume x >= 0
  assert_keeps_value(padded)
  big = rng(4096, 3)  # and at sizes only z3 can cover
  assert_keeps_value(((big * 2 + ky) * 4099 + x) // 4099 % 8191)

def test_pad_guard_and_where():
  i = rng(12, 0)
  j = i - 2
  e = ((j >= 0) & (j < 8)).where((j // 4) * 4 + j % 4, K(0))
  assert_keeps_value(e)
  assert_keeps_value(((i - 3) < 0).where(K(0), (i - 3) % 5).maximum(K(-1)))

# ---- the checker has teeth ----
def test_checker_finds_a_wrong_fold_and_its_counterexample():
  pytest.importorskip("z3")
  r = rng(4096, 0)
  e = (r - 5) // 4
  wrong = (r + 3) // 4 - 2  # what a fold assuming floor division would give: differs where r - 5 < 0 and not a multiple of 4
  f = check_points(e, all_assignments([r]), wrong)
  assert f is not None and f.kind == "value" and f.at[(0,)] in (0, 2, 3, 4) and f.want - f.got == 1, f
  z = check_z3(e, wrong)
  assert not isinstance(z, str) and z is not None and z.kind == "value" and z.at[(0,)] in (0, 2, 3, 4), z

def test_minimise_shrinks_a_failure_from_a_broken_rule(monkeypatch):
  # a deliberately wrong rule, x % c -> x for every c: the fuzzer must catch it and cut the expression down to the rule
  broken = PatternMatcher([(UPat.var("x") % UPat.cvar("c"), lambda x, c: x)]) + symbolic
  monkeypatch.setattr(index_fuzz, "simplify", lambda u: graph_rewrite(u, broken))
  gen = IndexGen(3)
  f = next(f for f in (check(gen.expr(small=True))[0] for _ in range(200)) if f is not None)
  m = minimise(f, use_z3=False)
  assert m.kind == "value" and len(m.expr.toposort) <= 4 and m.expr.op is Ops.MOD, repro(m)
  assert "before = " in repro(m) and "after  = " in repro(m)

# ---- regressions: what the fuzzer found, minimised ----
def test_mod_by_zero_folds_to_zero_like_the_renderers():
  # C renders x % 0 as (0==0?0:x%0) = 0; constant folding gave x
  assert simplify(K(1) % 0) is K(0)
  assert_keeps_value(K(1) % 0)

def test_mod_of_mod_by_zero_is_not_a_plain_mod():
  # (x % 0) % 2 is 0 % 2 = 0; the nested-mod rule (a % b == 0 -> x % b) took 0 % 2 == 0 as permission
  assert_keeps_value((rng(10, 0) % 0) % 2)

def test_division_bounds_are_exact_past_2_53():
  # the bounds of an int64 division came from float division: 2**54 + 1 became 2**54, so the node's vmax was below its value
  big = K(18014398509481985, dtypes.int64) // K(1, dtypes.int64)
  assert (big.vmin, big.vmax) == (18014398509481985, 18014398509481985)
  r = rng(6, 0).cast(dtypes.int64) * K(4503599627370497, dtypes.int64)
  assert (r // K(1, dtypes.int64)).vmax == 5 * 4503599627370497
  assert (r // K(3, dtypes.int64)).vmax == 5 * 4503599627370497 // 3
  assert_keeps_value(r // K(3, dtypes.int64))

# ---- an index under its gate ----
def test_a_gated_index_is_simplified_for_the_values_its_gate_lets_through():
  """index_given_gate: a read gated by `r >= 1` (a padded border) has its index simplified with r held to [1, end) -- the
  flat window index of a max pool's gradient folds its divisions there, which it cannot where r = 0 makes it negative.
  Every assignment that passes the gate gives the same address as before; and the gradient itself equals NumPy's."""
  from lucidgrad.codegen.opt.kernel import index_given_gate
  from lucidgrad.codegen.lower import index_range
  from lucidgrad.uop.ops import AxisType
  y, x = index_range(7, AxisType.LOOP, (0,), dtypes.int), index_range(6, AxisType.LOOP, (1,), dtypes.int)
  flat = (y - 1) * 6 + x - 1
  idx = graph_rewrite(((flat // 6) % 7) * 100 + (flat % 6), symbolic)
  gate = (y < 1).alu(Ops.XOR, UOp.const(dtypes.bool, True)).alu(Ops.AND, (x < 1).alu(Ops.XOR, UOp.const(dtypes.bool, True)))
  buf = UOp(Ops.DEFINE_GLOBAL, dtypes.float.as_ptr(), (), 0)
  new = index_given_gate(UOp(Ops.INDEX, dtypes.float.as_ptr(), (buf, idx, gate)))
  assert new is not None and not any(u.op in (Ops.IDIV, Ops.MOD) for u in new.src[1].toposort)
  from lucidgrad.uop.symbolic import exec_alu
  def ev(u, env):
    if u.op is Ops.CONST: return u.arg
    if u.op is Ops.RANGE: return env[u]
    return exec_alu(u.op, u.dtype, tuple(ev(s, env) for s in u.src))
  for yv in range(1, 7):
    for xv in range(1, 6):
      assert ev(new.src[1], {y: yv, x: xv}) == ev(idx, {y: yv, x: xv}) == (yv - 1) * 100 + xv - 1
  from lucidgrad import Tensor
  a = np.random.default_rng(3).standard_normal((2, 3, 9, 8)).astype(np.float32)
  t = Tensor(a, requires_grad=True)
  out = t.max_pool2d(kernel_size=3, stride=2, padding=1)
  (out * out).sum().backward()
  p = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
  want = np.zeros_like(p)
  for i in range(out.shape[2]):
    for j in range(out.shape[3]):
      win = p[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(2, 3, 9)
      k = win.argmax(-1)
      for n in range(2):
        for c in range(3): want[n, c, 2 * i + k[n, c] // 3, 2 * j + k[n, c] % 3] += 2 * win[n, c, k[n, c]]
  np.testing.assert_allclose(t.grad.numpy(), want[:, :, 1:-1, 1:-1], rtol=1e-6, atol=1e-6)

def test_a_load_inside_a_gated_index_keeps_its_own_gate():
  """index_given_gate leaves an index that reads memory alone: a gather's index value is loaded whatever the outer gate
  says, so holding a range to the outer gate's values would drop the inner load's own guard (the fuzzer's seed 4121 on
  the emulator, which checks every load's bounds: scatter_add's gradient to a src larger than its index read row 2 of a
  2-row index)."""
  from lucidgrad import Tensor
  for device in ("PYTHON", "CPU"):
    v0 = Tensor(np.arange(8, dtype=np.float32).reshape(2, 4), requires_grad=True, device=device)
    v3 = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4), requires_grad=True, device=device)
    (v0.scatter_add(1, Tensor(np.zeros((2, 4), np.int64), device=device), v3) * 2).sum().backward()
    np.testing.assert_array_equal(v0.grad.numpy(), np.full((2, 4), 2.0))
    np.testing.assert_array_equal(v3.grad.numpy(), np.array([[2.0] * 4, [2.0] * 4, [0.0] * 4]))
