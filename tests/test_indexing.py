"""Indexing held to PyTorch on the CPU: advanced indexing (index tensors and lists, broadcast together, mixed with slices,
ints, None and Ellipsis), assignment into slices and indices, gather / scatter / scatter_reduce / index_select /
one_hot / masked_fill; forward values and gradients, on contiguous and non-contiguous inputs; and the errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes
from lucidgrad.tensor_shape import one_hot

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4, 5)).astype(np.float32)

class Ix:
  """An index tensor in a test case: a lucidgrad Tensor on one side, a torch tensor on the other."""
  def __init__(self, v, dtype=np.int64): self.v = np.asarray(v, dtype=dtype)
  def __repr__(self): return f"Ix({self.v.tolist()})"

def conv(idx, lib):
  """The index for `lib` ('lg' or 'torch'): Ix(...) becomes that library's tensor."""
  one = lambda i: (Tensor(i.v) if lib == "lg" else torch.tensor(i.v)) if isinstance(i, Ix) else i
  return tuple(one(i) for i in idx) if isinstance(idx, tuple) else one(idx)

def leaf_and_view(x: np.ndarray, layout: str):
  """(the leaf's values, a view function) such that view(leaf) holds x, reached through `layout`; it works on both libraries."""
  axes = tuple(range(x.ndim))[::-1]
  if layout == "permuted": return np.ascontiguousarray(x.transpose(axes)), lambda t: t.permute(*axes)
  if layout == "flipped": return np.ascontiguousarray(np.flip(x)), lambda t: t.flip(tuple(range(x.ndim)))
  if layout == "sliced":
    sl = tuple(slice(1, 1 + 2 * s, 2) for s in x.shape)
    big = np.zeros(tuple(2 * s + 1 for s in x.shape), dtype=x.dtype)
    big[sl] = x
    return big, lambda t: t[sl]
  return x, lambda t: t

def compare(fn, x, layout="contig", fn_torch=None, grad=True, rtol=1e-6, atol=1e-6):
  """fn on x (an array, or a list of arrays for several arguments) as lucidgrad tensors and as torch tensors: the values
  match, and so do the gradients of sum(out * w) for every input."""
  xs = x if isinstance(x, list) else [x]
  grad = grad and all(a.dtype.kind == "f" for a in xs)
  bases, views = zip(*(leaf_and_view(a, layout) for a in xs))
  tl = [Tensor(b, requires_grad=grad or None) for b in bases]
  tt = [torch.tensor(b, requires_grad=grad) for b in bases]
  ol, ot = fn(*(v(t) for v, t in zip(views, tl))), (fn_torch or fn)(*(v(t) for v, t in zip(views, tt)))
  assert ol.shape == tuple(ot.shape), f"shape {ol.shape}, torch {tuple(ot.shape)}"
  if grad:  # gradients before realize: numpy() would cut the graph
    w = RNG.standard_normal(tuple(ot.shape)).astype(np.float32)
    (ol * Tensor(w)).sum().backward()
    (ot * torch.tensor(w)).sum().backward()
  np.testing.assert_allclose(ol.numpy(), ot.detach().numpy(), rtol=rtol, atol=atol)
  if grad:
    for a, b in zip(tl, tt): np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)

# ---------------------------------------------------------------- advanced indexing

GETITEM = [
  np.s_[[0, 2]], np.s_[[-1, 0, -3]], np.s_[:, [1, 3]], np.s_[..., [0, 4, 4]], np.s_[[0, 2], [1, 3]], np.s_[[0, 2], :, [1, 4]],
  np.s_[1, :, [0, 2]], np.s_[:, [[0], [2]], [1, 4]], np.s_[None, [0, 1], None, 1:3], np.s_[[1, 0], ::-1, None],
  np.s_[[True, False, True]], np.s_[[]], np.s_[:, []], np.s_[Ix([[1, 2], [0, 0]])], np.s_[Ix(1), :, [0, 2]], np.s_[[0, 1], [1, 2], [3, -1]],
  np.s_[[0, 2], Ix(3)], np.s_[::-2, Ix([2, 0, 1]), 1:4:2], np.s_[Ix([[True, False, True, True]] * 3, np.bool_).v], np.s_[-1, [2], -2],
  np.s_[:, None, [1], ..., [0, 2]], np.s_[Ix(np.array([0, 1], np.int32)), 0],
]

