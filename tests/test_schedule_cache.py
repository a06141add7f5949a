"""The schedule cache (docs/design/0009-schedule-cache.md): a graph equal to one scheduled before, up to which storages
it reads, reuses that schedule. A hit must give exactly what scheduling gives: values against NumPy, the template's
kernels, buffer sharing, `becomes` and written storages against create_schedule on the same graph, and the build
counter showing a hit (no schedule built) or a miss (one built) where the structure differs."""
import numpy as np, pytest
from lucidgrad import Tensor, Context, GlobalCounters, no_grad
from lucidgrad.device import buffer_of
from lucidgrad.schedule import create_schedule, StaleReadError
from lucidgrad.schedule.cache import schedule_walk, cached_template, templates
from lucidgrad.engine.realize import get_runner

rng = np.random.default_rng(0)
def arr(*shape, dtype=np.float32): return rng.standard_normal(shape).astype(dtype)

def built(fn) -> tuple:
  """fn()'s result and how many schedules it built."""
  n = GlobalCounters.schedules_built
  out = fn()
  return out, GlobalCounters.schedules_built - n

def _strip(u):
  while u.op.name == "RESHAPE": u = u.src[0]
  return u

def assert_template_is_the_schedule(*ts: Tensor):
  """The cached template for these (lazy) tensors, bound to their graph, against create_schedule on the same graph:
  the same kernels in the same order, the same sharing of buffers (existing storages by identity, new ones by their
  pattern of use), the same nodes computed into the same places, the same storages written."""
  nodes = list(dict.fromkeys(t.uop for t in ts))
  walk = schedule_walk(nodes)
  template = cached_template(walk.key)
  assert template is not None, "no template for an equal graph"
  items, becomes, written = create_schedule(nodes)
  bufs, t_becomes, t_written = template.bind(walk)
  assert len(items) == len(template.items)
  canon_s: dict[int, object] = {}
  canon_t: dict[int, object] = {}
  def name(buf, existing, canon):  # an existing storage by identity, a new one by the order it is first used
    return ("old", id(buf)) if existing else canon.setdefault(id(buf), ("new", len(canon)))
  olds = {id(b) for b in walk.storages}
  for it, runner, refs in zip(items, template.runners, template.items):
    if it.kind == "kernel": assert get_runner(buffer_of(it.bufs[0]).device, it.ast) is runner
    else: assert runner.kind == "copy"
    want = [name(buffer_of(b), id(buffer_of(b)) in olds, canon_s) for b in it.bufs]
    assert want == [name(bufs[r], r < template.n_storages, canon_t) for r in refs]
  assert set(becomes) == set(t_becomes)
  for old, view in becomes.items():
    got = t_becomes[old]
    assert view.shape == got.shape
    b, g = buffer_of(_strip(view)), buffer_of(_strip(got))
    assert (id(b) in olds) == (id(g) in olds) and (id(b) not in olds or b is g)
  assert [id(b) for b in written] == [id(b) for b in t_written]

def test_the_same_eager_code_twice_builds_one_schedule():
  x = Tensor(arr(4, 4)).realize()
  f = lambda: (((x * 1.5 + 0.5).relu() - 0.25) * x).exp()
  _, n = built(lambda: f().realize())
  ref = np.exp((np.maximum(x.numpy() * 1.5 + 0.5, 0) - 0.25) * x.numpy())
  assert_template_is_the_schedule(f())
  out, n = built(lambda: f().numpy())
  assert n == 0
  np.testing.assert_allclose(out, ref, rtol=1e-6)

def test_a_hit_reads_the_new_inputs():
  f = lambda a, b: (a * 2 + b).sum(1)
  for _ in range(3):
    a, b = arr(3, 5), arr(3, 5)
    out, n = built(lambda: f(Tensor(a), Tensor(b)).numpy())
    np.testing.assert_allclose(out, (a * 2 + b).sum(1), rtol=1e-5)
  assert n == 0

