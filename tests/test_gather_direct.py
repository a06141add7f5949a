"""Gathers as direct indexed loads (docs/design/0014): integer-tensor indexing, embedding, index_select, gather,
take_along_dim and the target lookup of cross_entropy read each output element at the position its index holds --
values against NumPy, gradients against torch (float64), an index out of range raises, and the work does not grow
with the table."""
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes, GlobalCounters
from lucidgrad.helpers import Context
from lucidgrad.schedule import create_schedule
from lucidgrad.uop.ops import Ops
from conftest import DEVICES
torch = pytest.importorskip("torch")

rng = np.random.default_rng(0)
def rnd(*shape): return rng.standard_normal(shape).astype(np.float32)
def ints(hi, *shape, lo=0): return rng.integers(lo, hi, shape)

@pytest.mark.parametrize("dt", [dtypes.int32, dtypes.int64, dtypes.uint8, dtypes.int16])
def test_embedding_matches_numpy(dt):
  w, idx = rnd(50, 8), ints(50, 3, 4)
  out = Tensor(idx, dtype=dt).embedding(Tensor(w))
  np.testing.assert_array_equal(out.numpy(), w[idx])

@pytest.mark.parametrize("dim", [0, 1, 2])
def test_index_select_along_each_dim(dim):
  x = rnd(4, 5, 6)
  idx = ints(x.shape[dim], 7)  # repeats certain
  np.testing.assert_array_equal(Tensor(x).index_select(dim, Tensor(idx)).numpy(), np.take(x, idx, axis=dim))

@pytest.mark.parametrize("dim", [0, 1, 2])
def test_gather_along_each_dim_with_a_smaller_index(dim):
  x = rnd(4, 5, 6)
  shape = [3, 4, 5]
  shape[dim] = 9
  idx = ints(x.shape[dim], *shape)
  ref = np.take_along_axis(x[tuple(slice(0, s) if k != dim else slice(None) for k, s in enumerate(shape))], idx, dim)
  np.testing.assert_array_equal(Tensor(x).gather(dim, Tensor(idx)).numpy(), ref)

def test_take_along_dim_broadcasts_and_flattens():
  x = rnd(4, 5)
  idx = ints(5, 1, 3)
  np.testing.assert_array_equal(Tensor(x).take_along_dim(Tensor(idx), 1).numpy(), np.take_along_axis(x, np.broadcast_to(idx, (4, 3)), 1))
  flat = ints(20, 7)
  np.testing.assert_array_equal(Tensor(x).take_along_dim(Tensor(flat)).numpy(), x.ravel()[flat])

@pytest.mark.parametrize("make", [
  lambda i: (i(np.array([-1, 2, 2, 0, -5])),),                                   # negative and repeated
  lambda i: (slice(None), i(np.array([[3, -2], [0, 0]]))),                     # a 2-D index on the middle axis
  lambda i: (i(np.array([1, -1])), slice(1, 4), i(np.array([0, 5]))),          # non-adjacent: the index axes go first
  lambda i: (Ellipsis, i(np.array([5, 0, -6]))),
  lambda i: (i(np.array([[0], [4]])), i(np.array([1, 2, 3]))),                 # two indices broadcast together
], ids=["neg_repeat", "2d_middle", "non_adjacent", "ellipsis", "broadcast"])
def test_tensor_indexing_matches_numpy(make):
  x = rnd(5, 4, 6)
  got = Tensor(x)[make(lambda a: Tensor(a, dtype=dtypes.int32))].numpy()
  np.testing.assert_array_equal(got, x[make(lambda a: a)])

@pytest.mark.parametrize("dt", [dtypes.bool, dtypes.int32, dtypes.float16])
def test_indexing_tables_of_other_dtypes(dt):
  x = (rnd(6, 3) * 10).astype(dt.np)
  i = np.array([5, -1, 0, 0])
  np.testing.assert_array_equal(Tensor(x)[Tensor(i)].numpy(), x[i])

def test_a_computed_table_is_gathered_right_with_its_gradient():
  x, i = rnd(7, 5), np.array([6, 0, 6, 3])
  t = Tensor(x, requires_grad=True)
  out = (t * 2 + 1).exp()[Tensor(i)]
  tt = torch.tensor(x.astype(np.float64), requires_grad=True)
  ref = (tt * 2 + 1).exp()[torch.tensor(i)]
  out.sum().backward(); ref.sum().backward()
  np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-5)
  np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-5)

