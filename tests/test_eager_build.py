"""Building eager ops cheaply builds the same graph: a Python scalar becomes the constant node broadcasting a 0-d tensor
would make (shared between ops, one per value, dtype, device and shape), operands of one shape are not broadcast, and
the result is an ordinary value that in-place writes, views, no_grad() and gradients treat as before. Values are held
to NumPy and torch; the graphs to the nodes the general path builds (hash-consing makes equal graphs one object)."""
import gc, math, pickle
import numpy as np, pytest, torch
from lucidgrad import Tensor, dtypes, no_grad
from lucidgrad.dtype import DType
from lucidgrad.uop.ops import UOp, Ops, _arg_key, _Interned
import lucidgrad.tensor as lt

rng = np.random.default_rng(0)
def _kept_nodes() -> list:  # the constant graphs the scalar table keeps (each entry: the result's dtype, the graph)
  return [u for _, u in lt._kept_graphs.values()]

def arr(*shape, dtype=np.float32): return rng.standard_normal(shape).astype(dtype)

def const_node(value, dt, shape, device="CPU") -> UOp:
  """What broadcasting a 0-d constant tensor builds: CONST of shape (), reshaped to all ones, expanded."""
  return UOp.const(dt, value, device).reshape((1,) * len(shape)).expand(shape)

# ---- the graph is the general path's ----
@pytest.mark.parametrize("op, alu", [("__add__", Ops.ADD), ("__sub__", Ops.SUB), ("__mul__", Ops.MUL), ("__truediv__", Ops.FDIV),
                                     ("__lt__", Ops.CMPLT), ("__eq__", Ops.CMPEQ), ("__ne__", Ops.CMPNE), ("maximum", Ops.MAX)])
@pytest.mark.parametrize("shape", [(4, 4), (3,), (), (2, 1, 5)])
def test_a_python_scalar_is_the_broadcast_constant_node(op, alu, shape):
  x = Tensor(arr(*shape))
  got = getattr(x, op)(1.5).uop
  assert got is x.uop.alu(alu, const_node(1.5, dtypes.float32, shape))
  assert got is getattr(x, op)(Tensor(1.5)).uop  # a 0-d float32 tensor promotes the same way here: the same graph

@pytest.mark.parametrize("op, alu", [("__radd__", Ops.ADD), ("__rsub__", Ops.SUB), ("__rmul__", Ops.MUL), ("__gt__", Ops.CMPLT)])
def test_a_scalar_on_the_left_stays_on_the_left(op, alu):
  x = Tensor(arr(3, 2))
  assert getattr(x, op)(2.0).uop is const_node(2.0, dtypes.float32, (3, 2)).alu(alu, x.uop)

@pytest.mark.parametrize("tdt, scalar, want", [(dtypes.int32, 2, dtypes.int32), (dtypes.int32, 2.5, dtypes.float32), (dtypes.int32, True, dtypes.int32),
                                               (dtypes.bool, 1, dtypes.int64), (dtypes.bool, True, dtypes.bool), (dtypes.float16, 3, dtypes.float16),
                                               (dtypes.uint8, np.float64(0.5), dtypes.float32), (dtypes.float64, np.int8(3), dtypes.float64)])
def test_scalar_promotion_is_torchs(tdt, scalar, want):
  xn = np.array([[0, 1, 2], [3, 4, 5]]).astype(np.bool_ if tdt == dtypes.bool else tdt.np)
  x = Tensor(xn, dtype=tdt)
  out = x + scalar
  # the tensor is cast to the result dtype as before: CAST(x) op constant (checked before realizing: then out owns a buffer)
  if want != tdt: assert out.uop.src[0] is x.uop.cast(want)
  ref = torch.tensor(xn) + (scalar.item() if isinstance(scalar, np.generic) else scalar)
  assert out.dtype == want and str(ref.dtype).endswith(want.name)
  np.testing.assert_array_equal(out.numpy(), ref.numpy())

