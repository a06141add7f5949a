"""At home for PyTorch users, part interop: printing as torch prints, Python's number protocols, NumPy and DLPack (zero
copy both ways), Tensor(torch_tensor), conversions (to, cpu, cuda, type, float, ...), in-place ops and initialisers,
grad modes, and save/load -- each held to torch on the CPU where torch has the feature, NumPy otherwise."""
import collections, gc, io, json, math, re, struct, warnings
import numpy as np, pytest
import lucidgrad as lg
from lucidgrad import Tensor, dtypes, jit, JitError, no_grad
from lucidgrad.nn.state import StateFileError, safe_save

torch = pytest.importorskip("torch")
rng = np.random.default_rng(0)

@pytest.fixture(autouse=True)
def on_the_host(monkeypatch):
  """These are host interop tests (printing against torch's CPU tensors, NumPy's protocols, DLPack of host memory): their
  tensors are made on the CPU whatever $DEV says."""
  monkeypatch.setenv("DEV", "CPU")

def tdt(dt): return getattr(torch, dt.name)
def both(values, dt=dtypes.float32):
  """The same values as a lucidgrad Tensor and a torch tensor of dtype `dt` (bfloat16 rounded from float32 by each)."""
  a = np.asarray(values)
  return Tensor(a, dtype=dt), torch.from_numpy(a.copy()).to(tdt(dt))
def torch_text(t) -> str: return str(t).replace("torch.", "dtypes.")

# ---- printing ----
PRINT_CASES = {
  "2x2": ([[1., 2.], [3., 4.]], dtypes.float32),
  "randn": (rng.standard_normal((3, 4)), dtypes.float32),
  "negative fractions": ([-0.5, 0.25, -123.456], dtypes.float32),
  "wide range -> sci": ([1e-5, 1.0, 1000.0], dtypes.float32),
  "huge ints -> sci": ([1e10, 1.0], dtypes.float32),
  "tiny": ([1e-7, 3e-8], dtypes.float64),
  "ints as floats": ([1., -20., 300.], dtypes.float32),
  "nan inf": ([math.nan, math.inf, -math.inf, 1.5], dtypes.float32),
  "nan with ints": ([math.nan, 1., 2.], dtypes.float32),
  "only nan and zeros": ([math.nan, 0.0, -0.0], dtypes.float32),
  "float64": ([0.1, 2.5], dtypes.float64),
  "float16": ([0.1, 2.5, -7.0], dtypes.float16),
  "bfloat16": ([0.1, 2.5, -7.0], dtypes.bfloat16),
  "int64": ([1, -22, 333], dtypes.int64),
  "int32": ([[1, 2], [3, 4]], dtypes.int32),
  "uint8": ([0, 255, 7], dtypes.uint8),
  "int8": ([-128, 127], dtypes.int8),
  "bool": ([True, False, True], dtypes.bool),
  "0-d float": (3.25, dtypes.float32),
  "0-d int": (7, dtypes.int64),
  "0-d bool": (True, dtypes.bool),
  "0-d tiny": (1e-7, dtypes.float32),
  "empty": (np.zeros(0), dtypes.float32),
  "empty 2-d": (np.zeros((0, 3)), dtypes.float32),
  "empty int64": (np.zeros(0), dtypes.int64),
  "empty 3-d int32": (np.zeros((2, 0, 3)), dtypes.int32),
  "3-d": (np.arange(24).reshape(2, 3, 4), dtypes.int64),
  "3-d floats": (rng.standard_normal((2, 2, 3)), dtypes.float64),
  "long row wraps": (rng.standard_normal(30), dtypes.float32),
  "big 1-d summarised": (np.arange(2000), dtypes.int64),
  "big 2-d summarised": (rng.standard_normal((40, 50)) * 100, dtypes.float32),
  "big 3-d summarised": (rng.standard_normal((10, 20, 30)), dtypes.float32),
  "just over the threshold": (np.arange(1001) / 7, dtypes.float64),
}

@pytest.mark.parametrize("name", PRINT_CASES)
def test_str_is_torchs(name):
  values, dt = PRINT_CASES[name]
  a, t = both(values, dt)
  assert str(a) == torch_text(t)
  assert repr(a) == str(a) and f"{a}" == torch_text(f"{t}")

@pytest.fixture
def printopts():
  yield
  lg.set_printoptions(profile="default")
  torch.set_printoptions(profile="default")

