"""Every Tensor op held to NumPy on random inputs: shapes with size-0 and size-1 axes, broadcasting, non-contiguous inputs
(permuted, sliced, flipped, padded), every dtype where the op means something, and a subset again on the PYTHON device."""
import math, warnings
import numpy as np
import pytest
from lucidgrad import Tensor, Device, dtypes
from conftest import ALL, FLOATS, SINTS, INTS, NUMERIC, np_dtype, round_to, rand_np, make, check, pad_value, tol

f32, i32 = dtypes.float32, dtypes.int32

def float_of(dt): return dt if dt.is_float() else dtypes.default_float

def reference(fn, xs, cdt, odt):
  """fn on xs as PyTorch computes it: inputs cast to the computation dtype `cdt` (float math then done in float64),
  the result rounded (floats) or cast (ints, bools) to the output dtype `odt`."""
  args = [round_to(x, cdt).astype(np.float64) if cdt.is_float() else np.asarray(x).astype(np_dtype(cdt)) for x in xs]
  with np.errstate(all="ignore"): r = np.asarray(fn(*args))
  return round_to(r, odt) if odt.is_float() else r.astype(np_dtype(odt))

# (rtol, atol) for functions that are not correctly rounded: torch.testing.assert_close's defaults for each dtype
MATH_TOL = {dtypes.float16: (1e-3, 1e-5), dtypes.bfloat16: (1.6e-2, 1e-5), dtypes.float32: (1.3e-6, 1e-5), dtypes.float64: (1e-7, 1e-7)}
def tols(dt, tolk="exact"):
  """(rtol, atol): 'exact' ops are correctly rounded, so within one ulp of the float64 reference rounded to dt."""
  return MATH_TOL.get(dt, (0, 0)) if tolk == "math" else (tol(dt), 0)

def np_erf(x): return np.vectorize(math.erf, otypes=[np.float64])(x)

# ---------------------------------------------------------------- creation

def fill_of(dt): return True if dt == dtypes.bool else 7 if dt.is_int() else -2.5

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_zeros_ones_full_of_each_dtype(dt):
  check(Tensor.zeros(2, 3, dtype=dt), np.zeros((2, 3), np_dtype(dt)), dt)
  check(Tensor.ones((2, 3), dtype=dt), np.ones((2, 3), np_dtype(dt)), dt)
  check(Tensor.full((3, 1), fill_of(dt), dtype=dt), np.full((3, 1), fill_of(dt), np_dtype(dt)), dt)

@pytest.mark.parametrize("shape", [(), (0,), (1,), (2, 0, 3), (1, 1), (4, 1, 3)], ids=str)
def test_creation_shapes_and_default_dtypes(shape):
  check(Tensor.zeros(*shape), np.zeros(shape, np.float32), dtypes.float32)
  check(Tensor.ones(shape), np.ones(shape, np.float32), dtypes.float32)
  check(Tensor.full(shape, 7), np.full(shape, 7, np.int64), dtypes.int64)
  check(Tensor.full(shape, 1.5), np.full(shape, 1.5, np.float32), dtypes.float32)
  check(Tensor.full(shape, False), np.full(shape, False), dtypes.bool)
  e = Tensor.empty(*shape, dtype=dtypes.int16)
  assert e.shape == shape and e.dtype == dtypes.int16 and e.numpy().shape == shape

@pytest.mark.parametrize("args,kw", [((5,), {}), ((2, 9), {}), ((2, 9, 3), {}), ((10, 2, -3), {}), ((0,), {}), ((5, 5), {}), ((3, 1), {}),
                                     ((0.5, 3.0, 0.5), {}), ((1, 2, 0.25), {}), ((-3, 3), {"dtype": dtypes.float64}),
                                     ((-4, 4, 3), {"dtype": dtypes.int8}), ((6,), {"dtype": dtypes.uint16}), ((-1.5, 2.5), {})], ids=str)
def test_arange(args, kw):
  dt = kw.get("dtype", dtypes.float32 if any(isinstance(a, float) for a in args) else dtypes.int64)
  check(Tensor.arange(*args, **kw), np.arange(*args).astype(np_dtype(dt)), dt)

@pytest.mark.parametrize("start,end,steps,dt", [(0, 1, 5, None), (-2, 3, 7, None), (1, 1, 1, None), (0, 10, 0, None), (3, -3, 4, None),
                                                (0, 1, 11, dtypes.float64), (-1, 1, 5, dtypes.float16), (0, 2, 3, dtypes.bfloat16)])
def test_linspace(start, end, steps, dt):
  odt = dt or dtypes.float32
  check(Tensor.linspace(start, end, steps, dtype=dt), round_to(np.linspace(start, end, steps), odt), odt, rtol=tol(odt, 4), atol=tol(odt, 4))

@pytest.mark.parametrize("n,m,dt", [(3, None, None), (2, 4, None), (4, 2, dtypes.int32), (1, None, dtypes.bool), (0, None, None), (3, 0, None)])
def test_eye(n, m, dt):
  check(Tensor.eye(n, m, dtype=dt), np.eye(n, m).astype(np_dtype(dt or dtypes.float32)), dt or dtypes.float32)

@pytest.mark.parametrize("dt", [dtypes.int8, dtypes.float16, dtypes.bool, dtypes.bfloat16], ids=str)
def test_like_constructors_keep_shape_dtype_device(dt):
  t = Tensor(np.zeros((2, 3), np.float32), dtype=dt, device="PYTHON")
  for x, v in ((t.zeros_like(), 0), (t.ones_like(), 1), (t.full_like(fill_of(dt)), fill_of(dt))):
    assert x.device == "PYTHON"
    check(x, np.full((2, 3), v, np_dtype(dt)), dt)
  check(t.ones_like(dtype=dtypes.float64), np.ones((2, 3)), dtypes.float64)
  e = t.empty_like()
  assert (e.shape, e.dtype, e.device) == ((2, 3), dt, "PYTHON")
  if dt.is_float():
    for r in (t.rand_like(), t.randn_like()): assert (r.shape, r.dtype, r.device) == ((2, 3), dt, "PYTHON")

@pytest.mark.parametrize("data,dt", [(True, dtypes.bool), (3, dtypes.int64), (-2.5, dtypes.float32), ([True, False], dtypes.bool),
                                     ([1, 2, 3], dtypes.int64), ([1, 2.5], dtypes.float32), ([[1, 2], [3, 4]], dtypes.int64),
                                     ([True, 2], dtypes.int64), ([], dtypes.float32), ([[1.5], [2.5], [-1.0]], dtypes.float32),
                                     ([[[]]], dtypes.float32)], ids=str)
def test_from_python(data, dt):
  t = Tensor(data)
  assert t.dtype == dt
  check(t, np.array(data, dtype=np_dtype(dt)), dt)

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_from_python_with_dtype(dt):
  data = [[0, 1, 3], [5, 2, 1]] if not dt.is_float() else [[0.1, -1.00390625, 3.3], [1e3, 2.5, 65504.0]]
  check(Tensor(data, dtype=dt), round_to(np.array(data), dt) if dt.is_float() else np.array(data).astype(np_dtype(dt)), dt)
  check(Tensor(data[0][1], dtype=dt), np.array(data[0][1]).astype(np_dtype(dt)) if not dt.is_float() else round_to(data[0][1], dt), dt)

def test_from_python_floats_truncate_into_ints():
  check(Tensor([1.7, -2.2, 0.5], dtype=dtypes.int32), np.array([1, -2, 0], np.int32), dtypes.int32)

@pytest.mark.parametrize("dt", [d for d in ALL if d != dtypes.bfloat16], ids=str)
def test_from_numpy_keeps_dtype_and_values(dt, rng):
  x = rand_np(rng, (3, 4), dt)
  check(Tensor(x), x, dt)
  check(Tensor(x.T), x.T, dt)            # a non-contiguous array
  check(Tensor(x[::2, ::-1]), x[::2, ::-1], dt)
  check(Tensor(x[1, 2]), x[1, 2], dt)    # a NumPy scalar
  check(Tensor(np.zeros((0, 3), dt.np)), np.zeros((0, 3), dt.np), dt)

def test_from_numpy_with_dtype_converts(rng):
  x = rng.standard_normal((3, 4)) * 100
  check(Tensor(x, dtype=dtypes.float32), x.astype(np.float32), dtypes.float32)
  check(Tensor(x, dtype=dtypes.bfloat16), round_to(x, dtypes.bfloat16), dtypes.bfloat16)
  check(Tensor(x, dtype=dtypes.int16), x.astype(np.int16), dtypes.int16)
  check(Tensor(np.arange(6, dtype=np.uint16), dtype=dtypes.bfloat16), np.arange(6, dtype=np.float32), dtypes.bfloat16)

