"""Everyday idioms that once gave a wrong answer with no error, held to torch on the CPU: realizing keeps gradients,
in-place ops mutate (aliases and views see it), bad indices raise, and what a realize does to other tensors.
docs/design/0005-mutation-in-the-graph.md says how; docs/semantics.md says what is guaranteed."""
import numpy as np, pytest, torch
from lucidgrad import Tensor, Context, GlobalCounters, dtypes, no_grad
from lucidgrad.nn import Linear, Embedding
from lucidgrad.schedule import StaleReadError
from conftest import DEVICES

rng = np.random.default_rng(0)
def arr(*shape): return rng.standard_normal(shape).astype(np.float32)

def torch_linear(lin: Linear) -> torch.nn.Linear:
  t = torch.nn.Linear(*lin.weight.shape[::-1])
  with torch.no_grad(): t.weight.copy_(torch.tensor(lin.weight.numpy())); t.bias.copy_(torch.tensor(lin.bias.numpy()))
  return t

# ---- 1. a second realize before backward() keeps every gradient ----
@pytest.mark.parametrize("between", ["validation forward", "weight.T.numpy()", "loss.item()", "weight.numpy()"])
def test_a_realize_between_forward_and_backward_keeps_all_gradients(between):
  lin, x, xv = Linear(4, 3), arr(5, 4), arr(2, 4)
  tl = torch_linear(lin)
  out = lin(Tensor(x)).square().sum()
  if between == "validation forward": lin(Tensor(xv)).numpy()
  elif between == "weight.T.numpy()": lin.weight.T.numpy()
  elif between == "loss.item()": out.item()
  else: lin.weight.numpy()
  out.backward()
  tl(torch.tensor(x)).square().sum().backward()
  assert lin.weight.grad is not None and lin.bias.grad is not None
  np.testing.assert_allclose(lin.weight.grad.numpy(), tl.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(lin.bias.grad.numpy(), tl.bias.grad.numpy(), rtol=1e-5, atol=1e-6)

# ---- 2. print(loss.item()); loss.backward() ----
def test_logging_the_loss_before_backward_works():
  lin, x, y = Linear(6, 3), arr(8, 6), rng.integers(0, 3, 8)
  tl = torch_linear(lin)
  loss = lin(Tensor(x)).cross_entropy(Tensor(y))
  tloss = torch.nn.functional.cross_entropy(tl(torch.tensor(x)), torch.tensor(y))
  assert loss.item() == pytest.approx(tloss.item(), rel=1e-6)
  loss.backward(); tloss.backward()
  np.testing.assert_allclose(lin.weight.grad.numpy(), tl.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
  assert loss.requires_grad and not loss.is_leaf   # the realized loss still has its graph, as torch's has its grad_fn

# ---- 3. in-place operators mutate ----
def test_sgd_by_hand_under_no_grad_updates_the_model_like_torch():
  lin, x = Linear(4, 2), arr(3, 4)
  tl = torch_linear(lin)
  for _ in range(3):
    for p in (lin.weight, lin.bias): p.grad = None
    tl.zero_grad()
    lin(Tensor(x)).square().mean().backward(); tl(torch.tensor(x)).square().mean().backward()
    with no_grad():
      for p in (lin.weight, lin.bias): p -= 0.1 * p.grad
    with torch.no_grad():
      for p in tl.parameters(): p -= 0.1 * p.grad
  np.testing.assert_allclose(lin.weight.numpy(), tl.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(lin.bias.numpy(), tl.bias.detach().numpy(), rtol=1e-5, atol=1e-6)

def test_in_place_on_a_leaf_that_requires_grad_raises_outside_no_grad_like_torch():
  p, tp = Tensor(arr(3), requires_grad=True), torch.tensor(arr(3), requires_grad=True)
  with pytest.raises(RuntimeError): tp -= 1
  with pytest.raises(RuntimeError, match="no_grad"): p -= 1
  with pytest.raises(RuntimeError, match="no_grad"): p[0] = 1
  with pytest.raises(RuntimeError, match="no_grad"): p[1:].add_(1)   # a view of a leaf too
  p.assign(p + 1)  # the optimisers' primitive stays allowed, and keeps p a leaf
  assert p.is_leaf and p.requires_grad

def test_aliases_see_in_place_ops():
  a, ta = Tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])
  b, tb = a, ta
  a += 1; ta += 1
  a *= 3; ta *= 3
  np.testing.assert_array_equal(b.numpy(), tb.numpy())
  c = Tensor([1, 2, 3], dtype=dtypes.int32)
  with pytest.raises(TypeError): c += 0.5   # as torch: a float result does not fit an int tensor in place

@pytest.mark.parametrize("realized", [True, False])
def test_views_see_writes_to_their_base_and_values_do_not(realized):
  x, tx = Tensor(arr(4, 5)), None
  tx = torch.tensor(x.numpy())
  if not realized: x, tx = x * 1, tx * 1   # a lazy base: views follow it all the same
  views = [lambda t: t[:2], lambda t: t.T, lambda t: t.reshape(20), lambda t: t[1, ::2], lambda t: t[:, 3], lambda t: t.detach()]
  vs, tvs = [v(x) for v in views], [v(tx) for v in views]
  value, tvalue = x * 2, tx * 2
  x[0] = 5; tx[0] = 5
  x[:, 1] += 1; tx[:, 1] += 1
  for v, tv in zip(vs, tvs): np.testing.assert_array_equal(v.numpy(), tv.numpy())
  np.testing.assert_array_equal(value.numpy(), tvalue.numpy())

def test_writes_through_views_reach_the_base():
  x, tx = Tensor(arr(3, 4)).realize(), None
  tx = torch.tensor(x.numpy())
  v, tv = x[1:, :2], tx[1:, :2]
  v[0, 1] = 7; tv[0, 1] = 7
  v.T.mul_(2); tv.T.mul_(2)
  x.reshape(12)[::5].zero_(); tx.reshape(12)[::5].zero_()
  x.data.add_(1); tx.data.add_(1)
  np.testing.assert_array_equal(x.numpy(), tx.numpy())
  np.testing.assert_array_equal(v.numpy(), tv.numpy())

def test_assign_through_a_reshape_or_a_slice_writes_the_tensor():
  x = Tensor(np.zeros((2, 3), np.float32)).realize()
  x.reshape(6).assign(Tensor(np.arange(6, dtype=np.float32)))
  x[1].assign(Tensor([7.0, 8.0, 9.0]))
  np.testing.assert_array_equal(x.numpy(), [[0, 1, 2], [7, 8, 9]])

def test_writing_into_an_expanded_view_raises():
  """torch raises for in-place ops on an expanded view (several elements share one memory location); lucidgrad raises
  for any write through an expand, also a single element's, which torch would allow and which would change a whole row."""
  x, tx = Tensor(arr(1, 3)), torch.tensor(arr(1, 3))
  with pytest.raises(RuntimeError): tx.expand(2, 3).add_(1)
  with pytest.raises(RuntimeError, match="expanded"): x.expand(2, 3).add_(1)
  with pytest.raises(RuntimeError, match="expanded"): x.expand(2, 3)[0, 0] = 1

def test_data_is_a_detached_tensor_on_the_same_storage():
  p = Tensor(arr(3), requires_grad=True)
  d = p.data
  assert isinstance(d, Tensor) and not d.requires_grad
  d -= 1          # no_grad is not needed: .data carries no history, as in torch
  before = p.numpy().copy()
  p.data = Tensor(np.ones(3, np.float32))
  np.testing.assert_array_equal(p.numpy(), np.ones(3)); assert not np.array_equal(before, np.ones(3))
  assert p.is_leaf and p.requires_grad

def test_setitem_on_a_computed_tensor_keeps_gradients_like_torch():
  x, tx = Tensor(arr(4), requires_grad=True), None
  tx = torch.tensor(x.numpy(), requires_grad=True)
  y, ty = x * 2, tx * 2
  y[1:3] = 0.0; ty[1:3] = 0.0
  y.square().sum().backward(); ty.square().sum().backward()
  np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)