@pytest.mark.parametrize("opts", [dict(precision=2), dict(sci_mode=True), dict(sci_mode=False), dict(threshold=5), dict(threshold=5, edgeitems=1),
                                  dict(threshold=5, edgeitems=0), dict(linewidth=30), dict(profile="short"), dict(profile="full")], ids=str)
def test_printoptions_are_torchs(opts, printopts):
  lg.set_printoptions(**opts)
  torch.set_printoptions(**opts)
  for values, dt in [(rng.standard_normal((4, 9)) * 1e3, dtypes.float32), ([1e-5, 1.0, 1000.0], dtypes.float32), (np.arange(12), dtypes.int32),
                     ([1., 2.], dtypes.float32), (np.arange(1500).reshape(30, 50), dtypes.int64)]:
    a, t = both(values, dt)
    assert str(a) == torch_text(t)

def test_printoptions_context_restores_and_bad_options_raise(printopts):
  with lg.printoptions(precision=1): assert str(Tensor([0.25, 1.5])) == "tensor([0.2, 1.5])"
  assert lg.get_printoptions()["precision"] == 4 and str(Tensor([0.25])) == "tensor([0.2500])"
  with pytest.raises(ValueError, match="precision.*-1"): lg.set_printoptions(precision=-1)
  with pytest.raises(ValueError, match="profile.*'long'"): lg.set_printoptions(profile="long")

def test_grad_and_device_suffixes():
  x, tx = both([1., 2.])
  x.requires_grad_(), tx.requires_grad_()
  assert str(x) == str(tx) == "tensor([1., 2.], requires_grad=True)"
  # lucidgrad names the op of the last step, as torch does, without torch's version number
  assert str(x * 2) == re.sub(r"Backward\d", "Backward", str(tx * 2)) == "tensor([2., 4.], grad_fn=<MulBackward>)"
  assert (x * 2).grad_fn.name() == "MulBackward" and x.grad_fn is None and tx.grad_fn is None
  with no_grad(): assert str(x * 2) == "tensor([2., 4.])"
  assert str(Tensor([1., 2.], device="PYTHON", dtype=dtypes.float64)) == "tensor([1., 2.], device='PYTHON', dtype=dtypes.float64)"
  # a suffix that passes the line width goes on a line of its own, as in torch
  a, t = both(rng.standard_normal(7), dtypes.float64)
  assert str(a.requires_grad_()) == torch_text(t.requires_grad_())

def test_printing_inside_jit_raises_naming_the_line():
  @jit
  def f(x):
    print(x)
    return x * 2
  with pytest.raises(JitError, match=r"printing a tensor inside a jitted function \(at .*test_interop.py:\d+\)"): f(Tensor([1., 2.]))

# ---- Python's number protocols ----
def test_number_protocols_match_torch():
  for v, dt in [(2.75, dtypes.float32), ([-2.75], dtypes.float64), (3, dtypes.int64), ([True], dtypes.bool), (-5, dtypes.int8)]:
    a, t = both(v, dt)
    assert float(a) == float(t) and int(a) == int(t) and bool(a) == bool(t)
  assert [10, 20, 30][Tensor(2)] == 30 and [10, 20, 30][Tensor([1], dtype=dtypes.int32)] == 20 and [10, 20][Tensor(True)] == 20
  assert list(range(10))[Tensor(2):Tensor(5)] == [2, 3, 4]
  assert format(Tensor(3.14159), ".2f") == format(torch.tensor(3.14159), ".2f") == "3.14"
  assert format(Tensor(7), "04d") == "0007" and format(Tensor([1., 2.]), "") == str(Tensor([1., 2.]))

def test_number_protocol_errors_match_torch():
  for bad in (lambda m: float(m.ones(2)), lambda m: int(m.ones(2, 2))):
    with pytest.raises(ValueError, match="only one element tensors can be converted to Python scalars"): bad(torch)
    with pytest.raises(ValueError, match=r"only one-element tensors can be converted to Python scalars.*\(2"): bad(Tensor)
  with pytest.raises(RuntimeError, match="ambiguous"): bool(Tensor([1, 2]))
  with pytest.raises(TypeError, match="only integer tensors of a single element.*float32"): [1, 2][Tensor(1.0)]
  with pytest.raises(TypeError, match="only integer tensors of a single element.*\\(2,\\)"): [1, 2][Tensor([0, 1])]
  with pytest.raises(TypeError, match="'.2f'"): format(Tensor([1.5]), ".2f")
  with pytest.raises(TypeError): format(torch.tensor([1.5]), ".2f")
  with pytest.raises(TypeError, match="iteration over a 0-d tensor"): iter(Tensor(1.0))
  with pytest.raises(TypeError, match="len.*0-d"): len(Tensor(1.0))
  with pytest.raises(TypeError, match="str"): "a" in Tensor([1, 2])

