"""Why each kernel exists: every ScheduleItem carries the scheduler's reason for its output buffer, a schedule-cache hit
carries the same reasons, and DEBUG=3 prints them (docs/design/0030-realize-reasons.md). Each program's values are
checked against NumPy too, so a reason is never reported for a schedule that computes something wrong."""
import numpy as np
import pytest
import lucidgrad.schedule as S
from lucidgrad import Tensor
from lucidgrad.helpers import Context, GlobalCounters
from lucidgrad.schedule import create_schedule
from lucidgrad.schedule.cache import cached_template, schedule_walk

def reasons(*ts: Tensor) -> list[tuple[str, str]]:
  """(kind, reason) of each item create_schedule makes for the tensors, in run order."""
  return [(it.kind, it.reason) for it in create_schedule([t.uop for t in ts])[0]]

def realized(rng, *shape) -> tuple[Tensor, np.ndarray]:
  a = rng.standard_normal(shape).astype(np.float32)
  return Tensor(a).realize(), a

def printed_reasons(out: str) -> list[str]:
  """The reasons DEBUG=3 printed: the per-item lines ("  name: reason") after a schedule line."""
  return [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("  ") and ": " in line]

def test_user_target():
  x, a = realized(np.random.default_rng(0), 3, 5)
  y = x * 2 + 1
  assert reasons(y) == [("kernel", S.WHY_TARGET)]
  np.testing.assert_allclose(y.numpy(), a * 2 + 1, rtol=1e-6)

def test_contiguous():
  x, a = realized(np.random.default_rng(1), 3, 6)
  y = (x + 1).contiguous() * 2
  assert reasons(y) == [("kernel", S.WHY_CONTIGUOUS), ("kernel", S.WHY_TARGET)]
  np.testing.assert_allclose(y.numpy(), (a + 1) * 2, rtol=1e-6)

def test_contiguous_target_says_contiguous():
  # the op's own reason wins over the target's: the buffer would exist even if something else were realized
  x, a = realized(np.random.default_rng(2), 4, 3)
  y = (x - 1).contiguous()
  assert reasons(y) == [("kernel", S.WHY_CONTIGUOUS)]
  np.testing.assert_allclose(y.numpy(), a - 1, rtol=1e-6)

def test_softmax_over_columns_cuts_its_reduces():
  # over axis 0 the max and the sum are each read by every element of their column through an EXPAND: recomputing
  # them per element would multiply the work, so each gets a buffer (over the last axis they fuse: design 0018)
  x, a = realized(np.random.default_rng(3), 5, 7)
  y = x.softmax(0)
  assert reasons(y) == [("kernel", S.WHY_REDUCE_EXPANDED)] * 2 + [("kernel", S.WHY_TARGET)]
  e = np.exp(a - a.max(0, keepdims=True))
  np.testing.assert_allclose(y.numpy(), e / e.sum(0, keepdims=True), rtol=1e-5)

def test_assign():
  rng = np.random.default_rng(4)
  w, a = realized(rng, 4, 5)
  x, b = realized(rng, 4, 5)
  assert reasons(w.assign(w + x)) == [("kernel", S.WHY_ASSIGN)]
  w.realize()
  np.testing.assert_allclose(w.numpy(), a + b, rtol=1e-6)

def test_assign_reading_other_elements():
  # w[i] = w[n-1-i] + 1 in place would read elements already overwritten: the value is computed into a scratch first
  w, a = realized(np.random.default_rng(5), 6, 2)
  assert reasons(w.assign(w.flip(0) + 1)) == [("kernel", S.WHY_ASSIGN_MOVED), ("kernel", S.WHY_ASSIGN)]
  w.realize()
  np.testing.assert_allclose(w.numpy(), a[::-1] + 1, rtol=1e-6)

def test_copy_between_devices():
  x, a = realized(np.random.default_rng(6), 3, 4)
  y = (x + 2).to("PYTHON")
  assert reasons(y) == [("kernel", "the source of a copy to PYTHON"), ("copy", "a copy to PYTHON")]
  assert y.device == "PYTHON"
  np.testing.assert_allclose(y.numpy(), a + 2, rtol=1e-6)

def test_reduce_read_by_two_kernels():
  x, a = realized(np.random.default_rng(12), 4, 6)
  s = x.sum(0)
  y, z = s * 2, s + 1
  assert reasons(y, z) == [("kernel", "a reduce read by 2 kernels or index paths (fused, each would compute it again)"),
                           ("kernel", S.WHY_TARGET), ("kernel", S.WHY_TARGET)]
  Tensor.realize(y, z)
  np.testing.assert_allclose(y.numpy(), a.sum(0) * 2, rtol=1e-5)
  np.testing.assert_allclose(z.numpy(), a.sum(0) + 1, rtol=1e-5)