def test_scalars_that_compare_equal_are_different_constants():
  """0.0 and -0.0, 1, True and 1.0 and NaN: a shared constant keyed by value alone would mix them up."""
  x = Tensor(np.array([1.0, -2.0, 0.0], dtype=np.float32))
  with np.errstate(divide="ignore", invalid="ignore"):
    assert np.array_equal(np.signbit((x * 0.0).numpy()), np.signbit(np.array([1.0, -2.0, 0.0], np.float32) * 0.0))
    assert np.array_equal(np.signbit((x * -0.0).numpy()), np.signbit(np.array([1.0, -2.0, 0.0], np.float32) * -0.0))
  assert (x * 0.0).uop is not (x * -0.0).uop
  assert np.isnan((x + math.nan).numpy()).all() and np.isnan((x + float("nan")).numpy()).all()
  i = Tensor(np.array([1, 2], dtype=np.int32))
  assert (i + 1).dtype == dtypes.int32 and (i + True).dtype == dtypes.int32 and (i + 1.0).dtype == dtypes.float32
  b = Tensor(np.array([True, False]))
  np.testing.assert_array_equal((b + True).numpy(), np.array([True, True]))
  np.testing.assert_array_equal((b + 1).numpy(), np.array([2, 1]))

def test_same_shape_operands_are_not_broadcast():
  x, y = Tensor(arr(4, 4)), Tensor(arr(4, 4))
  assert (x + y).uop is x.uop.alu(Ops.ADD, y.uop)
  z = Tensor(arr(4, 4).astype(np.float64))
  assert (x * z).uop is x.uop.cast(dtypes.float64).alu(Ops.MUL, z.uop)  # promotion still casts

def test_broadcast_operands_still_broadcast():
  xn, bn = arr(4, 3), arr(3)
  x, b = Tensor(xn), Tensor(bn)
  np.testing.assert_allclose((x + b).numpy(), xn + bn, rtol=1e-6)
  np.testing.assert_allclose((b - x).numpy(), bn - xn, rtol=1e-6)
  with pytest.raises(ValueError, match="cannot be broadcast"): x + Tensor(arr(4))

def test_a_scalar_of_another_kind_raises():
  with pytest.raises(TypeError, match="cannot combine a Tensor with a str"): Tensor(arr(2)) + "1"

# ---- the constant nodes are shared, and bounded ----
def test_one_constant_node_per_value_dtype_and_shape():
  x, y = Tensor(arr(4, 4)), Tensor(arr(4, 4))
  assert (x * 1.01).uop.src[1] is (y + 1.01).uop.src[1]
  assert (x * 1.01).uop.src[1] is not (x * 1.02).uop.src[1]
  assert (x * 1.01).uop.src[1] is not (Tensor(arr(4, 2)) * 1.01).uop.src[1]
  assert (x * 1.01).uop.src[1] is not (x.double() * 1.01).uop.src[1]

def test_the_constant_cache_stays_bounded_and_right_past_its_size():
  x = Tensor(np.arange(3, dtype=np.float32))
  outs = [(x + i * 0.5) for i in range(lt._KEPT_GRAPHS_MAX + 50)]
  assert len(lt._kept_graphs) <= lt._KEPT_GRAPHS_MAX
  for i in (0, 7, lt._KEPT_GRAPHS_MAX + 49): np.testing.assert_allclose(outs[i].numpy(), np.arange(3) + i * 0.5)

def test_a_constant_a_realize_remembered_is_not_kept():
  """A realize remembers a computed value by node (Tensor.full(...).realize()); how long such a node lives decides
  whether later graphs read that buffer, so the shared constants never keep one alive: a node's lifetime must not
  change kernels."""
  from lucidgrad.schedule import cached_value
  def kept(): return {id(n) for n in _kept_nodes()} | {id(n) for n in lt._kept_keys}
  x = Tensor(arr(4, 4)).realize()
  node = (x * 2.5).uop.src[1]
  assert id(node) in kept()
  _alive = Tensor.full((4, 4), 2.5).realize()  # the same node, now remembered in full's buffer
  assert cached_value(node) is not None and id(node) not in kept() and node not in _kept_nodes()
  assert (x * 2.5).uop.src[1] is node and node not in _kept_nodes()  # and not taken back while remembered
  seven = (x * 7.0).uop.src[1]  # EXPAND(RESHAPE(CONST 7.0)), kept
  assert seven in _kept_nodes()
  one = Tensor.full((1, 1), 7.0)
  assert one.uop is seven.src[0]
  one.realize()  # remembers the node the kept (4, 4) constant is built on: that one goes too
  assert cached_value(seven.src[0]) is not None and seven not in _kept_nodes()
  np.testing.assert_allclose((x * 7.0).numpy(), x.numpy() * 7.0, rtol=1e-6)