def test_from_tensor():
  t = Tensor([1, 2, 3])
  check(Tensor(t), np.array([1, 2, 3]), dtypes.int64)
  check(Tensor(t, dtype=dtypes.float16), np.array([1, 2, 3], np.float16), dtypes.float16)

# ---------------------------------------------------------------- random

def test_rand_statistics():
  Tensor.manual_seed(0)
  x = Tensor.rand(20000)
  assert x.dtype == dtypes.float32 and x.shape == (20000,)
  v = x.numpy()
  assert v.min() >= 0 and v.max() < 1
  assert abs(v.mean() - 0.5) < 0.01 and abs(v.std() - math.sqrt(1 / 12)) < 0.01
  assert len(np.unique(v)) > 19900
  assert abs(np.mean(v[:-1] * v[1:]) - 0.25) < 0.01  # neighbours are not correlated

def test_randn_statistics():
  Tensor.manual_seed(0)
  v = Tensor.randn(100, 200).numpy()
  assert v.shape == (100, 200) and v.dtype == np.float32 and np.isfinite(v).all()
  assert abs(v.mean()) < 0.03 and abs(v.std() - 1) < 0.03
  assert abs(np.mean(np.abs(v) < 1) - 0.6827) < 0.02 and abs(np.mean(np.abs(v) < 2) - 0.9545) < 0.01

@pytest.mark.parametrize("dt", [dtypes.float16, dtypes.bfloat16, dtypes.float64], ids=str)
def test_rand_of_each_float_dtype_stays_below_one(dt):
  Tensor.manual_seed(1)
  x = Tensor.rand(20000, dtype=dt)
  assert x.dtype == dt
  v = x.numpy().astype(np.float64)
  assert v.min() >= 0 and v.max() < 1 and abs(v.mean() - 0.5) < 0.02

def test_uniform_and_normal():
  Tensor.manual_seed(2)
  u = Tensor.uniform(10000, low=-2.0, high=3.0).numpy()
  assert u.min() >= -2 and u.max() < 3 and abs(u.mean() - 0.5) < 0.05 and abs(u.std() - 5 / math.sqrt(12)) < 0.05
  n = Tensor.normal(10000, mean=3.0, std=0.5).numpy()
  assert abs(n.mean() - 3) < 0.02 and abs(n.std() - 0.5) < 0.02
  assert Tensor.uniform(2, 3, dtype=dtypes.float64).dtype == dtypes.float64

def test_randint():
  Tensor.manual_seed(3)
  x = Tensor.randint(10000, low=-3, high=5)
  assert x.dtype == dtypes.int64  # PyTorch's default
  v = x.numpy()
  assert set(np.unique(v).tolist()) == set(range(-3, 5))
  assert abs(v.mean() - 0.5) < 0.1
  assert Tensor.randint(4, 5, high=3, dtype=dtypes.uint8).numpy().max() < 3

def test_manual_seed_reproduces_and_calls_differ():
  Tensor.manual_seed(42)
  a, n = Tensor.rand(100).numpy(), Tensor.randn(3, 7).numpy()
  Tensor.manual_seed(42)
  np.testing.assert_array_equal(Tensor.rand(100).numpy(), a)
  np.testing.assert_array_equal(Tensor.randn(3, 7).numpy(), n)
  assert not np.array_equal(Tensor.rand(100).numpy(), a)  # the next call goes on with fresh values
  Tensor.manual_seed(43)
  assert not np.array_equal(Tensor.rand(100).numpy(), a)

@pytest.mark.parametrize("fn", ["rand", "randn", "randint"])
def test_random_is_identical_on_cpu_and_python(fn):
  vals = []
  for dev in ("CPU", "PYTHON"):
    Tensor.manual_seed(7)
    t = getattr(Tensor, fn)(3, 5, device=dev)
    assert t.device == dev
    vals.append(t.numpy())
  np.testing.assert_array_equal(vals[0], vals[1])

def test_random_of_size_zero_and_one():
  assert Tensor.rand(0, 3).numpy().shape == (0, 3) and Tensor.randn(0).numpy().shape == (0,)
  v = Tensor.rand(1, 1).numpy()
  assert v.shape == (1, 1) and 0 <= v[0, 0] < 1

# ---------------------------------------------------------------- elementwise: unary

class U:
  """A unary op: lucidgrad call, NumPy reference (on float64 for float results), input kind, result dtype rule
  ('same', 'float' or 'bool'), tolerance ('exact' or 'math'), and the dtypes it is meaningful for."""
  def __init__(self, fn, ref, kind="any", out="same", tolk="exact", dts=NUMERIC):
    self.fn, self.ref, self.kind, self.out, self.tolk, self.dts = fn, ref, kind, out, tolk, dts
  def odt(self, dt): return {"same": dt, "float": float_of(dt), "bool": dtypes.bool}[self.out]

def on_floats(f): return lambda x: f(x) if x.dtype.kind == "f" else x  # rounding an int is the int itself
FMATH = FLOATS + [dtypes.bool, dtypes.uint8, dtypes.int32, dtypes.int64]
UNARY = {
  "neg": U(lambda t: -t, np.negative), "abs": U(lambda t: abs(t), np.abs), "sign": U(Tensor.sign, np.sign),
  "relu": U(Tensor.relu, lambda x: np.maximum(x, x.dtype.type(0))),
  "exp": U(Tensor.exp, np.exp, "small", "float", "math", FMATH), "exp2": U(Tensor.exp2, np.exp2, "small", "float", "math", FMATH),
  "log": U(Tensor.log, np.log, "pos", "float", "math", FMATH), "log2": U(Tensor.log2, np.log2, "pos", "float", "math", FMATH),
  "sqrt": U(Tensor.sqrt, np.sqrt, "pos", "float", "exact", FMATH), "rsqrt": U(Tensor.rsqrt, lambda x: 1 / np.sqrt(x), "pos", "float", "math", FMATH),
  "sin": U(Tensor.sin, np.sin, "small", "float", "math", FMATH), "cos": U(Tensor.cos, np.cos, "small", "float", "math", FMATH),
  "tan": U(Tensor.tan, np.tan, "unit", "float", "math", FMATH),
  "reciprocal": U(Tensor.reciprocal, lambda x: 1 / x, "nonzero", "float", "exact", FMATH),
  "sigmoid": U(Tensor.sigmoid, lambda x: 1 / (1 + np.exp(-x)), "small", "float", "math", FMATH),
  "tanh": U(Tensor.tanh, np.tanh, "small", "float", "math", FMATH),
  "gelu": U(Tensor.gelu, lambda x: 0.5 * x * (1 + np_erf(x / math.sqrt(2))), "small", "float", "math", FMATH),
  "gelu_tanh": U(lambda t: t.gelu(approximate="tanh"), lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
                 "small", "float", "math", FMATH),
  "silu": U(Tensor.silu, lambda x: x / (1 + np.exp(-x)), "small", "float", "math", FMATH),
  "square": U(Tensor.square, np.square, "small", "same", "exact", NUMERIC),
  "floor": U(Tensor.floor, on_floats(np.floor), "halves"), "ceil": U(Tensor.ceil, on_floats(np.ceil), "halves"),
  "trunc": U(Tensor.trunc, on_floats(np.trunc), "halves"), "round": U(Tensor.round, on_floats(np.round), "halves"),
  "logical_not": U(Tensor.logical_not, np.logical_not, "sparse", "bool", dts=ALL),
  "bitwise_not": U(lambda t: ~t, np.invert, dts=INTS + [dtypes.bool]),
}

def unary_input(rng, shape, dt, kind):
  if kind == "unit": return round_to(rng.uniform(-1.4, 1.4, shape), dt) if dt.is_float() else rand_np(rng, shape, dt, "small") % 2
  if kind == "halves" and dt.is_float(): return round_to(rng.integers(-12, 13, shape) / 2 + rng.choice([0, 0, 0.25, -0.1], shape), dt)
  if kind == "sparse": return np.where(rng.random(shape) < 0.4, 0, rand_np(rng, shape, dt, "small")).astype(np_dtype(dt))
  return rand_np(rng, shape, dt, "any" if kind == "halves" else kind)

def run_unary(name, dt, shape, layout, rng, device=None):
  u = UNARY[name]
  x = unary_input(rng, shape, dt, u.kind)
  t, xv = make(x, dt, layout, device)
  odt = u.odt(dt)
  cdt = odt if odt != dtypes.bool else dt
  rtol, atol = tols(odt, u.tolk)
  check(u.fn(t), reference(u.ref, [xv], cdt, odt), odt, rtol=rtol, atol=atol)

