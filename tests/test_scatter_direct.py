"""Direct scatters (docs/design/0017): scatter_add, scatter_reduce sum/mean, `t[idx] = v` with a tensor index and the
gradient of every gather are a copy of the base plus one load-add-store per source element, at the position its index
holds -- values against torch (float64) and np.add.at, on CPU and PYTHON; an index out of range raises; the scattered
loop is never split over threads or lanes, by the heuristic, by a hand-given opt or by BEAM."""
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.helpers import Context
from lucidgrad.schedule import create_schedule
from lucidgrad.codegen import get_program, KernelOptError
from lucidgrad.codegen.opt import Opt, OptOps, Kernel, hand_coded_opts
from lucidgrad.codegen.lower import serial_ranges
from lucidgrad.device import Device
from conftest import DEVICES
from lucidgrad.uop.ops import Ops, AxisType
torch = pytest.importorskip("torch")

rng = np.random.default_rng(0)
def rnd(*shape): return rng.standard_normal(shape).astype(np.float32)
def ints(hi, *shape, lo=0): return rng.integers(lo, hi, shape)

def _grad_check(fn_lg, fn_th, x, device=None):
  """Values and the gradient of sum(out * g) against torch in float64, on `device` (None: the default one, where the
  lambdas build their indices)."""
  t = Tensor(x, requires_grad=True, device=device)
  tt = torch.tensor(x.astype(np.float64), requires_grad=True)
  out, ref = fn_lg(t), fn_th(tt)
  g = rnd(*ref.shape)
  (out * Tensor(g, device=device)).sum().backward()
  (ref * torch.tensor(g.astype(np.float64))).sum().backward()
  np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-5, atol=1e-5)

# ---- values ----
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dim", [0, 1, 2])
def test_scatter_add_along_each_dim_with_repeats_matches_torch(dim, device):
  x = rnd(4, 5, 6)
  shape = [3, 4, 5]
  shape[dim] = 9  # more sources than positions: repeats certain
  idx, src = ints(x.shape[dim], *shape), rnd(*shape)
  got = Tensor(x, device=device).scatter_add(dim, Tensor(idx, device=device), Tensor(src, device=device)).numpy()
  ref = torch.tensor(x).scatter_add(dim, torch.tensor(idx), torch.tensor(src)).numpy()
  np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)

@pytest.mark.parametrize("device", DEVICES)
def test_repeated_indices_add_in_source_order_exactly(device):
  """The adds into one address come in source order, whatever the opts: equal to np.add.at in float32, bit for bit."""
  base, idx = rnd(7, 40), ints(7, 300)
  src = (rnd(300, 40) * 10.0 ** rng.integers(-3, 4, (300, 1))).astype(np.float32)  # magnitudes where the order shows
  full = np.broadcast_to(idx[:, None], (300, 40)).copy()
  got = Tensor(base, device=device).scatter_add(0, Tensor(full, device=device), Tensor(src, device=device)).numpy()
  ref = base.copy()
  np.add.at(ref, idx, src)
  np.testing.assert_array_equal(got, ref)

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_sum_and_mean_match_torch(reduce, include_self, device):
  x, idx, src = rnd(6, 4), ints(6, 10, 4), rnd(10, 4)
  got = Tensor(x, device=device).scatter_reduce(0, Tensor(idx, device=device), Tensor(src, device=device), reduce, include_self=include_self)
  ref = torch.tensor(x).scatter_reduce(0, torch.tensor(idx), torch.tensor(src), reduce, include_self=include_self)
  np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)

def test_int_scatter_reduce_mean_rounds_down_as_torch():
  x, idx, src = ints(50, 5, 3), ints(5, 8, 3), ints(50, 8, 3)
  for include_self in (True, False):
    got = Tensor(x, dtype=dtypes.int32).scatter_reduce(0, Tensor(idx), Tensor(src, dtype=dtypes.int32), "mean", include_self=include_self)
    ref = torch.tensor(x, dtype=torch.int32).scatter_reduce(0, torch.tensor(idx), torch.tensor(src, dtype=torch.int32), "mean", include_self=include_self)
    np.testing.assert_array_equal(got.numpy(), ref.numpy())

def test_scatter_add_with_a_scalar_source_and_a_smaller_index():
  x, idx = rnd(5, 6), ints(5, 3, 4)
  got = Tensor(x).scatter_add(0, Tensor(idx), 2.5).numpy()
  ref = torch.tensor(x).scatter_add(0, torch.tensor(idx), torch.full((3, 4), 2.5)).numpy()
  np.testing.assert_allclose(got, ref, rtol=1e-6)

