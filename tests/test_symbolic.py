"""Symbolic simplification: random integer expressions over bounded variables keep their value and never grow, and the
folds index math relies on fire."""
import itertools, math
import numpy as np
import pytest
from hypothesis import given, settings, assume, HealthCheck, strategies as st
from lucidgrad.dtype import dtypes, min_max
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.uop.pattern import graph_rewrite
from lucidgrad.uop.symbolic import symbolic

INT32_MIN, INT32_MAX = min_max(dtypes.int32)
def c(v) -> UOp: return UOp.const(dtypes.index, v)
def simplify(u: UOp) -> UOp: return graph_rewrite(u, symbolic)

# ---- an evaluator over the UOp graph, on every assignment of the variables at once, with C semantics ----
def _idiv(a, b):
  safe = np.where(b == 0, 1, b)
  return np.where(b == 0, 0, np.sign(a) * np.sign(safe) * (np.abs(a) // np.abs(safe)))

_EVAL = {
  Ops.ADD: lambda a, b: a + b, Ops.SUB: lambda a, b: a - b, Ops.MUL: lambda a, b: a * b, Ops.IDIV: _idiv,
  Ops.MOD: lambda a, b: a - b * _idiv(a, b), Ops.MAX: np.maximum, Ops.NEG: lambda a: ~a if a.dtype == np.bool_ else -a,
  Ops.CMPLT: lambda a, b: a < b, Ops.CMPNE: lambda a, b: a != b, Ops.CMPEQ: lambda a, b: a == b,
  Ops.AND: lambda a, b: a & b, Ops.OR: lambda a, b: a | b, Ops.XOR: lambda a, b: a ^ b, Ops.WHERE: np.where,
  Ops.SHL: lambda a, b: a << b, Ops.SHR: lambda a, b: a >> b,
}

def _wrap32(v: np.ndarray) -> np.ndarray: return (v - INT32_MIN) % 2**32 + INT32_MIN

def evaluate(u: UOp, env: dict[UOp, np.ndarray], wrap: bool) -> np.ndarray | None:
  """The value of `u` on every assignment in `env` (RANGE -> int64 array). With wrap, int32 results wrap as compiled code
  does; without, None if any intermediate leaves int32 (such an expression has no C meaning to preserve)."""
  vals: dict[UOp, np.ndarray] = {}
  n = len(next(iter(env.values()))) if env else 1
  for x in u.toposort:
    if x.op is Ops.RANGE and x in env: v = env[x]
    elif x.op is Ops.CONST: v = np.full(n, x.arg, dtype=np.bool_ if x.dtype.is_bool() else np.int64)
    elif x.op in _EVAL: v = np.asarray(_EVAL[x.op](*[vals[s] for s in x.src]))
    elif x.op is Ops.CAST and x.dtype.is_int(): v = vals[x.src[0]].astype(np.int64)
    else: raise NotImplementedError(f"evaluate: {x.op}")
    if x.dtype.is_int():
      if wrap: v = _wrap32(v)
      elif v.min() < INT32_MIN or v.max() > INT32_MAX: return None
    vals[x] = v
  return vals[u]

def assignments(rngs: list[UOp]) -> dict[UOp, np.ndarray]:
  grid = list(itertools.product(*[range(r.src[0].arg) for r in rngs]))
  return {r: np.array([g[i] for g in grid], dtype=np.int64) for i, r in enumerate(rngs)}

# ---- random expressions ----
# small values, and the powers of two that strides and split ranges are made of
small = st.one_of(st.integers(-12, 12), st.sampled_from([16, 32, 64, 256, 4096, -64]))
positive = st.one_of(st.integers(1, 12), st.sampled_from([16, 32, 64, 256, 4096]))

@st.composite
def int_expr(draw, rngs: list[UOp], depth: int) -> UOp:
  if depth == 0 or draw(st.integers(0, 5)) == 0:
    return draw(st.sampled_from(rngs)) if draw(st.booleans()) else c(draw(small))
  sub = lambda: draw(int_expr(rngs, depth - 1))
  kind = draw(st.sampled_from(["add", "sub", "mulc", "mulv", "idiv", "mod", "max", "neg", "where", "digits", "bit"]))
  match kind:
    case "add": return sub() + sub()
    case "sub": return sub() - sub()
    case "mulc": return sub() * c(draw(small))
    case "mulv": return sub() * draw(st.sampled_from(rngs))
    case "idiv": return sub() // c(draw(positive))
    case "mod": return sub() % c(draw(positive))
    case "max": return sub().maximum(sub())
    case "neg": return -sub()
    # an index's digits summed back, and a bit through a bool (UOp.positions' form), over any dividend, negative too
    case "digits":
      x, d, m = sub(), draw(positive), draw(positive)
      return (x % c(d)) * c(draw(small)) + ((x // c(d)) % c(m)) * c(d) if draw(st.booleans()) else (x % c(d)) + ((x // c(d)) % c(m)) * c(d)
    case "bit":
      m = sub() % c(2)
      return (m < c(1)).where(c(0), c(1)) if draw(st.booleans()) else (m < c(1)).alu(Ops.XOR, TRUE).where(c(1), c(0))
    case _: return draw(bool_expr(rngs, depth - 1)).where(sub(), sub())

@st.composite
def bool_expr(draw, rngs: list[UOp], depth: int) -> UOp:
  a, b = draw(int_expr(rngs, depth)), draw(int_expr(rngs, depth))
  out = draw(st.sampled_from([a < b, a.ne(b), a.eq(b)]))
  if depth and draw(st.integers(0, 3)) == 0: out = out.alu(draw(st.sampled_from([Ops.AND, Ops.OR, Ops.XOR])), draw(bool_expr(rngs, depth - 1)))
  return out

@st.composite
def expr_with_vars(draw) -> tuple[UOp, list[UOp]]:
  rngs = [UOp.range(end, rid=(k,)) for k, end in enumerate(draw(st.lists(st.integers(1, 10), min_size=1, max_size=3)))]
  return draw(int_expr(rngs, 4) if draw(st.integers(0, 3)) else bool_expr(rngs, 3)), rngs

def n_ops(u: UOp) -> int:
  """The size of a graph, constants not counted: they are leaves written into the code, and since equal constants are one
  node, a fold that computes a new one ((x + 2) * 2 -> x * 2 + 4) while the old one is still used elsewhere adds a node
  but no work."""
  return sum(1 for x in u.toposort if x.op is not Ops.CONST)

fuzz = settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])

@fuzz
@given(expr_with_vars())
def test_simplify_keeps_value_and_never_grows(ev):
  expr, rngs = ev
  env = assignments(rngs)
  want = evaluate(expr, env, wrap=False)
  assume(want is not None)
  out = simplify(expr)
  assert out.dtype == expr.dtype
  got = evaluate(out, env, wrap=True)
  bad = np.nonzero(got != want)[0]
  assert not len(bad), f"at {({r.arg[0]: int(v[bad[0]]) for r, v in env.items()})}: {int(want[bad[0]])} became {int(got[bad[0]])}\n{expr}\n->\n{out}"
  assert n_ops(out) <= n_ops(expr), f"grew from {n_ops(expr)} to {n_ops(out)} operations:\n{expr}\n->\n{out}"

@fuzz
@given(expr_with_vars())
def test_bounds_hold(ev):
  expr, rngs = ev
  env = assignments(rngs)
  want = evaluate(expr, env, wrap=False)
  assume(want is not None)
  assert expr.vmin <= want.min() and want.max() <= expr.vmax, f"{want.min()}..{want.max()} outside {expr.vmin}..{expr.vmax}\n{expr}"

@fuzz
@given(expr_with_vars())
def test_simplify_is_idempotent(ev):
  out = simplify(ev[0])
  assert simplify(out) is out

# ---- the folds index math relies on ----
def var(end: int, k: int) -> UOp: return UOp.range(end, rid=(k,))
TRUE = UOp.const(dtypes.bool, True)
def load(dt, k: int = 0) -> UOp:
  """A value the simplifier knows nothing about: a load of dtype `dt` from a buffer."""
  buf = UOp(Ops.DEFINE_GLOBAL, dt.as_ptr(), (), (k, 16))
  return UOp(Ops.LOAD, dt, (UOp(Ops.INDEX, dt.as_ptr(), (buf, var(16, 99), TRUE)),))

def check_same_values(e: UOp, rngs: list[UOp]):
  env = assignments(rngs)
  np.testing.assert_array_equal(evaluate(simplify(e), env, wrap=True), evaluate(e, env, wrap=False))

def test_split_index_recombines():
  i, r = var(4096, 0), var(4096, 1)
  assert simplify(((i * 4096 + r) // 4096) % 4096) is i
  assert simplify((i * 4096 + r) % 4096) is r

@pytest.mark.parametrize("end", [1, 5, 8, 100])
def test_small_remainder_drops_out_of_division(end):
  i, r = var(10, 0), var(end, 1)
  assert simplify((i * 32 + r % 8) // 8) is simplify(i * 4)

def test_coefficients_reduce_modulo_the_divisor():
  # a conv's window index: (2*y + 17*ky)*64 + x + 17*kx, read back as a 16x16 plane
  y, ky, x, kx = var(7, 0), var(3, 1), var(14, 2), var(3, 3)
  lin = (y * 2 + ky * 17) * 64 + x + kx * 17
  assert simplify((lin // 64) % 16) is simplify(y * 2 + ky)
  assert simplify(lin % 16) is simplify(x + kx)
  for e in [(lin // 64) % 16, lin % 16, lin // 16, (y * 3 + ky * 5) % 4]: check_same_values(e, [y, ky, x, kx])

def test_nested_division_merges():
  x = var(10, 0) * 7 + var(20, 1)
  assert simplify((x // 3) // 5) is simplify(x // 15)
  # a dividend that can be negative keeps its value (C division truncates)
  y = var(10, 0) - 6
  for e in [(y // 3) // 2, (y % 4) % 2, y // 2, y % 3]: check_same_values(e, [var(10, 0)])

@pytest.mark.parametrize("expr,want", [
  (lambda r: r < 10, True), (lambda r: r < 0, False), (lambda r: r < 9, None), (lambda r: r.ne(10), True),
  (lambda r: r.ne(-1), True), (lambda r: r.eq(12), False), (lambda r: (r + 3) < 3, False), (lambda r: (r * 4) < 37, True),
  (lambda r: (r // 4) < 3, True), (lambda r: (r % 4) < 4, True), (lambda r: (r - 20) < 0, True), (lambda r: r.maximum(c(3)) < 3, False),
  (lambda r: c(0).ne(r + 1), True),
])
def test_comparisons_decided_by_bounds(expr, want):
  out = simplify(expr(var(10, 0)))
  assert out.dtype == dtypes.bool
  if want is None: assert out.op is not Ops.CONST
  else: assert out.op is Ops.CONST and out.arg is want

def test_constants_move_across_comparisons():
  r = var(10, 0)
  assert simplify((r + 3) < 7) is (r < c(4))
  assert simplify((r - 1) < 5) is (r < c(6))
  assert simplify((r * 3) < 7) is (r < c(3))
  assert simplify((r + 3).ne(7)) is r.ne(c(4))
  assert simplify(c(7).eq(r - 1)) is r.eq(c(8))
  # where y + 3 or y - 3 can wrap (uint8 data: 254 + 3 is 1) the constant stays put
  x, u8 = load(dtypes.uint8), lambda v: UOp.const(dtypes.uint8, v)
  assert simplify((x + u8(3)) < u8(5)).src[0].op is Ops.ADD
  assert simplify((x - u8(3)) < u8(5)).src[0].op is Ops.SUB
  # != and == are exact under wrapping: x + 3 == 5 exactly when x == 2
  assert simplify((x + u8(3)).ne(u8(5))) is x.ne(u8(2))

def test_swapped_comparison_keeps_bool_dtype():
  r = var(10, 0)
  for e in [c(3).ne(r), c(3).eq(r), c(3).maximum(r), c(3) * r, c(3) + r]:
    out = simplify(e)
    assert out.dtype == e.dtype and out.src[1].op is Ops.CONST, out

@pytest.mark.parametrize("expr,lo,hi", [
  (lambda r: r, 0, 9), (lambda r: r * 3 - 2, -2, 25), (lambda r: r * -2, -18, 0), (lambda r: r + r, 0, 18),
  (lambda r: r // 4, 0, 2), (lambda r: r % 4, 0, 3), (lambda r: (r - 5) % 4, -3, 3), (lambda r: (r - 5) // 4, -1, 1),
  (lambda r: r.maximum(c(3)), 3, 9), (lambda r: (r < 5).where(r, c(20)), 0, 20), (lambda r: -r, -9, 0),
  (lambda r: r * var(4, 1), 0, 27), (lambda r: r - var(4, 1), -3, 9),
])
def test_bounds_of_ranges_and_arithmetic(expr, lo, hi):
  e = expr(var(10, 0))
  assert (e.vmin, e.vmax) == (lo, hi)

def test_bounds_of_thread_ids_comparisons_and_overflow():
  tid = UOp(Ops.SPECIAL, dtypes.index, (), ("gidx0", 32))
  assert (tid.vmin, tid.vmax) == (0, 31)
  r = var(10, 0)
  assert ((r < 5).vmin, (r < 5).vmax) == (False, True)
  assert (r < 20).vmin is True
  big = r * c(2**30)  # can leave int32: the bounds are the whole dtype
  assert (big.vmin, big.vmax) == (INT32_MIN, INT32_MAX)

def test_mul_by_zero_and_mod_one_fold_for_ints_not_floats():
  assert simplify(var(10, 0) * 0) is c(0)
  assert simplify(load(dtypes.int32) * UOp.const(dtypes.int32, 0)) is UOp.const(dtypes.int32, 0)
  for dt in (dtypes.float32, dtypes.float16):
    x = load(dt)
    e = x * UOp.const(dt, 0.0)  # NaN * 0 and inf * 0 are NaN
    assert simplify(e) is e
    assert simplify(x - x).op is Ops.SUB
    assert simplify(x % UOp.const(dt, 1.0)).op is Ops.MOD, "fmod(x, 1) is x's fraction"
  assert simplify(load(dtypes.int32) % UOp.const(dtypes.int32, 1)) is UOp.const(dtypes.int32, 0)

@pytest.mark.parametrize("dt,op,a,b,want", [
  (dtypes.int32, Ops.ADD, 2**31 - 1, 1, -2**31), (dtypes.int32, Ops.MUL, -2**31, -1, -2**31), (dtypes.int32, Ops.SUB, -2**31, 1, 2**31 - 1),
  (dtypes.int32, Ops.MUL, 65536, 65536, 0), (dtypes.uint8, Ops.ADD, 250, 10, 4), (dtypes.int8, Ops.ADD, 127, 1, -128),
  (dtypes.int32, Ops.IDIV, -7, 2, -3), (dtypes.int32, Ops.MOD, -7, 2, -1), (dtypes.int32, Ops.MOD, 7, -2, 1), (dtypes.int32, Ops.IDIV, 7, -2, -3),
  (dtypes.float32, Ops.ADD, 0.1, 0.2, float(np.float32(0.1) + np.float32(0.2))), (dtypes.float32, Ops.ADD, 2.0**24, 1.0, 2.0**24),
  (dtypes.float64, Ops.ADD, 2.0**24, 1.0, 2.0**24 + 1), (dtypes.float16, Ops.MUL, 300.0, 300.0, math.inf),
  (dtypes.float32, Ops.FDIV, 1.0, 3.0, float(np.float32(1) / np.float32(3))), (dtypes.int32, Ops.CMPLT, -1, 2, True),
  (dtypes.float32, Ops.MOD, -7.5, 2.0, -1.5), (dtypes.float32, Ops.MOD, 1.0, 0.0, math.nan), (dtypes.float32, Ops.MOD, math.inf, 2.0, math.nan),
  (dtypes.float32, Ops.FDIV, 0.0, 0.0, math.nan),
])
def test_constant_folding_wraps_and_rounds(dt, op, a, b, want):
  out = simplify(UOp.const(dt, a).alu(op, UOp.const(dt, b)))
  assert out.op is Ops.CONST and type(out.arg) is type(want), out
  assert out.arg == want or math.isnan(want) and math.isnan(out.arg), out

@pytest.mark.parametrize("src_dt,v,dt,want", [
  (dtypes.float32, 3.7, dtypes.int32, 3), (dtypes.float32, -3.7, dtypes.int32, -3), (dtypes.int32, 300, dtypes.uint8, 44),
  (dtypes.int32, -1, dtypes.uint32, 2**32 - 1), (dtypes.float64, 0.1, dtypes.float32, float(np.float32(0.1))), (dtypes.int32, 5, dtypes.bool, True),
])
def test_cast_folding(src_dt, v, dt, want):
  out = simplify(UOp.const(src_dt, v).cast(dt))
  assert out.op is Ops.CONST and out.dtype == dt and out.arg == want

# ---- what add-chain folding remembers ----
from lucidgrad.uop.symbolic import _terms, _build, _n_ops, fold_add_chain

@fuzz
@given(expr_with_vars())
def test_chains_marked_canonical_are_their_own_fold(ev):
  """_build marks the chain nodes it builds when no constant wraps, and fold_add_chain then answers None at once: that
  is right only if _build of their terms gives the node back. Checked on every marked node of simplified graphs."""
  out = simplify(ev[0])
  for u in out.toposort:
    terms, const = _terms(u)
    if "_canonical" in u.__dict__: assert _build(terms, const, u.dtype) is u, u
    elif u.op in (Ops.ADD, Ops.SUB) and u.dtype.is_int(): assert fold_add_chain(u) is None, "simplify left a foldable chain"

def test_chains_with_wrapping_constants_are_not_marked():
  r, i8 = var(100, 0), lambda v: UOp.const(dtypes.int8, v)
  x = UOp(Ops.CAST, dtypes.int8, (r,))
  built = _build({x: 200}, 300, dtypes.int8)  # 200 and 300 do not fit int8: the node holds their wrapped values
  assert all("_canonical" not in n.__dict__ for n in built.toposort)
  assert _build(*_terms(built), dtypes.int8) is not built, "this is why: its terms read back differently"
  assert "_canonical" in _build({x: 3}, 5, dtypes.int8).__dict__ and i8(5) is i8(5)

@fuzz
@given(expr_with_vars())
def test_remembered_terms_and_op_counts_match_a_fresh_walk(ev):
  def fresh_terms(u: UOp, distribute: bool):
    for n in u.toposort: n.__dict__.pop("_terms", None); n.__dict__.pop("_terms_d", None)
    return _terms(u, distribute)
  for u in ev[0].toposort:
    if not u.dtype.is_int(): continue
    for d in (False, True): assert _terms(u, d) == fresh_terms(u, d)
    assert _n_ops(u) == n_ops(u)

def _bit(x: UOp, b: int, negated: bool) -> UOp:
  """Bit b of x as a padded constant's valid test reads it: (x // 2^b) % 2 turned into a bool and back to 0 or 1."""
  m = (x // c(1 << b)) % c(2) if b else x % c(2)
  return (m < c(1)).where(c(0), c(1)) if negated else (m < c(1)).alu(Ops.XOR, TRUE).where(c(1), c(0))

@pytest.mark.parametrize("n", [1, 2, 5, 64, 128, 1000])
@pytest.mark.parametrize("negated", [False, True])
def test_an_indexs_bits_summed_back_are_the_index(n, negated):
  """UOp.positions (every arange) sums an index's bits: folded, the sum is the index itself (an arange in a causal mask
  was 7 divisions, mods, compares and selects per lane, and its lanes pushed a 13 x 32 matmul block past the budget)."""
  x = var(n, 0)
  bits = max(1, (n - 1).bit_length())
  total = _bit(x, 0, negated)
  for b in range(1, bits): total = total + _bit(x, b, negated) * c(1 << b)
  assert simplify(total) is (x if n > 1 else x.const_like(0))  # an expression over a range of 1 folds by bounds
  check_same_values(total, [x])

@pytest.mark.parametrize("cm", [(2, 2), (4, 3), (3, 5), (8, 16)])
def test_digits_of_an_index_join(cm):
  """(x % c)*k + ((x // c) % m)*(c*k) is (x % (c*m))*k for x >= 0; a dividend that can be negative keeps its value.
  (Where the digits fold first -- (3i + j) % 3 is j % 3 -- the join may not apply; the value is checked there.)"""
  cc, m = cm
  i, j = var(50, 0), var(7, 1)
  for k in (1, 5):
    e = (i % c(cc)) * c(k) + ((i // c(cc)) % c(m)) * c(cc * k)
    assert simplify(e) is simplify((i % c(cc * m)) * c(k))
  for x in (i * 3 + j, i * 2, i + j):
    check_same_values((x % c(cc)) + ((x // c(cc)) % c(m)) * c(cc), [i, j])
  y = i - 20
  check_same_values((y % c(cc)) + ((y // c(cc)) % c(m)) * c(cc), [i])

def test_a_zero_or_one_int_through_a_bool_is_itself():
  x = var(10, 0)
  m = x % c(2)
  assert simplify((m < c(1)).where(c(0), c(1))) is m
  assert simplify((m < c(1)).alu(Ops.XOR, TRUE).where(c(1), c(0))) is m
  # a value that can be 2 or -1 is no bit: left alone
  for v in (x % c(3), x % c(2) - c(1)):
    e = (v < c(1)).where(c(0), c(1))
    assert simplify(e) is not simplify(v)
    check_same_values(e, [x])

def test_a_join_that_cancels_every_term_leaves_the_constant():
  """(y+3) % 2 + ((y+3) // 2) * 2 - y is 3: the join empties the terms; an empty dict once read as "nothing joined
  yet" rejoined the originals forever (the digit join's first version hung here)."""
  y = var(10, 0)
  x = y + c(3)
  e = x % c(2) + (x // c(2)) * c(2) - y
  assert simplify(e) is c(3)
  check_same_values(e, [y])
  e2 = (x % c(2)) * c(5) + ((x // c(2)) % c(4)) * c(10) - (x % c(8)) * c(5)
  assert simplify(e2) is c(0)
  check_same_values(e2, [y])