def test_iteration_and_contains_match_torch():
  a, t = both(np.arange(6).reshape(3, 2), dtypes.int64)
  assert [r.tolist() for r in a] == [r.tolist() for r in t] and len(a) == len(t) == 3
  for x in (3, 7, 2.0, -1):
    assert (x in a) == (x in t)
  assert (Tensor([2, 3]) in a) == (torch.tensor([2, 3]) in t) and 1 not in Tensor.zeros(0)

def test_numpy_array_protocol():
  a = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3)).realize()
  n = np.asarray(a)
  n[0, 0] = 100  # np.asarray copies, as numpy() does
  assert a.numpy()[0, 0] == 0 and np.asarray(a, dtype=np.float64).dtype == np.float64
  shared = np.asarray(a, copy=False)
  shared[0, 0] = 5
  assert a.numpy()[0, 0] == 5  # copy=False shares the storage
  with pytest.raises(ValueError, match="copy=False.*contiguous"): np.asarray(a.T, copy=False)
  with pytest.raises(ValueError, match="bfloat16"): np.asarray(a.cast(dtypes.bfloat16).realize(), copy=False)
  assert np.asarray(Tensor([1.5, 2.0], dtype=dtypes.bfloat16)).tolist() == [1.5, 2.0]
  # an ndarray operand defers to the Tensor, promoting as torch does with the array as a tensor
  for x, arr in [([1., 2.], np.array([0.5, 4.0])), ([1, 2], np.array([3, 4], dtype=np.int8))]:
    t, tt = Tensor(x), torch.tensor(x)
    for f in (lambda p, q: p + q, lambda p, q: q * p, lambda p, q: q - p):
      out, ref = f(t, arr), f(tt, torch.from_numpy(arr))
      assert isinstance(out, Tensor) and out.dtype.name == str(ref.dtype)[6:] and out.tolist() == ref.tolist()

# ---- DLPack ----
def test_dlpack_to_numpy_and_torch_shares_memory_both_ways():
  t = Tensor([1., 2., 3.]).realize()
  n, tt = np.from_dlpack(t), torch.from_dlpack(t)
  n[0] = 10
  tt[1] = 20
  assert t.tolist() == [10, 20, 3]
  with no_grad(): t += 1
  t.realize()
  assert n.tolist() == tt.tolist() == [11, 21, 4]
  assert (t * 2).tolist() == [22, 42, 8]  # a graph built after a foreign write reads it

def test_dlpack_export_of_a_lazy_tensor_shares_and_a_transposed_view_is_copied():
  lazy = Tensor([[1., 2.], [3., 4.]]) * 2
  n = np.from_dlpack(lazy)
  n[0, 0] = -1
  assert lazy.tolist() == [[-1, 4], [6, 8]]  # computed into a storage of its own, then shared
  base = Tensor([[1., 2.], [3., 4.]]).realize()
  flat = np.from_dlpack(base.reshape(4))  # a reshape view of an owner: its storage
  flat[3] = 40
  view = np.from_dlpack(base.T)
  assert view.tolist() == [[1, 3], [2, 40]]
  view[0, 0] = 99
  assert base.tolist() == [[1, 2], [3, 40]]  # the transposed view was a copy
  with pytest.raises(BufferError, match="contiguous"): base.T.__dlpack__(copy=False)
  copied = np.from_dlpack(base, copy=True)
  copied[0, 0] = 7
  assert base.tolist()[0][0] == 1

def test_exported_memory_outlives_the_tensor():
  t = Tensor(np.arange(1000, dtype=np.float32)).realize()
  n, tt = np.from_dlpack(t), torch.from_dlpack(t)
  del t
  gc.collect()
  others = [Tensor(np.full(1000, 7, np.float32)).realize() for _ in range(4)]  # would reuse freed memory of this size
  assert n.tolist() == tt.tolist() == list(range(1000)) and len(others) == 4

@pytest.mark.parametrize("dt", [dtypes.bool, dtypes.uint8, dtypes.int16, dtypes.int64, dtypes.float16, dtypes.bfloat16, dtypes.float64],
                         ids=lambda d: d.name)