def has_negative_step(idx): return any(isinstance(i, slice) and (i.step or 1) < 0 for i in (idx if isinstance(idx, tuple) else (idx,)))

def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
  """The gradient of a value broadcast from `shape`: g summed over the axes the broadcast made."""
  g = g.sum(tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
  return g.sum(tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1), keepdims=True).reshape(shape)

def compare_np_getitem(idx, x):
  """PyTorch has no negative steps: such indices are held to NumPy (whose placement of the indexed axes is PyTorch's
  where the advanced indices are adjacent), the gradient being w added back at the indexed places."""
  tl = Tensor(x, requires_grad=True)
  out = tl[conv(idx, "lg")]
  nidx = tuple(i.v if isinstance(i, Ix) else i for i in idx)
  w = RNG.standard_normal(x[nidx].shape).astype(np.float32)
  (out * Tensor(w)).sum().backward()
  np.testing.assert_array_equal(out.numpy(), x[nidx])
  ref = np.zeros_like(x)
  np.add.at(ref, nidx, w)
  np.testing.assert_allclose(tl.grad.numpy(), ref, rtol=1e-6, atol=1e-6)

@pytest.mark.parametrize("idx", GETITEM, ids=repr)
def test_advanced_getitem(idx):
  if has_negative_step(idx): return compare_np_getitem(idx, X)
  compare(lambda t: t[conv(idx, "lg" if isinstance(t, Tensor) else "torch")], X)

@pytest.mark.parametrize("layout", ["permuted", "flipped", "sliced"])
@pytest.mark.parametrize("idx", [np.s_[[2, 0], 1:, [0, 3]], np.s_[:, [1, 1, 0]]], ids=repr)
def test_advanced_getitem_of_non_contiguous(idx, layout):
  compare(lambda t: t[idx], X, layout)

@pytest.mark.parametrize("dt", [np.int32, np.int64, np.bool_, np.float64], ids=str)
def test_advanced_getitem_of_each_dtype(dt):
  x = (X * 3).astype(dt)
  idx = np.s_[[2, 0], :, Ix([1, -1])]
  compare(lambda t: t[conv(idx, "lg" if isinstance(t, Tensor) else "torch")], x, grad=False)

@pytest.mark.parametrize("shape,idx", [((1,), [0, 0]), ((0, 3), np.s_[[]]), ((2, 0), np.s_[[1, 0]]), ((), None), ((5,), Ix(-2))], ids=repr)
def test_advanced_getitem_of_small_and_empty(shape, idx):
  x = RNG.standard_normal(shape).astype(np.float32)
  compare(lambda t: t[conv(idx, "lg" if isinstance(t, Tensor) else "torch")], x)

def test_getitem_with_index_tensor_computed_lazily():
  t = Tensor(X)
  i = Tensor.arange(3) * 2 - 1  # -1, 1, 3
  np.testing.assert_array_equal(t[:, i].numpy(), X[:, [-1, 1, 3]])

def test_narrow_index_dtypes_do_not_wrap():
  """An int8 index into 300 elements: -100 wraps to 200 and the compare against arange(300) is not done in int8."""
  x, i = np.arange(300, dtype=np.float32), np.array([-1, -100, 120, 5], np.int8)
  np.testing.assert_array_equal(Tensor(x)[Tensor(i)].numpy(), x[i])
  np.testing.assert_array_equal(Tensor(x).gather(0, Tensor(i[2:])).numpy(), x[i[2:]])

def test_advanced_getitem_is_one_kernel_and_its_index_check_one_more():
  """One kernel for the gather (a computed index computed inside it); the check of a computed index one kernel more, of
  an index already in host memory none."""
  from lucidgrad import GlobalCounters, Context
  t = Tensor(X).contiguous().realize()
  from lucidgrad.tensor import _host_extremes
  realized, computed = lambda: Tensor(np.array([2, 0])).realize(), lambda: Tensor(np.array([1, 0])) * 2
  on_host = _host_extremes(realized(), None) is not None  # CPU memory: checked there; a GPU's is checked on the GPU
  for check, index, kernels in ((0, realized, 1), (1, realized, 1 if on_host else 2), (0, computed, 1), (1, computed, 2)):
    with Context(CHECK_INDEX=check):
      for _ in range(2):  # the first run also makes the device's error scalar
        i = index()
        before = GlobalCounters.kernel_count
        out = t[i, :, [1, 3]].realize()
        assert GlobalCounters.kernel_count - before == kernels
      np.testing.assert_array_equal(out.numpy(), X[[2, 0], :, [1, 3]])

