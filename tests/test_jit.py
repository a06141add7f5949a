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

# ---- whole training steps ----
def _mlp_and_adam(seed: int):
  from lucidgrad.nn import Linear
  from lucidgrad.nn.optim import Adam
  from lucidgrad.nn.state import get_parameters
  Tensor.manual_seed(seed)
  layers = [Linear(6, 16), Linear(16, 3)]
  return layers, Adam(get_parameters(layers), lr=0.05)

def _train_step(layers, opt, x: Tensor, y: Tensor) -> Tensor:
  opt.zero_grad()
  loss = layers[1](layers[0](x).relu().dropout(0.0)).cross_entropy(y)
  loss.backward()
  opt.step()
  return loss.realize()

def test_jitted_training_step_equals_the_eager_one_and_replays_without_scheduling(monkeypatch):
  from lucidgrad.nn.state import get_parameters
  data = [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8).astype(np.int32)) for _ in range(5)]
  eager_layers, eager_opt = _mlp_and_adam(1)
  eager_losses = [_train_step(eager_layers, eager_opt, Tensor(x), Tensor(y)).item() for x, y in data]
  layers, opt = _mlp_and_adam(1)
  step = jit(lambda x, y: _train_step(layers, opt, x, y))
  losses = [step(Tensor(x), Tensor(y)).item() for x, y in data[:2]]   # warm-up and capture
  calls, compiles = [], GlobalCounters.compiles
  real = schedule_mod.create_schedule
  monkeypatch.setattr(schedule_mod, "create_schedule", lambda *a, **k: calls.append(1) or real(*a, **k))
  losses += [step(Tensor(x), Tensor(y)).item() for x, y in data[2:]]  # replays
  assert calls == [] and GlobalCounters.compiles == compiles
  np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
  assert len(set(np.round(losses, 6))) == 5   # it trained: every step saw new weights
  for a, b in zip(get_parameters(layers), get_parameters(eager_layers)): np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)

def test_changed_shape_of_a_training_step_raises_and_names_both_signatures():
  layers, opt = _mlp_and_adam(2)
  step = jit(lambda x, y: _train_step(layers, opt, x, y))
  for _ in range(2): step(Tensor.randn(8, 6), Tensor([0, 1, 2, 0, 1, 2, 0, 1]))
  with pytest.raises(JitError, match=r"\(8, 6\).*\(4, 6\)"): step(Tensor.randn(4, 6), Tensor([0, 1, 2, 0]))

def test_gradient_accumulation_with_a_jitted_micro_step():
  from lucidgrad.nn.state import get_parameters
  micro = [(rng.standard_normal((4, 6)).astype(np.float32), rng.integers(0, 3, 4).astype(np.int32)) for _ in range(6)]
  def run(use_jit: bool):
    layers, opt = _mlp_and_adam(3)
    params = get_parameters(layers)
    accum = [Tensor.zeros(*p.shape).contiguous().realize() for p in params]
    def micro_step(x: Tensor, y: Tensor) -> Tensor:
      loss = layers[1](layers[0](x).relu()).cross_entropy(y) / 2
      loss.backward()
      for p, a in zip(params, accum): a.assign(a + p.grad); p.grad = None
      return Tensor.realize(loss, *accum)
    def apply() -> Tensor:
      for p, a in zip(params, accum): p.grad = a
      opt.step()
      for a in accum: a.assign(Tensor.zeros(*a.shape))
      Tensor.realize(*params, *accum)
      return params[0]
    mstep, astep = (jit(micro_step), jit(apply)) if use_jit else (micro_step, apply)
    for i in range(0, 6, 2):
      for x, y in micro[i:i + 2]: mstep(Tensor(x), Tensor(y))
      astep()
    return [p.numpy() for p in params]
  for a, b in zip(run(True), run(False)): np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

def test_a_changed_non_tensor_argument_raises_instead_of_being_ignored():
  @jit
  def scale(x: Tensor, k: float) -> Tensor: return (x * k).realize()
  x = Tensor([1.0, 2.0])
  for _ in range(3): np.testing.assert_allclose(scale(x, 2.0).numpy(), [2.0, 4.0])
  with pytest.raises(JitError, match="non-tensor arguments"): scale(x, 3.0)

