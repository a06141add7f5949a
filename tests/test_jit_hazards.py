"""Every hazard class of capture and replay either matches the eager call or raises a named JitError -- never a silent
difference. `verify=True` runs each replay eagerly too and compares outputs and every buffer written."""
import random
import numpy as np, pytest, torch
from lucidgrad import Tensor, jit, JitError, Context
from lucidgrad.engine import jit as jit_mod

rng = np.random.default_rng(0)
def arr(*shape): return rng.standard_normal(shape).astype(np.float32)

def calls(f, inputs):
  return [f(*[Tensor(x) for x in xs]).numpy() for xs in inputs]

# ---- hazards that must match the eager call ----
@pytest.mark.parametrize("verify", [False, True])
def test_a_tensor_made_inside_and_one_passed_in_both_match_eager(verify):
  w = Tensor(arr(4, 4)).realize()
  f = jit(lambda x: (x @ w + Tensor.ones(4)).relu(), verify=verify)
  xs = [(arr(2, 4),) for _ in range(5)]
  for (x,), out in zip(xs, calls(f, xs)): np.testing.assert_allclose(out, np.maximum(x @ w.numpy() + 1, 0), rtol=1e-5, atol=1e-6)

@pytest.mark.parametrize("verify", [False, True])
def test_outputs_of_different_replays_never_alias(verify):
  f = jit(lambda x: x * 2 + 1, verify=verify)
  xs = [arr(3) for _ in range(5)]
  outs = [f(Tensor(x)) for x in xs]   # all kept, read at the end
  for x, o in zip(xs, outs): np.testing.assert_allclose(o.numpy(), x * 2 + 1)

@pytest.mark.parametrize("verify", [False, True])
def test_in_place_writes_to_inputs_match_eager(verify):
  @jit
  def f(x: Tensor, y: Tensor) -> Tensor:
    x += y
    return (x * 2).realize()
  f.verify = verify
  for _ in range(5):
    a, b = arr(4), arr(4)
    x = Tensor(a).realize()
    out = f(x, Tensor(b))
    np.testing.assert_allclose(x.numpy(), a + b, rtol=1e-6)
    np.testing.assert_allclose(out.numpy(), (a + b) * 2, rtol=1e-6)

def test_a_lazy_tensor_from_outside_is_not_overwritten_by_replays():
  x0 = Tensor(arr(4)).realize()
  outside = x0 * 2                      # lazy, and it reads a buffer that is also passed in
  f = jit(lambda x: (x + outside).realize())
  vals = [arr(4) for _ in range(4)]
  want_outside = x0.numpy() * 2
  outs = [f(x0).numpy()] + [f(Tensor(v)).numpy() for v in vals]
  np.testing.assert_allclose(outside.numpy(), want_outside)
  for v, o in zip(vals, outs[1:]): np.testing.assert_allclose(o, v + want_outside, rtol=1e-6)

@pytest.mark.parametrize("verify", [False, True])
def test_a_lazy_closure_value_keeps_what_it_read_when_its_inputs_are_written_after_capture(verify):
  """`summary` is a value of `w` as it was; eager reads that value after `w` changes, so every replay must too (the
  capture used to compute it inline from `w`'s buffer, and replays after `w.assign` read the new contents)."""
  w = Tensor([1.0, 2.0]).realize()
  summary = w.sum() * 10                                   # lazy: 30 for good
  f = jit(lambda x: (x + summary).realize(), verify=verify)
  for i in range(3): f(Tensor([float(i), 0.0]))
  w.assign(Tensor([5.0, 5.0])).realize()
  assert f(Tensor([0.0, 1.0])).numpy().tolist() == [30, 31] and summary.item() == 30
  summary += 1                                             # an in-place write pending when the replay starts
  assert f(Tensor([0.0, 1.0])).numpy().tolist() == [31, 32]

def test_lazy_values_outside_read_the_state_a_replay_overwrites_as_it_was():
  acc = Tensor.zeros(3).contiguous().realize()
  f = jit(lambda x: acc.assign(acc + x).realize())
  f(Tensor([1.0, 1.0, 1.0])); f(Tensor([1.0, 1.0, 1.0]))      # warm-up and capture
  snapshot = acc * 1                                         # lazy, reads acc as it is now (2, 2, 2)
  f(Tensor([5.0, 5.0, 5.0]))                                 # a replay writes acc
  assert snapshot.numpy().tolist() == [2, 2, 2] and acc.numpy().tolist() == [7, 7, 7]

def test_functional_batch_norm_running_stats_update_on_every_replay():
  rm, rv = Tensor.zeros(3).contiguous().realize(), Tensor.ones(3).contiguous().realize()
  trm, trv = torch.zeros(3), torch.ones(3)
  f = jit(lambda x: x.batch_norm(rm, rv, training=True, momentum=0.1).realize())
  for _ in range(5):
    x = arr(8, 3)
    f(Tensor(x))
    torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.1)
  np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-5, atol=1e-6)