# ---------------------------------------------------------------- assignment

SETITEM = [(np.s_[1:3], 2.5), (np.s_[::2, 1], (2, 5)), (np.s_[..., ::-2], (1,)), (np.s_[[0, 2]], (4, 5)), (np.s_[:, [1, 3], 2], (3, 2)),
           (np.s_[[0, 2], :, [1, 4]], (2, 4)), (np.s_[None, 0], (4, 5)), (np.s_[-1, Ix([[0], [3]]), 1:3], (1, 2)), (np.s_[:], (5,)),
           (np.s_[1, 2, 3], -1.0), (np.s_[:, 4:], (3, 0, 5)), (np.s_[:, -2:, [4, 0]], (2,)), (np.s_[1, ::-1, :, None], (4, 1, 1))]

@pytest.mark.parametrize("idx,value", SETITEM, ids=repr)
def test_setitem_values_and_gradients(idx, value):
  """y = x * 2; y[idx] = v: the values, and gradients to x (zero where overwritten) and to v. PyTorch has no negative
  steps: those are held to NumPy."""
  v = RNG.standard_normal(value).astype(np.float32) if isinstance(value, tuple) else value
  w = RNG.standard_normal(X.shape).astype(np.float32)
  xl, vl = Tensor(X, requires_grad=True), Tensor(v, requires_grad=True) if isinstance(value, tuple) else v
  yl = xl * 2
  yl[conv(idx, "lg")] = vl
  (yl * Tensor(w)).sum().backward()
  if has_negative_step(idx):
    nidx = tuple(i.v if isinstance(i, Ix) else i for i in idx) if isinstance(idx, tuple) else idx
    y, hit = X * 2, np.zeros(X.shape, bool)
    y[nidx], hit[nidx] = v, True
    ref_y, ref_gx, ref_gv = y, np.where(hit, 0, 2 * w), unbroadcast(w[nidx], np.shape(v))
  else:
    xt, vt = torch.tensor(X, requires_grad=True), torch.tensor(v, requires_grad=True) if isinstance(value, tuple) else v
    yt = xt * 2
    yt[conv(idx, "torch")] = vt
    (yt * torch.tensor(w)).sum().backward()
    ref_y, ref_gx, ref_gv = yt.detach().numpy(), xt.grad.numpy(), vt.grad.numpy() if isinstance(value, tuple) else None
  np.testing.assert_allclose(yl.numpy(), ref_y)
  np.testing.assert_allclose(xl.grad.numpy(), ref_gx)
  if isinstance(value, tuple): np.testing.assert_allclose(vl.grad.numpy(), ref_gv, rtol=1e-6, atol=1e-6)

@pytest.mark.parametrize("layout", ["permuted", "flipped", "sliced"])
def test_setitem_into_non_contiguous(layout):
  base, view = leaf_and_view(X, layout)
  tl = view(Tensor(base))
  tl[1:, [3, 0], ::2] = Tensor(np.full((2, 2, 3), 7.0, np.float32))
  ref = X.copy()
  ref[1:, [3, 0], ::2] = 7.0
  np.testing.assert_array_equal(tl.numpy(), ref)

@pytest.mark.parametrize("dt", [np.int32, np.uint8, np.bool_, np.float16], ids=str)
def test_setitem_of_each_dtype(dt):
  x = (X * 3).astype(dt)
  t = Tensor(x)
  t[0, [1, 2]] = 1
  t[1:, :, -1] = Tensor(x[0, :, :1].T)
  ref = x.copy()
  ref[0, [1, 2]] = 1
  ref[1:, :, -1] = x[0, :, :1].T
  np.testing.assert_array_equal(t.numpy(), ref)