@pytest.mark.parametrize("c0,c1", [(2.0, 3.0), (0.0, -0.0)])
def test_other_consts_are_another_schedule(c0, c1):
  x = Tensor(np.abs(arr(4)) + 0.5).realize()
  for c, want_built in ((c0, 1), (c1, 1), (c0, 0)):
    out, n = built(lambda: (1 / (x * c)).numpy())
    # exact, infinities' signs included: 1 / (x * -0.0) is -inf, so a hit on 0.0's schedule would show
    with np.errstate(divide="ignore"): np.testing.assert_array_equal(out, 1 / (x.numpy() * np.float32(c)))
    assert n == want_built

def test_other_shapes_dtypes_and_devices_are_other_schedules():
  f = lambda t: (t * 3 + 1).max()
  for shape, dt in [((4,), np.float32), ((5,), np.float32), ((4,), np.int32), ((2, 2), np.float32)]:
    a = (rng.standard_normal(shape) * 10).astype(dt)
    out, n = built(lambda: f(Tensor(a)).numpy())
    assert n == 1 and out == (a * 3 + 1).max()
  a = arr(4)
  out, n = built(lambda: f(Tensor(a, device="PYTHON")).numpy())
  assert n == 1 and np.isclose(out, (a * 3 + 1).max())

def test_aliased_inputs_are_another_schedule():
  """a.assign(b.flip) with b another storage writes in place; with b = a it must read the old a into a scratch first."""
  def step(a, b): a.assign(b.flip(0) * 2).realize()
  for _ in range(2):
    a, b = Tensor(np.arange(4, dtype=np.float32)).realize(), Tensor(np.arange(4, dtype=np.float32) + 10).realize()
    _, n = built(lambda: step(a, b))
    assert a.numpy().tolist() == [26, 24, 22, 20]
  assert n == 0
  a = Tensor(np.arange(4, dtype=np.float32)).realize()
  _, n = built(lambda: step(a, a))
  assert n == 1 and a.numpy().tolist() == [6, 4, 2, 0]
  a = Tensor(np.arange(4, dtype=np.float32)).realize()
  _, n = built(lambda: step(a, a))
  assert n == 0 and a.numpy().tolist() == [6, 4, 2, 0]

def test_two_inputs_that_are_one_storage_are_not_two():
  x, y = arr(3, 3), arr(3, 3)
  f = lambda a, b: (a * b + a).numpy()
  a, b = Tensor(x).realize(), Tensor(y).realize()
  f(a, b)
  out, n = built(lambda: f(a, a))  # the same structure read from one storage: another key
  assert n == 1
  np.testing.assert_allclose(out, x * x + x, rtol=1e-6)
  out, n = built(lambda: f(b, b))
  assert n == 0
  np.testing.assert_allclose(out, y * y + y, rtol=1e-6)

def test_in_place_updates_hit_across_versions():
  w0 = arr(8)
  w, ref = Tensor(w0).realize(), w0.copy()
  counts = []
  for _ in range(5):
    _, n = built(lambda: w.assign(w * 0.5 + 1).realize())
    ref = ref * np.float32(0.5) + 1
    counts.append(n)
  assert counts[1:] == [0] * 4
  np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)
  with no_grad():
    v = w[2:5]
    for _ in range(3):
      v += 1
      v.realize()
  ref[2:5] += 3
  np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)

def test_a_value_that_reads_what_a_write_overwrites_is_computed_first_on_a_hit():
  for _ in range(3):
    w = Tensor(np.ones(4, np.float32)).realize()
    y = w * 2                      # lazy, reads w at this version
    w.assign(w + 1).realize()      # y is computed before the write, in the same schedule
    assert y.numpy().tolist() == [2] * 4 and w.numpy().tolist() == [2] * 4

def test_a_stale_read_raises_on_a_would_be_hit():
  for _ in range(2):
    w = Tensor(arr(3)).realize()
    (w * 2).numpy()
  stale = w.uop
  w.assign(w + 1).realize()
  before = GlobalCounters.schedules_built
  with pytest.raises(StaleReadError, match="in-place write"): Tensor(stale * 2).numpy()
  assert GlobalCounters.schedules_built == before