def test_a_realized_constant_is_not_read_by_other_graphs():
  """A realized constant keeps its value on its node (its own reads, a view of it, use it), but no other graph reads a
  broadcast literal from that buffer: the node is shared by every graph holding the same constant (hash-consing), and
  a load would hide it from folding and the opts. A realized, alive `Tensor.ones(1, dtype=int32)` made every later
  int32 arange load its step (and argmax over 1001 columns lose its vector opts, in some full-suite workers)."""
  from lucidgrad.schedule import create_schedule
  x = Tensor(arr(4, 4)).realize()
  full = Tensor.full((4, 4), 2.5).realize()
  view = Tensor.full((2, 2), 3.0).reshape(4)
  view.realize()
  one = Tensor.ones(1, dtype=dtypes.int32).realize()
  for t, ref, nbufs in ((x * 2.5, x.numpy() * 2.5, 2), (Tensor.arange(1001, dtype=dtypes.int32), np.arange(1001), 1),
                        (Tensor.full((4,), 3.0) + x[0], x.numpy()[0] + 3, 2)):
    items, _, _ = create_schedule([t.uop])
    bufs = [u for it in items if it.kind == "kernel" for u in it.ast.toposort if u.op is Ops.DEFINE_GLOBAL]
    assert len(bufs) == nbufs, bufs  # the inputs that are storages and the output: no constant's buffer
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-6)
  for t, ref in ((full, np.full((4, 4), 2.5)), (view, np.full(4, 3.0)), (one, np.ones(1))): np.testing.assert_array_equal(t.numpy(), ref)

# ---- an eager result is an ordinary value ----
def test_a_lazy_result_reads_its_operand_as_it_was_before_an_in_place_write():
  xn = arr(4, 4)
  x = Tensor(xn).realize()
  y, z = x * 2.0 + 1.0, x + x
  x += 1
  np.testing.assert_allclose(y.numpy(), xn * 2 + 1, rtol=1e-6)
  np.testing.assert_allclose(z.numpy(), xn + xn, rtol=1e-6)
  np.testing.assert_allclose(x.numpy(), xn + 1, rtol=1e-6)

def test_a_result_built_from_a_view_sees_the_base_as_it_was():
  xn = arr(4, 4)
  x = Tensor(xn).realize()
  y = x[:2] * 3.0
  x[0] = 5.0
  np.testing.assert_allclose(y.numpy(), xn[:2] * 3, rtol=1e-6)
  np.testing.assert_allclose((x[:2] * 3.0).numpy(), np.concatenate([np.full((1, 4), 15.0), xn[1:2] * 3]), rtol=1e-6)

def test_gradients_flow_through_scalar_and_unary_ops():
  wn = arr(3, 4).astype(np.float64)
  w, tw = Tensor(wn, requires_grad=True), torch.tensor(wn, requires_grad=True)
  def f(w): return ((w * 1.5 - 0.25).exp() * w + (2.0 / (w * w + 1)).sqrt() - w.relu()).sum()
  f(w).backward(); f(tw).backward()
  np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-10)

def test_no_grad_results_do_not_require_grad():
  w = Tensor(arr(3), requires_grad=True)
  assert (w * 2.0).requires_grad and (w + w).requires_grad
  with no_grad():
    for y in (w * 2.0, w + w, w.sqrt(), -w, w.cast(dtypes.float16), 1.0 - w): assert not y.requires_grad
  assert (w * 2.0).requires_grad