def test_setitem_repeated_index_last_wins():
  t = Tensor(np.zeros(4, np.float32))
  t[[1, 3, 1, 1, 0]] = Tensor(np.array([1, 2, 3, 4, 5], np.float32))
  ref = np.zeros(4, np.float32)
  ref[[1, 3, 1, 1, 0]] = [1, 2, 3, 4, 5]  # NumPy: the last write wins
  np.testing.assert_array_equal(t.numpy(), ref)

def test_setitem_with_a_bool_mask_tensor():
  m = X > 0.5
  xl, xt = Tensor(X, requires_grad=True), torch.tensor(X, requires_grad=True)
  yl, yt = xl * 1, xt * 1
  yl[Tensor(m)], yt[torch.tensor(m)] = -3.0, -3.0
  yl[Tensor(m[:, 0, 0])] = Tensor(9.0)
  yt[torch.tensor(m[:, 0, 0])] = 9.0
  yl.sum().backward(); yt.sum().backward()
  np.testing.assert_array_equal(yl.numpy(), yt.detach().numpy())
  np.testing.assert_array_equal(xl.grad.numpy(), xt.grad.numpy())

def test_setitem_is_seen_by_views_taken_before_and_values_keep_theirs():
  """PyTorch's rules: a view shares its base's memory; a value computed from the base keeps the old contents."""
  t, tt = Tensor(X), torch.tensor(X)
  row, trow = t[0], tt[0]
  doubled, tdoubled = t * 2, tt * 2
  t[0] = 0; tt[0] = 0
  np.testing.assert_array_equal(row.numpy(), trow.numpy())
  np.testing.assert_array_equal(doubled.numpy(), tdoubled.numpy())
  assert (t[0].numpy() == 0).all()

def test_assign_broadcasts_and_casts_within_kind():
  t = Tensor(np.zeros((2, 3), np.float32))
  assert t.assign(Tensor(np.array([1.0, 2.0, 3.0], np.float64))) is t
  np.testing.assert_array_equal(t.numpy(), np.broadcast_to([1.0, 2.0, 3.0], (2, 3)))
  t.assign(5)
  assert t.dtype == dtypes.float32 and (t.numpy() == 5).all()
  i = Tensor(np.zeros(3, np.int32))
  i.assign(Tensor(np.array([1, 2, 3], np.int64)))
  np.testing.assert_array_equal(i.numpy(), [1, 2, 3])

def test_assign_to_a_realized_tensor_writes_its_buffer_in_place():
  t = Tensor(np.arange(6, dtype=np.float32)).realize()
  view = t.reshape(2, 3)               # shares t's buffer, as a torch view would
  buf = t._buffer_view()
  t.assign(t * 2)
  t.assign(t + 1)                      # a second assign realizes the first: it may be read by other pending values
  np.testing.assert_array_equal(t.numpy(), np.arange(6) * 2 + 1)
  assert t._buffer_view() is buf
  np.testing.assert_array_equal(view.numpy().ravel(), np.arange(6) * 2 + 1)

def test_assign_to_an_unrealized_tensor_never_shares_the_value_buffer():
  u = Tensor(np.array([1.0, 2.0], np.float32)).realize()
  t = Tensor.zeros(2)
  t.assign(u).realize()
  t.assign(t + 1).realize()
  np.testing.assert_array_equal(u.numpy(), [1.0, 2.0])
  np.testing.assert_array_equal(t.numpy(), [2.0, 3.0])

def test_equal_graphs_never_share_a_buffer_that_is_written_in_place():
  a, b = Tensor.ones(3).contiguous(), Tensor.ones(3).contiguous()
  Tensor.realize(a, b)
  a.assign(Tensor([5.0, 6.0, 7.0])).realize()
  np.testing.assert_array_equal(b.numpy(), [1, 1, 1])
  c, d = Tensor.zeros(3), Tensor.zeros(3)
  c.realize(); c.assign(c + 1).realize()
  np.testing.assert_array_equal(d.numpy(), [0, 0, 0])