def test_dlpack_round_trips_dtypes_with_torch(dt):
  values = rng.standard_normal((3, 4)) * 50
  a, t = both(values.astype(np.int64) if not dt.is_float() else values, dt)
  if dt == dtypes.bool: a, t = both(values > 0, dt)
  out = torch.from_dlpack(a.realize())
  assert out.dtype == t.dtype and out.shape == t.shape and torch.equal(out, t)
  back = Tensor.from_dlpack(t)
  assert back.dtype == dt and back.shape == a.shape and str(back) == str(a)
  t.view(-1)[0] = 1  # zero copy: the write shows in the lucidgrad tensor
  assert back.numpy().reshape(-1)[0] == 1
  if dt not in (dtypes.bfloat16,):  # NumPy has no bfloat16
    n = np.from_dlpack(a)
    assert n.dtype == a.numpy().dtype and (n == a.numpy()).all()
    assert Tensor.from_dlpack(n).tolist() == n.tolist()

def test_from_dlpack_edge_cases():
  strided = torch.arange(12.).reshape(3, 4)[:, ::2]
  assert Tensor.from_dlpack(strided).tolist() == strided.tolist()  # strided memory is copied
  assert Tensor.from_dlpack(torch.tensor(2.5)).shape == () and lg.from_dlpack(torch.zeros(0, 3)).shape == (0, 3)
  cap = torch.utils.dlpack.to_dlpack(torch.tensor([1, 2, 3]))  # a bare (legacy) capsule
  assert lg.from_dlpack(cap).tolist() == [1, 2, 3]
  with pytest.raises(BufferError, match="consumed"): lg.from_dlpack(cap)
  readonly = np.arange(3.0)
  readonly.flags.writeable = False
  imported = lg.from_dlpack(readonly)
  assert imported.tolist() == [0, 1, 2]
  src = torch.arange(4.)
  kept = lg.from_dlpack(src)
  del src
  gc.collect()
  assert kept.tolist() == [0, 1, 2, 3]  # the producer's memory lives as long as the tensor
  with pytest.raises(BufferError, match=r"requires grad.*detach"): np.from_dlpack(Tensor([1.]).requires_grad_())
  with pytest.raises(TypeError, match="list"): lg.from_dlpack([1, 2])
  p = Tensor([1.]).requires_grad_()
  assert lg.from_dlpack(p) is not p and lg.from_dlpack(p).requires_grad is False

def test_tensor_of_a_torch_tensor_copies_its_values():
  for t in [torch.arange(6).reshape(2, 3).T, torch.tensor([1.5, -2.25], dtype=torch.bfloat16), torch.tensor([True, False]),
            torch.randn(2, 3, dtype=torch.float64), torch.tensor(3, dtype=torch.int8)]:
    a = Tensor(t)
    assert a.dtype.name == str(t.dtype)[6:] and a.shape == tuple(t.shape) and str(a) == torch_text(t)
  src = torch.ones(3, requires_grad=True)
  a = Tensor(src)
  with torch.no_grad(): src.mul_(5)
  assert a.tolist() == [1, 1, 1] and not a.requires_grad  # a copy; torch's requires_grad is not carried over
  assert Tensor(src, requires_grad=True).requires_grad and Tensor(src, dtype=dtypes.int32).dtype == dtypes.int32

def test_tensor_of_a_list_of_tensors_is_torchs():
  cases = [lambda m: [m.tensor(1, dtype=m.int8)], lambda m: [m.tensor(1., dtype=m.float64), 2], lambda m: [m.tensor(1, dtype=m.int8), 2],
           lambda m: [m.tensor(1, dtype=m.int8), 2.5], lambda m: [[m.tensor([1.])], [m.tensor(2.)]], lambda m: [m.tensor(True), 1]]
  class Lg:
    int8, float64 = dtypes.int8, dtypes.float64
    @staticmethod
    def tensor(v, dtype=None): return Tensor(v, dtype=dtype)
  for case in cases:
    assert str(Tensor(case(Lg))) == torch_text(torch.tensor(case(torch)))
  with pytest.raises(ValueError, match=r"one element.*\(2,\)"): Tensor([Tensor([1, 2]), Tensor([3, 4])])

