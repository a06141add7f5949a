"""DType values, the dtype table, PyTorch's promotion rules, and the NumPy / C names of each dtype.
Knows nothing else of lucidgrad."""
from __future__ import annotations
from dataclasses import dataclass
import functools, math, struct
import numpy as np

_interned: dict[tuple, DType] = {}

@dataclass(frozen=True, eq=False)
class DType:
  """A scalar type (count=1), a short vector of one (count>1), or a pointer to either (ptr=True). Interned: equal DTypes
  are one object, so they hash and compare by identity, at C speed (every UOp built, looked up or freed hashes its
  dtype, and so does every schedule-cache key), and the dtypes derived from one are made once."""
  name: str
  itemsize: int                  # bytes of one scalar
  kind: str                      # 'b' bool, 'i' signed, 'u' unsigned, 'f' float, 'v' void
  count: int = 1
  ptr: bool = False
  def __new__(cls, name: str, itemsize: int, kind: str, count: int = 1, ptr: bool = False):
    if (d := _interned.get(key := (name, itemsize, kind, count, ptr))) is None: d = _interned[key] = super().__new__(cls)
    return d
  # the dataclass __init__ runs again on an interned one (setting the values it has): its derived dtypes stay
  def __post_init__(self): self.__dict__.setdefault("_derived", {})
  # pickled by value, unpickled to the interned one
  def __reduce__(self): return DType, (self.name, self.itemsize, self.kind, self.count, self.ptr)
  def __repr__(self):  # made once: every UOp's key (uop/ops.py) includes it
    if (r := self._derived.get("repr")) is None:
      r = self._derived["repr"] = f"dtypes.{self.name}" + (f".vec({self.count})" if self.count > 1 else "") + (".ptr()" if self.ptr else "")
    return r
  def _derive(self, what, count: int, ptr: bool) -> DType:
    if (d := self._derived.get(what)) is None: d = self._derived[what] = DType(self.name, self.itemsize, self.kind, count, ptr)
    return d
  def vec(self, n: int) -> DType: return self if n == 1 else self._derive(n, n, self.ptr)
  def scalar(self) -> DType: return self if self.count == 1 and not self.ptr else self._derive("scalar", 1, False)
  def as_ptr(self) -> DType: return self if self.ptr else self._derive("ptr", self.count, True)
  def base(self) -> DType: return self if not self.ptr else self._derive("base", self.count, False)
  @property
  def nbytes(self) -> int: return self.itemsize * self.count
  @property
  def np(self): return None if self.kind == "v" else _NP[self.name]
  def is_float(self) -> bool: return self.kind == "f"
  def is_int(self) -> bool: return self.kind in "iu"
  def is_unsigned(self) -> bool: return self.kind == "u"
  def is_bool(self) -> bool: return self.kind == "b"

class dtypes:
  bool = DType("bool", 1, "b")
  int8, int16, int32, int64 = DType("int8", 1, "i"), DType("int16", 2, "i"), DType("int32", 4, "i"), DType("int64", 8, "i")
  uint8, uint16, uint32, uint64 = DType("uint8", 1, "u"), DType("uint16", 2, "u"), DType("uint32", 4, "u"), DType("uint64", 8, "u")
  float16, bfloat16, float32, float64 = DType("float16", 2, "f"), DType("bfloat16", 2, "f"), DType("float32", 4, "f"), DType("float64", 8, "f")
  void = DType("void", 0, "v")
  # aliases PyTorch users expect
  half, float, double, int, long, short, char, uchar = float16, float32, float64, int32, int64, int16, int8, uint8
  index = int32                  # the dtype of index arithmetic inside kernels; int64 where one can leave int32 (codegen/lower.py)
  default_float: DType = float32
  default_int: DType = int64

  @staticmethod
  def all() -> list[DType]: return [dtypes.bool, *INTS, *FLOATS]
  @staticmethod
  def from_name(name: str) -> DType:
    d = getattr(dtypes, name, None)
    if not isinstance(d, DType) or d == dtypes.void: raise TypeError(f"unknown dtype {name!r}; known: {[x.name for x in dtypes.all()]}")
    return d
  @staticmethod
  def from_np(npdt) -> DType:
    npdt = np.dtype(npdt)
    if npdt.name not in _FROM_NP: raise TypeError(f"NumPy dtype {npdt} has no lucidgrad dtype; known: {[x.name for x in dtypes.all()]}")
    return _FROM_NP[npdt.name]
  @staticmethod
  def from_py(x) -> DType:
    """The dtype PyTorch gives a Python value (or nested list of them)."""
    if isinstance(x, (list, tuple)):
      return functools.reduce(lambda a, b: a if a == b else promote_types(a, b), [dtypes.from_py(v) for v in x], dtypes.bool) \
        if len(x) else dtypes.default_float
    if isinstance(x, bool): return dtypes.bool
    if isinstance(x, int): return dtypes.default_int
    if isinstance(x, float): return dtypes.default_float
    if isinstance(x, np.generic): return dtypes.from_np(x.dtype)
    raise TypeError(f"cannot make a tensor from a {type(x).__name__}: expected a number, a nested list of numbers, or a NumPy array")