@pytest.mark.parametrize("name,dt", [(n, d) for n, u in UNARY.items() for d in u.dts], ids=str)
def test_unary_each_dtype(name, dt, rng): run_unary(name, dt, (4, 5), "contig", rng)

SHAPE_CASES = [((), "contig"), ((0, 3), "contig"), ((1,), "contig"), ((2, 1, 3), "contig"), ((1, 0, 1), "contig"),
               ((3, 4), "permuted"), ((3, 4), "sliced"), ((3, 4), "flipped"), ((5, 4), "padded"), ((2, 3, 4), "permuted")]
EVERY_OP_CASES = [((0, 3), "contig"), ((5, 4), "padded"), ((2, 3, 4), "permuted")]  # padding: ops with f(0) != 0 must not leak
UNARY_SAMPLE = ["neg", "exp", "sqrt", "sigmoid", "round", "logical_not", "bitwise_not", "abs"]

@pytest.mark.parametrize("name,shape,layout", [(n, sh, l) for n in UNARY for sh, l in SHAPE_CASES if n in UNARY_SAMPLE or (sh, l) in EVERY_OP_CASES],
                         ids=str)
def test_unary_shapes_and_layouts(name, shape, layout, rng):
  run_unary(name, dtypes.float32 if dtypes.float32 in UNARY[name].dts else dtypes.int32, shape, layout, rng)

@pytest.mark.parametrize("name,dt", [(n, d) for n in ["neg", "abs", "relu", "exp", "log", "sqrt", "sin", "tanh", "sigmoid", "round", "logical_not"]
                                     for d in (dtypes.float32, dtypes.int32, dtypes.bfloat16) if d in UNARY[n].dts], ids=str)
def test_unary_on_python_device(name, dt, rng):
  run_unary(name, dt, (2, 3), "contig" if dt != dtypes.float32 else "flipped", rng, device="PYTHON")

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-30, -1e30, 89.0, -104.0, 0.5, -2.5, 3.5])

@pytest.mark.parametrize("name", ["neg", "abs", "relu", "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "reciprocal", "sigmoid", "tanh",
                                  "floor", "ceil", "trunc", "round", "sin", "logical_not", "square"])
@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float16], ids=str)
def test_unary_special_values(name, dt):
  """inf, nan, signed zeros, tiny and huge values go where NumPy (and PyTorch) send them."""
  u = UNARY[name]
  x = round_to(SPECIAL, dt)
  rtol, atol = tols(dt, u.tolk)
  with np.errstate(all="ignore"): check(u.fn(Tensor(x, dtype=dt)), reference(u.ref, [x], dt, u.odt(dt)), u.odt(dt), rtol=rtol, atol=atol)

def test_sign_of_special_values():
  x = np.array([0.0, -0.0, 2.0, -3.0, np.inf, -np.inf, 1e-30], np.float32)
  check(Tensor(x).sign(), np.sign(x), dtypes.float32)

def test_stable_functions_at_extremes():
  x = np.array([-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0], np.float32)
  t = Tensor(x)
  with np.errstate(over="ignore"): sig = 1 / (1 + np.exp(-x.astype(np.float64)))
  check(t.sigmoid(), sig.astype(np.float32), f32, rtol=1e-6, atol=1e-30)
  check(t.tanh(), np.tanh(x), f32, rtol=1e-6, atol=1e-7)
  check(t.silu(), (x * sig).astype(np.float32), f32, rtol=1e-6, atol=1e-30)

# ---------------------------------------------------------------- elementwise: binary

class B:
  """A binary op: lucidgrad call, NumPy reference, input kinds of a and b, result dtype rule, tolerance, dtypes."""
  def __init__(self, fn, ref, ka="any", kb="any", out="same", tolk="exact", dts=ALL, share=False):
    self.fn, self.ref, self.ka, self.kb, self.out, self.tolk, self.dts, self.share = fn, ref, ka, kb, out, tolk, dts, share
  def odt(self, dt): return {"same": dt, "float": float_of(dt), "bool": dtypes.bool}[self.out]

CMP = dict(out="bool", share=True, ka="small", kb="small")
BINARY = {
  "add": B(lambda a, b: a + b, np.add), "sub": B(lambda a, b: a - b, np.subtract, dts=NUMERIC), "mul": B(lambda a, b: a * b, np.multiply),
  "div": B(lambda a, b: a / b, np.divide, kb="nonzero", out="float"),
  "floordiv": B(lambda a, b: a // b, np.floor_divide, kb="nonzero", dts=NUMERIC),
  "mod": B(lambda a, b: a % b, np.mod, kb="nonzero", dts=NUMERIC),
  "pow": B(lambda a, b: a ** b, np.power, ka="powbase", kb="powexp", tolk="math", dts=NUMERIC),
  "maximum": B(Tensor.maximum, np.maximum, share=True), "minimum": B(Tensor.minimum, np.minimum, share=True),
  "lt": B(lambda a, b: a < b, np.less, **CMP), "le": B(lambda a, b: a <= b, np.less_equal, **CMP),
  "gt": B(lambda a, b: a > b, np.greater, **CMP), "ge": B(lambda a, b: a >= b, np.greater_equal, **CMP),
  "eq": B(lambda a, b: a == b, np.equal, **CMP), "ne": B(lambda a, b: a != b, np.not_equal, **CMP),
  "logical_and": B(Tensor.logical_and, np.logical_and, "sparse", "sparse", "bool"),
  "logical_or": B(Tensor.logical_or, np.logical_or, "sparse", "sparse", "bool"),
  "logical_xor": B(Tensor.logical_xor, np.logical_xor, "sparse", "sparse", "bool"),
  "bitwise_and": B(lambda a, b: a & b, np.bitwise_and, dts=INTS + [dtypes.bool]),
  "bitwise_or": B(lambda a, b: a | b, np.bitwise_or, dts=INTS + [dtypes.bool]),
  "bitwise_xor": B(lambda a, b: a ^ b, np.bitwise_xor, dts=INTS + [dtypes.bool]),
  "lshift": B(lambda a, b: a << b, np.left_shift, kb="shift", dts=INTS), "rshift": B(lambda a, b: a >> b, np.right_shift, kb="shift", dts=INTS),
}

def binary_input(rng, shape, dt, kind):
  if kind == "powbase":
    if dt.is_float(): return round_to(np.where(rng.random(shape) < 0.3, rng.integers(-4, 5, shape), np.abs(rng.standard_normal(shape)) * 3 + 0.1), dt)
    return rand_np(rng, shape, dt, "small")
  if kind == "powexp":  # integer exponents for negative float bases, any real exponent for positive ones
    if dt.is_float(): return round_to(np.where(rng.random(shape) < 0.5, rng.integers(-3, 6, shape), rng.standard_normal(shape) * 2), dt)
    return rng.integers(0, 6, shape).astype(dt.np)
  if kind == "shift": return rng.integers(0, 8 * dt.itemsize, shape).astype(dt.np)
  return unary_input(rng, shape, dt, kind)

def binary_inputs(op, dt, sa, sb, rng):
  a, b = binary_input(rng, sa, dt, op.ka), binary_input(rng, sb, dt, op.kb)
  if op.ka == "powbase" and dt.is_float():  # negative bases only to integer powers
    if a.shape == b.shape: b = round_to(np.where(a < 0, np.round(b), b), dt)
    else: a = round_to(np.abs(a) + 0.5, dt)
  if op.share and a.shape == b.shape and a.size:  # equal elements, so ==, <= and max see ties
    b = b.copy(); b.reshape(-1)[::3] = a.reshape(-1)[::3]
  return a, b

def run_binary(name, dt, sa, sb, la, lb, rng, device=None):
  op = BINARY[name]
  a, b = binary_inputs(op, dt, sa, sb, rng)
  ta, av = make(a, dt, la, device)
  tb, bv = make(b, dt, lb, device, pad_with=pad_value(dt) if op.kb in ("nonzero", "powexp") else 0)
  odt = op.odt(dt)
  cdt = odt if odt != dtypes.bool else dt
  rtol, atol = tols(odt, op.tolk)
  if name == "mod": atol = tol(odt, 10)  # a - floor(a / b) * b: a few ulps of a, not of the remainder
  check(op.fn(ta, tb), reference(op.ref, [av, bv], cdt, odt), odt, rtol=rtol, atol=atol)

@pytest.mark.parametrize("name,dt", [(n, d) for n, b in BINARY.items() for d in b.dts], ids=str)
def test_binary_each_dtype(name, dt, rng): run_binary(name, dt, (3, 4), (3, 4), "contig", "contig", rng)

LAYOUT_PAIRS = [("permuted", "sliced"), ("flipped", "padded"), ("padded", "permuted")]

@pytest.mark.parametrize("la,lb", LAYOUT_PAIRS, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_layouts(name, la, lb, rng):
  run_binary(name, dtypes.float32 if dtypes.float32 in BINARY[name].dts else dtypes.int32, (5, 4), (5, 4), la, lb, rng)

BCAST = [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)), ((1,), (5,)), ((), (2, 3)), ((0, 1), (1, 3)), ((4, 1, 0), (1, 5, 1)),
         ((2, 1, 3), (2, 4, 1)), ((5, 1, 1), (1, 1))]