# ---- conversions ----
def test_to_and_friends_match_torch():
  a, t = both([[1.5, -2.25], [3.0, 4.75]])
  assert a.to(dtypes.float64).dtype == dtypes.float64 and a.to("float16").dtype == dtypes.float16
  assert a.to("cpu") is a and a.to(dtypes.float32) is a and a.to(a) is a and t.to("cpu") is t
  c = a.to(dtypes.float32, copy=True)
  assert c is not a and c.tolist() == a.tolist()
  assert a.to("cpu", dtypes.int32).tolist() == t.to("cpu", torch.int32).tolist()
  assert a.to(dtype=dtypes.int64, device="CPU").tolist() == t.to(dtype=torch.int64, device="cpu").tolist()
  other = Tensor([1], dtype=dtypes.int8, device="PYTHON")
  moved = a.to(other)
  assert moved.device == "PYTHON" and moved.dtype == dtypes.int8 and moved.tolist() == t.to(torch.int8).tolist()
  assert moved.cpu().device == "CPU" and moved.to("CPU", non_blocking=True).device == "CPU"
  with pytest.raises(RuntimeError, match="unknown device 'floaty'"): a.to("floaty")
  with pytest.raises(TypeError, match="unexpected keyword"): a.to(dtypes.float16, sideways=True)

def test_cuda_moves_or_says_why():
  try: lg.Device["CUDA"]
  except RuntimeError:
    with pytest.raises(RuntimeError, match="cuda\\(\\): no CUDA device is available"): Tensor([1.]).cuda()
    return
  assert Tensor([1., 2.]).cuda().device == "CUDA" and Tensor([1., 2.]).cuda().tolist() == [1, 2]

@pytest.mark.parametrize("method", ["float", "double", "half", "bfloat16", "long", "int", "short", "char", "byte", "bool"])
def test_cast_methods_match_torch(method):
  values = [-1.7, 2.7, 0.0, 100.25] if method != "byte" else [1.7, 2.7, 0.0, 200.25]  # negative floats to uint8 differ by C compiler
  a, t = both(values, dtypes.float64)
  out, ref = getattr(a, method)(), getattr(t, method)()
  assert out.dtype.name == str(ref.dtype)[6:] and str(out) == torch_text(ref)

def test_type_strings_are_torchs():
  for dt in (dtypes.float32, dtypes.float64, dtypes.float16, dtypes.bfloat16, dtypes.uint8, dtypes.int8, dtypes.int16, dtypes.int32,
             dtypes.int64, dtypes.bool, dtypes.uint16, dtypes.uint32, dtypes.uint64):
    assert Tensor([1], dtype=dt).type() == torch.tensor([1], dtype=tdt(dt)).type()
  a, t = both([1.5, -2.5])
  assert a.type("torch.IntTensor").tolist() == t.type("torch.IntTensor").tolist() and a.type(dtypes.int16).dtype == dtypes.int16
  assert Tensor([1.], device="PYTHON").type() == "torch.python.FloatTensor"
  with pytest.raises(ValueError, match="unknown tensor type 'torch.FooTensor'"): a.type("torch.FooTensor")

def test_matrix_transposes_match_torch():
  a, t = both(rng.standard_normal((2, 3, 4)))
  assert a.mT.tolist() == t.mT.tolist() and a.mH.tolist() == t.mH.tolist()
  m, tm = both(rng.standard_normal((3, 4)))
  assert m.T.tolist() == tm.T.tolist() and m.H.tolist() == tm.H.tolist()
  with pytest.warns(UserWarning, match="mT"): assert a.T.tolist() == t.permute(2, 1, 0).tolist()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    m.T  # 2-D: no warning
  for bad in ("mT", "mH"):
    with pytest.raises(RuntimeError, match=f"{bad}.*\\(3,\\)"): getattr(Tensor([1., 2., 3.]), bad)

def test_data_is_a_detached_alias_and_setting_it_writes_values():
  p, tp = both([1., 2., 3.])
  p.requires_grad_(), tp.requires_grad_()
  d, td = p.data, tp.data
  assert not d.requires_grad and not td.requires_grad
  d[0] = 10  # no no_grad needed: .data carries no history
  td[0] = 10
  assert p.tolist() == tp.tolist()
  p.data = Tensor([4., 5., 6.])
  tp.data = torch.tensor([4., 5., 6.])
  assert p.tolist() == tp.tolist() and p.requires_grad and p.is_leaf
  with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)"): p.data = Tensor([1., 2.])