INTS = [dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64, dtypes.uint8, dtypes.uint16, dtypes.uint32, dtypes.uint64]
FLOATS = [dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64]
try:
  import ml_dtypes  # optional: gives NumPy a real bfloat16
  _BF16_NP = ml_dtypes.bfloat16
except ImportError:
  _BF16_NP = np.uint16  # bfloat16 is held as its raw bits when NumPy cannot name it
_NP = {"bool": np.bool_, "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16,
       "uint32": np.uint32, "uint64": np.uint64, "float16": np.float16, "bfloat16": _BF16_NP, "float32": np.float32, "float64": np.float64}
_FROM_NP = {np.dtype(v).name: getattr(dtypes, k) for k, v in _NP.items() if k != "bfloat16"}

# ---- promotion, as PyTorch does it ----
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}

def promote_types(a: DType, b: DType) -> DType:
  """torch.promote_types: the smallest dtype both values fit. uint64 with a signed int has none and raises."""
  a, b = a.scalar(), b.scalar()
  if a == b: return a
  ca, cb = _CATEGORY[a.kind], _CATEGORY[b.kind]
  if ca != cb: return a if ca > cb else b
  if a.kind == "f":
    if {a.name, b.name} == {"float16", "bfloat16"}: return dtypes.float32
    return a if a.itemsize > b.itemsize else b
  if a.kind == b.kind: return a if a.itemsize > b.itemsize else b
  u, s = (a, b) if a.kind == "u" else (b, a)
  if s.itemsize > u.itemsize: return s
  if u.itemsize == 8: raise TypeError(f"no integer dtype holds both {u!r} and {s!r}; cast one of them first")
  return {1: dtypes.int16, 2: dtypes.int32, 4: dtypes.int64}[u.itemsize]

def result_type(a: DType, a_0d: bool, b: DType, b_0d: bool) -> DType:
  """The dtype of `a op b` for tensors of dtypes a and b, as torch.result_type: beside a tensor with dimensions, a 0-d
  one counts like a Python number of its kind -- it decides only when its category (bool < int < float) is higher, and
  then with its own dtype (float32 (3,) * float64 () is float32, int16 (3,) * float64 () float64). Two 0-d or two
  dimensioned tensors promote as promote_types."""
  if a_0d == b_0d: return promote_types(a, b)
  dim, zero = (b, a) if a_0d else (a, b)
  return promote_types(dim, zero) if _CATEGORY[zero.kind] > _CATEGORY[dim.kind] else dim.scalar()

def result_type_scalar(t: DType, x) -> DType:
  """The dtype of `tensor(t) op python_scalar(x)`: the scalar only wins when it is of a higher category."""
  sx = 0 if isinstance(x, bool) else 1 if isinstance(x, int) else 2
  if sx <= _CATEGORY[t.kind]: return t
  return dtypes.default_int if sx == 1 else dtypes.default_float

def signed_int_like(dt: DType) -> DType:
  """The signed int of dt's lane width (and lane count): what a select of dt's bits is done in."""
  return {1: dtypes.int8, 2: dtypes.int16, 4: dtypes.int32, 8: dtypes.int64}[dt.itemsize].vec(dt.count)

def least_upper_float(dt: DType) -> DType: return dt if dt.is_float() else dtypes.default_float

# ---- value helpers ----
def min_max(dt: DType) -> tuple:
  if dt.is_bool(): return False, True
  if dt.is_int(): return (0, 2**(8*dt.itemsize)-1) if dt.is_unsigned() else (-2**(8*dt.itemsize-1), 2**(8*dt.itemsize-1)-1)
  return -math.inf, math.inf

def as_const(x, dt: DType):
  """A Python value converted the way a cast to `dt` converts it (ints wrap, floats round to dt's precision)."""
  if dt.is_bool(): return bool(x)
  if dt.is_int():
    if isinstance(x, float):
      if not math.isfinite(x): return 0
      x = int(x)
    bits = 8 * dt.itemsize
    x = int(x) & ((1 << bits) - 1)
    return x - (1 << bits) if not dt.is_unsigned() and x >= 1 << (bits - 1) else x
  if dt.is_float():
    x = float(x)
    with np.errstate(over="ignore"):
      if dt == dtypes.float32: return float(np.float32(x))
      if dt == dtypes.float16: return float(np.float16(x))
    if dt == dtypes.bfloat16: return bf16_to_f32(f32_to_bf16(x))
    return x
  raise TypeError(f"no constant of dtype {dt}")

def f32_to_bf16(x: float) -> int:
  """The bfloat16 bits of x, rounded to nearest even (NaN stays NaN)."""
  return int(f32_to_bf16_array(np.asarray(x))[()])