@pytest.mark.parametrize("sa,sb", BCAST, ids=str)
@pytest.mark.parametrize("name,dt", [("add", f32), ("sub", i32), ("mul", dtypes.float16), ("lt", dtypes.uint8), ("mod", dtypes.int8)], ids=str)
def test_binary_broadcasting(name, dt, sa, sb, rng):
  run_binary(name, dt, sa, sb, "contig", "contig", rng)
  run_binary(name, dt, sb, sa, "contig", "contig", rng)

def test_broadcast_of_non_contiguous_operands(rng):
  a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3,)).astype(np.float32)
  ta = Tensor(np.ascontiguousarray(a.T)).T   # (4, 3) through a permute
  tb = Tensor(b[::-1].copy()).flip(0)
  check(ta * tb + tb[None, :], a * b + b[None, :], f32, rtol=tol(f32))
  check(ta[:, :1] - tb, a[:, :1] - b, f32)

@pytest.mark.parametrize("name,dt", [(n, d) for n in ["add", "sub", "mul", "div", "floordiv", "mod", "pow", "lt", "eq", "maximum", "bitwise_and",
                                                      "lshift", "logical_or"]
                                     for d in (dtypes.float32, dtypes.int32, dtypes.uint8, dtypes.bfloat16) if d in BINARY[n].dts], ids=str)
def test_binary_on_python_device(name, dt, rng):
  run_binary(name, dt, (2, 3), (3,), "contig", "contig", rng, device="PYTHON")

# python scalars on either side
SCALAR_OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
              "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b, "pow": lambda a, b: a ** b, "lt": lambda a, b: a < b,
              "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "maximum": lambda a, b: a.maximum(b) if
              isinstance(a, Tensor) else b.maximum(a)}
SCALAR_NP = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "floordiv": np.floor_divide, "mod": np.mod,
             "pow": np.power, "lt": np.less, "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal, "maximum": np.maximum}

def scalar_result_dtype(dt, s):
  """PyTorch's rule: a Python scalar only decides the dtype when it is of a higher category (bool < int < float)."""
  cat = lambda d: 0 if d == dtypes.bool else 1 if d.is_int() else 2
  sdt = dtypes.bool if isinstance(s, bool) else dtypes.int64 if isinstance(s, int) else dtypes.float32
  return sdt if cat(sdt) > cat(dt) else dt

def scalar_case_defined(name, dt, s, reverse):
  cdt = scalar_result_dtype(dt, s)
  if cdt == dtypes.bool and name in ("sub", "floordiv", "mod", "pow"): return False  # PyTorch has none of these for bools
  return not (name == "pow" and cdt.is_int() and not reverse and s < 0)  # integers to negative powers

# (tensor dtype, scalar, scalar on the left): each category of scalar against each category of tensor
SCALAR_CASES = [(dtypes.int32, 3, False), (dtypes.int32, -2, True), (dtypes.int8, 2.5, False), (dtypes.uint8, -2, False),
                (dtypes.float16, 2.5, True), (dtypes.float32, -2, False), (dtypes.bool, True, False), (dtypes.bool, 3, True),
                (dtypes.bool, 2.5, False), (dtypes.int16, True, True), (dtypes.uint8, 3, True), (dtypes.bfloat16, 3, False), (dtypes.int64, -2, False)]

@pytest.mark.parametrize("name,dt,s,reverse", [(n, d, s, r) for n in SCALAR_OPS for d, s, r in SCALAR_CASES if scalar_case_defined(n, d, s, r)],
                         ids=str)
def test_binary_with_python_scalar(name, dt, s, reverse, rng):
  cdt = scalar_result_dtype(dt, s)
  x = rand_np(rng, (2, 3), dt, "nonzero" if reverse and name in ("div", "floordiv", "mod") else "pos" if name == "pow" else "small")
  if cdt.is_int() and reverse and name in ("floordiv", "mod"): x = np.where(x == 0, 1, x).astype(x.dtype)
  t = Tensor(x, dtype=dt)
  odt = dtypes.float32 if name == "div" and not cdt.is_float() else dtypes.bool if name in ("lt", "ge", "eq", "ne") else cdt
  cdt = odt if odt != dtypes.bool else cdt
  sv = np.full((2, 3), s)
  args = [sv, x] if reverse else [x, sv]
  rtol, atol = tols(odt, "math" if name == "pow" else "exact")
  if name == "mod": atol = tol(odt, 10)
  out = SCALAR_OPS[name](s, t) if reverse else SCALAR_OPS[name](t, s)
  check(out, reference(SCALAR_NP[name], args, cdt, odt), odt, rtol=rtol, atol=atol)

# Python's floor semantics for // and %, and wrapping overflow, checked against Python's own ints
SIGNED_PAIRS = [(7, 2), (-7, 2), (7, -2), (-7, -2), (0, 3), (0, -3), (-1, 5), (1, -5), (6, 3), (-6, 3), (6, -3), (-9, 4), (100, -7), (-100, 7)]

