"""Shape ops held to PyTorch on the CPU: cat, stack, split, chunk, repeat, repeat_interleave, tile, roll, tril/triu,
meshgrid, unfold, unflatten, pad in every mode (negative pads too) and interpolate; forward values and gradients, on
contiguous and non-contiguous inputs, empty and one-element tensors; and the errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes
from test_indexing import compare, RNG

X = RNG.standard_normal((3, 4, 5)).astype(np.float32)
def lg(t) -> bool: return isinstance(t, Tensor)
def r(*shape): return RNG.standard_normal(shape).astype(np.float32)

# ---------------------------------------------------------------- cat, stack

@pytest.mark.parametrize("dim,shapes,layout", [(0, [(3, 4, 5), (1, 4, 5), (0, 4, 5)], "contig"), (1, [(3, 4, 5), (3, 2, 5)], "permuted"),
                                               (-1, [(3, 4, 5), (3, 4, 1), (3, 4, 5)], "sliced")], ids=str)
def test_cat(dim, shapes, layout):
  compare(lambda *ts: ts[0].cat(*ts[1:], dim=dim) if lg(ts[0]) else torch.cat(ts, dim), [r(*s) for s in shapes], layout)

def test_cat_with_an_empty_piece_gradient():
  """An empty piece's gradient is a sum over zero rows, here beside other reductions in one kernel."""
  x = r(3, 4)
  compare(lambda t: (y := (Tensor if lg(t) else torch).cat([t, t[2:].expand(0, 4)], 0))[:, :1].expand(3, 2) + y[:, :2], x)

def test_cat_promotes_and_takes_a_list():
  a, b, c = (X[0] * 3).astype(np.int32), X[1], X[2] > 0
  np.testing.assert_allclose(Tensor.cat([Tensor(a), Tensor(b)], dim=1).numpy(), np.concatenate([a, b], 1))
  out = Tensor(c).cat(Tensor(~c), dim=0)
  assert out.dtype == dtypes.bool
  np.testing.assert_array_equal(out.numpy(), np.concatenate([c, ~c]))

@pytest.mark.parametrize("dim", [0, 1, -1, 3])
def test_stack(dim):
  compare(lambda *ts: ts[0].stack(*ts[1:], dim=dim) if lg(ts[0]) else torch.stack(ts, dim), [X, r(3, 4, 5)], "flipped")

def test_stack_of_scalars_and_list_form():
  np.testing.assert_array_equal(Tensor.stack([Tensor(1.0), Tensor(2.0)]).numpy(), [1.0, 2.0])

# ---------------------------------------------------------------- split, chunk, unbind

@pytest.mark.parametrize("arg,dim", [(2, 0), (3, -1), ([1, 0, 3], 1), (5, 2), ([2, 3], -1)], ids=str)
def test_split(arg, dim):
  def fn(t):
    parts = t.split(arg, dim)
    return (Tensor if lg(t) else torch).cat([p * (k + 1) for k, p in enumerate(parts)], dim) if len(parts) > 1 else parts[0]
  compare(fn, X, "sliced")
  assert [p.shape for p in Tensor(X).split(arg, dim)] == [tuple(p.shape) for p in torch.tensor(X).split(arg, dim)]

@pytest.mark.parametrize("n,chunks", [(5, 2), (6, 4), (4, 4), (3, 5), (0, 3)], ids=str)
def test_chunk(n, chunks):
  x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
  got, ref = Tensor(x).chunk(chunks), torch.tensor(x).chunk(chunks)
  assert len(got) == len(ref)
  for a, b in zip(got, ref): np.testing.assert_array_equal(a.numpy(), b.numpy())

def test_unbind():
  for a, b in zip(Tensor(X).unbind(1), torch.tensor(X).unbind(1)): np.testing.assert_array_equal(a.numpy(), b.numpy())

# ---------------------------------------------------------------- repeat, tile, repeat_interleave

@pytest.mark.parametrize("sizes", [(2, 1, 3), (2, 2, 1, 1), (1, 0, 2), (1, 1, 1)], ids=str)
def test_repeat(sizes):
  compare(lambda t: t.repeat(*sizes), X, "permuted")

@pytest.mark.parametrize("shape,sizes", [((), (3,)), ((1,), (2, 2)), ((0, 2), (2, 3))], ids=str)
def test_repeat_small_and_empty(shape, sizes):
  compare(lambda t: t.repeat(sizes), RNG.standard_normal(shape).astype(np.float32))

@pytest.mark.parametrize("dims", [(2,), (2, 1, 1, 2), (1, 3, 1)], ids=str)
def test_tile(dims):
  compare(lambda t: t.tile(dims), X)

@pytest.mark.parametrize("repeats,dim", [(2, None), (3, 1), (0, -1), ([1, 0, 2], 0), ("tensor", 2), ([2], 1)], ids=str)
def test_repeat_interleave(repeats, dim):
  if repeats == "tensor": repeats = [2, 0, 1, 3, 1]
  def fn(t):
    reps = repeats if not isinstance(repeats, list) or len(repeats) == 1 else (Tensor if lg(t) else torch.tensor)(repeats)
    if isinstance(reps, list): reps = reps[0]
    return t.repeat_interleave(reps, dim=dim)
  compare(fn, X, "flipped")
  assert Tensor(np.array([[1, 2], [3, 4]], np.int32)).repeat_interleave([1, 2], dim=0).tolist() == [[1, 2], [3, 4], [3, 4]]

