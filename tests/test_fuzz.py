"""The differential fuzzer (lucidgrad/testing/fuzz.py) in CI: 500 random programs with fixed seeds must match NumPy in
float64 (values, dtypes, shapes) and torch in float64 (gradients), in chunks that `pytest -n 2` spreads over workers.
Programs draw from the whole API, in-place writes (setitem, +=, add_, assign) and views that must see them included;
each bug the fuzzer found and that is not fixed yet is steered around (fuzz.KNOWN) and kept here as an xfail test of
its repro."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes
from lucidgrad.testing import fuzz

CASES, CHUNK, MAX_OPS = 500, 25, 10

def _check(seed: int, n: int, groups: frozenset):
  rep = fuzz.run(n, seed, MAX_OPS, groups, minimise_budget=30, log=lambda s: None, avoid_known=True)
  assert not rep.failing, rep.summary(groups) + "\n\n" + "\n\n".join(code for _, _, code in rep.failing.values())

@pytest.mark.parametrize("start", range(0, CASES, CHUNK))
def test_random_programs_match_numpy_and_torch(start):
  _check(1_000_000 + start, CHUNK, fuzz.DEFAULT_GROUPS)

def test_references_agree_with_each_other():
  """NumPy's and torch's answers to every generated op agree (dtypes, shapes, ints and bools exactly), so a mismatch is
  lucidgrad's: strict mode raises FuzzerBug where they do not."""
  for seed in range(60):
    fuzz.generate(seed, 30, frozenset(fuzz.GROUPS), strict=True)

def test_generation_is_deterministic():
  a, _ = fuzz.generate(123)
  b, _ = fuzz.generate(123)
  consts_a, consts_b = {}, {}
  assert [fuzz.render(o, i, "lg", consts_a) for i, o in enumerate(a.ops)] == [fuzz.render(o, i, "lg", consts_b) for i, o in enumerate(b.ops)]
  assert all(np.array_equal(consts_a[k], consts_b[k], equal_nan=True) for k in consts_a)

def test_a_planted_bug_is_found_minimised_and_printed(monkeypatch):
  x = np.array([[0.5, -1.25, 2.0], [0.75, 1.5, -0.5]], np.float32)
  Op = fuzz.Op
  prog = fuzz.Program([Op("input", (), {"data": x, "rg": False}), Op("neg", (0,)), Op("exp", (1,)), Op("flip", (2,), {"axes": (1,)}),
                       Op("sum", (3,), {"axis": 0, "keepdim": False}), Op("sqrt", (4,))], seed=7)
  assert fuzz.check_program(prog)[0] == []
  exp = Tensor.exp
  monkeypatch.setattr(Tensor, "exp", lambda self: exp(self) * 1.001)  # a silently wrong exp
  bad, _ = fuzz.check_program(prog)
  assert [m.kind for m in bad] == ["value"]
  small, m = fuzz.minimise(prog, bad[0])
  assert small.n_ops <= 2 and any(o.kind == "exp" for o in small.ops)
  code = fuzz.repro(small, m, prog.n_ops)
  assert ".exp()" in code and "np.exp(" in code
  exec(compile(code, "<repro>", "exec"), {"print": lambda *a: None})  # the printed program runs as it is

def test_a_planted_gradient_bug_is_found(monkeypatch):
  x = np.array([0.5, -1.25, 2.0, 0.75], np.float32)
  prog = fuzz.Program([fuzz.Op("input", (), {"data": x, "rg": True}), fuzz.Op("sigmoid", (0,)), fuzz.Op("mul", (1,), {"s": 2.0, "rev": False})],
                      grad=True, seed=3)
  assert fuzz.check_program(prog)[0] == []
  sigmoid = Tensor.sigmoid
  monkeypatch.setattr(Tensor, "sigmoid", lambda self: sigmoid(self).detach() + (self - self.detach()) * 0.25)  # right value, wrong slope
  assert [m.kind for m in fuzz.check_program(prog)[0]] == ["grad"]