# ---- 4. out-of-range indices raise ----
BAD_INDEX = {
  "advanced indexing": (lambda: Tensor(arr(3, 2))[Tensor([0, 7])], r"index 7 is out of range for size 3"),
  "gather": (lambda: Tensor(arr(3)).gather(0, Tensor([9])), r"gather.*index 9 is out of range for size 3"),
  "gather (negative)": (lambda: Tensor(arr(3)).gather(0, Tensor([-1])), r"gather.*index -1 is out of range for size 3"),
  "cross_entropy": (lambda: Tensor(arr(2, 3)).cross_entropy(Tensor([1, 5])), r"cross_entropy.*index 5 is out of range for size 3"),
  "nll_loss": (lambda: Tensor(arr(2, 3)).log_softmax(-1).nll_loss(Tensor([-3, 0])), r"nll_loss.*index -3 is out of range for size 3"),
  "Embedding": (lambda: Embedding(3, 2)(Tensor([[0, 5]])), r"embedding.*index 5 is out of range for size 3"),
  "one_hot": (lambda: Tensor([0, 4]).one_hot(3), r"one_hot.*index 4 is out of range for size 3"),
  "scatter": (lambda: Tensor(arr(3)).scatter(0, Tensor([3]), 1.0), r"scatter.*index 3 is out of range"),
  "setitem": (lambda: Tensor(arr(3)).__setitem__(Tensor([0, 3]), 1.0), r"index 3 is out of range for size 3"),
}

@pytest.mark.parametrize("case", list(BAD_INDEX))
def test_an_out_of_range_index_raises_naming_the_op_the_index_the_size_and_the_line(case):
  fn, msg = BAD_INDEX[case]
  with pytest.raises(IndexError, match=msg) as e:
    out = fn()
    (out if out is not None else Tensor(0)).numpy()
  assert __file__ in str(e.value) or "test_never_silently_wrong.py" in str(e.value)

def test_torch_raises_on_the_same_indices():
  with pytest.raises((IndexError, RuntimeError)): torch.tensor(arr(3, 2))[torch.tensor([0, 7])]
  with pytest.raises(RuntimeError): torch.tensor(arr(3)).gather(0, torch.tensor([9]))
  with pytest.raises((IndexError, RuntimeError)): torch.nn.functional.cross_entropy(torch.tensor(arr(2, 3)), torch.tensor([1, 5]))
  with pytest.raises(IndexError): torch.nn.Embedding(3, 2)(torch.tensor([[0, 5]]))