def test_views_reductions_and_a_tensor_used_twice():
  cases = [
    lambda x: x[1:3, ::2] * 2,
    lambda x: x.T + x,
    lambda x: x.sum(0) * x.max(),
    lambda x: (x - x.amax(1, keepdim=True)).exp().sum(1),
    lambda x: x.reshape(2, 8).permute(1, 0).pad(((1, 0), (0, 1))).flip(0),
    lambda x: (x @ x.T).relu(),
    lambda x: x.cumsum(1),
  ]
  refs = [lambda a: a[1:3, ::2] * 2, lambda a: a.T + a, lambda a: a.sum(0) * a.max(),
          lambda a: np.exp(a - a.max(1, keepdims=True)).sum(1), lambda a: np.flip(np.pad(a.reshape(2, 8).T, ((1, 0), (0, 1))), 0),
          lambda a: np.maximum(a @ a.T, 0), lambda a: np.cumsum(a, 1)]
  for f, r in zip(cases, refs):
    for i in range(3):
      a = arr(4, 4)
      x = Tensor(a).realize()
      if i == 2: assert_template_is_the_schedule(f(x))
      out, n = built(lambda: f(x).numpy())
      np.testing.assert_allclose(out, r(a), rtol=1e-5, atol=1e-6)
    assert n == 0

def test_several_outputs_in_one_realize():
  for i in range(3):
    a = arr(5)
    x = Tensor(a).realize()
    p, q, r = x * 2, x + 1, (x * 2).sum()
    if i == 2: assert_template_is_the_schedule(p, q, r)
    _, n = built(lambda: Tensor.realize(p, q, r))
    np.testing.assert_allclose(p.numpy(), a * 2, rtol=1e-6); np.testing.assert_allclose(q.numpy(), a + 1, rtol=1e-6)
    np.testing.assert_allclose(r.numpy(), (a * 2).sum(), rtol=1e-5)
  assert n == 0
  x = Tensor(a).realize()
  q, p = x + 1, x * 2
  _, n = built(lambda: Tensor.realize(q, p))  # the other order: another key, and right
  assert n == 1
  np.testing.assert_allclose(p.numpy(), a * 2, rtol=1e-6); np.testing.assert_allclose(q.numpy(), a + 1, rtol=1e-6)

def test_two_outputs_that_are_one_graph_get_a_buffer_each():
  for _ in range(2):
    a, b = Tensor.zeros(3), Tensor.zeros(3)
    Tensor.realize(a, b)
    a += 1
    assert a.numpy().tolist() == [1, 1, 1] and b.numpy().tolist() == [0, 0, 0]

def test_realized_and_lazy_inputs_are_other_schedules():
  a = arr(6)
  f = lambda t: (t * t).sum()
  _, n0 = built(lambda: f(Tensor(a).realize()).numpy())
  out, n = built(lambda: f(Tensor(a) + 0).numpy())   # a graph, not a storage read
  assert n == 1 and np.isclose(out, (a * a).sum(), rtol=1e-5)

def test_a_computed_value_is_part_of_the_key():
  """z's graph reads y's node; once y is computed, z reads y's buffer instead: another schedule, the same values."""
  for i in range(3):
    a = arr(4)
    x = Tensor(a, requires_grad=True)
    y = x * 2               # requires grad, so a realize keeps its graph and caches its value
    z = y + 1
    if i > 0: y.realize()
    if i == 2: assert_template_is_the_schedule(z)
    out, n = built(lambda: z.numpy())
    np.testing.assert_allclose(out, a * 2 + 1, rtol=1e-6)
    if i == 1: assert n == 1   # y's value read from its buffer: not the schedule of call 0
    if i == 2: assert n == 0

def test_flags_are_part_of_the_key():
  x = Tensor(arr(4, 4)).realize()
  f = lambda: (x * 2 + 1).numpy()
  f()
  with Context(NOOPT=1): out, n = built(f)
  assert n == 1
  np.testing.assert_allclose(out, x.numpy() * 2 + 1, rtol=1e-6)
  assert built(f)[1] == 0  # the flag back as it was: the first template again

def test_a_flag_set_by_assignment_is_part_of_the_key(monkeypatch):
  # the key's flag values are read again only after a flag changed (ContextVar.all_values): a plain assignment counts
  from lucidgrad.helpers import ContextVar
  x = Tensor(arr(4, 4)).realize()
  f = lambda: (x * 3 + 1).numpy()
  f()
  monkeypatch.setattr(ContextVar.registry["NOOPT"], "value", 1 - ContextVar.registry["NOOPT"].value)
  out, n = built(f)
  assert n == 1
  np.testing.assert_allclose(out, x.numpy() * 3 + 1, rtol=1e-6)