def _grad_check(fn_lg, fn_th, x):
  t = Tensor(x, requires_grad=True)
  tt = torch.tensor(x.astype(np.float64), requires_grad=True)
  out, ref = fn_lg(t), fn_th(tt)
  g = rnd(*ref.shape)
  (out * Tensor(g)).sum().backward()
  (ref * torch.tensor(g.astype(np.float64))).sum().backward()
  np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-5, atol=1e-6)

@pytest.mark.parametrize("dim", [0, 1])
def test_gather_gradient_is_a_scatter_add(dim):
  idx = ints(4 if dim == 0 else 5, 6, 5) if dim == 0 else ints(5, 4, 8)
  _grad_check(lambda t: t.gather(dim, Tensor(idx)), lambda t: torch.gather(t, dim, torch.tensor(idx)), rnd(4, 5))

def test_embedding_gradient_adds_repeated_rows():
  idx = np.array([[1, 1, 3], [0, 1, 9]])
  _grad_check(lambda w: Tensor(idx).embedding(w), lambda w: torch.nn.functional.embedding(torch.tensor(idx), w), rnd(10, 4))

def test_indexing_gradient_with_negative_and_two_indices():
  i, j = np.array([-1, 0, -1]), np.array([2, 2, -3])
  _grad_check(lambda t: t[Tensor(i), :, Tensor(j)], lambda t: t[torch.tensor(i), :, torch.tensor(j)], rnd(3, 2, 4))

@pytest.mark.parametrize("shape,weighted,ignore,red,smooth", [
  ((6, 5), False, -100, "mean", 0.0), ((6, 5), True, 2, "mean", 0.0), ((4, 5, 3), True, -100, "sum", 0.1),
  ((4, 5, 3), False, 1, "none", 0.0), ((5,), False, -100, "mean", 0.0)], ids=str)
def test_cross_entropy_matches_torch(shape, weighted, ignore, red, smooth):
  x = rnd(*shape) * 3
  C = shape[1] if len(shape) > 1 else shape[0]
  t = ints(C, *((shape[:1] + shape[2:]) if len(shape) > 1 else ()))
  w = np.abs(rnd(C)) + 0.1 if weighted else None
  kw = dict(ignore_index=ignore, reduction=red, label_smoothing=smooth)
  _grad_check(lambda a: a.cross_entropy(Tensor(t), None if w is None else Tensor(w), **kw),
              lambda a: torch.nn.functional.cross_entropy(a, torch.tensor(t), None if w is None else torch.tensor(w.astype(np.float64)), **kw), x)

def test_cross_entropy_with_a_minus_inf_logit_elsewhere_is_finite():
  x = np.array([[0.0, -np.inf, 1.0], [2.0, 0.5, -np.inf]], np.float32)
  t = np.array([2, 0])
  ref = torch.nn.functional.cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(t)).item()
  np.testing.assert_allclose(Tensor(x).cross_entropy(Tensor(t)).item(), ref, rtol=1e-6)

@pytest.mark.parametrize("op", [
  lambda x, i: i.embedding(x),
  lambda x, i: x[i],
  lambda x, i: x.gather(0, i.reshape(-1, 1).expand(-1, 3)),
  lambda x, i: x.index_select(0, i),
  lambda x, i: x.take_along_dim(i.reshape(-1, 1), 0),
  lambda x, i: x.T.cross_entropy(i[:3]),
], ids=["embedding", "getitem", "gather", "index_select", "take_along_dim", "cross_entropy"])
@pytest.mark.parametrize("device", DEVICES)
def test_an_index_out_of_range_raises_never_a_wrong_number(op, device):
  x = Tensor(rnd(6, 3), device=device)
  for bad in (6, 1000, -7):
    i = Tensor(np.array([0, bad, 2, 1]), dtype=dtypes.int32, device=device)
    with pytest.raises(IndexError, match="out of range"): op(x, i).numpy()

@pytest.mark.parametrize("device,width", [("PYTHON", 3), ("CPU", 3), ("CPU", 48)])
def test_out_of_range_reads_are_guarded_in_the_kernel(device, width):
  """With the device check off, the gather kernel itself reads 0 for a bad index, never memory past the table (the
  PYTHON interpreter raises on any ungated out-of-bounds load). On the CPU a row of 48 is read as vectors, each read
  from the clamped address and then selected by one mask per row."""
  x = rnd(6, width)
  with Context(CHECK_INDEX=0):
    out = Tensor(np.array([0, 7, -100, 2**30, 5], np.int64), device=device).embedding(Tensor(x, device=device)).numpy()
  np.testing.assert_array_equal(out, np.stack([x[0], *[np.zeros(width)] * 3, x[5]]).astype(np.float32))