def test_a_bad_index_is_reported_at_the_next_host_read_even_of_another_tensor():
  Tensor(arr(3))[Tensor([4])]   # built and dropped: the check still runs
  with pytest.raises(IndexError, match="index 4"): Tensor([1.0]).item()
  assert Tensor([2.0]).item() == 2.0   # reported once

def test_in_range_indices_and_ignore_index_raise_nothing():
  x = Tensor(arr(4, 3))
  np.testing.assert_array_equal(x[Tensor([-4, 3])].numpy(), x.numpy()[[-4, 3]])
  x.cross_entropy(Tensor([0, -100, 2, 1])).numpy()

def test_index_checks_can_be_turned_off_and_cost_one_kernel_per_realize():
  x, idx = Tensor(arr(8, 3)).realize(), Tensor([0, 1, 2, 9]).realize()
  with Context(CHECK_INDEX=0): assert x[idx].numpy()[3].tolist() == [0, 0, 0]   # off: no check, no error
  def kernels(good):  # the second of two runs: the first makes the device's error scalar where it is first needed
    for _ in range(2):
      g = good()
      GlobalCounters.reset()
      (x[g].sum() + x.gather(0, g.reshape(4, 1).expand(4, 3)).sum()).realize()
    return GlobalCounters.kernel_count
  realized, computed = lambda: Tensor([0, 1, 2, 7]).realize(), lambda: Tensor([0, 1, 2, 7]) * 1
  with Context(CHECK_INDEX=0): assert kernels(realized) == kernels(computed) == 1
  from lucidgrad.tensor import _host_extremes
  assert kernels(realized) == (1 if _host_extremes(realized(), None) is not None else 2)  # indices in host memory: checked there
  assert kernels(computed) == 2        # computed indices: both checks folded into one kernel

def test_an_index_of_constants_in_range_needs_no_check_and_one_out_of_range_still_raises():
  """An index that is a graph of constants (an arange: a positional embedding's rows) whose bounds lie inside the axis is
  not checked (no pending check, no check kernel); its bounds are conservative, so one that may pass the end is still
  checked on the device and reported."""
  import lucidgrad.tensor as lt
  table = Embedding(64, 3)
  wn = table.weight.numpy()
  pending = lambda: sum(map(len, lt._pending_checks.values()))
  before = pending()
  pos = Tensor.arange(16).reshape(1, -1)
  assert (pos.uop.vmin, pos.uop.vmax) == (0, 15)
  out = table(pos)
  assert pending() == before  # provably in range: nothing to check
  np.testing.assert_array_equal(out.numpy(), wn[np.arange(16)][None])
  # arange(40)'s bound is 63 (its positions graph spans 64): inside 64 rows, outside 40
  np.testing.assert_array_equal(Embedding.from_pretrained(Tensor(wn[:40]))(Tensor.arange(40)).numpy(), wn[:40])
  with pytest.raises(IndexError, match=r"index 39 is out of range for size 30"):
    Embedding.from_pretrained(Tensor(wn[:30]))(Tensor.arange(40)).numpy()
  # the bounds follow moves and pads: a padded, flipped, expanded arange of 3..9
  t = (Tensor.arange(7) + 3).flip(0).pad((2, 1)).reshape(1, 10).expand(2, 10)
  assert t.uop.vmin == 0 and 9 <= t.uop.vmax <= 10 and t.numpy().max() == 9

@pytest.mark.parametrize("where", ["host", "device"])
def test_a_bad_index_is_caught_wherever_its_values_are(where):
  """Realized indices are checked on the host when the op is built, computed ones on the device: one message, one rule
  for which of several is reported (the op built first), reported at the next read either way."""
  xn = arr(5, 2)
  x = Tensor(xn).realize()
  bad = Tensor([0, 9]).realize() if where == "host" else Tensor([0, 3]) * 3
  worse = Tensor([-7, 1]).realize() if where == "device" else Tensor([-1, 1]) * 7
  y = x[bad]                 # built first: reported, whichever way the second was checked
  z = x.gather(0, worse.reshape(2, 1).expand(2, 2))
  with pytest.raises(IndexError, match=r"indexing dimension 0: index 9 is out of range for size 5"): (y.sum() + z.sum()).numpy()
  np.testing.assert_array_equal(x[Tensor([4, -5]).realize()].numpy(), xn[[4, 0]])  # reported once, and in range