def test_pending_values_keep_the_old_contents_of_a_buffer_written_later():
  W = Tensor(np.ones((2, 3), np.float32)).realize()
  x = Tensor(np.ones((4, 2), np.float32)).realize()
  stat = Tensor(np.zeros(3, np.float32)).realize()
  stat.assign(stat * 0.9 + (x @ W).mean(0) * 0.1)   # pending: reads W as it is now
  W.assign(W * 2).realize()                           # an optimiser step realizes first
  np.testing.assert_allclose(stat.numpy(), [0.2, 0.2, 0.2])
  n, m = Tensor(np.zeros((), np.float32)), Tensor(np.zeros((), np.float32))
  n.assign(n + 1); m.assign(m + n); n.assign(n + 1); m.assign(m + n)
  Tensor.realize(m, n)
  assert (n.item(), m.item()) == (2.0, 3.0)

def test_gradient_flows_through_a_pending_assign_to_its_value():
  w = Tensor([1.0, 2.0], requires_grad=True)
  w.assign(w * 2)                                     # a leaf's new value is detached
  (w * 3).sum().backward()
  np.testing.assert_array_equal(w.grad.numpy(), [3, 3])

def test_assign_keeps_a_parameter_a_leaf():
  p = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
  (p * p).sum().backward()
  p.assign(p - 0.5 * p.grad).realize()
  np.testing.assert_allclose(p.numpy(), [0.0, 0.0])
  p.grad = None
  (p * 3).sum().backward()
  np.testing.assert_allclose(p.grad.numpy(), [3.0, 3.0])

# ---------------------------------------------------------------- masked_fill

@pytest.mark.parametrize("mshape", [(3, 4, 5), (4, 1), (5,), ()], ids=str)
def test_masked_fill(mshape):
  m = RNG.random(mshape) < 0.5
  compare(lambda t: t.masked_fill(Tensor(m) if isinstance(t, Tensor) else torch.tensor(m), -2.5), X)

def test_masked_fill_int_with_tensor_value():
  x, m = (X * 4).astype(np.int32), X > 0
  np.testing.assert_array_equal(Tensor(x).masked_fill(Tensor(m), Tensor(7)).numpy(), np.where(m, 7, x))

# ---------------------------------------------------------------- gather, take_along_dim, index_select

GATHER = [(0, (2, 4, 5)), (1, (3, 6, 2)), (-1, (3, 4, 7)), (2, (1, 1, 1)), (0, (0, 4, 5)), (1, (3, 0, 5))]

@pytest.mark.parametrize("dim,ishape", GATHER, ids=str)
def test_gather(dim, ishape):
  idx = RNG.integers(0, X.shape[dim], ishape)
  compare(lambda t: t.gather(dim, Tensor(idx) if isinstance(t, Tensor) else torch.tensor(idx)), X)

@pytest.mark.parametrize("layout", ["permuted", "flipped"])
def test_gather_of_non_contiguous(layout):
  idx = RNG.integers(0, 4, (3, 5, 2))
  compare(lambda t: t.gather(1, Tensor(idx).permute(0, 2, 1) if isinstance(t, Tensor) else torch.tensor(idx).permute(0, 2, 1)), X, layout)

@pytest.mark.parametrize("dt", [np.int16, np.int64, np.bool_, np.float16], ids=str)
def test_gather_of_each_dtype(dt):
  x, idx = (X * 3).astype(dt), RNG.integers(0, 5, (3, 4, 3)).astype(np.int32)
  np.testing.assert_array_equal(Tensor(x).gather(2, Tensor(idx)).numpy(), np.take_along_axis(x, idx, 2))

def test_gather_of_0d_and_with_a_list():
  compare(lambda t: t.gather(0, Tensor(np.array(0)) if isinstance(t, Tensor) else torch.tensor(0)), np.array(1.5, np.float32))
  np.testing.assert_array_equal(Tensor(X[0]).gather(1, [[1, 0], [2, 2], [3, 4], [0, 0]]).numpy(), np.take_along_axis(X[0], np.array([[1, 0], [2, 2], [3, 4], [0, 0]]), 1))

def test_take_along_dim():
  idx = RNG.integers(0, 4, (1, 2, 5))
  compare(lambda t: t.take_along_dim(Tensor(idx) if isinstance(t, Tensor) else torch.tensor(idx), 1), X)
  flat = RNG.integers(0, 60, (7,))
  compare(lambda t: t.take_along_dim(Tensor(flat) if isinstance(t, Tensor) else torch.tensor(flat)), X)

