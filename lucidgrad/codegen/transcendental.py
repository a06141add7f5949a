"""EXP2, LOG2, SIN and COS as plain ALU ops (polynomials, compares, WHEREs, bit casts and integer bit twiddling) on the
same dtype, so a kernel using them vectorises and every renderer and the PYTHON reference run one algorithm
(docs/design/0015). float16/bfloat16 compute in float32 and round once."""
from __future__ import annotations
import math, struct
from fractions import Fraction
from lucidgrad.dtype import DType, dtypes
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.uop.pattern import UPat, PatternMatcher

# per float format: its same-width int, the mantissa bits, the exponent bias, and what rounding-by-adding needs
_FMT = {dtypes.float32: (dtypes.int32, 23, 127), dtypes.float64: (dtypes.int64, 52, 1023)}

def _bits(v: float, dt: DType) -> int:
  return struct.unpack("<i", struct.pack("<f", v))[0] if dt == dtypes.float32 else struct.unpack("<q", struct.pack("<d", v))[0]

def _rounded(v, dt: DType) -> float:
  """v as the float dt holds (constants are rounded here, once, so every renderer and the reference agree)."""
  return struct.unpack("<f", struct.pack("<f", float(v)))[0] if dt == dtypes.float32 else float(v)

def _c(x: UOp, v) -> UOp: return UOp.const(x.dtype, _rounded(v, x.dtype) if x.dtype.is_float() else v)

def _horner(x: UOp, coeffs: list) -> UOp:
  """coeffs[0] + x*(coeffs[1] + x*(...)), highest power innermost."""
  out = _c(x, coeffs[-1])
  for c in reversed(coeffs[:-1]): out = out * x + _c(x, c)
  return out

def _round_to_int(x: UOp) -> tuple[UOp, UOp]:
  """(round(x) as a float, round(x) as the same-width int) for |x| < 2^(mantissa bits - 1): adding 1.5 * 2^mbits leaves
  the integer part in the sum's low mantissa bits (rounded to nearest even), so no float -> int cast is needed."""
  idt, mbits, _ = _FMT[x.dtype]
  magic = 1.5 * 2.0 ** mbits
  t = x + _c(x, magic)
  return t - _c(x, magic), t.bitcast(idt) - UOp.const(idt, _bits(magic, x.dtype))

def _int_to_float(k: UOp, dt: DType) -> UOp:
  """An int k with |k| < 2^(mantissa bits - 1) as a float of dt: the reverse of _round_to_int."""
  magic = 1.5 * 2.0 ** _FMT[dt][1]
  return (k + UOp.const(k.dtype, _bits(magic, dt))).bitcast(dt) - UOp.const(dt, magic)

def _pow2(k: UOp, dt: DType) -> UOp:
  """2^k for k in the normal exponent range: k + bias shifted into the exponent field."""
  idt, mbits, bias = _FMT[dt]
  return (k + UOp.const(idt, bias)).alu(Ops.SHL, UOp.const(idt, mbits)).bitcast(dt)

def exp2(x: UOp) -> UOp:
  """2^x = 2^r * 2^k, k = round(x), r in [-1/2, 1/2]; 2^k in two normal factors, so overflow gives inf and a subnormal
  result is rounded once. x is clamped first so k fits those factors (NaN fails both compares and stays NaN)."""
  dt = x.dtype
  lo, hi, degree = (-151.0, 129.0, 7) if dt == dtypes.float32 else (-1080.0, 1030.0, 13)
  x = (x < _c(x, lo)).where(_c(x, lo), x)
  x = (_c(x, hi) < x).where(_c(x, hi), x)
  kf, k = _round_to_int(x)
  r = x - kf  # exact
  p = _horner(r, [math.log(2) ** n / math.factorial(n) for n in range(degree + 1)])  # Taylor series of 2^r = e^(r ln2)
  half = k.alu(Ops.SHR, UOp.const(k.dtype, 1))
  return p * _pow2(half, dt) * _pow2(k - half, dt)