def test_an_index_checked_on_the_host_is_checked_again_after_each_write():
  """The host check keeps a realized index's extremes per storage version (and per ignored value): a write in place,
  by assign or by a jitted step, is a new version, so a lookup after it sees the new values."""
  from lucidgrad import jit
  xn = arr(5, 2)
  x, idx = Tensor(xn).realize(), Tensor([0, 4]).realize()
  for _ in range(2): np.testing.assert_array_equal(x[idx].numpy(), xn[[0, 4]])   # the second look-up reads the memo
  idx.assign(Tensor([1, 5])).realize()
  with pytest.raises(IndexError, match=r"index 5 is out of range for size 5"): x[idx].numpy()
  idx.assign(Tensor([-9, 2])).realize()
  with pytest.raises(IndexError, match=r"index -9 is out of range"): x[idx].numpy()
  t = Tensor([0, 1, 3]).realize()
  target = Tensor([1, 3, 0]).realize()
  logits = Tensor(arr(3, 4)).realize()
  logits.cross_entropy(target, ignore_index=3).numpy()                           # in range once 3 is ignored
  with pytest.raises(IndexError, match=r"index 3 is out of range for size 3"): logits[:, :3].cross_entropy(target).numpy()
  if x.device == "CPU":                                                          # DLPack exports host memory only
    shared = Tensor([0, 1]).realize()
    x[shared].numpy()                                                            # checked (and remembered) while ours alone
    np.from_dlpack(shared)[1] = 7                                                # shared out: a write no version counts
    with pytest.raises(IndexError, match=r"index 7 is out of range for size 5"): x[shared].numpy()
  step = jit(lambda i: i.assign(i + 1))                                          # a replay writes it: one more version
  for _ in range(3): step(t)
  with pytest.raises(IndexError, match=r"index 6 is out of range for size 5"): x[t].numpy()

def test_an_index_in_memory_handed_in_is_checked_when_it_is_read():
  """`from_bytes` shares the caller's memory on the CPU (other devices copy it): a change there is no write the framework
  sees, so such an index is checked on the device at the realize that reads it, not on the host when the op is built."""
  wn, raw = arr(4, 2), np.array([1, 2], np.int32)
  y = Tensor(wn, device="CPU")[Tensor.from_bytes(raw, dtypes.int32, (2,), device="CPU")]
  raw[1] = 9   # after the build: the gather reads 9
  with pytest.raises(IndexError, match="index 9 is out of range for size 4"): y.numpy()

def test_a_jit_replay_checks_the_indices_of_each_call():
  """A capture checks its indices on the device (its kernels are what a replay reruns), not on the host at build time."""
  from lucidgrad import jit
  wn = arr(6, 3)
  w = Tensor(wn).realize()
  f = jit(lambda i: i.embedding(w).realize())
  for k in range(3): np.testing.assert_array_equal(f(Tensor([[k, 5]]).realize()).numpy(), wn[[[k, 5]]])
  out = f(Tensor([[1, 6]]).realize())
  with pytest.raises(IndexError, match="embedding row: index 6 is out of range for size 6"): out.numpy()
  np.testing.assert_array_equal(f(Tensor([[2, 3]]).realize()).numpy(), wn[[[2, 3]]])

# ---- what a realize does to other tensors ----
def test_realizing_one_tensor_never_changes_another():
  x = Tensor(arr(4, 4), requires_grad=True)
  y = (x * 3).relu()
  z = y.sum()
  before = z.uop
  y.realize()
  assert z.uop is before   # z's graph is untouched; scheduling z reads y's buffer
  z.backward()
  np.testing.assert_allclose(x.grad.numpy(), np.where(x.numpy() * 3 > 0, 3.0, 0.0))

def test_pending_values_are_computed_before_a_write_destroys_what_they_read():
  w = Tensor(arr(3, 3)).realize()
  old = w.numpy().copy()
  lazy = [w * k for k in range(3)]      # none realized
  logits = w.sum(0)
  loss = logits.sum()
  w.assign(w * 0).realize()
  for k, t in enumerate(lazy): np.testing.assert_allclose(t.numpy(), old * k)
  np.testing.assert_allclose(logits.numpy(), old.sum(0), rtol=1e-6)
  assert loss.item() == pytest.approx(old.sum(), rel=1e-5)

def test_backward_after_the_leaf_was_modified_in_place_raises_like_torch():
  w, x = Tensor(arr(3), requires_grad=True), Tensor(arr(3))
  loss = (w * w * x).sum()
  with no_grad(): w -= 1
  w.numpy()
  with pytest.raises(RuntimeError, match="modified in place"): loss.backward()
  tw = torch.tensor(arr(3), requires_grad=True)
  tl = (tw * tw).sum()
  with torch.no_grad(): tw -= 1
  with pytest.raises(RuntimeError): tl.backward()

def test_a_read_of_overwritten_contents_raises_instead_of_reading_the_new_ones():
  w = Tensor(arr(3)).realize()
  stale = w.uop   # a graph node reading w as it is now, held by no tensor (so nothing preserves it)
  w.assign(w + 1).realize()
  with pytest.raises(StaleReadError, match="in-place write"): Tensor(stale * 2).numpy()

def test_tensor_of_a_tensor_honours_the_device_and_dtype():
  t = Tensor([1.5, 2.5])
  p = Tensor(t, device="PYTHON")
  assert p.device == "PYTHON" and p.numpy().tolist() == [1.5, 2.5]
  i = Tensor(t, dtype=dtypes.int32)
  assert i.dtype == dtypes.int32 and i.numpy().tolist() == [1, 2]
  alias = Tensor(t)
  t += 1
  assert alias.numpy().tolist() == [2.5, 3.5]   # same device and dtype: t under another name