# ---- in place ----
INPLACE = {  # name: (args, lucidgrad-only args or None) -- the same call on both sides
  "add_": ((2.0,), None), "sub_": ((1.0,), None), "mul_": ((3.0,), None), "div_": ((4.0,), None), "clamp_": ((-0.5, 0.5), None),
  "pow_": ((2,), None), "neg_": ((), None), "abs_": ((), None), "exp_": ((), None), "sigmoid_": ((), None), "floor_": ((), None),
  "zero_": ((), None), "fill_": ((2.5,), None), "sqrt_": ((), None), "tanh_": ((), None), "sign_": ((), None), "reciprocal_": ((), None),
}

@pytest.mark.parametrize("name", INPLACE)
def test_inplace_ops_match_torch_on_views_and_aliases(name):
  args, _ = INPLACE[name]
  values = rng.standard_normal((3, 4)).astype(np.float32)
  if name == "sqrt_": values = np.abs(values)
  a, t = both(values)
  alias, talias = a, t
  out, tout = getattr(a[1:], name)(*args), getattr(t[1:], name)(*args)  # through a view: the base sees it
  np.testing.assert_allclose(out.numpy(), tout.numpy(), rtol=2e-6, atol=1e-6)
  np.testing.assert_allclose(alias.numpy(), talias.numpy(), rtol=2e-6, atol=1e-6)
  assert getattr(a, name)(*args) is a

def test_inplace_ops_with_tensor_operands_and_broadcasting_match_torch():
  a, t = both(rng.standard_normal((2, 3)))
  b, tb = both(rng.standard_normal(3))
  a.add_(b, alpha=2).mul_(b).sub_(b).div_(b.abs() + 1)
  t.add_(tb, alpha=2).mul_(tb).sub_(tb).div_(tb.abs() + 1)
  np.testing.assert_allclose(a.numpy(), t.numpy(), rtol=1e-5)
  m, tm = both([[True, False, True], [False, False, True]], dtypes.bool)
  assert a.masked_fill_(m, 0.5).tolist() == t.masked_fill_(tm, 0.5).tolist()
  i, ti = both([[1, 2, 3], [4, 5, 6]], dtypes.int64)
  i.copy_(Tensor([1.7, -2.7, 3.2]))  # copy_ casts with loss and broadcasts, as torch's
  ti.copy_(torch.tensor([1.7, -2.7, 3.2]))
  assert i.tolist() == ti.tolist()
  x = Tensor([1., 2.])
  x.copy_(Tensor([5, 6], dtype=dtypes.int8, device="PYTHON"))
  assert x.tolist() == [5, 6] and x.device == "CPU"

def test_inplace_on_a_leaf_that_requires_grad_raises_like_torch_and_is_allowed_under_no_grad():
  for op in (lambda x: x.add_(1), lambda x: x.exp_(), lambda x: x.zero_(), lambda x: x.copy_(x * 2), lambda x: x[0].fill_(3), lambda x: x.normal_()):
    tp = torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"): op(tp)
    p = Tensor.ones(3).requires_grad_()
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*no_grad"): op(p)
    assert p.tolist() == [1, 1, 1]
    with no_grad(): op(p)
    with torch.no_grad(): op(tp)
    assert p.requires_grad and p.is_leaf and (p.tolist() == tp.tolist() or op(Tensor.ones(3)).tolist() != [1, 1, 1])
  # on a value computed from a leaf, in-place ops are recorded: the gradient goes through them
  x, tx = both([1., 2., 3.])
  x.requires_grad_(), tx.requires_grad_()
  y, ty = x * 2, tx * 2
  y.mul_(3).exp_()
  ty.mul_(3).exp_()
  y.sum().backward()
  ty.sum().backward()
  np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5)

def test_inplace_results_the_dtype_cannot_hold_raise():
  for op in (lambda x: x.div_(2), lambda x: x.exp_(), lambda x: x.add_(1.5)):
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type"): op(torch.ones(2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"_: the result is float32, which this int64 tensor cannot hold"): op(Tensor([1, 2]))
  x = Tensor([1, 2], dtype=dtypes.uint8)
  assert x.add_(Tensor([3, 4])).tolist() == [4, 6] and x.dtype == dtypes.uint8  # int64 into uint8: allowed, as in torch