@pytest.mark.parametrize("device", DEVICES)
def test_setitem_with_a_tensor_index_and_repeats_keeps_the_last(device):
  """torch leaves the winner of repeated indices undefined (index_put_, accumulate=False); lucidgrad stores in the
  index's row-major order, so the last one wins, as NumPy's fancy assignment does."""
  x, i, v = rnd(6, 3), np.array([4, -1, 4, 0, -2, 5]), rnd(6, 3)
  t = Tensor(x, device=device).contiguous().realize()
  t[Tensor(i, device=device)] = Tensor(v, device=device)
  ref = x.copy()
  ref[i] = v
  np.testing.assert_array_equal(t.numpy(), ref)
  a, j, k = rnd(4, 5, 6), np.array([[0, 3], [3, -4]]), np.array([1, 5])
  t = Tensor(a, device=device).contiguous().realize()
  t[Tensor(j, device=device), :, Tensor(k, device=device)] = 7.0  # non-adjacent index axes: the broadcast axes go first
  ref = a.copy()
  ref[j, :, k] = 7.0
  np.testing.assert_array_equal(t.numpy(), ref)

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_stores_the_last_of_repeats(dim, device):
  x = rnd(5, 6)
  shape = [4, 5]
  shape[dim] = 8
  idx, src = ints(x.shape[dim], *shape), rnd(*shape)
  def stored(base, vals):
    out = base.copy()
    for pos in np.ndindex(*shape):  # in row-major order: a later store overwrites
      at = list(pos)
      at[dim] = idx[pos]
      out[tuple(at)] = vals[pos]
    return out
  got = Tensor(x, device=device).scatter(dim, Tensor(idx, device=device), Tensor(src, device=device)).numpy()
  np.testing.assert_array_equal(got, stored(x, src))
  got = Tensor(x > 0, device=device).scatter(dim, Tensor(idx, device=device), Tensor(src > 0.5, device=device)).numpy()
  np.testing.assert_array_equal(got, stored(x > 0, src > 0.5))

def test_scatter_gradient_without_repeats_matches_torch():
  x, src = rnd(5, 4), rnd(3, 4)
  idx = np.stack([rng.permutation(5)[:3] for _ in range(4)], 1)  # distinct along dim 0: torch's result is defined
  s = Tensor(src, requires_grad=True)
  ss = torch.tensor(src.astype(np.float64), requires_grad=True)
  _grad_check(lambda t: t.scatter(0, Tensor(idx), s * 2), lambda t: t.scatter(0, torch.tensor(idx), ss * 2), x)
  np.testing.assert_allclose(s.grad.numpy(), ss.grad.numpy(), rtol=1e-6)

@pytest.mark.parametrize("device", DEVICES)
def test_empty_index_and_0d(device):
  x = rnd(4, 3)
  got = Tensor(x, device=device).scatter_add(0, Tensor(np.zeros((0, 3), np.int64), device=device), Tensor(np.zeros((0, 3), np.float32), device=device))
  np.testing.assert_array_equal(got.numpy(), x)
  got = Tensor(np.float32(2.0), device=device).scatter_add(0, Tensor(np.array(0), device=device), Tensor(np.float32(3.0), device=device))
  assert got.item() == 5.0

# ---- gradients ----
@pytest.mark.parametrize("device", DEVICES)
def test_embedding_gradient_matches_np_add_at(device):
  w, idx = rnd(50, 8), ints(50, 4, 16)  # 64 tokens of 50 rows: repeats certain
  t = Tensor(w, requires_grad=True, device=device)
  g = rnd(4, 16, 8)
  (Tensor(idx, device=device).embedding(t) * Tensor(g, device=device)).sum().backward()
  ref = np.zeros_like(w)
  np.add.at(ref, idx.reshape(-1), g.reshape(-1, 8))
  np.testing.assert_array_equal(t.grad.numpy(), ref)  # one add per token, in order: exact

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dim", [0, 1])
def test_gather_gradient_matches_torch(dim, device):
  idx = ints(4, 6, 5) if dim == 0 else ints(5, 4, 8)
  _grad_check(lambda t: t.gather(dim, Tensor(idx, device=device)), lambda t: torch.gather(t, dim, torch.tensor(idx)), rnd(4, 5), device)

