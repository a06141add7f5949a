"""A reduce whose input does not change along a kept axis (every read there a broadcast: a conv whose weight is one
value, a matmul with a constant matrix) is computed once along that axis and broadcast (schedule._reduce_once): the work
shrinks by the axis' length and every output along it is bitwise the same. Values against torch / NumPy in float64."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes
from lucidgrad.uop.ops import Ops
from lucidgrad.schedule import create_schedule
from conftest import rnd

def reduce_inputs(t: Tensor) -> list[int]:
  """The input size of every reduce the schedule of `t` computes."""
  items = create_schedule([t.uop])[0]
  return [u.src[0].size for it in items for u in it.ast.toposort if u.op is Ops.REDUCE_AXIS]

def test_conv_with_a_one_value_weight_sums_once_per_pixel():
  xn = rnd(0, 2, 3, 20, 20)
  y = Tensor(xn).conv2d(Tensor.full((16, 3, 5, 5), 0.3), stride=2, padding=1)
  assert reduce_inputs(y) == [2 * 3 * 9 * 9 * 25]  # not 16 times that: one output channel is computed
  got = y.numpy()
  ref = F.conv2d(torch.tensor(xn, dtype=torch.float64), torch.full((16, 3, 5, 5), 0.3, dtype=torch.float64), stride=2, padding=1).numpy()
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  assert y.dtype == dtypes.float32 and (got == got[:, :1]).all()  # every channel the same sum, rounded the same

def test_a_weight_broadcast_from_a_one_element_buffer_is_read_unpacked():
  """Eight or more input channels go channels-last, but a weight of one repeated value (an ONNX ConstantOfShape fill, a
  buffer of one element) has no layout to copy: the conv reads the broadcast and is computed once per pixel."""
  xn, v = rnd(1, 1, 8, 12, 12), np.array([0.25], np.float32)
  w = Tensor(v).reshape(()).expand(24, 8, 3, 3)
  y = Tensor(xn).conv2d(w, padding=1)
  items = create_schedule([y.uop])[0]
  assert not any(it.bufs[0].size == 24 * 8 * 9 for it in items)  # no copy of the weight
  assert reduce_inputs(y) == [12 * 12 * 8 * 9]
  ref = F.conv2d(torch.tensor(xn, dtype=torch.float64), torch.full((24, 8, 3, 3), 0.25, dtype=torch.float64), padding=1).numpy()
  np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-5)

def test_gradient_through_a_one_value_weight_conv_matches_torch():
  xn, g = rnd(2, 1, 3, 16, 16), rnd(3, 1, 32, 14, 14)
  x = Tensor(xn, requires_grad=True)
  (x.conv2d(Tensor.full((32, 3, 3, 3), -0.5)) * Tensor(g)).sum().backward()
  tx = torch.tensor(xn, dtype=torch.float64, requires_grad=True)
  (F.conv2d(tx, torch.full((32, 3, 3, 3), -0.5, dtype=torch.float64)) * torch.tensor(g, dtype=torch.float64)).sum().backward()
  np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-5)

def test_matmul_with_a_constant_matrix_on_a_transposed_view():
  an = rnd(4, 256, 64)
  y = Tensor(an).T @ Tensor.full((256, 300), 1.5)  # a (64, 256) view, not contiguous
  assert reduce_inputs(y) == [64 * 256]
  got = y.numpy()
  np.testing.assert_allclose(got, an.T.astype(np.float64) @ np.full((256, 300), 1.5), rtol=1e-5, atol=1e-4)
  assert (got == got[:, :1]).all()

def test_max_and_integer_sums_too():
  xn = rnd(5, 1, 40, 300)
  y = (Tensor(xn).expand(64, 40, 300) * 2).amax(-1)
  assert reduce_inputs(y) == [40 * 300]
  np.testing.assert_array_equal(y.numpy(), np.broadcast_to((xn * 2).max(-1), (64, 40)))
  k = Tensor(np.arange(500, dtype=np.int32).reshape(1, 500)).expand(100, 500).sum(-1, dtype=dtypes.int32)
  assert k.dtype == dtypes.int32 and reduce_inputs(k) == [500]
  np.testing.assert_array_equal(k.numpy(), np.full(100, np.arange(500).sum(), np.int32))

def test_a_broadcast_along_a_reduced_axis_is_still_summed():
  """Only kept axes: a sum of n copies is not n times one copy in floating point, so those stay a loop."""
  xn = rnd(6, 1, 3000)
  y = Tensor(xn).expand(7, 3000).sum(0)
  assert reduce_inputs(y) == [7 * 3000]
  np.testing.assert_allclose(y.numpy(), 7 * xn[0].astype(np.float64), rtol=1e-5)

@pytest.mark.parametrize("shape, axis", [((4, 5), 1), ((4, 0, 5), 2), ((3, 0), 1)])
def test_small_and_empty_reduces_are_left_as_they_are(shape, axis):
  """Where the work saved is less than a buffer and a launch (or there is none), the reduce stays one fused kernel."""
  y = Tensor.full(shape, 2.0).sum(axis) + 1
  assert len(create_schedule([y.uop])[0]) <= 1
  np.testing.assert_array_equal(y.numpy(), np.full(shape, 2.0, np.float32).sum(axis) + 1)

def test_a_weight_that_varies_is_not_narrowed():
  xn, wn = rnd(7, 1, 3, 10, 10), rnd(8, 16, 3, 3, 3)
  y = Tensor(xn).conv2d(Tensor(wn))
  assert reduce_inputs(y) == [16 * 3 * 8 * 8 * 9]
  np.testing.assert_allclose(y.numpy(), F.conv2d(torch.tensor(xn, dtype=torch.float64), torch.tensor(wn, dtype=torch.float64)).numpy(), rtol=1e-5, atol=1e-5)