def test_inplace_initialisers_draw_from_the_global_generator():
  x = Tensor.empty(200, 100)
  Tensor.manual_seed(7)
  x.normal_(2.0, 3.0)
  v = x.numpy()
  assert abs(v.mean() - 2.0) < 0.1 and abs(v.std() - 3.0) < 0.1
  Tensor.manual_seed(7)
  assert (Tensor.empty(200, 100).normal_(2.0, 3.0).numpy() == v).all()  # the same seed, the same draws
  u = x.uniform_(-2, 5).numpy()
  assert u.min() >= -2 and u.max() < 5 and abs(u.mean() - 1.5) < 0.1
  b = Tensor.zeros(20000, dtype=dtypes.int32).bernoulli_(0.25).numpy()
  assert set(np.unique(b)) == {0, 1} and abs(b.mean() - 0.25) < 0.02
  for dt, bounds, lo, hi in [(dtypes.int8, (), 0, 127), (dtypes.int16, (-3, 3), -3, 2), (dtypes.float32, (5,), 0, 4)]:
    r = Tensor.zeros(20000, dtype=dt).random_(*bounds).numpy()
    assert r.min() == lo and r.max() == hi and (r == np.floor(r)).all() and len(np.unique(r)) == hi - lo + 1
  with pytest.raises(TypeError, match="normal_: needs a float tensor"): Tensor([1, 2]).normal_()
  with pytest.raises(NotImplementedError, match="normal_kernel"): torch.tensor([1, 2]).normal_()
  with pytest.raises(ValueError, match="random_.*does not fit int8"): Tensor([1], dtype=dtypes.int8).random_(0, 1000)
  with pytest.raises(ValueError, match="bernoulli_: p must be in"): Tensor([1.]).bernoulli_(1.5)

# ---- grad modes, held to torch's: the same scenario run with each records the same modes ----
def scenario(m) -> list:
  seen = [m.is_grad_enabled()]
  with m.no_grad():
    seen.append(m.is_grad_enabled())
    with m.enable_grad(): seen.append(m.is_grad_enabled())
    seen.append(m.is_grad_enabled())
  m.set_grad_enabled(False)
  seen.append(m.is_grad_enabled())
  m.set_grad_enabled(True)
  with m.set_grad_enabled(False): seen.append(m.is_grad_enabled())
  seen.append(m.is_grad_enabled())
  @m.set_grad_enabled(False)
  def off(): return m.is_grad_enabled()
  seen += [m.is_grad_enabled(), off(), m.is_grad_enabled()]
  @m.no_grad
  def bare(n): return [m.is_grad_enabled()] + (bare(n - 1) if n else [])  # recursion restores each level's mode
  seen += bare(2) + [m.is_grad_enabled()]
  @m.inference_mode()
  def inf(): return m.is_grad_enabled(), m.is_inference_mode_enabled()
  seen += [inf(), m.is_inference_mode_enabled()]
  @m.inference_mode
  def bare_inf(): return m.is_grad_enabled(), m.is_inference_mode_enabled()
  seen += [bare_inf(), m.is_grad_enabled()]
  with m.inference_mode(False): seen.append((m.is_grad_enabled(), m.is_inference_mode_enabled()))
  with m.no_grad():
    @m.enable_grad()
    def on(): return m.is_grad_enabled()
    @m.enable_grad
    def bare_on(): return m.is_grad_enabled()
    seen += [on(), bare_on(), m.is_grad_enabled()]
  return seen + [m.is_grad_enabled()]

def test_grad_modes_behave_as_torchs():
  assert scenario(lg) == scenario(torch)

def test_grad_modes_stop_recording():
  w = Tensor([1., 2.]).requires_grad_()
  with lg.inference_mode(): assert not (w * 2).requires_grad
  with lg.set_grad_enabled(False): assert not (w * 2).requires_grad
  with no_grad():
    with lg.enable_grad(): assert (w * 2).requires_grad
  with pytest.raises(TypeError, match="set_grad_enabled: mode must be a bool"): lg.set_grad_enabled("no")