def test_take_along_dim_and_index_select_gradients_match_torch():
  x, idx = rnd(4, 6), ints(6, 1, 9)
  _grad_check(lambda t: t.take_along_dim(Tensor(idx), 1), lambda t: torch.take_along_dim(t, torch.tensor(idx), 1), x)
  _grad_check(lambda t: t.take_along_dim(Tensor(idx[0])), lambda t: torch.take_along_dim(t, torch.tensor(idx[0])), x)
  for dim in (0, 1):
    i = ints(x.shape[dim], 7)
    _grad_check(lambda t: t.index_select(dim, Tensor(i)), lambda t: torch.index_select(t, dim, torch.tensor(i)), x)

@pytest.mark.parametrize("device", DEVICES)
def test_tensor_index_gradients_with_negatives_and_two_indices(device):
  i, j = np.array([-1, 0, -1, 2]), np.array([2, 2, -3, 2])
  _grad_check(lambda t: t[Tensor(i, device=device), :, Tensor(j, device=device)], lambda t: t[torch.tensor(i), :, torch.tensor(j)], rnd(3, 2, 4), device)
  _grad_check(lambda t: t[:, Tensor(np.array([[1, -1], [0, 1]]), device=device)], lambda t: t[:, torch.tensor([[1, -1], [0, 1]])], rnd(3, 2, 4), device)

def test_scatter_add_gradients_reach_the_base_and_the_source():
  x, idx, src = rnd(5, 4), ints(5, 7, 4), rnd(7, 4)
  s = Tensor(src, requires_grad=True)
  ss = torch.tensor(src.astype(np.float64), requires_grad=True)
  _grad_check(lambda t: (t * 2).scatter_add(0, Tensor(idx), s * 3), lambda t: (t * 2).scatter_add(0, torch.tensor(idx), ss * 3), x)
  np.testing.assert_allclose(s.grad.numpy(), ss.grad.numpy(), rtol=1e-5)

def test_setitem_gradient_goes_to_the_stored_values_and_the_rest():
  x, v, i = rnd(6, 3), rnd(4, 3), np.array([1, 4, 1, 0])  # row 1 twice: the last of them takes its gradient
  t, vt = Tensor(x, requires_grad=True), Tensor(v, requires_grad=True)
  y = t * 1
  y[Tensor(i)] = vt
  g = rnd(6, 3)
  (y * Tensor(g)).sum().backward()
  ref_t = g.copy()
  ref_t[i] = 0
  ref_v = g[i].copy()
  ref_v[0] = 0  # overwritten by the third
  np.testing.assert_array_equal(t.grad.numpy(), ref_t)
  np.testing.assert_array_equal(vt.grad.numpy(), ref_v)

@pytest.mark.parametrize("shape,weighted,smooth", [((6, 5), False, 0.0), ((6, 5), True, 0.1), ((4, 5, 3), True, 0.0)], ids=str)
def test_cross_entropy_gradient_matches_torch(shape, weighted, smooth):
  x = rnd(*shape) * 3
  t = ints(shape[1], *(shape[:1] + shape[2:]))
  w = np.abs(rnd(shape[1])) + 0.1 if weighted else None
  _grad_check(lambda a: a.cross_entropy(Tensor(t), None if w is None else Tensor(w), label_smoothing=smooth),
              lambda a: torch.nn.functional.cross_entropy(a, torch.tensor(t), None if w is None else torch.tensor(w.astype(np.float64)), label_smoothing=smooth), x)

def test_half_gradients_add_in_float32():
  w, idx = rnd(4, 8), np.zeros(600, np.int64)  # 600 adds into one row: float16 steps would stop at 2048
  t = Tensor(w.astype(np.float16), requires_grad=True)
  Tensor(idx).embedding(t).sum().backward()
  np.testing.assert_array_equal(t.grad.numpy()[0], np.full(8, 600, np.float16))

# ---- bounds ----
@pytest.mark.parametrize("op", [
  lambda x, i: x.scatter_add(0, i.reshape(-1, 1).expand(-1, 3), Tensor.ones(4, 3, device=x.device)),
  lambda x, i: x.scatter_reduce(0, i.reshape(-1, 1).expand(-1, 3), Tensor.ones(4, 3, device=x.device), "mean"),
  lambda x, i: x.scatter(0, i.reshape(-1, 1).expand(-1, 3), 1.0),
], ids=["scatter_add", "scatter_mean", "scatter"])
@pytest.mark.parametrize("device", DEVICES)
def test_an_index_out_of_range_raises_never_a_wrong_number(op, device):
  x = Tensor(rnd(6, 3), device=device)
  for bad in (6, 1000, -1):
    i = Tensor(np.array([0, bad, 2, 1]), dtype=dtypes.int32, device=device)
    with pytest.raises(IndexError, match="out of range"): op(x, i).numpy()