# ---------------------------------------------------------------- roll

@pytest.mark.parametrize("shifts,dims", [(1, 0), (-2, -1), (7, 1), ((1, -3), (0, 2)), (3, None), (0, 1), ((2, 2), (1, 1))], ids=str)
def test_roll(shifts, dims):
  compare(lambda t: t.roll(shifts, dims), X, "sliced")

def test_roll_of_empty_and_one_element():
  compare(lambda t: t.roll(2, 0), np.zeros((0, 3), np.float32))
  compare(lambda t: t.roll(-1), np.ones((1,), np.float32))

# ---------------------------------------------------------------- tril, triu

@pytest.mark.parametrize("diagonal", [0, 1, -3])
@pytest.mark.parametrize("fn", ["tril", "triu"])
def test_tril_triu(fn, diagonal):
  compare(lambda t: getattr(t, fn)(diagonal), X, "permuted")

@pytest.mark.parametrize("dt", [np.int32, np.bool_, np.float16], ids=str)
def test_tril_triu_of_each_dtype(dt):
  x = (X[0] * 3).astype(dt)
  np.testing.assert_array_equal(Tensor(x).tril(-1).numpy(), np.tril(x, -1))
  np.testing.assert_array_equal(Tensor(x).triu(1).numpy(), np.triu(x, 1))

# ---------------------------------------------------------------- meshgrid, unflatten, unfold

@pytest.mark.parametrize("indexing", ["ij", "xy"])
@pytest.mark.parametrize("sizes", [(3, 4), (2, 3, 4), (1, 0)], ids=str)
def test_meshgrid(sizes, indexing):
  def fn(*ts):
    grids = ts[0].meshgrid(*ts[1:], indexing=indexing) if lg(ts[0]) else torch.meshgrid(*ts, indexing=indexing)
    return sum(g * (k + 1) for k, g in enumerate(grids))
  compare(fn, [r(s) for s in sizes])

@pytest.mark.parametrize("dim,sizes", [(1, (2, 2)), (-1, (5, 1)), (0, (-1, 1)), (2, (1, -1, 1))], ids=str)
def test_unflatten(dim, sizes):
  compare(lambda t: t.unflatten(dim, sizes), X, "flipped")

@pytest.mark.parametrize("dim,size,step", [(0, 2, 1), (1, 2, 2), (-1, 3, 1), (2, 5, 1), (2, 1, 3), (1, 1, 7), (2, 2, 4), (1, 0, 1)], ids=str)
def test_unfold(dim, size, step):
  compare(lambda t: t.unfold(dim, size, step), X, "permuted")

def test_unfold_of_0d_and_empty():
  compare(lambda t: t.unfold(0, 1, 1), np.array(2.5, np.float32))
  compare(lambda t: t.unfold(1, 2, 1), np.zeros((0, 3), np.float32))

# ---------------------------------------------------------------- pad

PADS = [((2, 3), (1, 1, 5)), ((1, 2, 0, 3), (1, 2, 4, 5)), ((1, 1, 2, 0, 1, 2), (1, 2, 3, 4, 5)), ((-1, 2), (1, 2, 5)), ((2, -1, -1, 1), (1, 2, 4, 5)),
        ((4, 4), (1, 2, 5))]

