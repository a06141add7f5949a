"""The JIT: warm-up, capture, replay on new buffers with no scheduling or compiling, and shape checks."""
import numpy as np, pytest
from lucidgrad import Tensor, jit, JitError, GlobalCounters
import lucidgrad.schedule as schedule_mod

rng = np.random.default_rng(0)

def test_replay_matches_eager_and_skips_scheduling(monkeypatch):
  w = Tensor(rng.standard_normal((8, 4)).astype(np.float32)).realize()
  @jit
  def f(x: Tensor) -> Tensor: return (x @ w).relu().softmax(-1)
  xs = [rng.standard_normal((3, 8)).astype(np.float32) for _ in range(5)]
  GlobalCounters.reset()
  outs = [f(Tensor(x)).numpy() for x in xs[:1]]
  per_call = GlobalCounters.kernel_count
  outs += [f(Tensor(x)).numpy() for x in xs[1:2]]
  calls = []
  real = schedule_mod.create_schedule
  monkeypatch.setattr(schedule_mod, "create_schedule", lambda *a, **k: calls.append(1) or real(*a, **k))
  GlobalCounters.reset()
  for x in xs[2:]: outs.append(f(Tensor(x)).numpy())
  assert calls == []
  for x, o in zip(xs, outs):
    e = np.exp(np.maximum(x @ w.numpy(), 0) - np.maximum(x @ w.numpy(), 0).max(-1, keepdims=True))
    np.testing.assert_allclose(o, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
  assert GlobalCounters.kernel_count == 3 * per_call   # the same kernels as an eager call, all counted

def test_replay_compiles_nothing():
  @jit
  def f(a: Tensor, b: Tensor) -> Tensor: return (a * b + 1).sum(axis=1)
  for _ in range(2): f(Tensor(rng.standard_normal((4, 5)).astype(np.float32)), Tensor(rng.standard_normal((4, 5)).astype(np.float32)))
  before = GlobalCounters.compiles
  a, b = rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
  np.testing.assert_allclose(f(Tensor(a), Tensor(b)).numpy(), (a * b + 1).sum(1), rtol=1e-6)
  assert GlobalCounters.compiles == before

def test_changed_shape_raises():
  @jit
  def f(x: Tensor) -> Tensor: return x * 2
  for _ in range(2): f(Tensor(np.ones((2, 3), np.float32)))
  with pytest.raises(JitError, match=r"captured for inputs \[\(\(2, 3\).*now gets \[\(\(3, 3\)"): f(Tensor(np.ones((3, 3), np.float32)))

def test_non_contiguous_input_is_realized_first():
  @jit
  def f(x: Tensor) -> Tensor: return x + 1
  xs = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]
  outs = [f(Tensor(x).T).numpy() for x in xs]
  for x, o in zip(xs, outs): np.testing.assert_allclose(o, x.T + 1)

def test_random_numbers_are_fresh_on_every_replay():
  @jit
  def noisy(x: Tensor) -> Tensor: return x + Tensor.rand(64)
  draws = [noisy(Tensor.zeros(64)).numpy() for _ in range(5)]
  assert len({d.tobytes() for d in draws}) == 5
  assert all(0 <= d.min() and d.max() < 1 for d in draws)

def test_assign_in_a_jitted_step_updates_the_state_each_replay():
  acc = Tensor.zeros(3).contiguous().realize()
  @jit
  def add(x: Tensor) -> Tensor:
    acc.assign(acc + x)
    return acc.sum().realize()
  totals = [add(Tensor([1.0, 2.0, 3.0]) * k).item() for k in range(1, 6)]
  np.testing.assert_allclose(acc.numpy(), np.array([1.0, 2.0, 3.0]) * 15)
  np.testing.assert_allclose(totals, [6 * sum(range(1, k + 1)) for k in range(1, 6)])