def test_a_long_chain_of_ops_frees_its_nodes():
  """Nodes hold their sources only through themselves: dropping a 20,000-op chain frees all of it (without recursing)."""
  x = Tensor(arr(2)).realize()
  gc.collect()
  before = len(_Interned.cache)
  y = x
  for _ in range(10_000): y = y * 1.0001 + 0.0001
  assert len(_Interned.cache) >= before + 20_000
  del y
  gc.collect()
  assert len(_Interned.cache) <= before + 6  # the two shared constants the chain made (CONST, RESHAPE, EXPAND each)

def test_child_links_find_live_users_and_keep_no_source_alive():
  """A node's users are found through its child links while they live; a dead user's link holds nothing (the link is
  the user's interning reference, whose key -- holding the sources -- goes when the user dies)."""
  import weakref
  x = Tensor(arr(2, 2)).realize()
  src = x.uop.alu(Ops.NEG)
  user = src.alu(Ops.EXP2)
  assert [r() for r in src.children] == [user]
  src_ref, n = weakref.ref(src), len(_Interned.cache)
  del user
  assert src.children[0]() is None and len(_Interned.cache) == n - 1
  del src
  assert src_ref() is None  # freed by reference counting alone, no gc pass

@pytest.mark.parametrize("shape", [(4, 4), (16,), (), (2, 1, 3)])
def test_a_new_buffer_and_its_view_are_the_nodes_UOp_makes_outside_the_table(shape):
  """UOp.new_buffer_view makes its two nodes without the interning table (the uid is new; docs/design/0038): every
  slot derived as UOp() derives it, the child link in place, and the table the same size while they live and after."""
  size, slots = math.prod(shape), ("op", "dtype", "src", "arg", "shape", "device", "requires_grad", "ops_below", "holders", "_fixed_in")
  _dev, n = UOp(Ops.DEVICE, arg="CPU"), len(_Interned.cache)  # (the device node lives on in a table of them)
  buf, view = UOp.new_buffer_view("CPU", np.int64(size), dtypes.float32, list(shape))
  assert type(buf.arg[1]) is int and buf.arg[2:] == (0, False) and view.shape == shape
  assert len(_Interned.cache) == n
  # a node UOp() makes afresh (another storage, so no hit) has the same derived facts
  other = UOp(Ops.BUFFER, dtypes.float32, buf.src, (buf.arg[0] + 10**9, size, 0, False))
  assert all(getattr(buf, k) == getattr(other, k) for k in slots if k not in ("arg", "src"))
  if view is not buf:
    ref_view = other.reshape(shape)
    assert all(getattr(view, k) == getattr(ref_view, k) for k in slots if k not in ("arg", "src")) and view.arg == ref_view.arg
    assert [r() for r in buf.children] == [view]
  del buf, view, other
  if shape != (16,): del ref_view
  assert len(_Interned.cache) == n

def test_a_twin_of_a_realized_view_reads_the_same_storage():
  """UOp() with a realized output's fields makes a twin node (the output's nodes are not in the interning table): the
  walk gives both one slot, so a graph reading both computes what it would with one."""
  from lucidgrad.schedule.cache import schedule_walk
  x = Tensor(arr(3, 4)).realize()
  view = x.uop
  twin = UOp(Ops.RESHAPE, view.dtype, view.src, view.arg)
  assert twin is not view and twin.src[0] is view.src[0]
  y = lt._value(view.alu(Ops.ADD, twin))
  assert len(schedule_walk([y.uop]).storages) == 1
  np.testing.assert_array_equal(y.numpy(), 2 * x.numpy())

