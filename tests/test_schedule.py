"""Fusion, kernel counts and buffer decisions of the scheduler, checked by counting kernels and values."""
import numpy as np
import pytest
from lucidgrad import Tensor, GlobalCounters
from lucidgrad.schedule import create_schedule
from lucidgrad.uop.ops import Ops, UOp, GroupOp
from lucidgrad.uop.pattern import graph_rewrite
from lucidgrad.dtype import dtypes

rng = np.random.default_rng(0)
def realized(*shape) -> tuple[Tensor, np.ndarray]:
  x = rng.standard_normal(shape).astype(np.float32)
  return Tensor(x).realize(), x

def kernels(*ts: Tensor) -> int:
  items, _, _ = create_schedule([t.uop for t in ts])
  return sum(1 for it in items if it.kind == "kernel")

def run_counting(t: Tensor) -> tuple[np.ndarray, int]:
  GlobalCounters.reset()
  out = t.numpy()
  return out, GlobalCounters.kernel_count

def test_mul_add_sum_is_one_kernel():
  (a, an), (b, bn), (c, cn) = realized(16, 32), realized(16, 32), realized(16, 32)
  out, n = run_counting((a * b + c).sum(axis=1))
  assert n == 1
  np.testing.assert_allclose(out, (an * bn + cn).sum(1), rtol=1e-5, atol=1e-5)

def test_softmax_is_at_most_three_kernels():
  x, xn = realized(8, 50)
  out, n = run_counting(x.softmax(-1))
  assert n <= 3
  e = np.exp(xn - xn.max(-1, keepdims=True))
  np.testing.assert_allclose(out, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)

def test_ten_elementwise_ops_are_one_kernel():
  x, xn = realized(33, 17)
  y, yn = x, xn
  for i in range(10): y, yn = ((y * 1.01 + 0.1).relu(), np.maximum(yn * 1.01 + 0.1, 0)) if i % 2 else ((y * 0.5).exp2() * 0.5, np.exp2(yn * 0.5) * 0.5)
  out, n = run_counting(y)
  assert n == 1
  np.testing.assert_allclose(out, yn, rtol=1e-4)

def test_matmul_relu_is_one_kernel():
  (a, an), (b, bn) = realized(24, 40), realized(40, 12)
  out, n = run_counting((a @ b).relu())
  assert n == 1
  np.testing.assert_allclose(out, np.maximum(an @ bn, 0), rtol=1e-4, atol=1e-5)

def test_expanded_reduce_is_realized_not_recomputed():
  x, xn = realized(16, 64)
  # the column mean is read by every row, along the outer loop: fused, each row would compute it again
  for y, ref in ((x - x.mean(axis=0, keepdim=True), xn - xn.mean(0, keepdims=True)), (x - x.mean(), xn - xn.mean())):
    items, _, _ = create_schedule([y.uop])
    assert len(items) == 2
    # the second kernel reads the first's output instead of containing a reduce of its own
    assert not any(u.op is Ops.REDUCE_AXIS for u in items[1].ast.toposort)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)

def test_row_reduce_read_by_its_row_is_computed_once_per_row():
  # a row's mean read by the elements of its row: the row loop is outside, so the kernel computes it once per row,
  # before the loop over the row that reads it (docs/design/0018)
  from lucidgrad.codegen.lower import lower_kernel
  x, xn = realized(16, 64)
  y = x - x.mean(axis=1, keepdim=True)
  items, _, _ = create_schedule([y.uop])
  assert len(items) == 1
  assert sum(1 for u in lower_kernel(items[0].ast).toposort if u.op is Ops.REDUCE) == 1
  np.testing.assert_allclose(y.numpy(), xn - xn.mean(1, keepdims=True), rtol=1e-5, atol=1e-6)

def test_softmax_chain_is_one_kernel_with_each_reduce_lowered_once():
  from lucidgrad.codegen.lower import lower_kernel
  x, xn = realized(8, 50)
  items, _, _ = create_schedule([x.softmax(-1).uop])
  assert len(items) == 1
  # the max is read by the sum and by the output, at one index: one REDUCE, not two
  assert sorted(u.arg.name for u in lower_kernel(items[0].ast).toposort if u.op is Ops.REDUCE) == ["ADD", "MAX"]

def test_reduce_then_elementwise_fuses_into_the_reduce():
  x, xn = realized(32, 32)
  out, n = run_counting((x.max(axis=0) * 2).exp())
  assert n == 1
  np.testing.assert_allclose(out, np.exp(xn.max(0) * 2), rtol=1e-5)

def test_elementwise_before_reduce_fuses():
  x, xn = realized(32, 32)
  out, n = run_counting((x.exp() + 1).sum())
  assert n == 1
  np.testing.assert_allclose(out, (np.exp(xn) + 1).sum(), rtol=1e-5)

def test_contiguous_makes_a_buffer():
  x, xn = realized(8, 8)
  assert kernels((x + 1).contiguous() * 2) == 2
  assert kernels((x + 1) * 2) == 1

def test_realized_tensor_needs_no_kernel():
  x, _ = realized(4, 4)
  assert kernels(x) == 0
  assert kernels(x.reshape(16)) == 0