@pytest.mark.parametrize("expr", ["w.T + w", "w + w.T", "w.flip(0) + w * 2", "(w * 2).T + w.flip(1).T"])
def test_an_in_place_write_whose_value_reads_other_elements_on_any_path_goes_through_a_scratch(expr):
  """Found while reading the scheduler: it stopped at the first path to the written buffer, so `w.T + w` (the unmoved
  read found first) was written in place while the transposed read still needed old elements."""
  a = np.arange(9, dtype=np.float32).reshape(3, 3)
  w = Tensor(a).realize()
  w.assign(eval(expr)).realize()
  tw = torch.tensor(a)
  np.testing.assert_array_equal(w.numpy(), eval(expr, {"w": tw}).numpy())

def test_a_clone_taken_between_two_writes_keeps_its_values():
  """Found by the fuzzer: the clone, realized with the second write, simplified to a read of the storage that write then
  overwrote; and an older write's cached value was remembered as the newer contents."""
  x = Tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3))
  x[:1, 2:] = -2
  c = x.clone()
  x.assign(Tensor(-np.ones((2, 3), np.float32)))
  Tensor.realize(c, x)
  np.testing.assert_array_equal(c.numpy(), [[0, 1, -2], [3, 4, 5]])
  np.testing.assert_array_equal(x.numpy(), -np.ones((2, 3)))

def test_repeat_tile_and_repeat_interleave_make_new_tensors():
  x = Tensor(np.arange(3.0, dtype=np.float32))
  for y in (x.repeat(2), x.tile(2), x.repeat_interleave(2)):
    y[0] = 7
    assert y.numpy()[0] == 7 and x.numpy()[0] == 0   # as torch: writing the copy leaves x alone