def test_python_device_matches_cpu():
  w, idx = rnd(30, 5), ints(30, 4, 3)
  for dev in ("PYTHON", "CPU"):
    np.testing.assert_array_equal(Tensor(idx, device=dev).embedding(Tensor(w, device=dev)).numpy(), w[idx])

def test_gather_in_place_of_its_own_table():
  x, perm = rnd(5, 2), np.array([4, 0, 3, 1, 2])
  t = Tensor(x).contiguous().realize()
  t.assign(t[Tensor(perm)]).realize()
  np.testing.assert_array_equal(t.numpy(), x[perm])

def test_embedding_is_one_kernel_with_no_reduce_over_the_rows():
  w = Tensor(rnd(4096, 16)).realize()
  i = Tensor(ints(4096, 32), dtype=dtypes.int32).realize()
  items, _, _ = create_schedule([i.embedding(w).uop])
  assert [it.kind for it in items] == ["kernel"]
  ops = {u.op for u in items[0].ast.toposort}
  assert Ops.GATHER in ops and Ops.REDUCE_AXIS not in ops

@pytest.mark.parametrize("make", [lambda w, i: i.embedding(w), lambda w, i: w.gather(0, i.reshape(-1, 1).expand(-1, 16)) * 2])
def test_the_work_does_not_grow_with_the_table(make):
  make(Tensor(rnd(64, 16)), Tensor(ints(64, 2), dtype=dtypes.int32)).realize()  # the process's first index check makes its error scalar
  counts = []
  for rows in (64, 8192):
    w = Tensor(rnd(rows, 16)).realize()
    i = Tensor(ints(64, 32), dtype=dtypes.int32).realize()
    out = make(w, i)
    GlobalCounters.reset()
    out.realize()
    counts.append((GlobalCounters.kernel_count, GlobalCounters.global_ops, GlobalCounters.global_mem))
  assert counts[0] == counts[1], counts
  assert counts[0][1] <= 32 * 16 * 4 + 32 * 64, counts  # the output's elements (and the index check), not 8192 rows of them
  # and the bytes counted (DEBUG=2's GB/s) are the rows read and written, the index and the error scalar, not the table
  assert counts[0][2] <= 2 * 32 * 16 * 4 + 2 * 32 * 4 + 3 * 8, counts

@pytest.mark.parametrize("make", [
  lambda x, t: x.cross_entropy(t),
  lambda x, t: x.log_softmax(1).nll_loss(t),
  lambda x, t: (x * 2 + 1).exp()[t[:8] % 64],
], ids=["cross_entropy", "nll_of_log_softmax", "elementwise_table"])
def test_a_computed_table_is_computed_at_the_gathered_elements_only(make):
  """The GATHER moves below elementwise ops and broadcasts, so no buffer of the whole N x C table is made."""
  x = Tensor(rnd(64, 1000)).realize()
  t = Tensor(ints(1000, 64)).realize()
  items, _, _ = create_schedule([make(x, t).uop])
  assert all(it.bufs[0].arg[1] < 64 * 1000 for it in items), [it.bufs[0].arg[1] for it in items]

TF = torch.nn.functional
@pytest.mark.parametrize("view,ref", [
  (lambda x: x.flip(0), lambda t: t.flip(0)),
  (lambda x: x[1:5, ::2], lambda t: t[1:5, ::2]),
  (lambda x: x.T, lambda t: t.T),
  (lambda x: x.pad(((2, 1), (0, 0))), lambda t: TF.pad(t, (0, 0, 2, 1))),
  (lambda x: (x * 3).pad(((1, 1), (1, 0))).exp(), lambda t: TF.pad(t * 3, (1, 0, 1, 1)).exp()),  # a PAD of work: not moved
  (lambda x: x.reshape(3, 2, 5)[:, 1] + 1, lambda t: t.reshape(3, 2, 5)[:, 1] + 1),
], ids=["flip", "shrink_step", "permute", "pad", "pad_of_work_then_work", "reshape_shrink_add"])
def test_gathering_from_views_and_pads(view, ref):
  xn, i = rnd(6, 5), np.array([0, -1, 2, 2, 1])
  want = ref(torch.tensor(xn.astype(np.float64)))[torch.tensor(i)].numpy()
  np.testing.assert_allclose(view(Tensor(xn))[Tensor(i)].numpy(), want, rtol=1e-5)