@pytest.mark.parametrize("dt", SINTS, ids=str)
def test_int_floordiv_mod_follow_python(dt):
  a, b = np.array([p[0] for p in SIGNED_PAIRS], dt.np), np.array([p[1] for p in SIGNED_PAIRS], dt.np)
  check(Tensor(a) // Tensor(b), np.array([x // y for x, y in SIGNED_PAIRS], dt.np), dt)
  check(Tensor(a) % Tensor(b), np.array([x % y for x, y in SIGNED_PAIRS], dt.np), dt)
  check(Tensor(a) // -3, np.array([x // -3 for x, _ in SIGNED_PAIRS], dt.np), dt)
  check(Tensor(a) % -3, np.array([x % -3 for x, _ in SIGNED_PAIRS], dt.np), dt)
  check(Tensor(a).div(Tensor(b), rounding_mode="trunc"), np.array([int(x / y) for x, y in SIGNED_PAIRS], dt.np), dt)
  check(Tensor(a).div(Tensor(b), rounding_mode="floor"), np.array([x // y for x, y in SIGNED_PAIRS], dt.np), dt)

@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64], ids=str)
def test_float_floordiv_mod_follow_python(dt):
  pairs = [(7.5, 2.0), (-7.5, 2.0), (7.5, -2.0), (-7.5, -2.0), (1.0, 0.1), (-1.0, 0.1), (0.3, 0.1), (5.0, 0.5), (-0.5, 0.25), (2.0, -0.3)]
  a, b = np.array([p[0] for p in pairs], dt.np), np.array([p[1] for p in pairs], dt.np)
  check(Tensor(a) // Tensor(b), np.floor_divide(a, b), dt)
  check(Tensor(a) % Tensor(b), np.mod(a, b), dt, rtol=tol(dt), atol=0)

OVERFLOW = [(dtypes.int8, "add", 127, 1), (dtypes.int8, "sub", -128, 1), (dtypes.uint8, "sub", 0, 1), (dtypes.uint8, "mul", 16, 17),
            (dtypes.int16, "mul", 300, 300), (dtypes.uint16, "add", 65535, 2), (dtypes.int32, "add", 2**31 - 1, 1),
            (dtypes.int32, "mul", 65536, 65536), (dtypes.uint32, "sub", 3, 5), (dtypes.int64, "add", 2**63 - 1, 1),
            (dtypes.int64, "mul", 2**62, 4), (dtypes.uint64, "sub", 0, 1), (dtypes.int8, "neg", -128, 0), (dtypes.int8, "abs", -128, 0),
            (dtypes.int8, "pow", 3, 5), (dtypes.int32, "pow", 3, 25), (dtypes.int64, "pow", 3, 41), (dtypes.int16, "lshift", 1, 15),
            (dtypes.uint8, "lshift", 255, 4), (dtypes.int64, "sum", 2**62, 0)]

@pytest.mark.parametrize("dt,name,x,y", OVERFLOW, ids=str)
def test_integer_overflow_wraps(dt, name, x, y):
  a, b = np.array([x, x], dt.np), np.array([y, y], dt.np)
  ta, tb = Tensor(a), Tensor(b)
  bits, signed = 8 * dt.itemsize, not dt.is_unsigned()
  wrap = lambda v: ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1)) if signed else v % (1 << bits)
  py = {"add": x + y, "sub": x - y, "mul": x * y, "neg": -x, "abs": abs(x), "pow": x ** y, "lshift": x << y, "sum": x + x}[name]
  out = {"add": lambda: ta + tb, "sub": lambda: ta - tb, "mul": lambda: ta * tb, "neg": lambda: -ta, "abs": lambda: ta.abs(), "pow": lambda: ta ** tb,
         "lshift": lambda: ta << tb, "sum": lambda: ta.sum().reshape(1).expand(2)}[name]()
  check(out, np.array([wrap(py)] * 2, dt.np), dt)

# where, clip
@pytest.mark.parametrize("dt", ALL, ids=str)
def test_where_each_dtype(dt, rng):
  c, x, y = rng.random((3, 4)) < 0.5, rand_np(rng, (3, 4), dt), rand_np(rng, (3, 4), dt)
  check(Tensor(c).where(Tensor(x, dtype=dt), Tensor(y, dtype=dt)), np.where(c, x, y), dt)

@pytest.mark.parametrize("sc,sx,sy", [((3, 1), (1, 4), (4,)), ((), (2, 3), (2, 1)), ((2, 3), (), ()), ((0, 3), (1, 3), (3,)), ((1,), (1,), (1,))], ids=str)
def test_where_broadcasts_three_ways(sc, sx, sy, rng):
  c, x, y = rng.random(sc) < 0.5, rng.standard_normal(sx).astype(np.float32), rng.standard_normal(sy).astype(np.float32)
  check(Tensor(c).where(Tensor(x), Tensor(y)), np.where(c, x, y), f32)

def test_where_condition_of_other_dtypes_and_layouts(rng):
  c = rng.integers(-2, 3, (5, 4)).astype(np.int32)
  x, y = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
  for lc, lx, ly in (("permuted", "flipped", "sliced"), ("padded", "contig", "permuted"), ("sliced", "padded", "flipped")):
    tc, cv = make(c, dtypes.int32, lc)
    tx, xv = make(x, f32, lx)
    ty, yv = make(y, f32, ly)
    check(tc.where(tx, ty), np.where(cv != 0, xv, yv), f32)
  check(Tensor(x).where(Tensor(x), 0.0), np.where(x != 0, x, 0), f32)  # a float condition is "nonzero"

@pytest.mark.parametrize("xdt,x,ydt,y,odt", [(dtypes.int32, "t", None, 2.5, dtypes.float32), (None, 1.5, dtypes.int8, "t", dtypes.float32),
                                             (dtypes.int16, "t", None, 7, dtypes.int16), (None, 1, None, 0, dtypes.int64),
                                             (None, 1.0, None, 0, dtypes.float32), (dtypes.float16, "t", dtypes.int64, "t", dtypes.float16),
                                             (dtypes.uint8, "t", dtypes.int8, "t", dtypes.int16), (None, True, None, False, dtypes.bool)], ids=str)
def test_where_promotes(xdt, x, ydt, y, odt, rng):
  c = rng.random((2, 3)) < 0.5
  xv = rand_np(rng, (2, 3), xdt, "small") if x == "t" else np.full((2, 3), x)
  yv = rand_np(rng, (2, 3), ydt, "small") if y == "t" else np.full((2, 3), y)
  tx, ty = Tensor(xv, dtype=xdt) if x == "t" else x, Tensor(yv, dtype=ydt) if y == "t" else y
  check(Tensor(c).where(tx, ty), reference(lambda a, b: np.where(c, a, b), [xv, yv], odt, odt), odt)

@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.int32, dtypes.uint8, dtypes.float16, dtypes.int64], ids=str)
@pytest.mark.parametrize("lo,hi", [(-2, 3), (None, 1), (0, None), (4, 1)], ids=str)
def test_clip_and_clamp(dt, lo, hi, rng):
  if dt.is_unsigned() and lo is not None and lo < 0: lo = 1
  x = rand_np(rng, (3, 5), dt, "small")
  ref = x
  if lo is not None: ref = np.maximum(ref, np.array(lo, ref.dtype))
  if hi is not None: ref = np.minimum(ref, np.array(hi, ref.dtype))
  check(Tensor(x).clip(lo, hi), ref, dt)
  check(Tensor(x).clamp(lo, hi), ref, dt)

def test_clip_with_tensor_bounds_and_layout(rng):
  x, lo, hi = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3,)).astype(np.float32) - 1, rng.standard_normal((4, 1)).astype(np.float32) + 1
  tx, xv = make(x, f32, "permuted")
  check(tx.clip(Tensor(lo), Tensor(hi)), np.minimum(np.maximum(xv, lo), hi), f32)

# cast and bitcast
def cast_input(rng, src, dst):
  if src == dtypes.bool: return rng.random(12) < 0.5
  if src.is_float():
    if dst.is_float(): return round_to(np.concatenate([rng.standard_normal(8) * 1000, [1e5, -7e4, 1.00390625, 2.0**-20]]), src)
    if dst == dtypes.bool: return round_to(np.array([0.0, -0.0, 0.5, -2.0, np.nan, np.inf, 1e-20, 3.0, 0.0, -1e-3, 7.0, 0.0]), src)
    lo = 0 if dst.is_unsigned() else -100
    return round_to(rng.uniform(lo, 100, 12), src)  # in range of every int dtype; fractions truncate toward zero
  return rand_np(rng, (12,), src, "any")

@pytest.mark.parametrize("src", ALL, ids=str)
@pytest.mark.parametrize("dst", ALL, ids=str)
def test_cast(src, dst, rng):
  x = cast_input(rng, src, dst)
  if dst == dtypes.bool: ref = x != 0
  elif dst.is_float(): ref = round_to(x, dst)  # to bfloat16 through float32, as PyTorch does
  elif src.is_float(): ref = np.trunc(x).astype(np.int64).astype(dst.np)
  else: ref = x.astype(dst.np)
  check(Tensor(x, dtype=src).cast(dst), ref, dst)

def test_cast_to_bfloat16_rounds_to_nearest_even():
  # 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (rounds to even: 1); 1 + 3*2^-8 rounds up to 1 + 2^-6; big values overflow to inf
  x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -(1 + 2**-8), 3.4e38, 1e-40, np.inf, np.nan, 65504.0, 0.1], np.float32)
  out = Tensor(x).cast(dtypes.bfloat16)
  check(out, [1.0, 1 + 2**-6, 1 + 2**-7, -1.0, np.inf, round_to(np.float32(1e-40), dtypes.bfloat16), np.inf, np.nan, 65536.0,
              0.10009765625], dtypes.bfloat16)
  check(out.cast(dtypes.float32), out.numpy(), dtypes.float32)

BITCAST_GROUPS = [[dtypes.int8, dtypes.uint8], [dtypes.int16, dtypes.uint16, dtypes.float16, dtypes.bfloat16],
                  [dtypes.int32, dtypes.uint32, dtypes.float32], [dtypes.int64, dtypes.uint64, dtypes.float64]]

def bits_of(x, dt):
  """Raw bits of the values `x` of dtype `dt` as unsigned ints."""
  if dt == dtypes.bfloat16: return (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)
  return np.asarray(x, dt.np).view(f"u{dt.itemsize}")

@pytest.mark.parametrize("src,dst", [(a, b) for g in BITCAST_GROUPS for a in g for b in g if a != b], ids=str)
def test_bitcast(src, dst, rng):
  x = rand_np(rng, (3, 4), src, "any")
  bits = bits_of(x, src)
  ref = (bits.astype(np.uint32) << 16).view(np.float32) if dst == dtypes.bfloat16 else bits.view(dst.np)
  check(Tensor(x, dtype=src).bitcast(dst), ref, dst)
  if src.itemsize == 2: check(make(x, src, "flipped")[0].bitcast(dst), ref, dst)

# ---------------------------------------------------------------- movement

@pytest.fixture
def x234(rng): return rng.standard_normal((2, 3, 4)).astype(np.float32)

@pytest.mark.parametrize("layout", ["contig", "permuted", "flipped"])
@pytest.mark.parametrize("shape", [(6, 4), (4, -1), (24,), (2, 3, 2, 2), (1, 24, 1), (-1,), (3, 1, 8), (2, 12)], ids=str)
def test_reshape_and_view(shape, layout, x234):
  t, x = make(x234, f32, layout)
  check(t.reshape(shape), x.reshape(shape), f32)
  check(t.view(*shape), x.reshape(shape), f32)