# ---- which results see a later write to their input: exactly PyTorch's views (found by the fuzzer: an op with
# nothing to compute -- trunc of ints, roll by whole turns, a pad of zeros -- returned its input itself) ----
import torch.nn.functional as F  # noqa: E402
NEW_OR_VIEW = {  # name: (input, lucidgrad op, torch op); torch decides whether the result sees a later write to the input
  "trunc_int": (np.arange(6).reshape(2, 3), lambda x: x.trunc(), lambda x: x.trunc()),
  "floor_int": (np.arange(6).reshape(2, 3), lambda x: x.floor(), lambda x: x.floor()),
  "ceil_int": (np.arange(6).reshape(2, 3), lambda x: x.ceil(), lambda x: x.ceil()),
  "round_int": (np.arange(6).reshape(2, 3), lambda x: x.round(), lambda x: x.round()),
  "abs_uint8": (np.arange(6, dtype=np.uint8).reshape(2, 3), lambda x: x.abs(), lambda x: x.abs()),
  "sign_bool": (np.array([True, False]), lambda x: x.sign(), lambda x: x.sign()),
  "nan_to_num_int": (np.arange(6).reshape(2, 3), lambda x: x.nan_to_num(), lambda x: x.nan_to_num()),
  "roll_0": (np.arange(6.).reshape(2, 3), lambda x: x.roll(0, 1), lambda x: x.roll(0, 1)),
  "roll_n": (np.arange(6.).reshape(2, 3), lambda x: x.roll(3, 1), lambda x: x.roll(3, 1)),
  "roll_flat0": (np.arange(6.).reshape(2, 3), lambda x: x.roll(6), lambda x: x.roll(6)),
  "pad_0": (np.arange(6.).reshape(2, 3), lambda x: x.pad((0, 0)), lambda x: F.pad(x, (0, 0))),
  "pad_neg": (np.arange(6.).reshape(2, 3), lambda x: x.pad((-1, 0)), lambda x: F.pad(x, (-1, 0))),
  "flip": (np.arange(6.).reshape(2, 3), lambda x: x.flip(1), lambda x: x.flip(1)),
  "flip_size1": (np.arange(3.).reshape(1, 3), lambda x: x.flip(0), lambda x: x.flip(0)),
  "repeat_1": (np.arange(6.).reshape(2, 3), lambda x: x.repeat(1, 1), lambda x: x.repeat(1, 1)),
  "tile_1": (np.arange(6.).reshape(2, 3), lambda x: x.tile(1), lambda x: x.tile(1)),
  "cat_1": (np.arange(6.).reshape(2, 3), lambda x: Tensor.cat(x), lambda x: torch.cat([x])),
  "stack_1": (np.arange(6.).reshape(2, 3), lambda x: Tensor.stack(x), lambda x: torch.stack([x])),
  "clone": (np.arange(6.).reshape(2, 3), lambda x: x.clone(), lambda x: x.clone()),
  "tril": (np.arange(9.).reshape(3, 3), lambda x: x.tril(), lambda x: x.tril()),
  "triu_low": (np.arange(9.).reshape(3, 3), lambda x: x.triu(-5), lambda x: x.triu(-5)),
  "masked_fill_none": (np.arange(6.).reshape(2, 3), lambda x: x.masked_fill(Tensor(np.zeros((2, 3), bool)), 0.0), lambda x: x.masked_fill(torch.zeros(2, 3, dtype=torch.bool), 0.0)),
  "where_true": (np.arange(6.).reshape(2, 3), lambda x: Tensor(np.ones((2, 3), bool)).where(x, 0.0), lambda x: torch.where(torch.ones(2, 3, dtype=torch.bool), x, 0.0)),
  "sum_size1": (np.arange(3.).reshape(1, 3), lambda x: x.sum(0), lambda x: x.sum(0)),
  "max_size1": (np.arange(3.).reshape(1, 3), lambda x: x.amax(0), lambda x: x.amax(0)),
  "mean_size1": (np.arange(3.).reshape(1, 3), lambda x: x.mean(0), lambda x: x.mean(0)),
  "cumsum_size1": (np.arange(3.).reshape(3, 1), lambda x: x.cumsum(1), lambda x: x.cumsum(1)),
  "sort_1": (np.arange(3.).reshape(3, 1), lambda x: x.sort(1)[0], lambda x: x.sort(1)[0]),
  "interp_same": (np.arange(12.).reshape(1, 1, 3, 4), lambda x: x.interpolate((3, 4)), lambda x: F.interpolate(x, (3, 4))),
  "cast_same": (np.arange(6.).reshape(2, 3), lambda x: x.cast(x.dtype), lambda x: x.to(x.dtype)),
  "float_same": (np.arange(6.).reshape(2, 3).astype(np.float32), lambda x: x.float(), lambda x: x.float()),
  "mul_1": (np.arange(6.).reshape(2, 3), lambda x: x * 1, lambda x: x * 1),
  "add_0": (np.arange(6.).reshape(2, 3), lambda x: x + 0, lambda x: x + 0),
  "pow_1": (np.arange(6.).reshape(2, 3), lambda x: x ** 1, lambda x: x ** 1),
  "maximum_self": (np.arange(6.).reshape(2, 3), lambda x: x.maximum(x), lambda x: torch.maximum(x, x)),
  "clamp_wide": (np.arange(6.).reshape(2, 3), lambda x: x.clamp(-100, 100), lambda x: x.clamp(-100, 100)),
  "relu_pos": (np.arange(6.).reshape(2, 3), lambda x: x.relu(), lambda x: x.relu()),
  "einsum_T": (np.arange(6.).reshape(2, 3), lambda x: Tensor.einsum("ij->ji", x), lambda x: torch.einsum("ij->ji", x)),
  "einsum_id": (np.arange(6.).reshape(2, 3), lambda x: Tensor.einsum("ij->ij", x), lambda x: torch.einsum("ij->ij", x)),
  "matmul_eye": (np.arange(6.).reshape(2, 3), lambda x: x @ Tensor.eye(3, dtype=x.dtype), lambda x: x @ torch.eye(3, dtype=x.dtype)),
  "index_tensor": (np.arange(6.).reshape(2, 3), lambda x: x[Tensor([0, 1])], lambda x: x[torch.tensor([0, 1])]),
  "gather_id": (np.arange(6.).reshape(2, 3), lambda x: x.gather(1, Tensor([[0, 1, 2], [0, 1, 2]])), lambda x: x.gather(1, torch.tensor([[0, 1, 2], [0, 1, 2]]))),
  "index_select": (np.arange(6.).reshape(2, 3), lambda x: x.index_select(0, Tensor([0, 1])), lambda x: x.index_select(0, torch.tensor([0, 1]))),
  "unflatten": (np.arange(6.), lambda x: x.unflatten(0, (2, 3)), lambda x: x.unflatten(0, (2, 3))),
  "split0": (np.arange(6.).reshape(2, 3), lambda x: x.split(1)[0], lambda x: x.split(1)[0]),
  "chunk0": (np.arange(6.).reshape(2, 3), lambda x: x.chunk(2)[0], lambda x: x.chunk(2)[0]),
  "unbind0": (np.arange(6.).reshape(2, 3), lambda x: x.unbind(0)[0], lambda x: x.unbind(0)[0]),
  "dropout_eval": (np.arange(6.).reshape(2, 3), lambda x: x.dropout(0.5, training=False), lambda x: F.dropout(x, 0.5, training=False)),
  "expand_same": (np.arange(6.).reshape(2, 3), lambda x: x.expand(2, 3), lambda x: x.expand(2, 3)),
  "flatten_1d": (np.arange(6.), lambda x: x.flatten(), lambda x: x.flatten()),
  "squeeze_none": (np.arange(6.).reshape(2, 3), lambda x: x.squeeze(), lambda x: x.squeeze()),
  "T": (np.arange(6.).reshape(2, 3), lambda x: x.T, lambda x: x.T),
  "take_along_dim": (np.arange(6.).reshape(2, 3), lambda x: x.take_along_dim(Tensor([[0], [1]]), 1), lambda x: x.take_along_dim(torch.tensor([[0], [1]]), 1)),
  "one_hot_int": (np.arange(3), lambda x: x.one_hot(3), lambda x: F.one_hot(x, 3)),
  "std_mean": (np.arange(3.).reshape(1, 3), lambda x: x.sum(0, keepdim=True), lambda x: x.sum(0, keepdim=True)),
  "softmax_size1": (np.arange(3.).reshape(3, 1), lambda x: x.softmax(1), lambda x: x.softmax(1)),
}