def test_a_jitted_training_step_verifies_against_eager_every_replay():
  from lucidgrad.nn import Linear
  from lucidgrad.nn.optim import Adam
  from lucidgrad.nn.state import get_parameters
  layers = [Linear(6, 8), Linear(8, 3)]
  opt = Adam(get_parameters(layers), lr=0.01)
  def step(x, y):
    opt.zero_grad()
    loss = layers[1](layers[0](x).relu().dropout(0.2)).cross_entropy(y)
    loss.backward(); opt.step()
    return loss.realize()
  f = jit(step, verify=True)
  from lucidgrad import nn
  with nn.train():
    for _ in range(5): f(Tensor(arr(8, 6)), Tensor(rng.integers(0, 3, 8)))

def test_jit_verify_env_flag_turns_verification_on():
  noise = [0.0]
  f = jit(lambda x: x + noise[0])
  with Context(JIT_VERIFY=1):
    f(Tensor(arr(2))); f(Tensor(arr(2)))
    noise[0] = 1.0  # a non-tensor value read from Python: the replay froze it at capture
    with pytest.raises(JitError, match="output 0"): f(Tensor(arr(2)))

# ---- hazards that must raise ----
def test_python_side_randomness_is_caught_by_verify():
  f = jit(lambda x: x * random.random(), verify=True)
  f(Tensor(arr(3))); f(Tensor(arr(3)))
  with pytest.raises(JitError, match="differs between the replay and the eager call"): f(Tensor(arr(3)))

def test_changed_non_tensor_arguments_raise():
  f = jit(lambda x, k: x * k)
  f(Tensor(arr(2)), 2); f(Tensor(arr(2)), 2)
  with pytest.raises(JitError, match="non-tensor arguments"): f(Tensor(arr(2)), 3)

def test_changed_shapes_raise():
  f = jit(lambda x: x * 2)
  f(Tensor(arr(2))); f(Tensor(arr(2)))
  with pytest.raises(JitError, match="captured for inputs"): f(Tensor(arr(3)))

@pytest.mark.parametrize("read", ["item", "numpy", "tolist", "bool"])
def test_a_host_read_inside_raises_at_capture_naming_the_line(read):
  def f(x):
    s = x.sum()
    v = {"item": lambda: s.item(), "numpy": lambda: s.numpy(), "tolist": lambda: s.tolist(), "bool": lambda: bool(s > 0)}[read]()
    return x * float(v)
  g = jit(f)
  with pytest.raises(JitError, match=r"inside a jitted function \(at .*test_jit_hazards.py:\d+\)"): g(Tensor(arr(3)))

def test_an_input_passed_twice_at_capture_then_two_different_ones_raises():
  f = jit(lambda a, b: a - b)
  x = Tensor(arr(3))
  f(x, x); f(x, x)
  with pytest.raises(JitError, match="aliased"): f(Tensor(arr(3)), Tensor(arr(3)))
  g = jit(lambda a, b: a - b)
  g(Tensor(arr(3)), Tensor(arr(3))); g(Tensor(arr(3)), Tensor(arr(3)))
  with pytest.raises(JitError, match="aliased"): g(x, x)

def test_a_closure_tensor_rebound_after_capture_raises():
  w = Tensor(arr(3)).realize()
  f = jit(lambda x: (x * w).realize())
  f(Tensor(arr(3))); f(Tensor(arr(3)))
  w = Tensor(arr(3)).realize()  # noqa: F841 -- the closure cell now holds another tensor
  with pytest.raises(JitError, match="`w`"): f(Tensor(arr(3)))

def test_a_model_attribute_rebound_after_capture_raises_and_an_in_place_update_does_not():
  from lucidgrad.nn import Linear
  model = Linear(3, 2)
  f = jit(lambda x: model(x).realize())
  f(Tensor(arr(1, 3))); f(Tensor(arr(1, 3)))
  model.weight.assign(model.weight * 0).realize()   # in place: the replay sees it
  assert np.allclose(f(Tensor(arr(1, 3))).numpy(), model.bias.numpy())
  model.weight = Tensor(arr(2, 3))                   # rebound: the replay would read the old tensor
  with pytest.raises(JitError, match=r"model\.weight"): f(Tensor(arr(1, 3)))

def test_no_capture_state_leaks_out_after_an_error():
  f = jit(lambda x: x * x.sum().item())
  with pytest.raises(JitError): f(Tensor(arr(2)))
  assert jit_mod.active == [] and jit_mod.capturing == []
  assert Tensor([3.0]).item() == 3.0

def test_a_write_pending_at_the_capture_is_not_replayed():
  """An in-place write left pending before the capturing call (on a tensor the function never names, here reached only
  through a dict) belongs to the program before the call: it runs once, outside the capture. Captured, every replay
  wrote the old value again (an optimiser's lr set lazily between calls was reset on each step)."""
  x, s = Tensor([1.0]).realize(), Tensor([0.0]).realize()
  g = jit(lambda x: (x * 2).realize())
  g(x)
  holder = {"k": s}
  holder["k"].assign(Tensor([3.0]))             # pending when the capture starts
  np.testing.assert_array_equal(g(x).numpy(), [2.0])
  np.testing.assert_array_equal(s.numpy(), [3.0])
  s.assign(Tensor([9.0])).realize()
  for _ in range(2): np.testing.assert_array_equal(g(x).numpy(), [2.0])
  np.testing.assert_array_equal(s.numpy(), [9.0])