def test_old_contents_apart_from_the_write():
  # one kernel reads x as it was (cos) and as the write leaves it: the old-only part runs first, into its own buffer
  x, a = realized(np.random.default_rng(13), 4, 3)
  y = x.cos() + x.assign(x + 1)
  assert reasons(y) == [("kernel", S.WHY_OLD_CONTENTS), ("kernel", S.WHY_ASSIGN), ("kernel", S.WHY_TARGET)]
  np.testing.assert_allclose(y.numpy(), np.cos(a) + a + 1, rtol=1e-5)

def test_gather_table():
  rng = np.random.default_rng(7)
  t, a = realized(rng, 6, 5)
  idx = Tensor(np.array([0, 2, 4, 1], dtype=np.int32)).realize()
  y = t.sum(1)[idx]
  assert reasons(y) == [("kernel", S.WHY_GATHER_TABLE), ("kernel", S.WHY_TARGET)]
  np.testing.assert_allclose(y.numpy(), a.sum(1)[[0, 2, 4, 1]], rtol=1e-5)

def test_scatter_base_then_adds():
  # a gather's gradient adds rows into memory at loaded addresses: one kernel fills the base, a second adds into it
  rng = np.random.default_rng(14)
  a, w = rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
  rows = np.array([0, 2, 2, 5], dtype=np.int32)
  x = Tensor(a, requires_grad=True)
  (x[Tensor(rows)] * Tensor(w)).sum().backward()
  assert reasons(x.grad) == [("kernel", S.WHY_SCATTER_BASE), ("kernel", S.WHY_SCATTER_ADDS)]
  expect = np.zeros_like(a)
  np.add.at(expect, rows, w)
  np.testing.assert_allclose(x.grad.numpy(), expect, rtol=1e-6)

def test_value_destroyed_by_write_is_computed_first(capsys):
  # `e` reads v's contents; the in-place write would destroy them, so realize_nodes adds e to the write's schedule
  v, a = realized(np.random.default_rng(8), 3, 7)
  e = v.exp()
  with Context(DEBUG=3):
    v.assign(v * 3).realize()
  assert printed_reasons(capsys.readouterr().out) == [S.WHY_DESTROYED, S.WHY_ASSIGN]
  np.testing.assert_allclose(e.numpy(), np.exp(a), rtol=1e-6)
  np.testing.assert_allclose(v.numpy(), a * 3, rtol=1e-6)

def test_cache_hit_carries_the_reasons(capsys):
  rng = np.random.default_rng(9)
  x1, a1 = realized(rng, 9, 4)
  x2, a2 = realized(rng, 9, 4)
  prog = lambda x: (x.softmax(0) + 1).contiguous() * 3
  y1, y2 = prog(x1), prog(x2)
  built = reasons(y1)
  assert built == [("kernel", S.WHY_REDUCE_EXPANDED)] * 2 + [("kernel", S.WHY_CONTIGUOUS), ("kernel", S.WHY_TARGET)]
  with Context(DEBUG=3): y1.realize()
  miss = capsys.readouterr().out
  before = GlobalCounters.schedules_built
  with Context(DEBUG=3):
    key = schedule_walk([y2.uop]).key  # the key holds every flag's value, DEBUG's too
    y2.realize()
  hit = capsys.readouterr().out
  assert GlobalCounters.schedules_built == before and "schedule cache: hit" in hit
  assert cached_template(key).reasons == tuple(r for _, r in built)
  assert printed_reasons(hit) == printed_reasons(miss)[-4:] == [r for _, r in built]
  for y, a in ((y1, a1), (y2, a2)):
    e = np.exp(a - a.max(0, keepdims=True))
    np.testing.assert_allclose(y.numpy(), (e / e.sum(0, keepdims=True) + 1) * 3, rtol=1e-5)

def test_debug_prints_kernel_names(capsys):
  x, a = realized(np.random.default_rng(10), 2, 11)
  y = (x + 5).contiguous() - 1
  with Context(DEBUG=3): y.realize()
  lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
  assert [line.split(": ", 1)[1] for line in lines] == [S.WHY_CONTIGUOUS, S.WHY_TARGET]
  assert all(line.split(": ", 1)[0].strip() for line in lines)  # each names its kernel
  np.testing.assert_allclose(y.numpy(), a + 4, rtol=1e-6)

def test_reasons_cost_nothing_without_debug(capsys):
  x, a = realized(np.random.default_rng(11), 3, 13)
  (x * 7).realize()
  assert capsys.readouterr().out == ""

@pytest.mark.parametrize("shape", [(0, 4), ()])
def test_empty_and_scalar(shape):
  a = np.ones(shape, np.float32)
  y = Tensor(a) * 2
  r = reasons(y)
  assert all(reason == S.WHY_TARGET for _, reason in r) and len(r) <= 1
  np.testing.assert_allclose(y.numpy(), a * 2)