def test_reshape_of_size_zero_and_scalars():
  check(Tensor.zeros(0, 3).reshape(3, 0, 5), np.zeros((3, 0, 5), np.float32), f32)
  check(Tensor.zeros(2, 0).reshape(-1, 2), np.zeros((0, 2), np.float32), f32)
  check(Tensor(3.0).reshape(1, 1), np.full((1, 1), 3.0, np.float32), f32)
  check(Tensor([5]).reshape(()), np.array(5), dtypes.int64)

@pytest.mark.parametrize("order", [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0), (-1, 0, 1)], ids=str)
def test_permute(order, x234):
  check(Tensor(x234).permute(order), x234.transpose(order), f32)
  check(Tensor(x234).permute(*order), x234.transpose(order), f32)

def test_transpose_and_T(x234):
  t = Tensor(x234)
  check(t.transpose(0, 2), x234.swapaxes(0, 2), f32)
  check(t.transpose(), x234.swapaxes(-2, -1), f32)
  check(t.transpose(-1, 0), x234.swapaxes(-1, 0), f32)
  check(t.T, x234.T, f32)
  check(t[0].T, x234[0].T, f32)

@pytest.mark.parametrize("src,shape", [((3, 1), (3, 4)), ((1, 3), (2, 3)), ((3,), (2, 3)), ((1, 3), (2, -1)), ((1, 3), (0, 3)), ((1,), (2, 2, 2)),
                                       ((2, 1, 1), (2, 3, 4)), ((), (3,)), ((1, 1), (1, 1))], ids=str)
def test_expand(src, shape, rng):
  x = rng.standard_normal(src).astype(np.float32)
  ref = np.broadcast_to(x, tuple(x.shape[i - len(shape) + x.ndim] if s == -1 else s for i, s in enumerate(shape)))
  check(Tensor(x).expand(shape), ref, f32)
  check(Tensor(x).expand(*shape) + 1, ref + 1, f32)

@pytest.mark.parametrize("pad,value", [(((1, 2), (0, 1), (2, 0)), 0.0), (((0, 0), (1, 1), None), 2.5), ((1, 2), 0.0), ((1, 1, 2, 0), -1.0),
                                       ((-1, 1), 0.0), (((0, 0), (-1, -1), (1, -2)), 3.0), ((0, 0, 0, 0, 0, 0), 0.0), (((1, 0), (0, 0), (0, 0)), 1.0)],
                         ids=str)
def test_pad(pad, value, x234):
  if isinstance(pad[0], (tuple, type(None))): pairs = [p or (0, 0) for p in pad]
  else: pairs = [(0, 0)] * (3 - len(pad) // 2) + [(pad[i], pad[i + 1]) for i in range(len(pad) - 2, -1, -2)]
  ref = x234[tuple(slice(max(-b, 0), s - max(-a, 0)) for (b, a), s in zip(pairs, x234.shape))]
  ref = np.pad(ref, [(max(b, 0), max(a, 0)) for b, a in pairs], constant_values=value)
  check(Tensor(x234).pad(pad, value=value), ref, f32)

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_movement_of_each_dtype(dt, rng):
  x = rand_np(rng, (3, 4), dt)
  t = Tensor(x, dtype=dt)
  v = pad_value(dt)
  check(t.pad(((1, 0), (0, 2)), value=v), np.pad(x, ((1, 0), (0, 2)), constant_values=v), dt)
  check(t[::-2, 1:], x[::-2, 1:], dt)
  check(t.permute(1, 0).reshape(2, 6).flip(1).expand(3, 2, 6)[:, 1], np.broadcast_to(np.flip(x.T.reshape(2, 6), 1)[1], (3, 6)), dt)

@pytest.mark.parametrize("arg", [((0, 1), (1, 3), (0, 4)), ((1, 2), None, (2, 2)), (None, None, None), ((0, 2), (0, 3), (3, 4))], ids=str)
def test_shrink(arg, x234):
  check(Tensor(x234).shrink(arg), x234[tuple(slice(*a) if a else slice(None) for a in arg)], f32)

@pytest.mark.parametrize("axis", [0, -1, 1, (0, 2), (0, 1, 2), (-2,)], ids=str)
def test_flip(axis, x234):
  check(Tensor(x234).flip(axis), np.flip(x234, axis), f32)

@pytest.mark.parametrize("shape,dim", [((1, 3, 1, 2), None), ((1, 3, 1, 2), 0), ((1, 3, 1, 2), 1), ((1, 3, 1, 2), -2), ((1, 3, 1, 2), (0, 2)),
                                       ((1,), None), ((1, 1), 0), ((), None), ((2, 0, 1), None)], ids=str)
def test_squeeze(shape, dim, rng):
  x = rng.standard_normal(shape).astype(np.float32)
  ref = np.squeeze(x) if dim is None else np.squeeze(x, tuple(d for d in (dim if isinstance(dim, tuple) else (dim,)) if shape[d] == 1))
  check(Tensor(x).squeeze(dim), ref, f32)

@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -2, -4], ids=str)
def test_unsqueeze(dim, x234):
  check(Tensor(x234).unsqueeze(dim), np.expand_dims(x234, dim), f32)

@pytest.mark.parametrize("start,end", [(0, -1), (1, -1), (0, 1), (1, 2), (2, 2), (-2, -1)], ids=str)
def test_flatten(start, end, x234):
  s, e = start % 3, end % 3
  check(Tensor(x234).flatten(start, end), x234.reshape(x234.shape[:s] + (-1,) + x234.shape[e + 1:]), f32)

def test_flatten_default_and_scalar(x234):
  check(Tensor(x234).flatten(), x234.reshape(-1), f32)
  check(Tensor(2.5).flatten(), np.array([2.5], np.float32), f32)

def test_contiguous(x234):
  t = Tensor(x234).permute(2, 0, 1).contiguous()
  check(t, x234.transpose(2, 0, 1), f32)
  check(t.reshape(4, 6) * 2, x234.transpose(2, 0, 1).reshape(4, 6) * 2, f32)

IDX = [np.s_[1], np.s_[-1], np.s_[:, 1], np.s_[..., 2], np.s_[1:3], np.s_[::2], np.s_[::-1], np.s_[1::-2], np.s_[:, ::-2, 1:],
       np.s_[None], np.s_[:, None, ..., None], np.s_[..., None], np.s_[1, None, 2], np.s_[-2:, :-1, ::3], np.s_[5:10], np.s_[:, 3:1],
       np.s_[-100:100], np.s_[1, 2, 3], np.s_[..., ::-1, 0], np.s_[:, :, ::-3], np.s_[2:-4:-1, 1], np.s_[..., 1:-1], np.s_[:, -1:, -3:-1],
       np.s_[...], np.s_[None, 0, None, ::-1], np.s_[:, ::4], np.s_[-1, -1, -1], np.s_[:, 2:0:-1, 5:], np.s_[:0]]

@pytest.mark.parametrize("idx", IDX, ids=str)
def test_getitem(idx, rng):
  x = rng.standard_normal((3, 4, 5)).astype(np.float32)
  check(Tensor(x)[idx], x[idx], f32)

@pytest.mark.parametrize("idx", [np.s_[1], np.s_[::-1, 1:], np.s_[None, ..., ::2]], ids=str)
@pytest.mark.parametrize("layout", ["permuted", "sliced", "padded"])
def test_getitem_of_non_contiguous(idx, layout, rng):
  t, x = make(rng.standard_normal((5, 4)).astype(np.float32), f32, layout)
  check(t[idx], x[idx], f32)

def test_getitem_with_numpy_ints(x234):
  check(Tensor(x234)[np.int64(1), np.int32(-1)], x234[1, -1], f32)

def test_movement_chain(x234):
  t = Tensor(x234).permute(2, 0, 1)[1:, ::-1].pad(((1, 0), (0, 0), (0, 2))).flip(0).reshape(4, 2, 5)[:, None, 1, ::2].expand(4, 3, 3)
  ref = np.pad(x234.transpose(2, 0, 1)[1:, ::-1], ((1, 0), (0, 0), (0, 2)))[::-1].reshape(4, 2, 5)[:, None, 1, ::2]
  check(t, np.broadcast_to(ref, (4, 3, 3)), f32)
  check(t + 1, np.broadcast_to(ref, (4, 3, 3)) + 1, f32)

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat(dim, rng):
  a, b, c = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32), rng.integers(0, 9, (2, 3))
  check(Tensor(a).cat(Tensor(b), Tensor(c), dim=dim), np.concatenate([a, b, c], axis=dim).astype(np.float32), f32)

# ---------------------------------------------------------------- reductions