def test_the_cache_is_bounded_and_holds_no_graph(monkeypatch):
  import gc, weakref
  from lucidgrad.schedule import cache
  monkeypatch.setattr(cache, "SCHEDULE_CACHE_SIZE", 4)
  x = Tensor(arr(4)).realize()
  for c in range(10): (x * float(c + 100)).realize()
  assert len(templates) <= 4
  y = x * 12345.0
  node = weakref.ref(y.uop)
  y.realize()
  del y; gc.collect()
  assert node() is None   # the template keeps no node of the graph it came from

def test_contiguous_copies_hit_and_stay_distinct():
  """CONTIGUOUS carries a fresh tag per call (it keeps equal copies apart); the key leaves the tag out, and still tells
  one copy read twice from two copies."""
  a = arr(4)
  for i in range(3):
    x = Tensor(a).realize()
    c1, c2 = x.contiguous(), x.contiguous()
    out, n = built(lambda: (c1 * 2 + c2).numpy())
    np.testing.assert_allclose(out, a * 3, rtol=1e-6)
    c1 += 1   # its own storage: c2 does not see it
    np.testing.assert_allclose(c2.numpy(), a, rtol=1e-6)
    np.testing.assert_allclose(c1.numpy(), a + 1, rtol=1e-6)
  assert n == 0
  x = Tensor(a).realize()
  c = x.contiguous()
  out, n = built(lambda: (c * 2 + c).numpy())   # one copy read twice: another graph
  assert n == 1
  np.testing.assert_allclose(out, a * 3, rtol=1e-6)

def test_a_constant_graph_with_a_computed_value_inside_is_another_schedule():
  """The walk writes a graph of constants down as one entry; once a node inside it has a computed value (which the
  schedule reads from its buffer instead), it must see that."""
  a = arr(4)
  x = Tensor(a).realize()
  f = lambda: x + (Tensor.arange(4) * 2.5).exp()
  ref = a + np.exp(np.arange(4) * 2.5)
  for _ in range(2): out, n = built(lambda: f().numpy())
  assert n == 0
  k = Tensor.arange(4) * 2.5
  held = k.uop            # the constant node inside f's graph, kept so its computed value stays findable
  k.realize()
  out, n = built(lambda: f().numpy())
  assert n == 1
  np.testing.assert_allclose(out, ref, rtol=1e-5)
  assert_template_is_the_schedule(f())
  out, n = built(lambda: f().numpy())
  assert n == 0 and held is not None
  np.testing.assert_allclose(out, ref, rtol=1e-5)

def test_a_constant_graph_that_shares_its_nodes_is_written_down_flat():
  """c = c + c * 0.5 thirty times is 61 nodes but 2**30 paths: a key written as nested tuples would never finish."""
  x = Tensor(np.ones(4, np.float32)).realize()
  def f():
    c = Tensor.arange(4).float()
    for _ in range(30): c = c + c * 0.5
    return (x + c).numpy()
  for _ in range(2): out, n = built(f)
  assert n == 0
  np.testing.assert_allclose(out, 1 + np.arange(4) * 1.5 ** 30, rtol=1e-5)

def _key(t: Tensor) -> tuple: return schedule_walk([t.uop]).key