@pytest.mark.parametrize("dim,idx", [(0, [2, 0, 2]), (1, [3]), (-1, []), (2, [4, 0, 1, 3, 2, 0])], ids=str)
def test_index_select(dim, idx):
  i = np.array(idx, np.int64)
  compare(lambda t: t.index_select(dim, Tensor(i) if isinstance(t, Tensor) else torch.tensor(i)), X)
  np.testing.assert_array_equal(Tensor(X).index_select(dim, idx).numpy(), np.take(X, i, axis=dim))

# ---------------------------------------------------------------- scatter, scatter_reduce

def unique_index(shape, n, dim):
  """An index of `shape` whose entries along dim are distinct (scatter's result is then defined)."""
  perm = np.argsort(RNG.random(shape[:dim] + (n,) + shape[dim + 1:]), axis=dim)
  return np.take(perm, np.arange(shape[dim]), axis=dim)

@pytest.mark.parametrize("dim,ishape", [(0, (2, 4, 5)), (1, (2, 3, 4)), (-1, (3, 4, 2)), (0, (0, 4, 5))], ids=str)
def test_scatter(dim, ishape):
  idx = unique_index(ishape, X.shape[dim], dim % 3)
  src = RNG.standard_normal(ishape).astype(np.float32)  # PyTorch's backward fails for a src larger than the index
  sl, st = Tensor(src, requires_grad=True), torch.tensor(src, requires_grad=True)
  compare(lambda t: t.scatter(dim, Tensor(idx), sl) if isinstance(t, Tensor) else t.scatter(dim, torch.tensor(idx), st), X)
  np.testing.assert_allclose(sl.grad.numpy(), st.grad.numpy(), rtol=1e-6, atol=1e-6)
  big = RNG.standard_normal((3, 5, 6)).astype(np.float32)
  ref = torch.tensor(X).scatter(dim, torch.tensor(idx), torch.tensor(big)).numpy()
  np.testing.assert_array_equal(Tensor(X).scatter(dim, Tensor(idx), Tensor(big)).numpy(), ref)

def test_scatter_value_and_repeated_index():
  idx = np.array([[0, 1, 0], [2, 2, 2]])
  np.testing.assert_array_equal(Tensor(X[0]).scatter(1, idx, 9.0).numpy(), torch.tensor(X[0]).scatter(1, torch.tensor(idx), 9.0).numpy())
  out = Tensor(np.zeros(4, np.int32)).scatter(0, Tensor(np.array([1, 1, 3])), Tensor(np.array([5, 6, 7], np.int32))).numpy()
  np.testing.assert_array_equal(out, [0, 6, 0, 7])  # the last of the repeated ones wins

@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
def test_scatter_reduce(reduce, include_self):
  idx = RNG.integers(0, 4, (3, 6, 5))  # repeated indices, and rows of self no index reaches
  src = RNG.standard_normal((3, 6, 5)).astype(np.float32)
  sl, st = Tensor(src, requires_grad=True), torch.tensor(src, requires_grad=True)
  def fn(t):
    if isinstance(t, Tensor): return t.scatter_reduce(1, Tensor(idx), sl, reduce, include_self=include_self)
    return t.scatter_reduce(1, torch.tensor(idx), st, reduce, include_self=include_self)
  compare(fn, X, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sl.grad.numpy(), st.grad.numpy(), rtol=1e-5, atol=1e-6)

@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
def test_scatter_reduce_of_ints(reduce):
  x, src, idx = RNG.integers(-9, 9, (4, 3)), RNG.integers(-9, 9, (6, 3)), RNG.integers(0, 4, (6, 3))
  for include_self in (True, False):
    ref = torch.tensor(x).scatter_reduce(0, torch.tensor(idx), torch.tensor(src), reduce, include_self=include_self).numpy()
    np.testing.assert_array_equal(Tensor(x).scatter_reduce(0, Tensor(idx), Tensor(src), reduce, include_self=include_self).numpy(), ref)

