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
  """coeffs[0] + x*(coeffs[1] + x*(...)), highest power innermost, each step one fused multiply-add (MULACC: one rounding
  on every renderer and the reference; docs/design/0013, addendum)."""
  out = _c(x, coeffs[-1])
  for c in reversed(coeffs[:-1]): out = UOp(Ops.MULACC, x.dtype, (out, x, _c(x, c)))
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
  result is rounded once. x is clamped above so k fits those factors (NaN fails both compares and stays NaN). Below
  `zero` (half the least subnormal, which rounds to 0) the result is 0, selected: computing it as products that
  underflow costs a microcode assist per vector on x86 (a causal softmax's masked half, exp(-inf): 8x the kernel's
  time), so those lanes compute 2^0 and are replaced."""
  dt = x.dtype
  zero, hi, degree = (-150.0, 129.0, 7) if dt == dtypes.float32 else (-1075.0, 1030.0, 13)
  below = x < _c(x, zero)
  x = below.where(_c(x, 0.0), x)
  x = (_c(x, hi) < x).where(_c(x, hi), x)
  kf, k = _round_to_int(x)
  r = x - kf  # exact
  p = _horner(r, [math.log(2) ** n / math.factorial(n) for n in range(degree + 1)])  # Taylor series of 2^r = e^(r ln2)
  half = k.alu(Ops.SHR, UOp.const(k.dtype, 1))
  return below.where(_c(x, 0.0), p * _pow2(half, dt) * _pow2(k - half, dt))

def log2(x: UOp) -> UOp:
  """x = 2^e * m with m in [sqrt(1/2), sqrt(2)), so |log2 m| <= 1/2 and e + log2 m never cancels more than a bit;
  log2 m = 2/ln2 * atanh(s), s = (m-1)/(m+1), |s| < 0.172. Subnormal x is scaled into the normal range first; x < 0,
  +-0, +inf and NaN are exact cases."""
  dt = x.dtype
  idt, mbits, _ = _FMT[dt]
  terms, scale = (6, 24) if dt == dtypes.float32 else (13, 54)
  tiny = x < _c(x, 2.0 ** (1 - _FMT[dt][2]))  # below the smallest normal (negatives too: they become NaN below)
  xs = tiny.where(x * _c(x, 2.0 ** scale), x)
  b = xs.bitcast(idt)
  e = (b - UOp.const(idt, _bits(math.sqrt(0.5), dt))).alu(Ops.SHR, UOp.const(idt, mbits))  # the exponent of x / sqrt(1/2)
  m = (b - e.alu(Ops.SHL, UOp.const(idt, mbits))).bitcast(dt)
  s = (m - _c(m, 1.0)).alu(Ops.FDIV, m + _c(m, 1.0))
  poly = _horner(s * s, [2 / ((2 * j + 1) * math.log(2)) for j in range(terms)])
  out = (_int_to_float(e, dt) - tiny.where(_c(x, scale), _c(x, 0.0))) + s * poly
  out = (x < _c(x, math.inf)).where(out, x)  # +inf and NaN are themselves
  out = x.eq(_c(x, 0.0)).where(_c(x, -math.inf), out)
  return (x < _c(x, 0.0)).where(_c(x, math.nan), out)

def _pi_bits(bits: int) -> int:
  """floor(pi * 2^bits), from Machin's formula pi = 16 atan(1/5) - 4 atan(1/239) in integer arithmetic (32 guard bits)."""
  one = 1 << (bits + 32)
  def atan_inv(n: int) -> int:
    total, term, k, sign = 0, one // n, 1, 1
    while term: total, term, k, sign = total + sign * (term // k), term // (n * n), k + 2, -sign
    return total
  return (16 * atan_inv(5) - 4 * atan_inv(239)) >> 32

def _split(v: Fraction, bits: int) -> float:
  """v rounded to `bits` significant bits."""
  e = math.floor(math.log2(abs(v)))  # pieces after the first may be negative
  return float(Fraction(round(v * 2 ** (bits - 1 - e)), 2 ** (bits - 1 - e)))

# Cody-Waite: pi/2 as three 30-bit pieces, so n * piece is exact for |n| < 2^23, and the rest
_HALF_PI = Fraction(_pi_bits(300), 2 ** 301)
_P1 = _split(_HALF_PI, 30); _P2 = _split(_HALF_PI - Fraction(_P1), 30); _P3 = _split(_HALF_PI - Fraction(_P1) - Fraction(_P2), 30)
_P4 = float(_HALF_PI - Fraction(_P1) - Fraction(_P2) - Fraction(_P3))
# float32 Cody-Waite below _F32_CW_MAX = 2^8 (|n| <= 163 < 2^8): pi/2 as three 16-bit pieces, so n * piece is exact in
# float32, and a 24-bit fourth (72 bits in all)
_F32_CW_MAX = 2.0 ** 8
_Q = [_split(_HALF_PI, 16)]
for _ in range(2): _Q.append(_split(_HALF_PI - sum(map(Fraction, _Q)), 16))
_Q.append(_split(_HALF_PI - sum(map(Fraction, _Q)), 24))
# Payne-Hanek: 64 zero bits, then the first 256 bits of 2/pi after the point, as five 64-bit words
_TWO_OVER_PI = (1 << (256 + 301)) // _pi_bits(300)  # floor(2/pi * 2^256), to within 1 in the last place
_WORDS = [(_TWO_OVER_PI >> (256 - 64 * (k + 1))) & (2 ** 64 - 1) if k >= 0 else 0 for k in range(-1, 4)]

def _u64(x: UOp, v: int) -> UOp: return UOp.const(dtypes.uint64, v)

def _exact_to_float(c: UOp) -> UOp:
  """A uint64 below 2^52 as a float64, exactly (AVX2 has no vector int64 -> double conversion)."""
  return (c | _u64(c, _bits(2.0 ** 52, dtypes.float64))).bitcast(dtypes.float64) - UOp.const(dtypes.float64, 2.0 ** 52)

def _payne_hanek(x: UOp) -> tuple[UOp, UOp]:
  """(r, n) with |x| * 2/pi = n + r/(pi/2) (mod 4), n a float64 integer, for a float64 holding a float32 of at least
  2^8: |x| = M * 2^E with M a
  24-bit integer, so only the 112 bits of 2/pi from bit E-1 on matter ((M * 2^E * 2/pi) mod 4 drops the rest). Those
  bits are cut out of _WORDS by E's shift and multiplied by M in four exact 28-bit pieces."""
  b = x.bitcast(dtypes.uint64)
  e = b.alu(Ops.SHR, _u64(x, 52)) & _u64(x, 0x7ff)  # E in [-15, 104] where the answer is used; other lanes' are dropped
  m = (b & _u64(x, 2 ** 52 - 1)).alu(Ops.SHR, _u64(x, 29)) | _u64(x, 2 ** 23)
  pos = e - _u64(x, 984)  # where bit E-1 of 2/pi sits in the words
  w, off = pos.alu(Ops.SHR, _u64(x, 6)), pos & _u64(x, 63)
  def word(j: int) -> UOp:
    return w.eq(_u64(x, 0)).where(_u64(x, _WORDS[j]), w.eq(_u64(x, 1)).where(_u64(x, _WORDS[j + 1]), _u64(x, _WORDS[j + 2])))
  def window(hi: UOp, lo: UOp) -> UOp:  # 64 bits from bit `off` of hi:lo; lo >> 1 >> (63-off) keeps each shift below 64
    return hi.alu(Ops.SHL, off) | lo.alu(Ops.SHR, _u64(x, 1)).alu(Ops.SHR, _u64(x, 63) - off)
  w0, w1 = window(word(0), word(1)), window(word(1), word(2))
  mask = _u64(x, 2 ** 28 - 1)
  chunks = [w0.alu(Ops.SHR, _u64(x, 36)), w0.alu(Ops.SHR, _u64(x, 8)) & mask,
            (w0 & _u64(x, 0xff)).alu(Ops.SHL, _u64(x, 20)) | w1.alu(Ops.SHR, _u64(x, 44)), w1.alu(Ops.SHR, _u64(x, 16)) & mask]
  mf = _exact_to_float(m)
  parts = [mf * _exact_to_float(c) * UOp.const(dtypes.float64, 2.0 ** (-26 - 28 * j)) for j, c in enumerate(chunks)]  # all exact
  quarter, _ = _round_to_int(parts[0] * UOp.const(dtypes.float64, 0.25))
  top = parts[0] - quarter * UOp.const(dtypes.float64, 4.0)  # exact, in [-2, 2]
  nf, _ = _round_to_int(top + parts[1])
  frac = (((top - nf) + parts[1]) + parts[2]) + parts[3]  # exact where it is small, which is where it matters
  return frac * UOp.const(dtypes.float64, float(_HALF_PI)), nf

def _two_sum(a: UOp, b: UOp) -> tuple[UOp, UOp]:
  """(s, e) with s = a + b rounded and s + e = a + b exactly (Knuth's TwoSum)."""
  s = a + b
  bb = s - a
  return s, (a - (s - bb)) + (b - bb)

def _of_reduced(x: UOp, r: UOp, r_lo: UOp, k: UOp, terms: int, cos: bool) -> UOp:
  """sin or cos of x = r + r_lo + k*pi/2: the sine or cosine series of r (to r^(2 terms - 1), r^(2 terms)) corrected
  by the tail r_lo, chosen and negated by k's two low bits."""
  r2 = r * r
  # sin(r + lo) = r + r^3 S(r^2) + lo (1 - r^2/2); cos(r + lo) = 1 - r^2/2 + r^4 C(r^2) - r lo, with the rounding of 1 - r^2/2 kept
  half = _c(r, 0.5) * r2
  sin_rest = (r * r2) * _horner(r2, [(-1) ** j / math.factorial(2 * j + 1) for j in range(1, terms)]) + r_lo * (_c(r, 1.0) - half)
  cos_rest = (r2 * r2) * _horner(r2, [(-1) ** j / math.factorial(2 * j) for j in range(2, terms + 1)]) - r * r_lo
  sin_r = r + sin_rest
  w = _c(r, 1.0) - half
  cos_r = w + (((_c(r, 1.0) - w) - half) + cos_rest)
  q = k + UOp.const(k.dtype, 1) if cos else k  # cos x = sin(x + pi/2)
  zero = UOp.const(k.dtype, 0)
  v = (q & UOp.const(k.dtype, 1)).ne(zero).where(cos_r, sin_r)
  v = (q & UOp.const(k.dtype, 2)).ne(zero).where(v.alu(Ops.NEG), v)
  return v if cos else x.eq(_c(x, 0.0)).where(x, v)  # sin(-0) = -0, which the sums above make +0

def sin_cos(x: UOp, cos: bool) -> UOp:
  """float64 sin or cos: n = round(x * 2/pi), r = x - n*pi/2 as a head and a tail (Cody-Waite, good for
  |x| < 2^23 * pi/2). Beyond that r is clamped, so the result stays in [-1, 1] though it is no longer accurate."""
  kf, k = _round_to_int(x * _c(x, 2 / math.pi))
  r1 = x - kf * _c(x, _P1)  # exact, as n * P2 is
  r2, e2 = _two_sum(r1, (kf * _c(x, _P2)).alu(Ops.NEG))
  c = (kf * _c(x, _P3) + kf * _c(x, _P4)) - e2
  r = r2 - c
  r_lo = (r2 - r) - c
  wild = (_c(r, 0.8) < r) | (r < _c(r, -0.8))  # only past the reduction's range
  return _of_reduced(x, wild.where(_c(r, 0.0), r), wild.where(_c(r, 0.0), r_lo), k, 11, cos)

def sin_cos_f32(x: UOp, cos: bool) -> UOp:
  """float32 sin or cos in float32 (eight lanes a vector on AVX2). Below 2^8: Cody-Waite with float32 pieces, the
  reduced argument kept as a head and a tail. From 2^8 on: Payne-Hanek in float64, its r split into a float32 head and
  tail. Both run in every lane (straight-line code cannot skip the second) and a WHERE picks."""
  kf, k = _round_to_int(x * _c(x, 2 / math.pi))
  r1 = x - kf * _c(x, _Q[0])  # exact: n * Q0 is, and so is the difference of two nearby multiples of x's spacing
  s2, e2 = _two_sum(r1, (kf * _c(x, _Q[1])).alu(Ops.NEG))
  s3, e3 = _two_sum(s2, (kf * _c(x, _Q[2])).alu(Ops.NEG))
  c = (kf * _c(x, _Q[3]) - e3) - e2
  r = s3 - c
  r_lo = (s3 - r) - c
  neg = x < _c(x, 0.0)
  ax = neg.where(x.alu(Ops.NEG), x)
  big = (_c(x, _F32_CW_MAX) < ax) & (ax < _c(x, math.inf))  # inf and NaN stay on Cody-Waite, which makes them NaN
  r_big64, n_big64 = _payne_hanek(ax.cast(dtypes.float64))
  r_big = r_big64.cast(dtypes.float32)
  r_big_lo = (r_big64 - r_big.cast(dtypes.float64)).cast(dtypes.float32)
  _, k_big = _round_to_int(n_big64.cast(dtypes.float32))  # an integer in [-2, 2]: exact
  r = big.where(neg.where(r_big.alu(Ops.NEG), r_big), r)
  r_lo = big.where(neg.where(r_big_lo.alu(Ops.NEG), r_big_lo), r_lo)
  k = big.where(neg.where(k_big.alu(Ops.NEG), k_big), k)
  return _of_reduced(x, r, r_lo, k, 5, cos)

def _sin(x: UOp) -> UOp: return sin_cos(x, False) if x.dtype == dtypes.float64 else sin_cos_f32(x, False)
def _cos(x: UOp) -> UOp: return sin_cos(x, True) if x.dtype == dtypes.float64 else sin_cos_f32(x, True)
_RULES = {Ops.EXP2: exp2, Ops.LOG2: log2, Ops.SIN: _sin, Ops.COS: _cos}

def _rewrite(u: UOp, ctx) -> UOp | None:
  """ctx: the renderer, whose native_float32_sin_cos keeps float32 (and half) SIN/COS as its own function."""
  if u.dtype.count != 1 or not u.dtype.is_float(): return None
  if ctx.native_float32_sin_cos and u.op in (Ops.SIN, Ops.COS) and u.dtype != dtypes.float64: return None
  x = u.src[0]
  if u.dtype in _FMT: return _RULES[u.op](x)
  return _RULES[u.op](x.cast(dtypes.float32)).cast(u.dtype)  # float16, bfloat16

pm_transcendental = PatternMatcher([(UPat((Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.COS), name="u"), _rewrite)])