@pytest.mark.parametrize("device", DEVICES)
def test_empty_tables_and_empty_indices(device):
  x = Tensor(np.zeros((0, 3), np.float32), device=device)
  with pytest.raises(IndexError, match="out of range for size 0"): x[Tensor(np.array([0]), device=device)].numpy()
  assert Tensor(rnd(4, 3), device=device)[Tensor(np.zeros(0, np.int64), device=device)].numpy().shape == (0, 3)
  assert Tensor(rnd(4, 0), device=device).gather(0, Tensor(np.zeros((2, 0), np.int64), device=device)).numpy().shape == (2, 0)

@pytest.mark.parametrize("dt", [np.uint8, np.uint32, np.int8, np.int64])
def test_index_dtypes_and_a_0d_gather(dt):
  x = np.arange(12, dtype=np.float32).reshape(4, 3)
  np.testing.assert_array_equal(Tensor(x)[Tensor(np.array([3, 1], dt))].numpy(), x[[3, 1]])
  np.testing.assert_array_equal(Tensor(x).gather(1, Tensor(np.array([[2], [0], [1], [1]], dt))).numpy(), np.array([[2], [3], [7], [10]]))
  assert Tensor(np.float32(5)).gather(0, Tensor(np.array(0, dt))).item() == 5

def test_cross_entropy_forward_and_backward_take_no_more_kernels_than_the_compare_sum_did():
  x = Tensor(rnd(128, 10), requires_grad=True).realize()
  t = Tensor(ints(10, 128)).realize()
  counts = []
  for _ in range(2):  # the first realize also makes the device's index-error scalar
    loss = x.cross_entropy(t)
    loss.backward()
    GlobalCounters.reset()
    Tensor.realize(loss, x.grad)
    counts.append(GlobalCounters.kernel_count)
    x.grad = None
  assert counts[1] <= 6, counts  # 6 before GATHER (base 18e4be2), the index check included

# ---- TAKE: one node for a lookup along an axis (docs/design/0038) ----
def _take(x: Tensor, idx: Tensor, d: int) -> Tensor:
  from lucidgrad.tensor import _value
  return _value(x.uop.take(idx.uop, d))

@pytest.mark.parametrize("d", [0, 1, 2])
@pytest.mark.parametrize("ishape", [(), (5,), (2, 3)])
def test_take_along_each_axis_with_an_index_of_any_shape(d, ishape):
  x, idx = rnd(4, 5, 6), ints((4, 5, 6)[d], *ishape)
  out = _take(Tensor(x), Tensor(idx), d)
  assert out.shape == x.shape[:d] + ishape + x.shape[d+1:]
  np.testing.assert_array_equal(out.numpy(), np.take(x, idx, axis=d))

@pytest.mark.parametrize("d", [0, 1])
def test_take_gradient_is_a_scatter_add_of_each_taken_slice(d):
  idx = ints((6, 5)[d], 3, 4)  # repeats certain
  _grad_check(lambda t: _take(t, Tensor(idx), d), lambda t: torch.index_select(t, d, torch.tensor(idx.reshape(-1))).reshape(
    t.shape[:d] + idx.shape + t.shape[d+1:]), rnd(6, 5))

def test_embedding_builds_one_take_node_over_its_inputs():
  # the one node an eager lookup adds to its inputs' graph (each node built and freed costs ~1.5 us of the call)
  w, idx = Tensor(rnd(50, 8)).realize(), Tensor(ints(50, 3, 4).astype(np.int32)).realize()
  u = idx.embedding(w).uop
  assert u.op is Ops.TAKE and u.src == (w.uop, idx.uop) and u.arg == 0 and u.shape == (3, 4, 8)

def test_take_of_a_computed_table_under_an_elementwise_op_reads_only_the_taken_rows():
  # the scheduler writes TAKE as its GATHER first, so the gather still moves below the table's elementwise work
  x = Tensor(rnd(1000, 16)).realize()
  idx = Tensor(ints(1000, 4).astype(np.int32)).realize()
  with Context(CHECK_INDEX=0):
    GlobalCounters.reset()
    out = idx.embedding((x * 2 + 1).exp())
    np.testing.assert_allclose(out.numpy(), np.exp(x.numpy() * 2 + 1)[idx.numpy()], rtol=1e-6)
  assert GlobalCounters.kernel_count == 1 and GlobalCounters.global_mem < 1000 * 16 * 4

def test_a_take_with_a_float_index_is_a_spec_error():
  from lucidgrad.uop.spec import check_tensor_graph, SpecError
  x, f = Tensor(rnd(4, 3)).realize(), Tensor(rnd(2)).realize()
  with pytest.raises(SpecError, match="TAKE index of"): check_tensor_graph(x.uop.take(f.uop, 0).sink())