@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad,shape", PADS, ids=str)
def test_pad_modes(pad, shape, mode):
  if mode == "reflect" and max(pad) >= min(shape[-len(pad) // 2:]): return  # reflect needs pads smaller than the axis
  if mode == "circular" and max(pad) > min(shape[-len(pad) // 2:]): return
  kw = {"value": 1.5} if mode == "constant" else {}
  compare(lambda t: t.pad(pad, mode=mode, **kw) if lg(t) else F.pad(t, pad, mode=mode, **kw), RNG.standard_normal(shape).astype(np.float32), "flipped")

@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_pairs_on_any_axis(mode):
  """(before, after) pairs reach every axis, the first too, which PyTorch's padding modes leave alone."""
  x = X * 1
  got = Tensor(x).pad(((1, 2), None, (0, 3)), mode=mode).numpy()
  np.testing.assert_allclose(got, np.pad(x, ((1, 2), (0, 0), (0, 3)), mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]))

def test_pad_of_ints_and_bools():
  x = (X[0] * 3).astype(np.int32)
  np.testing.assert_array_equal(Tensor(x).pad((1, 2), mode="reflect").numpy(), np.pad(x, ((0, 0), (1, 2)), mode="reflect"))
  np.testing.assert_array_equal(Tensor(x > 0).pad((1, 1, 1, 1), mode="circular").numpy(), np.pad(x > 0, 1, mode="wrap"))

# ---------------------------------------------------------------- interpolate

INTERP = [("nearest", (1, 2, 5), {"size": 8}), ("nearest", (2, 1, 4, 5), {"scale_factor": 1.5}), ("nearest", (1, 2, 6, 7), {"size": (3, 4)}),
          ("nearest-exact", (1, 2, 5), {"scale_factor": 2.4}), ("nearest", (2, 1, 5), {"scale_factor": 0.7}),
          ("linear", (1, 2, 5), {"size": 9}), ("linear", (2, 1, 7), {"scale_factor": 0.5, "align_corners": True}),
          ("linear", (1, 2, 3), {"scale_factor": 1.3}), ("linear", (1, 1, 4), {"size": 1, "align_corners": True}),
          ("bilinear", (1, 2, 4, 5), {"size": (7, 3)}), ("bilinear", (2, 1, 4, 5), {"scale_factor": (2, 1.5), "align_corners": True}),
          ("bilinear", (1, 1, 6, 6), {"scale_factor": 0.7}), ("trilinear", (1, 1, 2, 3, 4), {"size": (3, 5, 2)}),
          ("trilinear", (1, 2, 3, 2, 2), {"scale_factor": 2, "align_corners": True})]

@pytest.mark.parametrize("mode,shape,kw", INTERP, ids=str)
def test_interpolate(mode, shape, kw):
  compare(lambda t: t.interpolate(mode=mode, **kw) if lg(t) else F.interpolate(t, mode=mode, **kw), RNG.standard_normal(shape).astype(np.float32),
          "permuted", rtol=1e-5, atol=1e-6)

def test_interpolate_nearest_to_the_same_size_by_a_scale():
  """A scale of 1.3 on 3 elements gives 3 outputs [x0, x0, x1], as in PyTorch; PyTorch's backward then treats it as a
  copy (a bug in torch 2.x), so the gradient is held to what the forward computes."""
  x = Tensor(np.array([[[1.0, 2.0, 3.0]]], np.float32), requires_grad=True)
  y = x.interpolate(scale_factor=1.3)
  (y * Tensor(np.array([1.0, 10.0, 100.0], np.float32))).sum().backward()
  np.testing.assert_array_equal(y.numpy(), F.interpolate(torch.tensor([[[1.0, 2.0, 3.0]]]), scale_factor=1.3).numpy())
  np.testing.assert_array_equal(x.grad.numpy(), [[[11.0, 100.0, 0.0]]])

def test_interpolate_of_float64_and_uint8():
  x = RNG.standard_normal((1, 2, 3, 5))
  ref = F.interpolate(torch.tensor(x), size=(5, 8), mode="bilinear").numpy()
  # an output near zero is a cancellation of terms of size ~1: the two libraries' last-bit rounding (vector FMAs here)
  # differs there by ~1e-17 absolute, far past rtol; both are within ~1e-15 of a long-double bilinear
  np.testing.assert_allclose(Tensor(x).interpolate(size=(5, 8), mode="bilinear").numpy(), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
  u = RNG.integers(0, 255, (1, 1, 4, 3)).astype(np.uint8)
  np.testing.assert_array_equal(Tensor(u).resize(scale_factor=2.5).numpy(), F.interpolate(torch.tensor(u), scale_factor=2.5).numpy())

# ---------------------------------------------------------------- errors

def test_cat_and_stack_mismatch_name_shapes():
  with pytest.raises(ValueError, match=r"\(3, 4, 5\).*\(3, 2, 5\)"): Tensor(X).cat(Tensor(r(3, 2, 5)), dim=2)
  with pytest.raises(ValueError, match=r"\(3, 4, 5\).*\(4, 5\)"): Tensor(X).cat(Tensor(X[0]))
  with pytest.raises(ValueError, match=r"\(3, 4, 5\).*\(3, 4, 1\)"): Tensor(X).stack(Tensor(r(3, 4, 1)))

def test_shape_op_errors():
  t = Tensor(X)
  with pytest.raises(ValueError, match=r"\[1, 2\].*\(3, 4, 5\)"): t.split([1, 2], 1)
  with pytest.raises(ValueError, match=r"size <= 5"): t.unfold(2, 6, 1)
  with pytest.raises(ValueError, match=r"\(2, 3\).*5"): t.unflatten(2, (2, 3))
  with pytest.raises(ValueError, match=r"repeat: 2 sizes"): t.repeat(2, 2)
  with pytest.raises(ValueError, match=r"reflect.*at most 4"): t.pad((5, 0), mode="reflect")
  with pytest.raises(ValueError, match=r"'wrap'"): t.pad((1, 1), mode="wrap")
  with pytest.raises(ValueError, match=r"'bicubic'"): t.interpolate(size=3, mode="bicubic")
  with pytest.raises(ValueError, match=r"bilinear.*\(3, 4, 5\)"): t.interpolate(size=(2, 2), mode="bilinear")
  with pytest.raises(ValueError, match="exactly one"): t.interpolate()
  with pytest.raises(ValueError, match="align_corners"): t.interpolate(size=3, align_corners=True)
  with pytest.raises(ValueError, match="tril: needs at least 2"): Tensor(X[0, 0]).tril()