def test_keys_tell_apart_a_deep_const_a_dtype_and_aliasing():
  """The walk's key against graphs that differ in one place far from the root: every difference is another key, and
  graphs equal up to which (distinct) storages they read are one key. Entries of one, two and three sources each."""
  a, b, c = (Tensor(arr(4, 4)).realize() for _ in range(3))
  def chain(x, y, deep=0.5, dt=None, z=None):
    h = x * deep                      # the deep constant: ten ops below the root
    if dt is not None: h = h.cast(dt).cast(x.dtype)
    h = h + y
    for i in range(9): h = (h * (1.0 + i)).exp2() if i % 3 else (h > 0).where(h, z if z is not None else y)
    return h
  base = _key(chain(a, b))
  assert _key(chain(b, c)) == base and _key(chain(c, a)) == base      # other storages, same structure and aliasing
  assert _key(chain(a, b, deep=0.25)) != base
  assert _key(chain(a, b, deep=-0.0)) != _key(chain(a, b, deep=0.0))  # equal as floats, not as constants
  assert _key(chain(a, b, deep=float("nan"))) == _key(chain(b, c, deep=float("nan")))  # NaN is one constant
  assert _key(chain(a, b, deep=float("nan"))) != _key(chain(a, b, deep=float("inf")))
  assert _key(chain(a, b, dt="float16")) != _key(chain(a, b, dt="bfloat16")) != _key(chain(a, b))
  assert _key(chain(a, a)) != base                                    # one storage read twice
  assert _key(chain(a, b, z=a)) != _key(chain(a, b, z=c))             # aliasing in a three-source entry
  assert _key(chain(a, b, z=c)) == _key(chain(b, a, z=c))
  # a deep constant inside a constant graph (written down as one entry, remembered on its root)
  k = lambda v: Tensor.arange(16).float().reshape(4, 4) * v + 1
  assert _key(a + k(2.0)) == _key(b + k(2.0)) != _key(a + k(3.0))
  assert _key(a + k(-0.0)) != _key(a + k(0.0))

def test_a_storage_read_in_two_shapes_is_two_schedules():
  """A tensor's read of its storage (a reshape of the BUFFER) is one entry of the key, the reshape's shape in it: the
  same storage read as (4, 4) and as (2, 8) must not share a schedule (the output's shape would be the other's)."""
  a = arr(16)
  base = Tensor(a).realize()
  for shape, want_built in (((4, 4), 1), ((2, 8), 1), ((4, 4), 0), ((2, 8), 0)):
    # y * y: no node but the read names the shape (a scalar operand's constant would)
    out, n = built(lambda: (y := base.reshape(*shape), y * y)[1].numpy())
    assert out.shape == shape and n == want_built
    np.testing.assert_array_equal(out, a.reshape(shape) * a.reshape(shape))
  x = Tensor(a.reshape(4, 4)).realize()  # a storage made in a shape: its node is that read
  np.testing.assert_array_equal((x * 3).numpy(), a.reshape(4, 4) * 3)
  assert_template_is_the_schedule(x * 3)

def _eager_ops():
  """One op each over values the walk does not go below: storage reads (also one storage twice, a reshaped read, an
  int read), computed values a graph holds (a tensor that requires grad keeps its graph), constant graphs."""
  x, y = Tensor(arr(4, 5)).realize(), Tensor(arr(4, 5)).realize()
  i = Tensor(rng.integers(0, 4, (3,)).astype(np.int32)).realize()
  g = (Tensor(arr(4, 5), requires_grad=True) * 2).realize()  # keeps its graph: a node with a computed value
  return [x + y, x * x, x.reshape(5, 4).exp(), x + 1.5, (x < y).where(x, y), x.sum(1), i.embedding(x), g + x, g * g,
          x.contiguous(), Tensor.full((3, 3), 2.0).contiguous(), x.cast("int32"), x.permute(1, 0).contiguous()]

def test_the_one_op_walk_writes_down_what_the_general_walk_does():
  """schedule_walk's flat walk of one op over leaves (cache._walk_one_op) must give the general walk's key, order,
  storages and reads (each graph walked both ways), or hand the graph to it."""
  import lucidgrad.schedule.cache as cache
  flat = 0
  for t in _eager_ops():
    one = cache._walk_one_op(t.uop)
    saved, cache._walk_one_op = cache._walk_one_op, lambda n: None
    try: general = schedule_walk([t.uop])
    finally: cache._walk_one_op = saved
    if one is None: continue
    flat += 1
    assert one.key == general.key and list(one.index) == list(general.index)
    assert one.storages == general.storages and one.reads == general.reads and one.writes == general.writes == [] and one.binds == general.binds
  assert flat >= 9  # most of these are one op over leaves (a permuted copy is two)

def test_a_deeper_graph_or_a_constant_one_goes_to_the_general_walk():
  import lucidgrad.schedule.cache as cache
  x = Tensor(arr(4, 5)).realize()
  assert cache._walk_one_op((x + 1).exp().uop) is None
  assert cache._walk_one_op(Tensor.full((3,), 2.0).uop) is None
  np.testing.assert_allclose((x + 1).exp().numpy(), np.exp(x.numpy() + 1), rtol=1e-6)