@pytest.mark.parametrize("y", [2.5, 0.0, -0.0, math.nan, 3, 0, True, np.float32(1.5), np.int64(-2)])
def test_the_inlined_scalar_key_is_the_tables_key(y):
  """Tensor._binop looks the scalar table up with its own copy of _scalar_key: the entry a miss keeps must be the one
  _scalar_key names, holding the constant node the op used."""
  from lucidgrad.schedule import cached_value
  x = Tensor(arr(3, 2)).realize()
  out = (x * y).uop
  u, py = x.uop, lt._plain_scalar(y)
  key = lt._scalar_key(py, u.dtype, u.device, u.shape)
  if any(cached_value(n) is not None for n in lt._kept_nodes(out.src[1])):
    # an earlier test of this process realized this constant (Tensor(3.0), alive in some kernel's graph): by design
    # the table keeps no graph holding a remembered value
    assert key not in lt._kept_graphs
  else:
    dt, c = lt._kept_graphs[key]
    assert out.src[1] is c and out.dtype is dt

# ---- the pieces ----
def test_arg_keys_tell_apart_what_compares_equal():
  args = [1, True, 1.0, (1, 2), (True, 2), (1.0, 2), ((1, 2),), (1, (2,)), 0.0, -0.0, (0.0,), (-0.0,), (), ((),), "1", (int, 1), np.int64(1),
          ((1, 2), (3, 4)), ((1, 2), (3, 5)), (7, 16, 0, False), (7, 16, 0, 0), (7, 16, 0, True), (7, 16, 0, 1)]
  keys = [_arg_key(a) for a in args]
  for i, a in enumerate(args):
    for j, b in enumerate(args):
      assert (keys[i] == keys[j]) == (i == j), (a, b)
  assert _arg_key(math.nan) == _arg_key(math.nan)

def test_dtypes_are_interned_so_equal_values_are_one_object():
  for dt in [dtypes.float32, dtypes.bfloat16.vec(4), dtypes.int8.as_ptr(), dtypes.half.vec(2).as_ptr()]:
    again = pickle.loads(pickle.dumps(dt))
    assert again is dt and again == dt and hash(again) == hash(dt)
    assert DType(dt.name, dt.itemsize, dt.kind, dt.count, dt.ptr) is dt and {dt: 1}[DType(dt.name, dt.itemsize, dt.kind, dt.count, dt.ptr)] == 1
    assert (dt.name, dt.itemsize, dt.kind, dt.count, dt.ptr) == (again.name, again.itemsize, again.kind, again.count, again.ptr)
  assert dtypes.float32 != dtypes.float16 and dtypes.float32 != 4 and not (dtypes.int32 == "int32")
  assert dtypes.int32 != DType("int32", 4, "u") and dtypes.float32.vec(4) != dtypes.float32.vec(2) != dtypes.float32.vec(2).as_ptr()
  # derived dtypes: the same object each call, with the values the name says
  v4 = dtypes.float32.vec(4)
  assert v4 is dtypes.float32.vec(4) and (v4.count, v4.ptr) == (4, False) and v4.scalar() is dtypes.float32
  p = v4.as_ptr()
  assert p is v4.as_ptr() and (p.count, p.ptr) == (4, True) and p.base() is v4 and p.scalar() is dtypes.float32 and dtypes.float32.as_ptr().vec(2) == DType("float32", 4, "f", 2, True)

def test_dropping_a_remembered_constant_keeps_nothing_that_holds_it():
  """Kept graphs share nodes (a (4, 4) and a (2, 4) constant of one value share CONST and RESHAPE): once one of those
  is remembered, no kept graph, and no bookkeeping entry, may still hold it alive."""
  x, z = Tensor(arr(4, 4)), Tensor(arr(2, 4))
  e1, e2 = (x * 3.25).uop.src[1], (z * 3.25).uop.src[1]
  reshape = e1.src[0]
  assert e2.src[0] is reshape and reshape in lt._kept_keys
  one = Tensor.full((1, 1), 3.25)
  assert one.uop is reshape
  one.realize()
  assert reshape not in lt._kept_keys and e1 not in lt._kept_keys and e2 not in lt._kept_keys
  assert all(reshape not in lt._kept_nodes(u) for u in _kept_nodes())
  assert all(keys and all(k in lt._kept_graphs for k in keys) for keys in lt._kept_keys.values())  # no stale entries