@pytest.mark.parametrize("name", list(NEW_OR_VIEW))
def test_a_result_sees_a_later_write_to_its_input_exactly_when_torch_makes_a_view(name):
  a, lf, tf = NEW_OR_VIEW[name]
  x, tx = Tensor(a.copy()), torch.tensor(a.copy())
  y, ty = lf(x), tf(tx)
  with torch.no_grad():
    if a.dtype == bool: tx ^= True
    else: tx += 1
  if a.dtype == bool: x ^= True
  else: x += 1
  np.testing.assert_array_equal(y.numpy(), ty.numpy())

def test_contiguous_is_always_a_new_tensor():
  """The one documented difference: torch's contiguous() of a contiguous tensor is the tensor itself; ours is a copy
  (a lazy tensor has no layout to test, and contiguous() is how a value asks for a buffer of its own)."""
  x = Tensor([1.0, 2.0]).realize()
  y = x.contiguous()
  x += 1
  assert y.numpy().tolist() == [1, 2]

def test_writing_through_an_expand_that_expands_nothing():
  """Fuzz seed 510: einsum('i,j->ij') ends in an expand to its own shape, and a write into the result raised."""
  v = Tensor.einsum("i,j->ij", Tensor([1.0, 2.0, 3.0]), Tensor([1.0, 10.0]))
  v[1::-1, :1] = Tensor([[7.0], [8.0]])
  assert v.numpy().tolist() == [[8, 10], [7, 20], [3, 30]]
  base = Tensor([[1.0], [2.0]])
  e = base.expand(2, 0)
  e[...] = 5.0                       # no elements: nothing is written
  assert base.numpy().tolist() == [[1], [2]]
  with pytest.raises(RuntimeError, match="expanded view"): base.expand(2, 3)[0, 1] = 1.0

@pytest.mark.parametrize("shape", [(2,), (2, 3)])
def test_a_value_of_the_whole_storage_survives_two_writes_in_a_row(shape):
  """Fuzz seed 7001: a value that is the storage's whole contents (roll by whole turns) was copied out before the first
  write, but the next realize checked the read's version before looking for the copy, and raised StaleReadError."""
  a = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
  x, tx = Tensor(a.copy()), torch.tensor(a.copy())
  y, ty = x.roll(shape[0], 0), tx.roll(shape[0], 0)
  x += 1; x *= 2; tx += 1; tx *= 2
  Tensor.realize(y, x)
  np.testing.assert_array_equal(y.numpy(), ty.numpy())
  np.testing.assert_array_equal(x.numpy(), tx.numpy())

@pytest.mark.parametrize("shape", [(1, 3, 4), (1, 7, 9), (2, 5, 8)])
def test_a_reduce_inside_two_reduces_is_computed_once(shape):
  """Fuzz seed 2284: `s == s.max(0)` with s a lazy sum and an axis of size 1 compiled the sum twice, once with an unrolled
  loop: the two copies rounded apart, no element equalled the max, and argmax gave 1 -- out of range -- for one element."""
  a = rng.standard_normal(shape).astype(np.float32)
  x, tx = Tensor(a), torch.tensor(a, requires_grad=True)
  s, ts = x.sum((1, 2)), tx.sum((1, 2))
  assert s.argmax(0).item() == ts.argmax(0).item() and s.argmin(0).item() == ts.argmin(0).item()
  w = Tensor(a, requires_grad=True)
  w.sum((1, 2)).max().backward(); ts.max().backward()
  np.testing.assert_allclose(w.grad.numpy(), tx.grad.numpy())

@pytest.mark.parametrize("noopt", [0, 1])
def test_upcast_lanes_of_one_reduce_loop_restart_together(noopt):
  """Fuzz seed 2634: an index_select of a padded tensor, upcast over the padded axis, shares one reduce loop between
  lanes that read the tensor and lanes of pad value; the pad lanes' accumulator was set up outside a loop they do not
  depend on, so it kept summing over it (2, 3, ... 7 where 1 was right)."""
  a = rng.standard_normal((3, 2, 1, 4))
  pads, idx = ((-1, 2), (2, 2), (3, 2), (1, 2)), np.array([2, 3, 4])
  want = np.take(np.pad(a[1:], ((0, 2), (2, 2), (3, 2), (1, 2)), constant_values=1.0), idx, axis=-2)
  with Context(NOOPT=noopt): got = Tensor(a).pad(pads, value=1.0).index_select(-2, Tensor(idx)).numpy()
  np.testing.assert_array_equal(got, want)

def test_one_kernel_never_reads_old_and_new_contents_of_a_write_as_one():
  """Fuzz seed 8774: cat(x, x, f(x_old)) after x.assign(...) fused the read of x's old contents (f's input) and of its
  new ones into one kernel with one buffer, which ran before the write: the cat showed the old x. It raised after
  that; now the scheduler gives f(x_old) a kernel of its own, run before the write (schedule._old_and_new_apart)."""
  def program(realize_first: bool):
    x = Tensor(np.array([2.72, 0.65, 2.15], np.float32))
    y = x.logsigmoid()
    if realize_first: y.realize()
    x.assign(Tensor(np.full(3, 3.0, np.float32)))
    z = x.cat(x, y, dim=0)
    y *= 3.0  # the logsigmoid node itself is no longer held by a tensor, so nothing computes it before the write
    Tensor.realize(z, y)
    return z.numpy()
  want = np.concatenate([np.full(6, 3.0), torch.nn.functional.logsigmoid(torch.tensor([2.72, 0.65, 2.15])).numpy()])
  for realize_first in (False, True): np.testing.assert_allclose(program(realize_first), want, rtol=1e-6)