@pytest.mark.parametrize("device", DEVICES)
def test_setitem_and_gradient_out_of_range_raise(device):
  t = Tensor(rnd(6, 3), device=device).contiguous().realize()
  with pytest.raises(IndexError, match="out of range"):
    t[Tensor(np.array([1, 6]), device=device)] = 1.0
    t.numpy()
  w = Tensor(rnd(6, 3), requires_grad=True, device=device)
  Tensor(np.array([0, 9]), device=device).embedding(w).sum().backward()
  with pytest.raises(IndexError, match="out of range"): w.grad.numpy()

def test_out_of_range_writes_are_guarded_in_the_kernel():
  """With the device check off, the kernel writes nothing for a bad index, never memory past the buffer (the PYTHON
  interpreter raises on any store its gate lets through out of bounds)."""
  x = rnd(6, 3)
  idx = np.array([0, 7, -100, 2**30, 5], np.int64)
  with Context(CHECK_INDEX=0):
    t = Tensor(x, device="PYTHON").contiguous().realize()
    got = t.scatter_add(0, Tensor(idx, device="PYTHON").reshape(-1, 1).expand(-1, 3).contiguous(), Tensor.ones(5, 3, device="PYTHON")).numpy()
  ref = x.copy()
  ref[[0, 5]] += 1
  np.testing.assert_array_equal(got, ref)

def test_the_python_interpreter_raises_on_a_store_out_of_bounds(monkeypatch):
  """The reference catches what the clamp prevents: with the clamp and the gate taken out of the lowering, the store
  at index 9 of a 6-row buffer raises instead of writing past it (the add's load would raise first: a plain scatter)."""
  import lucidgrad.codegen.lower as lower
  monkeypatch.setattr(lower, "_loaded_row", lambda where, idx, valid, size, idt: (lower.TRUE, lower.index(where, idx, valid).cast(idt)))
  with Context(CHECK_INDEX=0), pytest.raises(IndexError, match="store out of bounds"):
    Tensor.zeros(6, 5, device="PYTHON").scatter(0, Tensor(np.array([[1] * 5, [9] * 5]), device="PYTHON"), 1.0).numpy()

# ---- kernels and opts ----
def _scatter_kernel(rows=4096, tokens=32, dim=16):
  w = Tensor(rnd(rows, dim), requires_grad=True).realize()
  i = Tensor(ints(rows, tokens), dtype=dtypes.int32).realize()
  i.embedding(w).sum().backward()
  items, _, _ = create_schedule([w.grad.uop])
  return items

def test_embedding_gradient_does_no_reduce_over_the_table_rows():
  items = _scatter_kernel()
  assert [it.kind for it in items] == ["kernel", "kernel"]  # the zeros, then the adds
  for it in items: assert Ops.REDUCE_AXIS not in {u.op for u in it.ast.toposort}
  adds = Kernel(items[1].ast, Device["CPU"].renderer)
  assert adds.sizes() == [32, 16] and not any(u.op is Ops.REDUCE for u in adds.sink.toposort)
  assert serial_ranges(adds.sink) == {adds.axes[0]}  # the tokens; the columns are free

def test_opts_that_split_the_scattered_loop_are_invalid():
  ren = Device["CPU"].renderer
  k = Kernel(_scatter_kernel(tokens=64)[1].ast, ren)
  for opt in (Opt(OptOps.THREAD, 0, 2), Opt(OptOps.UPCAST, 0, 4), Opt(OptOps.LOCAL, 0, 4)):
    with pytest.raises(KernelOptError, match="serial"): k.copy().apply_opt(opt)
    assert opt not in k.valid_opts()
  assert Opt(OptOps.UPCAST, 1, 8) in k.valid_opts()
  k.copy().apply_opt(Opt(OptOps.THREAD, 1, 2))  # the columns may be split over threads
  # the heuristic threads and vectorises the columns, never the tokens
  h = hand_coded_opts(k.copy())
  assert all(o.axis != 0 or o.op not in (OptOps.THREAD, OptOps.UPCAST, OptOps.LOCAL) for o in h.applied), h.applied
  assert h.kinds()[0] is AxisType.LOOP
  # and GPU-style targets keep it a loop in every thread
  from lucidgrad.renderer.cuda import CUDARenderer
  src = get_program(k.ast, CUDARenderer()).src
  assert "for (int ridx0 = 0; ridx0 < 64; ridx0++)" in src, src