def test_permuted_realized_tensor_needs_a_copy_kernel():
  x, xn = realized(4, 6)
  out, n = run_counting(x.T)
  assert n == 1
  np.testing.assert_equal(out, xn.T)

def test_two_targets_share_a_schedule():
  x, xn = realized(8, 8)
  a, b = x + 1, x * 2
  GlobalCounters.reset()
  a.realize(b)
  assert GlobalCounters.kernel_count == 2
  np.testing.assert_allclose(a.numpy(), xn + 1); np.testing.assert_allclose(b.numpy(), xn * 2)
  assert GlobalCounters.kernel_count == 2   # both were realized already

def test_later_schedules_read_realized_values_instead_of_recomputing():
  x, xn = realized(8, 8)
  y = x + 1
  z = y * 2
  y.realize()
  assert y.uop.is_realized
  # z's graph is untouched (realizing y changes no other tensor), but its kernel reads y's buffer instead of recomputing x + 1
  assert any(u.op is Ops.ADD for u in z.uop.toposort)
  items, _, _ = create_schedule([z.uop])
  assert len(items) == 1 and not any(u.op is Ops.ADD for u in items[0].ast.toposort)
  np.testing.assert_allclose(z.numpy(), (xn + 1) * 2)

def test_scratch_buffers_are_reused_in_a_schedule():
  x, xn = realized(64, 64)
  y, ref = x, xn
  # each column sum is a scratch buffer read only by the next step (a row sum read by its own row would be computed
  # in the reading kernel, once per row: docs/design/0018)
  for _ in range(4):
    y, ref = x * y.sum(axis=0, keepdim=True) / 64, xn * ref.sum(0, keepdims=True) / 64
  items, _, _ = create_schedule([y.uop])
  outputs = [it.bufs[0] for it in items[:-1]]
  assert len(items) == 5 and len(set(outputs)) < len(outputs)
  np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-7)

def test_size_zero_runs_no_kernel():
  out, n = run_counting(Tensor.zeros(0, 4) + 1)
  assert n == 0 and out.shape == (0, 4)

def test_python_device_matches_cpu_on_fused_kernels():
  xn = rng.standard_normal((6, 10)).astype(np.float32)
  outs = [Tensor(xn, device=d).softmax(-1).numpy() for d in ("CPU", "PYTHON")]
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-7)

def test_null_device_runs_nothing_but_counts():
  GlobalCounters.reset()
  (Tensor.empty(64, 64, device="NULL") @ Tensor.empty(64, 64, device="NULL")).realize()
  assert GlobalCounters.kernel_count == 1 and GlobalCounters.global_ops >= 2 * 64**3 and GlobalCounters.time_sum_s > 0

def test_copy_between_devices():
  x, xn = realized(3, 5)
  y = (x.to("PYTHON") * 2).to("CPU")
  np.testing.assert_allclose(y.numpy(), xn * 2)
  assert y.device == "CPU"