def _kept_unless_valued(key: tuple, root: UOp) -> bool:
  """Is `root` kept under `key` -- or, where another test of this process realized a node of its graph (an arange of a
  size of the same bit length shares the positions' terms), rightly not kept?"""
  from lucidgrad.schedule import cached_value
  if any(cached_value(n) is not None for n in lt._kept_nodes(root)): return key not in lt._kept_graphs
  return key in lt._kept_graphs and lt._kept_graphs[key][1] is root

def test_an_arange_and_a_causal_mask_are_kept_until_a_value_is_remembered_for_them():
  """arange's positions graph and an attention's causal mask are kept between calls (the same nodes, not rebuilt), with
  the values NumPy and torch give; realizing the positions themselves drops the kept graph, so later aranges never
  find a kept graph holding that buffer. Sizes of unusual bit lengths, so no other test has realized their graphs."""
  from lucidgrad.schedule import cached_value
  n = 777_777
  a, b = Tensor.arange(n, dtype=dtypes.int32), Tensor.arange(n, dtype=dtypes.int32)
  pos = UOp.positions(n, "CPU")
  assert a.uop is b.uop and pos in a.uop.toposort and _kept_unless_valued(("positions", n, "CPU"), pos)
  L, S = 3, 2_500
  q, k, v = Tensor(arr(2, L, 4)), Tensor(arr(2, S, 4)), Tensor(arr(2, S, 4))
  got = [q.scaled_dot_product_attention(k, v, is_causal=True) for _ in range(2)]
  masks = [u for u in got[0].uop.toposort if u.dtype == dtypes.bool and u.shape == (L, S)]
  assert masks and all(m in got[1].uop.toposort for m in masks)  # the second call's graph holds the first's mask
  assert any(_kept_unless_valued(("causal", L, S, "CPU"), m) for m in masks)
  ref = torch.nn.functional.scaled_dot_product_attention(*(torch.from_numpy(t.numpy()) for t in (q, k, v)), is_causal=True)
  np.testing.assert_allclose(got[0].numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
  whole = Tensor(pos).realize()  # the positions node itself gets a value: no kept graph may hold it
  np.testing.assert_array_equal(whole.numpy()[[0, 1, n // 2, n - 1]], [0, 1, n // 2, n - 1])
  assert cached_value(pos) is not None and ("positions", n, "CPU") not in lt._kept_graphs and pos not in lt._kept_keys
  np.testing.assert_array_equal(Tensor.arange(n)[-3:].numpy(), np.arange(n)[-3:])
  assert all(keys and all(k in lt._kept_graphs for k in keys) for keys in lt._kept_keys.values())

def test_scalar_operands_promote_the_same_on_the_tables_hits():
  """The scalar table is keyed by the tensor's dtype and the scalar's type: the second (kept) constant must promote as
  the first did, and as result_type_scalar says."""
  from lucidgrad.dtype import result_type_scalar
  for dt, np_dt in ((dtypes.int32, np.int32), (dtypes.float16, np.float16), (dtypes.bool, np.bool_), (dtypes.uint8, np.uint8)):
    a = np.array([0, 1, 1, 0], dtype=np_dt)
    for y in (2, 2.5, True, -0.0):
      for _ in range(2):
        t = Tensor(a) * y
        assert t.dtype == result_type_scalar(dt, y), (dt, y, t.dtype)
        np.testing.assert_array_equal(t.numpy(), (a.astype(t.dtype.np) * np.array(y).astype(t.dtype.np)))

def test_a_nodes_key_is_the_content_hash_of_its_parts():
  """UOp.key names compiled programs on disk: its definition (op name, dtype, arg, the sources' keys) is fixed."""
  from lucidgrad.helpers import content_hash
  from lucidgrad.uop.ops import _OP_NAMES
  t = (Tensor.rand(8, 8) * -0.0 + float("nan")).sum(0).cast(dtypes.float16)
  for n in t.uop.toposort:
    assert n.key == content_hash(_OP_NAMES[n.op], repr(n.dtype), repr(n.arg), *[s.key for s in n.src])
  assert (Tensor.ones(3) * 0.0).uop.key != (Tensor.ones(3) * -0.0).uop.key