# ---- save / load ----
def test_save_load_round_trips_nested_structures(tmp_path):
  w = Tensor(rng.standard_normal((3, 2)).astype(np.float32)).requires_grad_()
  obj = {"model": collections.OrderedDict(w=w, b=Tensor([1.5, -2.0, 3.25], dtype=dtypes.bfloat16)),
         "state": {0: {"step": 3, "idx": Tensor([2**40, -5], dtype=dtypes.int64), "empty": Tensor.zeros(0, 4)}, (1, "x"): [True, None]},
         "again": w, "meta": ("adam", 1e-3, float("inf"), -0.0, 2**70), "array": np.arange(4, dtype=np.int16), "np scalar": np.float32(0.5),
         "flags": Tensor([True, False])}
  path = tmp_path / "ckpt.safetensors"
  lg.save(obj, path)
  out = lg.load(path)
  assert list(out) == list(obj) and type(out["model"]) is collections.OrderedDict
  assert out["again"] is out["model"]["w"] and out["again"].requires_grad and out["again"].is_leaf
  assert out["model"]["w"].tolist() == w.tolist() and out["model"]["b"].dtype == dtypes.bfloat16 and out["model"]["b"].tolist() == [1.5, -2.0, 3.25]
  assert out["state"][0]["idx"].tolist() == [2**40, -5] and out["state"][0]["idx"].dtype == dtypes.int64 and out["state"][0]["step"] == 3
  assert out["state"][0]["empty"].shape == (0, 4) and out["state"][(1, "x")] == [True, None] and out["flags"].dtype == dtypes.bool
  assert out["meta"][:2] == ("adam", 1e-3) and out["meta"][2] == math.inf and math.copysign(1, out["meta"][3]) == -1 and out["meta"][4] == 2**70
  assert out["array"].dtype == np.int16 and out["array"].tolist() == [0, 1, 2, 3] and out["np scalar"] == 0.5
  # the file is safetensors: its entries are the tensors, the structure JSON in the metadata
  assert json.loads(lg.nn.state.safe_load_metadata(path)["lucidgrad.save"])["dict"][0][0] == "model"
  buf = io.BytesIO()
  lg.save([w, {"k": 1}], buf)
  back = lg.load(io.BytesIO(buf.getvalue()), map_location="PYTHON")
  assert back[0].device == "PYTHON" and back[0].tolist() == w.tolist() and back[1] == {"k": 1}

def test_save_refuses_what_it_cannot_rebuild(tmp_path):
  f = tmp_path / "x.safetensors"
  with pytest.raises(TypeError, match=r"the object\['a'\]\[1\] is a set"): lg.save({"a": [1, {2}]}, f)
  with pytest.raises(TypeError, match="has a key of type Tensor"): lg.save({Tensor([1]): 1}, f)
  with pytest.raises(TypeError, match="point"): lg.save(collections.namedtuple("point", "x y")(1, 2), f)
  loop: list = []
  loop.append(loop)
  with pytest.raises(ValueError, match="contains itself"): lg.save(loop, f)
  assert not f.exists()

def test_load_reads_torch_files_and_plain_safetensors(tmp_path):
  torch.save({"w": torch.arange(4.), "n": 3}, tmp_path / "t.pt")
  out = lg.load(tmp_path / "t.pt")
  assert out["w"].tolist() == [0, 1, 2, 3] and out["n"] == 3
  safe_save({"a": Tensor([1, 2])}, tmp_path / "plain.safetensors")
  assert lg.load(tmp_path / "plain.safetensors")["a"].tolist() == [1, 2]

def test_load_of_a_corrupt_file_names_it(tmp_path):
  good = tmp_path / "good.safetensors"
  lg.save({"w": Tensor([1., 2.])}, good)
  data = good.read_bytes()
  (bad := tmp_path / "truncated.safetensors").write_bytes(data[:-4])
  with pytest.raises(StateFileError, match="truncated.safetensors.*past the end"): lg.load(bad)
  for structure, msg in [('{"tensor":"9"}', "names a tensor '9'"), ('{"set":[1]}', "never writes"), ("[1,", "not valid JSON"),
                         ('{"dict":[[{"dict":[]},1]]}', "cannot be a key")]:
    safe_save({"0": Tensor([1.])}, bad, {"lucidgrad.save": structure, "lucidgrad.save.version": "1"})
    with pytest.raises(StateFileError, match=f"truncated.safetensors: .*{re.escape(msg)}"): lg.load(bad)
  safe_save({"0": Tensor([1.])}, bad, {"lucidgrad.save": "1", "lucidgrad.save.version": "99"})
  with pytest.raises(StateFileError, match="version '99'"): lg.load(bad)
  (bad).write_bytes(struct.pack("<Q", 5) + b"nope!")
  with pytest.raises(StateFileError, match="truncated.safetensors: the header is not valid JSON"): lg.load(bad)

# ---- a graph that outlives the tensor owning a leaf still reads the leaf's values ----
def test_a_graph_outliving_its_leafs_owner_reads_the_leaf():
  y = Tensor([1., 1.]).requires_grad_() * 2  # the leaf's only owner is gone before y is computed
  gc.collect()
  [Tensor(np.full(2, 9, np.float32)).realize() for _ in range(4)]
  assert y.tolist() == [2, 2]
  assert (Tensor.ones(3).requires_grad_() + 1).tolist() == [2, 2, 2]