def test_a_crash_is_reported(monkeypatch):
  prog = fuzz.Program([fuzz.Op("input", (), {"data": np.ones((2, 3), np.float32), "rg": False}), fuzz.Op("relu", (0,))])
  monkeypatch.setattr(Tensor, "relu", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
  bad, _ = fuzz.check_program(prog)
  assert [m.kind for m in bad] == ["crash"] and "boom" in bad[0].msg

def test_op_groups_parse():
  assert fuzz.parse_groups("+setitem,-errors") == (fuzz.DEFAULT_GROUPS | {"setitem"}) - {"errors"}
  assert fuzz.parse_groups("unary,binary") == {"unary", "binary"}
  assert fuzz.parse_groups("all") == set(fuzz.GROUPS)
  assert fuzz.parse_groups(fuzz.groups_spec(frozenset({"unary", "setitem"}))) == {"unary", "setitem"}
  with pytest.raises(SystemExit): fuzz.parse_groups("+nope")

# ---- the bugs the fuzzer found, minimised: each fails until fixed (then remove it from fuzz.KNOWN and from here) ----
def _known(name: str):
  return pytest.mark.xfail(strict=False, reason=f"fuzz.KNOWN[{name!r}]: {fuzz.KNOWN[name][0]}")

@pytest.mark.xfail(strict=False, reason="erf's docstring promises an absolute error below 1.5e-7 for float32 (A&S 7.1.26); 1 - poly * e^-x^2 "
                   "loses it near 0 (5.3e-7 at x = -0.042, 0.1% relative at x = -0.00024), so the fuzzer allows 6e-7: tensor.py erf")
def test_float32_erf_is_as_accurate_as_documented():
  import math
  x = np.linspace(-6, 6, 20001).astype(np.float32)
  ref = np.array([math.erf(v) for v in x.astype(np.float64)])
  assert np.max(np.abs(Tensor(x).erf().numpy() - ref)) < 1.5e-7

def test_every_known_bug_has_a_test():
  tests = {n for n, f in globals().items() if n.startswith("test_") and any(m.name == "xfail" and "fuzz.KNOWN[" in m.kwargs.get("reason", "")
                                                                           for m in getattr(f, "pytestmark", []))}
  assert len(tests) == len(fuzz.KNOWN)

# ---- bugs the fuzzer found that are fixed: their repros stay as tests ----
def test_an_int_tensor_index_out_of_range_raises():
  """Fuzz seed 18 (err_index_array): x[Tensor([0, 3])] of 3 elements read 0; it raises at the next read since design 0005 (CHECK_INDEX)."""
  with pytest.raises(IndexError): Tensor(np.arange(3.0, dtype=np.float32))[Tensor(np.array([0, 3]))].numpy()

def test_log1p_of_minus_one_is_minus_inf():
  """Fuzz seed 660: hardtanh(-1, 0.5) then log1p gave NaN where u = 1 + x is 0 (the gradient term lg - lg.detach() was -inf + inf)."""
  for dt in (np.float32, np.float64):
    np.testing.assert_array_equal(Tensor(np.array([-1.0, -1.5, np.inf], dt)).log1p().numpy(), [-np.inf, np.nan, np.inf])

def test_the_results_of_repeat_and_tile_are_writable():
  """Fuzz seeds 2000013, 5000045 (writes): they were views with an EXPAND step, so a write raised; fixed in a8828fc."""
  x = Tensor(np.arange(3.0, dtype=np.float32))
  for y in (x.repeat(2), x.tile(2), x.repeat_interleave(2)):
    y[0] = 7
    assert y.numpy()[0] == 7 and x.numpy()[0] == 0  # a new tensor, as in torch

def test_loads_under_gates_of_other_loops_are_not_one_vector():
  """Fuzz seed 50258 (--big): a kernel of two stores read x[1] in its second loop nest and x[0] under `k < 1` in its
  first; grouped into one gated vector load, the vector sat in the first nest's k loop and the C compile failed in the
  second (`val1` undeclared). Lanes under different gates now group only where no gate reads a loop the address does not."""
  rep = fuzz.run(1, 50258, 30, fuzz.DEFAULT_GROUPS, minimise_budget=0, log=lambda s: None, avoid_known=True, big=True)
  assert rep.cases == 1 and not rep.failing, "\n\n".join(code for _, _, code in rep.failing.values())

@pytest.mark.parametrize("n", [8, 16, 32])
def test_triangles_of_ones_are_right(n):
  """Fuzz seed 50531: ones(8, 8).tril(-2) gave rows 3 and 5 all ones. The kernel was right; GCC 12.2 with AVX-512
  folded each row to a constant vector and took {1,1,1,1,0,0,0,0} for a broadcast of 1.0 when a memcpy stored it as
  a 256-bit integer. Vectors are stored through a typed pointer now (renderer/c.py vec_store). A causal mask of a
  short sequence is exactly this graph."""
  for k in (-2, 0, 1, n // 2):
    np.testing.assert_array_equal(Tensor.ones(n, n).tril(k).numpy(), np.tril(np.ones((n, n), np.float32), k), err_msg=f"tril({k})")
    np.testing.assert_array_equal(Tensor.ones(n, n).triu(k).numpy(), np.triu(np.ones((n, n), np.float32), k), err_msg=f"triu({k})")
  mask = Tensor.ones(n, n, dtype=dtypes.bool).tril()
  np.testing.assert_array_equal(mask.where(0.0, float("-inf")).numpy(), np.where(np.tril(np.ones((n, n), bool)), 0.0, -np.inf))

def test_a_value_read_twice_in_one_kernel_is_computed_once():
  """Fuzz seed 52538: softmax over a 1-long axis of a vector norm gave 0.99988, not 1. The kernel summed the norm twice
  (inside the max and for the numerator), one sum unrolled and one looped, so the two rounded apart and exp(v - max v)
  was not exp(0). Reduces equal up to their own ranges are one reduce now (opt/kernel.py merge_equal_reduces)."""
  x = np.random.default_rng(52538).standard_normal((7, 3)).astype(np.float32) * 3
  np.testing.assert_array_equal(Tensor(x).vector_norm(0.5, None, True).softmax(0).numpy(), [[1.0]])
  np.testing.assert_array_equal(Tensor(x).sum(keepdim=True).reshape(1, 1).softmax(1).numpy(), [[1.0]])
  rep = fuzz.run(1, 52538, 30, fuzz.DEFAULT_GROUPS | {"setitem", "inplace"}, minimise_budget=0, log=lambda s: None, avoid_known=True)
  assert rep.cases == 1 and not rep.failing, "\n\n".join(code for _, _, code in rep.failing.values())

def test_argmax_of_a_nan_is_its_index():
  """fuzz.KNOWN['argmax_nan']: argmax looked for x == max(x), False for NaN, so a slice holding one gave its length."""
  x = np.array([[1.0, np.nan, 2.0, np.nan], [3.0, 2.0, 1.0, 0.0], [np.nan, -np.inf, np.inf, np.nan]], np.float32)
  for f in ("argmax", "argmin"):
    for axis in (None, 0, 1):
      np.testing.assert_array_equal(getattr(Tensor(x), f)(axis).numpy(), getattr(torch.tensor(x), f)(axis).numpy())  # the first NaN

def test_softmax_and_logsumexp_over_an_empty_axis():
  """fuzz.KNOWN['reduce_empty_axis']: the max they shift by raised over an axis of size 0."""
  for shape, axis in (((2, 0), -1), ((0, 3), 0), ((0, 3), 1), ((2, 0, 3), 1), ((0,), 0)):
    x = np.zeros(shape, np.float32)
    for f in ("softmax", "log_softmax", "logsumexp"):
      got, want = getattr(Tensor(x), f)(axis).numpy(), getattr(torch.tensor(x), f)(axis).numpy()
      assert got.shape == want.shape and got.dtype == want.dtype
      np.testing.assert_array_equal(got, want)  # logsumexp: -inf
  x = Tensor(np.zeros((2, 0), np.float32), requires_grad=True)
  x.logsumexp(-1).sum().backward()
  assert x.grad.shape == (2, 0)

def test_picking_along_an_empty_bool_axis():
  """fuzz.KNOWN['bool_pick_empty']: picking a bool took max() over the gathered axis, which raised when it was empty."""
  x, i = np.zeros((2, 0, 3), bool), np.zeros(0, np.int64)
  tx, ti = torch.tensor(x), torch.tensor(i)
  assert Tensor(x).index_select(1, Tensor(i)).shape == tuple(tx.index_select(1, ti).shape) == (2, 0, 3)
  assert Tensor(x)[:, Tensor(i)].shape == tuple(tx[:, ti].shape)
  gi = np.zeros((2, 0, 2), np.int64)
  assert Tensor(x).gather(1, Tensor(gi)).shape == tuple(tx.gather(1, torch.tensor(gi)).shape)
  y = np.array([[True, False, True]])
  np.testing.assert_array_equal(Tensor(y).gather(1, Tensor(np.array([[1, 0, 2]]))).numpy(), [[False, True, True]])  # non-empty still picks

def test_pad_keeps_the_dtype_and_casts_the_value():
  """fuzz.KNOWN['pad_value_dtype']: a value of a higher kind promoted the result (bool padded with 1 gave int64)."""
  for arr, dt, values in (([True, False], np.bool_, (-3, 0.5, 0.0, 1)), ([1, 2], np.int32, (0.5, -2.7, 2.7, True)), ([1, 2], np.uint8, (2.7, 1)),
                          ([1, 2], np.float16, (1 / 3, -1))):
    for v in values:
      got, want = Tensor(np.array(arr, dt)).pad(((1, 1),), value=v), F.pad(torch.tensor(np.array(arr, dt)), (1, 1), value=v)
      assert got.dtype.name == str(want.dtype)[6:]
      np.testing.assert_array_equal(got.numpy(), want.numpy())

def test_unflatten_with_minus_one_of_an_empty_tensor():
  """fuzz.KNOWN['unflatten_empty']: the -1 went on to reshape, which cannot infer it from 0 elements; the axis fixes it."""
  for shape, dim, sizes in (((5, 3, 0), 1, (3, -1)), ((5, 0, 2), 1, (-1, 3)), ((5, 0), 0, (-1, 5)), ((0, 3), 0, (-1, 2, 1)), ((5, 6, 0), 1, (2, -1))):
    assert Tensor.zeros(*shape).unflatten(dim, sizes).shape == tuple(torch.zeros(shape).unflatten(dim, sizes).shape)
  for shape, dim, sizes in (((5, 0, 2), 1, (-1, 0)), ((5, 6), 1, (0, -1)), ((4, 6), 1, (-1, -1))):  # ambiguous or wrong: torch raises too
    with pytest.raises(RuntimeError): torch.zeros(shape).unflatten(dim, sizes)
    with pytest.raises(ValueError, match="unflatten"): Tensor.zeros(*shape).unflatten(dim, sizes)

def test_the_gradient_of_a_float_remainder():
  """fuzz.KNOWN['mod_grad']: MOD had no derivative rule. torch.remainder's: 1 for a, -floor(a / b) for b, exact zeros included."""
  a = np.array([5.5, -3.25, 7.0, 2.5, -4.0, 4.0, 1.0, -1.0, 3.0, 1e30, 0.0, -0.0, 1.0], np.float64)
  b = np.array([2.0, 1.5, -3.0, 4.0, 2.0, -2.0, 0.1, np.inf, -7.0, 3.0, -2.0, 2.0, 0.0], np.float64)
  for dt in (np.float32, np.float64):
    x, y = Tensor(a.astype(dt), requires_grad=True), Tensor(b.astype(dt), requires_grad=True)
    tx, ty = torch.tensor(a.astype(dt), requires_grad=True), torch.tensor(b.astype(dt), requires_grad=True)
    r, tr = x % y, torch.remainder(tx, ty)
    (r * 3).sum().backward()
    (tr * 3).sum().backward()
    with np.errstate(invalid="ignore"): want = np.remainder(a.astype(dt), b.astype(dt))
    np.testing.assert_array_equal(r.numpy(), want)  # the value as Python's %, a zero with b's sign
    np.testing.assert_array_equal(np.signbit(r.numpy()), np.signbit(want))
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    np.testing.assert_array_equal(y.grad.numpy(), ty.grad.numpy())  # 1 % 0.1: -9 (floor of the exact quotient), not -10

def test_cos_and_tan_are_accurate_for_large_arguments():
  """fuzz.KNOWN['cos_precision']: cos was sin(pi/2 - x), and the rounding of pi/2 - x cost about |x| ulps (50 at 148.6)."""
  rng = np.random.default_rng(0)
  x = np.concatenate([[148.59640502929688, 23.529130935668945, 1.5707963705062866, 1e6, -3e4], rng.uniform(-1e4, 1e4, 2000)])
  for dt in (np.float32, np.float64):
    xs, ref = x.astype(dt), np.cos(x.astype(dt).astype(np.float64))
    ulp = np.spacing(ref.astype(dt)).astype(np.float64)
    assert np.max(np.abs(Tensor(xs).cos().numpy() - ref) / np.abs(ulp)) <= 1  # libm's cos: within an ulp, as NumPy and torch
    t = Tensor(xs).tan().numpy()
    assert np.max(np.abs(t - np.tan(xs.astype(np.float64))) / np.abs(np.spacing(t))) <= 4
  g = Tensor(x, requires_grad=True)
  (g.cos() + g.sin()).sum().backward()
  np.testing.assert_allclose(g.grad.numpy(), np.cos(x) - np.sin(x), rtol=0, atol=1e-15)

def test_a_zero_dim_tensor_promotes_like_a_number():
  """fuzz.KNOWN['zero_dim_promotion']: a 0-d operand promoted like a full tensor. As torch: beside a tensor with dimensions it
  decides the dtype only when of a higher kind (bool < int < float); two 0-d tensors promote as usual."""
  names = ("bool", "uint8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64")
  ops = (lambda a, b: a * b, lambda a, b: a < b, lambda a, b: a.maximum(b), lambda a, b: a / b, lambda a, b: a % b,
         lambda a, b: (a != 0).where(a, b) if isinstance(a, Tensor) else torch.where(a != 0, a, b))
  for an in names:
    for bn in names:
      for sa, sb in (((3,), ()), ((), (3,)), ((), ())):
        ta, tb = torch.ones(sa, dtype=getattr(torch, an)), torch.ones(sb, dtype=getattr(torch, bn))
        la, lb = Tensor.ones(*sa, dtype=getattr(dtypes, an)), Tensor.ones(*sb, dtype=getattr(dtypes, bn))
        for f in ops:
          try: want = str(f(ta, tb).dtype)[6:]
          except RuntimeError: continue  # torch has no such op for these dtypes (bool % bool)
          assert f(la, lb).dtype.name == want, (an, sa, bn, sb)
  np.testing.assert_array_equal((Tensor(np.ones(3, np.float32)) < Tensor(np.array(1 + 1e-12))).numpy(), [False] * 3)  # compared in float32

@_known("layer_norm_flat_grad")
def test_layer_norm_over_a_flat_row_has_an_exact_zero_gradient_beside_others():
  """Fuzz seed 2072: with another gradient term on the same input, layer_norm over a size-1 axis added ~3e-5 of noise."""
  import torch
  k = np.array([[-0.8994], [0.0918], [0.6042], [-0.7698], [-1.8421]], np.float32)
  w2, w3 = np.array([[1.963], [0.1535], [0.724], [2.1888], [0.5822]], np.float32), np.array([[-0.91], [-1.30], [0.61], [0.99], [-0.15]], np.float32)
  x, tx = Tensor(k, requires_grad=True), torch.tensor(k, requires_grad=True)
  ((x.layer_norm((1,)) * Tensor(w2)).sum() + (x * Tensor(w3)).sum()).backward()
  ((torch.nn.functional.layer_norm(tx, (1,)) * torch.tensor(w2)).sum() + (tx * torch.tensor(w3)).sum()).backward()
  np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)

def test_a_non_finite_error_sample_does_not_poison_the_tolerance():
  """The error estimate per element comes from nudged references; one that went through an overflow (NaN there) took
  the floor of the whole array with it, so every element's tolerance was NaN and all of them "differed" (seed 41372).
  Now that element takes the floor of the finite samples, and the others keep theirs."""
  from lucidgrad.testing.fuzz import _smooth, _close
  err = _smooth(np.array([1e-6, np.nan, 2e-6, np.inf]))
  assert np.all(np.isfinite(err)) and err[1] == err[3] == pytest.approx(2e-7)
  want = np.array([1.0, 2.0, 3.0, 4.0])
  assert _close(want + 1e-6, want, err, "float32", 2)[0]
  assert not _close(want + np.array([0, 1e-3, 0, 0]), want, err, "float32", 2)[0]  # still checked where the sample was NaN