def log2(x: UOp) -> UOp:
  """x = 2^e * m with m in [2/3, 4/3); log2 m = 2/ln2 * atanh(s), s = (m-1)/(m+1), |s| <= 1/5. Subnormal x is scaled
  into the normal range first; x < 0, +-0, +inf and NaN are exact cases."""
  dt = x.dtype
  idt, mbits, _ = _FMT[dt]
  terms, scale = (6, 24) if dt == dtypes.float32 else (13, 54)
  tiny = x < _c(x, 2.0 ** (1 - _FMT[dt][2]))  # below the smallest normal (negatives too: they become NaN below)
  xs = tiny.where(x * _c(x, 2.0 ** scale), x)
  b = xs.bitcast(idt)
  e = (b - UOp.const(idt, _bits(2 / 3, dt))).alu(Ops.SHR, UOp.const(idt, mbits))  # the exponent of x / (2/3)
  m = (b - e.alu(Ops.SHL, UOp.const(idt, mbits))).bitcast(dt)
  s = (m - _c(m, 1.0)).alu(Ops.FDIV, m + _c(m, 1.0))
  poly = _horner(s * s, [2 / ((2 * j + 1) * math.log(2)) for j in range(terms)])
  out = (_int_to_float(e, dt) - tiny.where(_c(x, scale), _c(x, 0.0))) + s * poly
  out = (x < _c(x, math.inf)).where(out, x)  # +inf and NaN are themselves
  out = x.eq(_c(x, 0.0)).where(_c(x, -math.inf), out)
  return (x < _c(x, 0.0)).where(_c(x, math.nan), out)

# pi/2 to 60 digits (a fact), split for Cody-Waite: three 30-bit pieces, so n * piece is exact for |n| < 2^23, and the rest
_HALF_PI = Fraction("1.570796326794896619231321691639751442098584699687552910487472")
def _split(v: Fraction, bits: int) -> float:
  e = math.floor(math.log2(abs(v)))  # pieces after the first may be negative
  return float(Fraction(round(v * 2 ** (bits - 1 - e)), 2 ** (bits - 1 - e)))
_P1 = _split(_HALF_PI, 30); _P2 = _split(_HALF_PI - Fraction(_P1), 30); _P3 = _split(_HALF_PI - Fraction(_P1) - Fraction(_P2), 30)
_P4 = float(_HALF_PI - Fraction(_P1) - Fraction(_P2) - Fraction(_P3))

def sin_cos(x: UOp, cos: bool) -> UOp:
  """sin or cos in float64 (a float32 x is cast exactly and the result rounded once): n = round(x * 2/pi), r = x - n*pi/2
  (Cody-Waite, good for |x| < 2^23 * pi/2), the sine or cosine series on |r| <= pi/4 chosen by n mod 4. Beyond that
  range r is clamped, so the result stays in [-1, 1] though it is no longer accurate."""
  dt, x = x.dtype, x.cast(dtypes.float64)
  kf, k = _round_to_int(x * _c(x, 2 / math.pi))
  r = x - kf * _c(x, _P1) - kf * _c(x, _P2) - kf * _c(x, _P3) - kf * _c(x, _P4)
  r = (_c(r, 0.8) < r).where(_c(r, 0.0), r)
  r = (r < _c(r, -0.8)).where(_c(r, 0.0), r)
  r2 = r * r
  sin_r = r * _horner(r2, [(-1) ** j / math.factorial(2 * j + 1) for j in range(11)])  # r * (1 + ...): sin(-0) = -0
  cos_r = _horner(r2, [(-1) ** j / math.factorial(2 * j) for j in range(11)])
  q = k + UOp.const(dtypes.int64, 1) if cos else k  # cos x = sin(x + pi/2)
  zero = UOp.const(dtypes.int64, 0)
  v = (q & UOp.const(dtypes.int64, 1)).ne(zero).where(cos_r, sin_r)
  return (q & UOp.const(dtypes.int64, 2)).ne(zero).where(v.alu(Ops.NEG), v).cast(dt)

_RULES = {Ops.EXP2: exp2, Ops.LOG2: log2, Ops.SIN: lambda x: sin_cos(x, False), Ops.COS: lambda x: sin_cos(x, True)}

def _rewrite(u: UOp) -> UOp | None:
  if u.dtype.count != 1 or not u.dtype.is_float(): return None
  x = u.src[0]
  if u.dtype in _FMT: return _RULES[u.op](x)
  return _RULES[u.op](x.cast(dtypes.float32)).cast(u.dtype)  # float16, bfloat16

pm_transcendental = PatternMatcher([(UPat((Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.COS), name="u"), _rewrite)])