def np_argmax(x, axis, keepdims): return np.argmax(x, axis=axis, keepdims=keepdims)
def np_argmin(x, axis, keepdims): return np.argmin(x, axis=axis, keepdims=keepdims)
# max/min with axis= (tinygrad's spelling) reduce to a plain tensor, any number of axes; max(dim) is torch's (values, indices)
RED = {"sum": (Tensor.sum, np.sum), "max": (lambda t, a, k: t.max(axis=a, keepdim=k), np.max), "min": (lambda t, a, k: t.min(axis=a, keepdim=k), np.min), "mean": (Tensor.mean, np.mean),
       "prod": (Tensor.prod, np.prod), "argmax": (Tensor.argmax, np_argmax), "argmin": (Tensor.argmin, np_argmin)}

def red_dtype(name, dt):
  if name in ("argmax", "argmin"): return dtypes.int64
  if name in ("sum", "prod"): return dtypes.int64 if not dt.is_float() else dt
  if name == "mean": return float_of(dt)
  return dt

def run_reduce(name, dt, x, t, axis, keepdim, np_axis="same"):
  """Float results within n ulps for n reduced elements (absolute: n ulps of the largest input)."""
  fn, npfn = RED[name]
  odt = red_dtype(name, dt)
  np_axis = axis if np_axis == "same" else np_axis
  with np.errstate(all="ignore"):
    if odt.is_float():
      ref = round_to(npfn(x.astype(np.float64), axis=np_axis, keepdims=keepdim), odt)
      n = max(1, x.size // max(1, np.asarray(ref).size))
      rtol, atol = tol(odt, 2 + n) if name != "prod" else tol(odt, 2 * n), tol(odt, 2 * n) * max(1.0, float(np.max(np.abs(x), initial=0)))
    else:
      ref, rtol, atol = npfn(x.astype(np.int64) if name in ("sum", "prod") else x, axis=np_axis, keepdims=keepdim), 0, 0
  check(fn(t, axis, keepdim), np.asarray(ref).astype(np_dtype(odt)), odt, rtol=rtol, atol=atol)

AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]

@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "max", "min", "mean", "prod"])
def test_reduce_axes(name, axis, keepdim, rng):
  x = np.round(rng.standard_normal((2, 3, 4)).astype(np.float32), 1)
  run_reduce(name, f32, x, Tensor(x), axis, keepdim)

@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, 2])
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_argmin_axes_and_ties(name, axis, keepdim, rng):
  x = rng.integers(-3, 4, (2, 3, 4)).astype(np.float32)  # many ties: the first index wins, as in NumPy and PyTorch
  if axis is None and keepdim:
    ref = np.asarray(RED[name][1](x, None, False)).reshape(1, 1, 1)
    check(RED[name][0](Tensor(x), None, True), ref, dtypes.int64)
  else: run_reduce(name, f32, x, Tensor(x), axis, keepdim)

@pytest.mark.parametrize("name,dt", [(n, d) for n in RED for d in ALL], ids=str)
def test_reduce_each_dtype(name, dt, rng):
  x = rand_np(rng, (3, 5), dt, "small" if name in ("argmax", "argmin", "prod") else "any")
  if dt.is_float() and name == "sum": x = round_to(rng.standard_normal((3, 5)) * 100, dt)
  if dt == dtypes.bool and name in ("argmax", "argmin", "prod", "max", "min", "mean"): x = rng.random((3, 5)) < 0.5
  t = Tensor(x, dtype=dt)
  run_reduce(name, dt, x, t, 1, False)
  if name == "sum": run_reduce(name, dt, x, t, None, False)

@pytest.mark.parametrize("name", ["sum", "max", "argmax"])
@pytest.mark.parametrize("layout", ["permuted", "sliced", "flipped", "padded"])
@pytest.mark.parametrize("axis", [0, 1])
def test_reduce_of_non_contiguous(name, layout, axis, rng):
  x = np.round(rng.standard_normal((5, 4)), 1).astype(np.float32)
  t, xv = make(x, f32, layout)
  run_reduce(name, f32, xv, t, axis, False)

ZERO_ONE = [((2, 0, 3), 1), ((2, 0, 3), None), ((2, 0, 3), 0), ((0,), 0), ((2, 0, 3), (0, 2)), ((1, 4, 1), 0), ((1, 4, 1), (0, 2)),
            ((1, 4, 1), None), ((), None), ((), 0), ((), -1)]
def reduces_nothing(shape, axis):
  return shape and any(shape[a] == 0 for a in (range(len(shape)) if axis is None else axis if isinstance(axis, tuple) else (axis,)))

@pytest.mark.parametrize("name,shape,axis", [(n, s, a) for n in ("sum", "prod", "mean", "max", "min") for s, a in ZERO_ONE
                                             if not (n in ("max", "min") and reduces_nothing(s, a))], ids=str)  # those raise: see test_tensor_errors
def test_reduce_size_zero_and_one(name, shape, axis, rng):
  x = rng.standard_normal(shape).astype(np.float32)
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's "mean of empty slice": the nan is the expected value
    for keepdim in (False, True): run_reduce(name, f32, x, Tensor(x), axis, keepdim, np_axis=axis if shape else None)

def test_sum_of_ints_is_int64_and_wraps():
  x = np.full(4, 2**62, np.int64)
  check(Tensor(x).sum(), np.array(0, np.int64), dtypes.int64)
  check(Tensor(np.full((3, 100), 200, np.uint8)).sum(1), np.full(3, 20000, np.int64), dtypes.int64)
  check(Tensor([True, True, False]).sum(), np.array(2), dtypes.int64)
  check(Tensor(np.full(5, 2**31 - 1, np.int32)).sum(), np.array(5 * (2**31 - 1)), dtypes.int64)

def test_sum_with_dtype_and_half_accumulation(rng):
  x = rng.standard_normal(4000).astype(np.float16) + np.float16(1)
  check(Tensor(x).sum(), np.array(x.astype(np.float64).sum(), np.float16), dtypes.float16, rtol=tol(dtypes.float16, 2))
  check(Tensor(np.arange(300, dtype=np.int16)).sum(dtype=dtypes.int16), np.array(np.arange(300).sum(), np.int16), dtypes.int16)
  check(Tensor(np.arange(5, dtype=np.int32)).sum(dtype=dtypes.float64), np.array(10.0), dtypes.float64)

@pytest.mark.parametrize("fn", ["var", "std"])
@pytest.mark.parametrize("axis", [None, 1, (0, 1), -1], ids=str)
@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_var_std(fn, axis, correction, keepdim, rng):
  x = (rng.standard_normal((3, 5)) * 4 + 10).astype(np.float32)
  ref = getattr(np, fn)(x.astype(np.float64), axis=axis, ddof=correction, keepdims=keepdim)
  check(getattr(Tensor(x), fn)(axis, keepdim=keepdim, correction=correction), round_to(ref, f32), f32, rtol=1e-5, atol=1e-6)

def test_var_std_of_ints_layouts_and_singletons(rng):
  x = rng.integers(-5, 6, (4, 6)).astype(np.int32)
  check(Tensor(x).var(0), round_to(np.var(x.astype(np.float64), 0, ddof=1), f32), f32, rtol=1e-5)
  t, xv = make(rng.standard_normal((5, 4)).astype(np.float32), f32, "padded")
  check(t.std(1), round_to(np.std(xv.astype(np.float64), 1, ddof=1), f32), f32, rtol=1e-5, atol=1e-6)
  with np.errstate(all="ignore"): check(Tensor(x[:1]).var(0), np.full(6, np.nan, np.float32), f32)  # one sample, correction 1: nan

def np_log_softmax(x, axis):
  m = x - np.max(x, axis=axis, keepdims=True)
  return m - np.log(np.sum(np.exp(m), axis=axis, keepdims=True))

@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dt", FLOATS + [dtypes.int32], ids=str)
@pytest.mark.parametrize("scale", [1, 100])
def test_softmax_log_softmax(axis, dt, scale, rng):
  x = round_to(rng.standard_normal((3, 5)) * scale, dt) if dt.is_float() else rng.integers(-5, 6, (3, 5)).astype(np.int32)
  odt = float_of(dt)
  ls = np_log_softmax(round_to(x, odt).astype(np.float64), axis)
  rtol, atol = MATH_TOL[odt]
  check(Tensor(x, dtype=dt).softmax(axis), round_to(np.exp(ls), odt), odt, rtol=rtol, atol=atol)
  check(Tensor(x, dtype=dt).log_softmax(axis), round_to(ls, odt), odt, rtol=rtol, atol=atol)

def test_softmax_with_minus_inf_and_layouts(rng):
  x = rng.standard_normal((4, 5)).astype(np.float32)
  x[0, 1] = x[2, 0] = -np.inf
  check(Tensor(x).softmax(), np.exp(np_log_softmax(x.astype(np.float64), -1)).astype(np.float32), f32, rtol=1e-6, atol=1e-7)
  t, xv = make(rng.standard_normal((5, 4)).astype(np.float32), f32, "sliced")
  check(t.softmax(0), np.exp(np_log_softmax(xv.astype(np.float64), 0)).astype(np.float32), f32, rtol=1e-6, atol=1e-7)

