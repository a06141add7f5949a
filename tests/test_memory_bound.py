"""Memory-bound kernels: row reductions fused into one kernel (softmax, log_softmax, layer norm and their gradients,
docs/design/0018), max reductions with vector accumulators, sums over big and odd lengths, pooling and its gradient,
and float -> bfloat16/float16 conversion on tensor creation; values against NumPy (float64) and torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes, GlobalCounters
from lucidgrad.dtype import f32_to_bf16_array, f32_to_bf16

rng = np.random.default_rng(0)
DEVICES = ["CPU", "PYTHON"]

def np_softmax(x, axis=-1):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)

def np_layer_norm(x, axes, eps=1e-5):
  c = x - x.mean(axes, keepdims=True)
  return c / np.sqrt((c * c).mean(axes, keepdims=True) + eps)

# rows of odd and prime lengths (no vector split), of 1, and of lengths the heuristic splits into vectors
SHAPES = [(1, 1), (3, 1), (1, 7), (5, 13), (7, 64), (4, 97), (2, 3, 40), (16, 128)]

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_log_softmax_layer_norm_match_numpy(shape, device):
  xn = (rng.standard_normal(shape) * 4).astype(np.float32)
  x, x64 = Tensor(xn, device=device), xn.astype(np.float64)
  np.testing.assert_allclose(x.softmax(-1).numpy(), np_softmax(x64), rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose(x.log_softmax(-1).numpy(), x64 - np.log(np.exp(x64 - x64.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x64.max(-1, keepdims=True), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(x.layer_norm(shape[-1:]).numpy(), np_layer_norm(x64, -1), rtol=1e-4, atol=1e-4)
  if len(shape) == 3: np.testing.assert_allclose(x.layer_norm(shape[-2:]).numpy(), np_layer_norm(x64, (-2, -1)), rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_over_any_axis_matches_numpy(axis):
  # axis 0 and 1 of a 3-d tensor broadcast the reduce along a loop outside it: those keep their buffers
  xn = rng.standard_normal((6, 10, 24)).astype(np.float32)
  np.testing.assert_allclose(Tensor(xn).softmax(axis).numpy(), np_softmax(xn.astype(np.float64), axis), rtol=2e-6, atol=1e-7)

def test_softmax_extremes_inf_and_nan_rows():
  xn = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8], [-np.inf] * 4 + [0.0] + [-np.inf] * 4, [1e30, -1e30, 1e30, 0, 0, 0, 0, 0, 0],
                 [1, 2, np.nan, 4, 5, 6, 7, 8, 9], [np.inf, 0, 0, 0, 0, 0, 0, 0, 0]], np.float32)
  np.testing.assert_array_equal(np.isnan(Tensor(xn).softmax(-1).numpy()), np.isnan(torch.softmax(torch.from_numpy(xn), -1).numpy()))
  out, ref = Tensor(xn).softmax(-1).numpy(), torch.softmax(torch.from_numpy(xn), -1).numpy()
  np.testing.assert_allclose(out[:3], ref[:3], rtol=1e-6, atol=1e-7)

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(4, 33), (8, 64), (3, 1), (2, 5, 16)])
def test_row_reduction_gradients_match_torch(shape, device):
  xn = rng.standard_normal(shape).astype(np.float32)
  gn = rng.standard_normal(shape).astype(np.float32)
  for name, ours, theirs in (("softmax", lambda t: t.softmax(-1), lambda t: torch.softmax(t, -1)),
                             ("log_softmax", lambda t: t.log_softmax(-1), lambda t: torch.log_softmax(t, -1)),
                             ("layer_norm", lambda t: t.layer_norm(shape[-1:]), lambda t: F.layer_norm(t, shape[-1:]))):
    x = Tensor(xn, requires_grad=True, device=device)
    (ours(x) * Tensor(gn, device=device)).sum().backward()
    xt = torch.from_numpy(xn.astype(np.float64)).requires_grad_()
    (theirs(xt) * torch.from_numpy(gn.astype(np.float64))).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)

def test_softmax_layer_norm_are_one_kernel_each_on_cpu():
  x = Tensor(rng.standard_normal((64, 256)).astype(np.float32)).realize()
  for fn in (lambda t: t.softmax(-1), lambda t: t.log_softmax(-1), lambda t: t.layer_norm((256,))):
    GlobalCounters.reset()
    fn(x).realize()
    assert GlobalCounters.kernel_count == 1

def test_nested_row_reductions_are_computed_once_per_row():
  # each step's row sum nests in the next one's: one kernel, each reduce once per row (values as NumPy's)
  xn = rng.standard_normal((8, 24)).astype(np.float32)
  x, y, x64 = Tensor(xn), Tensor(xn), xn.astype(np.float64)
  ref = x64
  for _ in range(3): y, ref = x * y.sum(1, keepdim=True) / 24, x64 * ref.sum(1, keepdims=True) / 24
  GlobalCounters.reset()
  out = y.numpy()
  assert GlobalCounters.kernel_count == 1
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)

# ---- max with a vector accumulator: NaN anywhere in a row wins, -inf rows, ties of signed zeros

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 7, 8, 13, 64, 257])
def test_max_reduce_propagates_nan_from_any_lane(n, device):
  for pos in sorted({0, n // 2, n - 1}):
    xn = rng.standard_normal((3, n)).astype(np.float32)
    xn[1, pos] = np.nan
    xn[2] = -np.inf
    out = Tensor(xn, device=device).amax(-1).numpy()
    assert np.isnan(out[1]) and out[2] == -np.inf
    assert out[0] == xn[0].max()

def test_max_reduce_of_ints_and_column_max():
  xn = rng.integers(-2**31, 2**31 - 1, (5, 40), dtype=np.int64).astype(np.int32)
  np.testing.assert_array_equal(Tensor(xn).amax(-1).numpy(), xn.max(-1))
  np.testing.assert_array_equal(Tensor(xn).max(axis=0).numpy(), xn.max(0))

# ---- sums over big and odd lengths

@pytest.mark.parametrize("n", [1, 2, 7, 97, 1021, 65537, 1 << 20, (1 << 22) + 15])
def test_sum_of_big_and_odd_lengths_matches_float64(n):
  xn = rng.standard_normal(n).astype(np.float32)
  out = Tensor(xn).sum().numpy()
  ref = xn.astype(np.float64).sum()
  assert abs(out - ref) <= 1e-6 * np.abs(xn).astype(np.float64).sum() + 1e-6

@pytest.mark.parametrize("n", [1, 13, 97, 1000])
def test_sum_and_max_on_python_device(n):
  xn = rng.standard_normal((2, n)).astype(np.float32)
  np.testing.assert_allclose(Tensor(xn, device="PYTHON").sum(-1).numpy(), xn.astype(np.float64).sum(-1), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(Tensor(xn, device="PYTHON").amax(-1).numpy(), xn.max(-1))

# ---- pooling and its gradient, ReLU's gradient

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape,k,s", [((2, 3, 8, 8), 2, 2), ((1, 2, 9, 7), 2, 2), ((2, 1, 10, 10), 3, 2), ((1, 1, 5, 5), 3, 1)])
def test_max_pool_and_its_gradient_match_torch(shape, k, s, device):
  xn = rng.standard_normal(shape).astype(np.float32)
  x = Tensor(xn, requires_grad=True, device=device)
  y = x.relu().max_pool2d(k, s)
  gn = rng.standard_normal(y.shape).astype(np.float32)
  (y * Tensor(gn, device=device)).sum().backward()
  xt = torch.from_numpy(xn).requires_grad_()
  yt = F.max_pool2d(F.relu(xt), k, s)
  (yt * torch.from_numpy(gn)).sum().backward()
  np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=0, atol=0)
  np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-6)

# ---- float -> bfloat16 / float16 on tensor creation: vectorised, round to nearest even, NaN and inf kept

def special_floats() -> np.ndarray:
  f32 = np.float32
  ties = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x3F80C000, 0x3F807FFF, 0x7F7FFFFF, 0x7F7F8000, 0x00008000, 0x00018000,
                   0x00000001, 0x007FFFFF, 0x80000001, 0xFF7FFFFF], np.uint32).view(f32)
  return np.concatenate([ties, np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1e-40, 3.4e38, 65504, 65520,
                                         6e-8, 5.96e-8, 2.98e-8, 1e-5], f32),
                         rng.standard_normal(5000).astype(f32) * np.float32(10) ** rng.integers(-40, 38, 5000).astype(f32)])

def test_bfloat16_creation_matches_torch_bit_for_bit():
  x = special_floats()
  ref = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
  ours = Tensor(x, dtype=dtypes.bfloat16).bitcast(dtypes.uint16).numpy()
  nan = np.isnan(x)
  np.testing.assert_array_equal(ours[~nan], ref[~nan])
  assert (ours[nan] & 0x7FFF == 0x7FC0).all()
  np.testing.assert_array_equal(f32_to_bf16_array(x)[~nan], ref[~nan])
  assert all(f32_to_bf16(v) == b for v, b in zip(x[~nan][:40], ref[~nan][:40]))

def test_bfloat16_from_float64_and_lists_rounds_like_torch():
  x = special_floats().astype(np.float64) * (1 + 2.0 ** -30)  # float64 values between bfloat16 neighbours
  x = x[np.isfinite(x)]
  ref = torch.tensor(x.tolist(), dtype=torch.bfloat16).float().numpy()
  np.testing.assert_array_equal(Tensor(x, dtype=dtypes.bfloat16).numpy(), ref)
  np.testing.assert_array_equal(Tensor(x.tolist(), dtype=dtypes.bfloat16).numpy(), ref)
  assert Tensor(x.reshape(-1)[:6].reshape(2, 3), dtype=dtypes.bfloat16).shape == (2, 3)

def test_float16_creation_matches_torch():
  x = special_floats()
  ours = Tensor(x, dtype=dtypes.float16).numpy()
  ref = torch.from_numpy(x).to(torch.float16).numpy()
  np.testing.assert_array_equal(ours.view(np.uint16)[~np.isnan(ref)], ref.view(np.uint16)[~np.isnan(ref)])
  np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))

def test_a_million_element_bfloat16_tensor_is_built_vectorised():
  # the per-element Python loop took 4.7 s; the values are the check, and a loop would take seconds here too
  x = rng.standard_normal(1 << 20).astype(np.float32)
  np.testing.assert_array_equal(Tensor(x, dtype=dtypes.bfloat16).numpy(), torch.from_numpy(x).to(torch.bfloat16).float().numpy())

# ---- a reduce to one value is split into partial reduces the CPU threads share

def test_a_big_sum_to_one_value_is_two_kernels_and_a_prime_length_one():
  from lucidgrad.schedule import create_schedule
  x = Tensor(rng.standard_normal(1 << 20).astype(np.float32)).realize()
  items, _, _ = create_schedule([x.sum().uop])
  assert len(items) == 2 and items[0].ast.src[0].src[0].arg[1] == 64  # 64 partial sums, then their sum
  p = Tensor(rng.standard_normal(1048573).astype(np.float32)).realize()  # prime: no block divides it
  assert len(create_schedule([p.sum().uop])[0]) == 1

@pytest.mark.parametrize("shape,axis", [((1 << 20,), None), ((4096, 300), None), ((3, 70001), None), ((512, 1024), (0, 1)),
                                        ((1000, 1000), 0), ((257, 96), 0), ((96, 7), 0)])
def test_big_sums_max_and_column_sums_match_numpy(shape, axis):
  xn = rng.standard_normal(shape).astype(np.float32)
  x64 = xn.astype(np.float64)
  out = Tensor(xn).sum(axis).numpy()
  np.testing.assert_allclose(out, x64.sum(axis), rtol=1e-5, atol=1e-6 * np.abs(x64).sum())
  np.testing.assert_array_equal(Tensor(xn).amax(axis).numpy(), xn.max(axis))
  np.testing.assert_allclose(Tensor(xn).mean(axis).numpy(), x64.mean(axis), rtol=1e-5, atol=1e-6 * np.abs(x64).mean())

# ---- index math: a split axis read back whole is the axis

def test_divmod_of_one_index_joins_back_into_it():
  from lucidgrad.uop.ops import UOp, Ops, AxisType
  from lucidgrad.uop.symbolic import symbolic, exec_alu
  from lucidgrad.uop.pattern import graph_rewrite
  dt = dtypes.int32
  r = UOp(Ops.RANGE, dt, (UOp.const(dt, 24),), ((0,), AxisType.LOOP))
  s = UOp(Ops.RANGE, dt, (UOp.const(dt, 5),), ((1,), AxisType.LOOP))
  assert graph_rewrite((r % 2) + (r // 2) * 2, symbolic) is r
  e = graph_rewrite(((r + s * 7 + 3) % 4) * 3 + ((r + s * 7 + 3) // 4) * 12 + 1, symbolic)
  assert Ops.MOD not in {u.op for u in e.toposort} and Ops.IDIV not in {u.op for u in e.toposort}
  for rv in range(24):
    for sv in range(5):
      assert graph_rewrite(e.substitute({r: UOp.const(dt, rv), s: UOp.const(dt, sv)}), symbolic).arg == 3 * (rv + 7 * sv + 3) + 1
  # the identity holds for negative values too, with C's truncating division
  for v in range(-9, 10):
    assert exec_alu(Ops.MOD, dt, (v, 4)) + 4 * exec_alu(Ops.IDIV, dt, (v, 4)) == v
  # a mismatched multiple stays as it is
  assert Ops.MOD in {u.op for u in graph_rewrite((r % 2) + (r // 2) * 3, symbolic).toposort}

def test_row_reductions_over_views_in_place_and_under_another_reduce():
  xn = rng.standard_normal((24, 40)).astype(np.float32)
  x64 = xn.astype(np.float64)
  np.testing.assert_allclose(Tensor(xn).T.softmax(-1).numpy(), np_softmax(x64.T), rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose(Tensor(xn)[:, 3:37].softmax(-1).numpy(), np_softmax(x64[:, 3:37]), rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose(Tensor(xn).softmax(-1).T.contiguous().numpy(), np_softmax(x64).T, rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose((Tensor(xn) - Tensor(xn).amax(1, keepdim=True)).sum(1).numpy(), (x64 - x64.max(1, keepdims=True)).sum(1), rtol=1e-5, atol=1e-5)
  t = Tensor(xn).realize()
  t.assign(t.softmax(-1)).realize()  # reads every element of its row: computed aside, then written
  np.testing.assert_allclose(t.numpy(), np_softmax(x64), rtol=2e-6, atol=1e-7)
  m = Tensor(xn)
  outs = [m.softmax(-1), m.amax(1, keepdim=True)]  # the max is a target too: its buffer is read
  Tensor.realize(*outs)
  np.testing.assert_allclose(outs[0].numpy(), np_softmax(x64), rtol=2e-6, atol=1e-7)
  np.testing.assert_array_equal(outs[1].numpy(), xn.max(1, keepdims=True))