def test_padding_the_scattered_loop_keeps_it_serial():
  """PADTO gates the loop it pads, and a gate naming the loop once made it look free: BEAM then upcast the padded
  token loop of a scatter (two tokens into one row in one vector: an add lost). Padded, it is still serial."""
  k = Kernel(_scatter_kernel(rows=64, tokens=64)[1].ast, Device["CPU"].renderer)
  padded = k.copy().apply_opts([Opt(OptOps.UPCAST, 1, 8), Opt(OptOps.PADTO, 0, 3), Opt(OptOps.PADTO, 0, 5)])
  for opt in (Opt(OptOps.UPCAST, 0, 7), Opt(OptOps.THREAD, 0, 2)):
    with pytest.raises(KernelOptError, match="serial"): padded.copy().apply_opt(opt)
    assert opt not in padded.valid_opts()

def test_beam_never_splits_the_scattered_loop(tmp_path, monkeypatch):
  from lucidgrad.codegen.opt import search
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  ast = _scatter_kernel(rows=64, tokens=64)[1].ast
  with Context(BEAM=2, BEAM_TIME_LIMIT=4): opts = search.beam_search(ast, "CPU", 2, key="scatter-test")
  k = Kernel(ast, Device["CPU"].renderer).apply_opts(opts)  # valid: each was checked again
  # the scattered loop (wherever a SWAP moved it) is still one plain loop: no part of it became lanes or threads
  assert serial_ranges(k.sink) and all(r.arg[1] is AxisType.LOOP for r in serial_ranges(k.sink)), opts

@pytest.mark.parametrize("pick", ["gather", "index"])
def test_a_scatter_with_repeated_indices_is_not_split_into_boxes_that_race(pick):
  """The gradient of a gather whose 4 indices are all 0 adds 4 values into one element; a selection of element 1
  downstream gates the values, and range splitting used to cut the scatter's loop into boxes run in one program
  whose graph let the second box read the element before the first had stored into it: one term lost, silently
  (fuzz seed 9433: 14 for 15 here). A kernel that reads what it stores is not split."""
  v0 = Tensor(np.array([1.5]), requires_grad=True)
  idx = Tensor(np.zeros(4, np.int32))
  v2 = v0.gather(0, idx) if pick == "gather" else v0[idx]
  ((v2 * Tensor(np.array([1., 2., 3., 4.]))).sum() + v2[1] * Tensor(np.array(5.))).backward()
  np.testing.assert_allclose(v0.grad.numpy(), [1 + 2 + 3 + 4 + 5], rtol=0)

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("how", ["expand", "repeat", "expand_2d"])
def test_an_index_that_is_one_value_repeated_adds_every_term(how, device):
  """Fuzz seed 18143: an index that is one loaded value broadcast (x[i.expand(n)]) gives the scatter an address its loop
  does not move; the read of its add was hoisted out of the loop, and only the last term reached the gradient."""
  one = lambda v: Tensor(np.array([v], np.int32), device=device)
  cases = {"expand": (lambda t: t[one(-2).expand(5)], lambda t: t[torch.tensor([-2] * 5)]),
           "repeat": (lambda t: t.gather(0, one(1).repeat((4,))), lambda t: t.gather(0, torch.tensor([1] * 4))),
           "expand_2d": (lambda t: t.index_select(0, one(2).expand(3)), lambda t: t.index_select(0, torch.tensor([2] * 3)))}
  lg, th = cases[how]
  _grad_check(lg, th, rnd(3) if how != "expand_2d" else rnd(3, 4), device)
  base, idx, src = rnd(3, 2), one(0).reshape(1, 1).expand(4, 2), rnd(4, 2)
  got = Tensor(base, device=device).scatter_add(0, idx, Tensor(src, device=device)).numpy()
  want = base.copy(); want[0] += src.sum(0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

@pytest.mark.parametrize("n", [9, 33])
def test_an_index_computed_by_a_reduce_keeps_its_scatter_loop_serial(n):
  """cummax's gradient adds each position's g at the argmax of its running window, an index a reduce computes. Ties
  send several positions to one index: the position loop must not be upcast or threaded (8 lanes that read, added and
  wrote one element together kept one add of 8: seen on AVX2, where a row of 9 took 8 lanes). Against torch, float64."""
  import torch
  x = np.random.default_rng(12).integers(-2, 3, (3, n)).astype(np.float32)
  w = np.random.default_rng(0).standard_normal((3, n))
  t = Tensor(x, requires_grad=True)
  out = t.cummax(1).values
  (out * Tensor(w, dtype=dtypes.float32)).sum().backward()
  out.realize()  # the forward first: the gradient's kernel then recomputes the argmax in the scatter's address
  tt = torch.tensor(x.astype(np.float64), requires_grad=True)
  (tt.cummax(1).values * torch.tensor(w)).sum().backward()
  np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-5, atol=1e-6)