def np_logsumexp(x, axis, keepdims):
  m = np.max(x, axis=axis, keepdims=True)
  m = np.where(np.isfinite(m), m, 0)
  out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
  return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())

@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp(axis, keepdim, rng):
  x = (rng.standard_normal((3, 4)) * 50).astype(np.float32)
  x[1] = -np.inf  # a row of -inf sums to -inf, not nan
  with np.errstate(all="ignore"): ref = np_logsumexp(x.astype(np.float64), axis, keepdim)
  check(Tensor(x).logsumexp(axis, keepdim=keepdim), round_to(ref, f32), f32, rtol=1e-6, atol=1e-5)

def test_logsumexp_of_large_values():
  x = np.array([[1000.0, 1000.0], [-1000.0, -1000.5]], np.float32)
  check(Tensor(x).logsumexp(1), round_to(np_logsumexp(x.astype(np.float64), 1, False), f32), f32, rtol=1e-6)

# ---------------------------------------------------------------- matmul

MM = [((3, 4), (4, 5)), ((4,), (4,)), ((4,), (4, 3)), ((3, 4), (4,)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (2, 4, 3)),
      ((2, 3, 4), (4,)), ((3, 0), (0, 4)), ((0, 3), (3, 2)), ((1, 1), (1, 1)), ((5, 1), (1, 6)), ((1, 4), (2, 4, 1))]

@pytest.mark.parametrize("sa,sb", MM, ids=str)
def test_matmul_shapes(sa, sb, rng):
  a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
  ref = round_to(np.matmul(a.astype(np.float64), b.astype(np.float64)), f32)
  check(Tensor(a) @ Tensor(b), ref, f32, rtol=1e-5, atol=1e-5)
  check(Tensor(a).matmul(Tensor(b)), ref, f32, rtol=1e-5, atol=1e-5)
  if len(sa) == len(sb) == 1: check(Tensor(a).dot(Tensor(b)), ref, f32, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize("dt", [d for d in ALL if d != dtypes.bool], ids=str)
def test_matmul_each_dtype(dt, rng):
  a, b = rand_np(rng, (3, 6), dt, "small"), rand_np(rng, (6, 2), dt, "small")
  if dt.is_float():
    ref, tl = round_to(a.astype(np.float64) @ b.astype(np.float64), dt), tol(dt, 8) * 10
  else: ref, tl = np.matmul(a, b), 0  # integer matmul wraps in the input dtype
  check(Tensor(a, dtype=dt) @ Tensor(b, dtype=dt), ref, dt, rtol=tl, atol=tl)

def test_matmul_integer_overflow_wraps():
  a = np.full((2, 3), 100, np.int8)
  check(Tensor(a) @ Tensor(a.T.copy()), np.matmul(a, a.T), dtypes.int8)

@pytest.mark.parametrize("la,lb", LAYOUT_PAIRS, ids=str)
def test_matmul_non_contiguous(la, lb, rng):
  ta, a = make(rng.standard_normal((5, 4)).astype(np.float32), f32, la)
  tb, b = make(rng.standard_normal((4, 3)).astype(np.float32), f32, lb)
  check(ta @ tb, round_to(a.astype(np.float64) @ b, f32), f32, rtol=1e-5, atol=1e-5)
  check(ta.T.T @ tb[:, ::-1], round_to(a.astype(np.float64) @ b[:, ::-1], f32), f32, rtol=1e-5, atol=1e-5)

def test_matmul_with_a_list_and_on_python(rng):
  a = rng.standard_normal((2, 3)).astype(np.float32)
  check(Tensor(a) @ [1.0, 2.0, 3.0], round_to(a.astype(np.float64) @ [1.0, 2.0, 3.0], f32), f32, rtol=1e-6)
  b = rng.standard_normal((3, 2)).astype(np.float32)
  check(Tensor(a, device="PYTHON") @ Tensor(b, device="PYTHON"), round_to(a.astype(np.float64) @ b, f32), f32, rtol=1e-5, atol=1e-6)

# ---------------------------------------------------------------- reductions and movement on the PYTHON device

PYTHON_CASES = {
  "sum_axis": (lambda t: t.sum(1), lambda x: x.sum(1)), "max_all": (lambda t: t.max(), lambda x: x.max()),
  "min_keepdim": (lambda t: t.amin(0, keepdim=True), lambda x: x.min(0, keepdims=True)), "argmax": (lambda t: t.argmax(1), lambda x: np.argmax(x, 1)),
  "mean": (lambda t: t.mean(), lambda x: x.mean()), "softmax": (lambda t: t.softmax(), lambda x: np.exp(np_log_softmax(x, -1))),
  "getitem": (lambda t: t[::-1, None, 1:], lambda x: x[::-1, None, 1:]), "pad_flip": (lambda t: t.pad(((1, 0), (2, 1))).flip(1), lambda x: np.pad(x, ((1, 0), (2, 1)))[:, ::-1]),
  "permute_reshape": (lambda t: t.T.reshape(2, 3), lambda x: x.T.reshape(2, 3)), "where": (lambda t: (t > 0).where(t, -t), lambda x: np.abs(x)),
  "var": (lambda t: t.var(0), lambda x: np.var(x, 0, ddof=1)),
}

@pytest.mark.parametrize("name", PYTHON_CASES)
def test_reduce_and_movement_on_python_device(name, rng):
  fn, npfn = PYTHON_CASES[name]
  x = rng.standard_normal((2, 3)).astype(np.float32)
  ref = np.asarray(npfn(x.astype(np.float64)))
  cpu, py = fn(Tensor(x)), fn(Tensor(x, device="PYTHON"))
  for t in (cpu, py):
    check(t, round_to(ref, t.dtype) if t.dtype.is_float() else ref.astype(np_dtype(t.dtype)), t.dtype, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(py.numpy(), cpu.numpy(), rtol=1e-6, atol=1e-7)

# ---------------------------------------------------------------- running and reading values

def test_realize_returns_self_and_keeps_values(rng):
  x = rng.standard_normal((3, 4)).astype(np.float32)
  t = (Tensor(x) * 2).permute(1, 0)
  assert t.realize() is t and t._value_view() is not None   # a view: its value is cached, it owns nothing
  check(t, (x * 2).T, f32)
  check(t + 1, (x * 2).T + 1, f32)
  a, b = Tensor(x) + 1, Tensor(x) - 1
  a.realize(b)
  assert a.uop.is_realized and b.uop.is_realized and a._storage is not b._storage
  check(a * b, (x + 1) * (x - 1), f32, rtol=tol(f32, 2))

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_numpy_item_tolist_of_each_dtype(dt, rng):
  x = rand_np(rng, (2, 3), dt, "small")
  t = Tensor(x, dtype=dt)
  out = t.numpy()
  assert out.dtype == np_dtype(dt) and out.shape == (2, 3) and isinstance(out, np.ndarray)
  np.testing.assert_array_equal(out, x)
  assert t.tolist() == x.tolist()
  item = t[1, 2].item()
  assert item == x[1, 2] and type(item) is (bool if dt == dtypes.bool else int if dt.is_int() else float)
  assert t[1, 2].tolist() == x[1, 2].item()
  assert Tensor(np.zeros((0, 2), np_dtype(dt)), dtype=dt).tolist() == []

# the tests run on the default device ($DEV); these move to another one and back
HOME = Device.DEFAULT
AWAY = "PYTHON" if HOME != "PYTHON" else "CPU"

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_to_device_and_back(dt, rng):
  x = rand_np(rng, (2, 3), dt)
  t = Tensor(x, dtype=dt)
  assert t.to(HOME) is t and t.to(HOME.lower()).device == HOME
  p = t.to(AWAY)
  assert p.device == AWAY
  check(p, x, dt)
  check(p[:, ::-1].to(HOME), x[:, ::-1], dt)
  check((p.to(HOME) == t), np.ones((2, 3), bool), dtypes.bool)

def test_compute_after_moving(rng):
  x = rng.standard_normal((3, 4)).astype(np.float32)
  p = (Tensor(x) * 2).to(AWAY).exp().sum(0)
  assert p.device == AWAY
  check(p, round_to(np.exp(x.astype(np.float64) * 2).sum(0), f32), f32, rtol=1e-5)
  check(p.to(HOME) + Tensor.ones(4), round_to(np.exp(x.astype(np.float64) * 2).sum(0) + 1, f32), f32, rtol=1e-5)