def test_scatter_add_and_scatter_reduce_option():
  idx = RNG.integers(0, 3, (4, 5))
  ref = torch.tensor(X[0]).scatter_add(0, torch.tensor(idx), torch.tensor(X[1]))
  # atol: sums that cancel to near 0 differ by an ulp of their terms with the order of addition (idx depends on the tests before)
  np.testing.assert_allclose(Tensor(X[0]).scatter_add(0, Tensor(idx), Tensor(X[1])).numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(Tensor(X[0]).scatter(0, Tensor(idx), Tensor(X[1]), reduce="add").numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)

# ---------------------------------------------------------------- one_hot

@pytest.mark.parametrize("shape,n", [((5,), 4), ((2, 3), 7), ((0,), 3), ((), 2), ((4,), -1)], ids=str)
def test_one_hot(shape, n):
  x = RNG.integers(0, 4 if n < 0 else n, shape)
  ref = F.one_hot(torch.tensor(x), n).numpy()
  out = Tensor(x).one_hot(n)
  assert out.dtype == dtypes.int64
  np.testing.assert_array_equal(out.numpy(), ref)
  np.testing.assert_array_equal(one_hot(Tensor(x.astype(np.int32)), n).numpy(), ref)

# ---------------------------------------------------------------- errors

def test_constant_index_out_of_range_names_index_and_size():
  t = Tensor(X)
  with pytest.raises(IndexError, match="index 5 .*dimension 1 of size 4"): t[:, [0, 5]]
  with pytest.raises(IndexError, match="index -4 .*dimension 0 of size 3"): t[[-4]]
  with pytest.raises(IndexError, match="index 3 .*size 3"): t.gather(0, [[[3]]])
  with pytest.raises(IndexError, match="index 7 .*size 5"): t.index_select(2, [1, 7])
  with pytest.raises(IndexError, match="index 4 .*size 4"): t[0, [4]] = 1.0

def test_float_index_is_a_type_error():
  t = Tensor(X)
  with pytest.raises(TypeError, match="gathering with a float index"): t[Tensor(np.array([0.0, 1.0]))]
  with pytest.raises(TypeError, match="gathering with a float index"): t.gather(0, Tensor(np.zeros((1, 1, 1), np.float32)))
  with pytest.raises(TypeError, match="gathering with a float index"): t[[0.5]]
  with pytest.raises(TypeError, match="gathering with a float index"): t.scatter(0, Tensor(np.zeros((1, 1, 1))), 1.0)

def test_indexing_errors():
  t = Tensor(X)
  with pytest.raises(TypeError, match="bool tensor.*masked_fill"): t[Tensor(X > 0)]
  with pytest.raises(IndexError, match="too many indices"): t[[0], [0], [0], [0]]
  with pytest.raises(ValueError, match=r"\(2, 1\).*\(3, 4, 5\)"): t.gather(0, Tensor(np.zeros((2, 1), np.int64)))
  with pytest.raises(ValueError, match="src of shape"): t.scatter(0, Tensor(np.zeros((2, 4, 5), np.int64)), Tensor(X[:1]))
  with pytest.raises(ValueError, match="'median'"): t.scatter_reduce(0, Tensor(np.zeros((1, 1, 1), np.int64)), Tensor(X), "median")
  with pytest.raises(ValueError, match=r"\(4,\).*\(3, 4, 5\)"): t.masked_fill(Tensor(np.ones(4, bool)), 1.0)

def test_assignment_errors():
  t = Tensor(X)
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"): t[0] = Tensor(np.ones((2, 3), np.float32))
  with pytest.raises(ValueError, match=r"\(7,\).*\(3, 4, 5\)"): t.assign(Tensor(np.ones(7, np.float32)))
  with pytest.raises(TypeError, match="float32 values do not fit a tensor of int32"): Tensor(np.zeros(3, np.int32))[1:] = Tensor(np.ones(2, np.float32))
  with pytest.raises(TypeError, match="int64 values do not fit a tensor of bool"): Tensor(np.zeros(3, bool)).assign(Tensor(np.ones(3, np.int64)))
  away = "PYTHON" if t.device != "PYTHON" else "CPU"  # the tests run on $DEV
  with pytest.raises(RuntimeError, match=away): t[0] = Tensor(np.ones(5, np.float32), device=away)
  with pytest.raises(RuntimeError, match="requires grad"): Tensor(X, requires_grad=True)[0] = 1.0