def test_a_value_of_old_contents_combined_with_the_new_ones_gets_its_own_kernel():
  """Fuzz seed 13663: c = x.cos() built before x.assign(...), then x * c, then c changed (so no tensor holds the cos
  that x * c reads): one kernel would read x as it was (under the cos) and as the write leaves it. The cos's part now
  runs first, in its own kernel; the result is NumPy's."""
  xn = np.array([6, -1, 1, -2, 3], np.int32).reshape(1, 5, 1)
  x = Tensor(xn)
  c = x.cos()
  x.assign(x - 1)
  out = x.float() * (c / 3)
  c *= 2.0
  Tensor.realize(out, c)
  want = (xn - 1).astype(np.float64) * np.cos(xn.astype(np.float64)) / 3
  np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
  np.testing.assert_allclose(c.numpy(), 2 * np.cos(xn.astype(np.float64)), rtol=1e-6)
  np.testing.assert_array_equal(x.numpy(), xn - 1)

def test_old_contents_beside_a_kernel_of_the_new_ones_get_their_own_kernel():
  """Fuzz seed 13289: e = y.erf() before y += y, then where(e < 0, sort(y), 0): the where's kernel reads y's old
  contents (under e) and the sort's buffers, computed from the new ones, so it could run neither before the write nor
  after it (the ordering raised). e's part now has its own kernel, before the write."""
  yn = np.array([0.3, -1.2, 2.0, -0.4], np.float32)
  y = Tensor(yn)
  e = y.erf()
  y += y
  out = (e < 0).where(y.sort(-1)[0], 0.0)
  e *= 2.0  # no tensor holds the erf the where reads
  Tensor.realize(out, e)
  want = np.where(torch.erf(torch.tensor(yn)).numpy() < 0, np.sort(yn * 2), 0.0)
  np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
  np.testing.assert_array_equal(y.numpy(), yn * 2)

def test_minus_inf_to_a_fractional_power_is_nan():
  """Fuzz seed 8704: C's pow gives (-inf) ** 0.5 = +inf; torch's x ** 0.5 is sqrt(x), NaN there (other powers follow C)."""
  x = np.array([-np.inf, -np.inf, -np.inf, -4.0, 4.0], np.float32)
  for p in (0.5, 1.5, 2.0, 3.0):
    np.testing.assert_array_equal((Tensor(x) ** p).numpy(), (torch.tensor(x) ** p).numpy())

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_adding_a_zero_keeps_the_sign_of_zero_as_ieee_does(device, dtype):
  """-0.0 + 0.0 is +0.0 and -0.0 - (-0.0) is +0.0, so `x + 0.0` is not `x` for a float; `x + -0.0` and `x - 0.0` are."""
  x = np.array([1.5, -2.0, 0.0, -0.0, np.inf, -np.inf], dtype)
  cases = {"+0": lambda t: t * -0.0 + 0.0, "-(-0)": lambda t: t * -0.0 - (-0.0), "+(-0)": lambda t: t * -0.0 + (-0.0),
           "-0": lambda t: t * -0.0 - 0.0, "0+": lambda t: 0.0 + t * -0.0}
  for name, f in cases.items():
    with np.errstate(invalid="ignore"): ref = f(x)
    got = f(Tensor(x, device=device)).numpy()
    real = ~np.isnan(ref)  # inf * -0.0 is NaN, whose sign IEEE leaves open (x86 gives -NaN, a GPU +NaN)
    np.testing.assert_array_equal(np.signbit(got[real]), np.signbit(ref[real]), err_msg=name)
    np.testing.assert_array_equal(got, ref, err_msg=name)

@pytest.mark.parametrize("device", DEVICES)
def test_an_int_minimum_read_by_a_max_and_a_half_cummin(device):
  """Found by the fuzzer on CUDA (seeds 31128, 31351): ptxas miscompiled an int minimum written as -max(-x, -y) under a
  max reduce (argmax gave 4, past the last row, for every column), and a half select against inf did not compile."""
  k = np.array([[-2, 4, 6, -2, 0], [-4, -2, 4, 0, -3], [-1, -3, 2, 2, -6], [-4, 2, -2, 4, -3]], np.int32)
  m = Tensor(k, device=device).minimum(-2)
  np.testing.assert_array_equal(m.argmax(0).numpy(), np.argmax(np.minimum(k, -2), 0))
  np.testing.assert_array_equal(m.amax(0).numpy(), np.minimum(k, -2).max(0))
  flipped = k[::-1].copy()
  np.testing.assert_array_equal(Tensor(k, device=device).minimum(Tensor(flipped, device=device)).numpy(), np.minimum(k, flipped))
  x = np.array([3.0, 1.0, 2.0, 0.5, 4.0, -np.inf], np.float16)
  values, where = Tensor(x, device=device).cummin(0)
  np.testing.assert_array_equal(values.numpy(), np.minimum.accumulate(x))