def test_kernel_whose_input_folds_away_gets_only_its_params():
  # bool // 3 is always 0: the input is never read, and the kernel must be called without it
  x = Tensor(np.array([[True, False, True]] * 2))
  np.testing.assert_equal((x // 3).numpy(), np.zeros((2, 3), np.int64))
  np.testing.assert_equal((x // 3).to("PYTHON").numpy(), np.zeros((2, 3), np.int64))

def test_assign_writes_in_place_after_readers_of_the_old_value():
  w, wn = realized(2, 3)
  buf = w._buffer_view()
  y = w * 2                         # reads the old w
  w.assign(w - 1)
  y.realize(w)
  assert w._buffer_view() is buf    # no new buffer: every view of w sees the new values
  np.testing.assert_allclose(y.numpy(), wn * 2)
  np.testing.assert_allclose(w.numpy(), wn - 1)

def test_assign_whose_value_reads_other_elements_goes_through_a_scratch():
  w, wn = realized(4, 5)
  w.assign(w.flip(1) + w.T.T.flip(0))
  items, _, _ = create_schedule([w.uop])
  assert len(items) == 2
  w.realize()
  np.testing.assert_allclose(w.numpy(), wn[:, ::-1] + wn[::-1])

def test_clone_of_a_realized_tensor_is_a_new_buffer():
  x, xn = realized(3, 4)
  y = x.clone().realize()
  assert y._buffer_view() is not x._buffer_view()
  np.testing.assert_equal(y.numpy(), xn)

def test_assign_whose_value_reads_another_assign_needs_no_scratch():
  # optimiser shape: flat state updated from a padded parameter, then the parameter from a slice of the new state
  a = Tensor.ones(4).contiguous().realize(); s = Tensor.zeros(8).contiguous().realize()
  s.assign(s + a.pad(((0, 4),))); a.assign(a + s[:4])
  GlobalCounters.reset(); Tensor.realize(s, a)
  assert GlobalCounters.kernel_count == 2
  np.testing.assert_array_equal(a.numpy(), [2, 2, 2, 2]); np.testing.assert_array_equal(s.numpy(), [1, 1, 1, 1, 0, 0, 0, 0])

# ---- the cost model (docs/design/0008-kernel-cost-model.md) ----
def chain(x, steps: int, sin, k: float = 0.9):
  """`steps` of x <- sin(k x): two ops an element a step, with no rule to fold them."""
  for _ in range(steps): x = sin(x * k)
  return x

def test_costly_elementwise_work_read_by_two_kernels_gets_a_buffer():
  # an LSTM's cell state: a chain read by the next step and by the backward; fused, each kernel recomputed all of it
  x, xn = realized(16, 64)
  # (a step of a few native ops: a sine is ~160 as codegen writes it, and 100 would not fit one kernel)
  a, an = chain(x, 100, lambda t: (t * t + 1).sqrt() - 1), chain(xn.astype(np.float64), 100, lambda t: np.sqrt(t * t + 1) - 1)
  t1, t2 = a + 1, a * 2
  assert kernels(t1, t2) == 3
  np.testing.assert_allclose(t1.numpy(), an + 1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(t2.numpy(), an * 2, rtol=1e-5, atol=1e-6)

def test_cheap_elementwise_work_read_by_two_kernels_stays_fused():
  x, xn = realized(16, 64)
  a = x * 2 + 1   # recomputing two ops is cheaper than writing and reading a buffer
  t1, t2 = a + 1, a.exp()
  assert kernels(t1, t2) == 2
  np.testing.assert_allclose(t1.numpy(), xn * 2 + 2, rtol=1e-6)
  np.testing.assert_allclose(t2.numpy(), np.exp(xn * 2 + 1), rtol=1e-5)

def test_a_chain_longer_than_a_kernel_may_hold_is_cut_into_bounded_kernels():
  """Each sine counts as the ~160 ops codegen writes it as (a kernel of 1024 sines took gcc 25 s): a chain of 40 is more
  than one kernel may hold."""
  from lucidgrad.codegen.lower import lower_kernel
  from lucidgrad.codegen.transcendental import pm_transcendental
  from lucidgrad.renderer.c import CRenderer
  from lucidgrad.schedule.cost import MAX_KERNEL_NODES
  x, xn = realized(4, 8)
  y = chain(x, 40, Tensor.sin)
  items, _, _ = create_schedule([y.uop])
  def value_ops(ast):
    sink = graph_rewrite(lower_kernel(ast), pm_transcendental, ctx=CRenderer())
    return sum(1 for u in sink.toposort if u.op in GroupOp.ALU or u.op in (Ops.CAST, Ops.BITCAST))
  sizes = [value_ops(it.ast) for it in items]
  assert len(items) >= 4 and max(sizes) <= 1.25 * MAX_KERNEL_NODES, sizes
  np.testing.assert_allclose(y.numpy(), chain(xn.astype(np.float64), 40, np.sin), rtol=1e-4, atol=1e-6)

@pytest.mark.parametrize("op", ["EXP2", "LOG2", "SIN", "COS"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_cost_model_counts_a_transcendental_as_the_ops_codegen_writes(op, dtype):
  from lucidgrad.codegen.transcendental import _RULES
  from lucidgrad.schedule.cost import EXPANDED_OPS
  from lucidgrad.uop.ops import AxisType
  dt = getattr(dtypes, dtype)
  x = UOp(Ops.RANGE, dtypes.int32, (UOp.const(dtypes.int32, 16),), ((0,), AxisType.LOOP)).cast(dt)
  written = sum(1 for u in _RULES[Ops[op]](x).toposort if u.op in GroupOp.ALU or u.op in (Ops.CAST, Ops.BITCAST))
  assert EXPANDED_OPS[(Ops[op], dtype)] == written

def test_a_reduce_read_twice_at_one_place_in_one_kernel_is_computed_once():
  # one path from the kernel's root: lowered once, so no second copy to round differently and no buffer needed
  x, xn = realized(8, 32)
  s = x.sum(1)
  out, n = run_counting(s * s.exp())
  assert n == 1
  sn = xn.astype(np.float64).sum(1)
  np.testing.assert_allclose(out, sn * np.exp(sn), rtol=1e-5)

def test_a_contraction_under_a_costly_epilogue_gets_its_own_buffer():
  """A matmul runs what is fused after it on the scalar lanes of its register block: a tanh gelu (~50 nodes) goes to an
  elementwise kernel of whole vectors, a bias and relu stay fused (docs/design/0021). A small matmul keeps its gelu:
  the second launch would cost more than the epilogue."""
  import math
  (x, xn), (w, wn), (b, bn) = realized(128, 96), realized(256, 96), realized(256)
  h = xn.astype(np.float64) @ wn.T.astype(np.float64) + bn
  out, n = run_counting((x @ w.T + b).gelu(approximate="tanh"))
  assert n == 2
  np.testing.assert_allclose(out, 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3))), rtol=1e-4, atol=1e-4)
  out, n = run_counting((x @ w.T + b).relu())
  assert n == 1
  np.testing.assert_allclose(out, np.maximum(h, 0), rtol=1e-4, atol=1e-4)
  (xs, _), (ws, _) = realized(4, 96), realized(8, 96)
  assert kernels((xs @ ws.T).gelu(approximate="tanh")) == 1