def f32_to_bf16_array(a: np.ndarray) -> np.ndarray:
  """The bfloat16 bits (uint16, a's shape) of a's values as float32 (other floats are rounded to float32 first, as
  torch does), each rounded to nearest even: adding 0x7fff plus the lowest kept bit carries exactly the values above
  the halfway point, and the halfway ones whose kept part is odd, into the kept bits (a finite value may round to
  inf, as it should); every NaN becomes the quiet NaN 0x7fc0 (the carry could turn one into inf)."""
  with np.errstate(over="ignore"): b = np.asarray(a, dtype=np.float32).view(np.uint32)
  out = ((b + 0x7fff + ((b >> 16) & 1)) >> 16).astype(np.uint16)  # uint32 wraps only for NaNs, replaced below
  return np.where(((b & 0x7f800000) == 0x7f800000) & ((b & 0x7fffff) != 0), np.uint16(0x7fc0), out)

def bf16_to_f32(bits: int) -> float: return struct.unpack("f", struct.pack("I", (bits & 0xffff) << 16))[0]

# ---- fused multiply-add: a*b + c rounded once (Ops.MULACC's meaning; Python 3.11 and NumPy have no fma) ----
def fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
  """a*b + c rounded once to the nearest value of the inputs' dtype (float32 or float64; ties to even), lane by lane,
  with IEEE 754's fusedMultiplyAdd results for NaN, infinities and signed zeros. Exact, so it is the reference the
  compiled fma instructions are held to (docs/design/0013-fused-multiply-add.md)."""
  a, b, c = np.broadcast_arrays(*(np.asarray(x) for x in (a, b, c)))
  with np.errstate(all="ignore"):
    if a.dtype == np.float32:
      # the product of two float32s is exact in float64, and their sum with c is rounded to odd there (it keeps a
      # sticky bit), so rounding that to float32 is rounding the exact value once: 53 bits >= 24 + 2
      s, err = _two_sum(a.astype(np.float64) * b.astype(np.float64), c.astype(np.float64))
      return _round_to_odd(s, err).astype(np.float32)
    if a.dtype == np.float64: return _fma64(a, b, c)
  raise TypeError(f"fma of {a.dtype}: only float32 and float64 have one")

def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(s, err): s = a + b rounded, err = a + b - s exactly (Knuth's TwoSum; the error of a sum is always a double)."""
  s = a + b
  bb = s - a
  return s, (a - (s - bb)) + (b - bb)

def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(p, err): p = a * b rounded, err = a * b - p exactly (Dekker's product over Veltkamp's halves; exact while the
  halves neither overflow nor underflow, which _fma64 checks)."""
  def halves(x):
    t = 134217729.0 * x  # 2**27 + 1
    hi = t - (t - x)
    return hi, x - hi
  (ah, al), (bh, bl), p = halves(a), halves(b), a * b
  return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl

def _round_to_odd(s: np.ndarray, err: np.ndarray) -> np.ndarray:
  """x = s + err (s = x rounded to nearest) rounded to odd: x itself where it is a double, else whichever neighbour
  has a last bit of 1. Rounding that again to a format at least 2 bits narrower is rounding x once."""
  move = (err != 0) & np.isfinite(s) & ((s.view(np.uint64) & 1) == 0)
  return np.where(move, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)

def _fma64(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
  """Boldo and Melquiond's emulated fma (rounding to odd, 2008): a*b = ph + pl and c + ph = sh + sl exactly, then
  RN(sh + RO(sl + pl)). Proven without underflow or overflow, so it runs where a and b are 0 or within 2**+-450 and
  |c| < 2**1000; the rest (and NaN/inf) go through exact rationals, one lane at a time."""
  def moderate(x): return (x == 0) | ((np.abs(x) >= 2.0**-450) & (np.abs(x) <= 2.0**450))
  fast = moderate(a) & moderate(b) & (np.abs(c) < 2.0**1000)
  fa, fb, fc = (np.where(fast, x, 0.0) for x in (a, b, c))
  ph, pl = _two_product(fa, fb)
  sh, sl = _two_sum(fc, ph)
  v = _round_to_odd(*_two_sum(sl, pl))
  out = np.where(v == 0, sh, sh + v)  # sh + 0.0 would turn -0.0 (= -0.0 * x + -0.0) into +0.0
  if not fast.all():
    out = np.array(out)  # writable, 0-d included
    for i in zip(*np.nonzero(~fast)) if out.ndim else [()]:
      if not fast[i]: out[i] = _fma_rational(float(a[i]), float(b[i]), float(c[i]))
  return out

def _fma_rational(a: float, b: float, c: float) -> float:
  """fma on Python floats through exact rationals: int / int in Python is correctly rounded."""
  from fractions import Fraction
  if math.isnan(a) or math.isnan(b) or math.isnan(c): return math.nan
  sign = math.copysign(1.0, a) * math.copysign(1.0, b)  # the product's sign, zeros included
  if math.isinf(a) or math.isinf(b):
    if a == 0 or b == 0: return math.nan  # inf * 0
    return math.nan if math.isinf(c) and math.copysign(1.0, c) != sign else sign * math.inf
  if math.isinf(c): return c
  exact = Fraction(a) * Fraction(b) + Fraction(c)
  if exact == 0: return -0.0 if (a == 0 or b == 0) and c == 0 and sign < 0 and math.copysign(1.0, c) < 0 else 0.0
  try: return float(exact)
  except OverflowError: return math.inf if exact > 0 else -math.inf