def test_a_replay_on_a_device_with_graphs_runs_as_one_graph():
  """On a device with graphs (PYTHON models a CUDA graph: launches fixed once, run by one call) a replay is one graph
  on private copies of the inputs and fresh outputs (engine/jit.py GraphReplay): new inputs each call, an input the
  function writes in place, state it updates, a fresh output -- each call's values are NumPy's, as eager gives them."""
  from lucidgrad.engine.jit import GraphReplay
  from lucidgrad.nn.optim import SGD
  w = Tensor(rng.standard_normal((8, 4)).astype(np.float32), device="PYTHON", requires_grad=True)
  opt = SGD([w], lr=0.1)
  @jit(verify=False)
  def step(x: Tensor, y: Tensor, seen: Tensor) -> Tensor:
    loss = ((x @ w - y) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    seen += 1  # an input written in place: the caller's tensor must see it
    return loss * 2
  ws, count = w.numpy().astype(np.float64), Tensor(np.zeros(3, np.float32), device="PYTHON")
  xs = [rng.standard_normal((16, 8)).astype(np.float32) for _ in range(5)]
  ys = [rng.standard_normal((16, 4)).astype(np.float32) for _ in range(5)]
  kept = []
  for i, (x, y) in enumerate(zip(xs, ys)):
    out = step(Tensor(x, device="PYTHON"), Tensor(y, device="PYTHON"), count)
    kept.append(out)
    err = x @ ws - y
    np.testing.assert_allclose(out.numpy(), 2 * (err ** 2).mean(), rtol=1e-5)
    ws -= 0.1 * 2 * x.T @ err / err.size
    np.testing.assert_allclose(w.numpy(), ws, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(count.numpy(), np.full(3, i + 1, np.float32))
  assert isinstance(step.graph, GraphReplay) and step.graph.kernels == len(step.items)
  # each replay's output is its own: the graph's private output buffer was copied out, never handed over
  assert len({float(t.numpy()) for t in kept}) == len(kept)

def test_a_cpu_capture_replays_as_one_graph_like_launch_by_launch(monkeypatch):
  """On the CPU a replay is one call into the C pool (runtime/cpu.py CPUGraph): threaded and single-threaded kernels,
  a buffer written in place, a fresh output, a bound Variable filled in per replay; the same values as a replay launch
  by launch (JIT_GRAPH=0)."""
  from lucidgrad import Variable
  from lucidgrad.engine import jit as jit_mod
  rng = np.random.default_rng(3)
  big, xs = rng.standard_normal((512, 512)).astype(np.float32), [rng.standard_normal((1, 512)).astype(np.float32) for _ in range(6)]
  runs = {}
  for graph in (1, 0):
    monkeypatch.setattr(jit_mod.JIT_GRAPH, "value", graph)
    w, acc = Tensor(big).realize(), Tensor.zeros(8, 512).contiguous().realize()
    v = Variable("row", 0, 7)
    @jit
    def step(x, p):
      acc[p:p + 1] = x @ w                           # a threaded matmul, written into a row at a bound position
      return (acc[:p + 1].sum(0) * 2).realize()      # a reduce over the symbolic prefix, a fresh output
    runs[graph] = ([step(Tensor(x), v.bind(i)).numpy() for i, x in enumerate(xs)], acc.numpy(), step.graph)
  assert isinstance(runs[1][2], jit_mod.GraphReplay) and runs[0][2] is False
  for a, b in zip(runs[1][0], runs[0][0]): np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(runs[1][1], runs[0][1])
  ref = np.cumsum(np.concatenate([x @ big for x in xs]), 0) * 2
  np.testing.assert_allclose(runs[1][0][-1], ref[-1], rtol=1e-4, atol=1e-3)

def test_replayed_outputs_that_are_views_of_constants_read_their_own_values():
  """A jitted function's outputs that are views of constants (they keep their graph and find their value by their
  node) and of computed values, over the capture and several replays: every one equals NumPy's. A version of
  docs/design/0035 that remembered no value for a literal made a replayed `full(...).reshape(4)` read other memory."""
  @jit
  def f(x):
    return ((x + 1).reshape(3, 1).realize(), Tensor.full((2, 2), 3.0).reshape(4).realize(), Tensor.ones(2, 3)[:, 1].realize(),
            Tensor.arange(4, dtype=x.dtype).reshape(2, 2).realize(), (x * 2)[1:].realize())
  for i in range(5):
    xs = np.arange(3, dtype=np.float32) + i
    refs = ((xs + 1).reshape(3, 1), np.full(4, 3.0), np.ones(2), np.arange(4).reshape(2, 2), (xs * 2)[1:])
    for got, ref in zip(f(Tensor(xs)), refs): np.testing.assert_array_equal(got.numpy(), ref)
