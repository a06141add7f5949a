"""Tensor methods for math beyond the elementwise core: scans, sorting, einsum, norms, rounding, NaN handling and the
activation zoo, each built from the Tensor API to stay numerically stable. A mixin of `Tensor`."""
from __future__ import annotations
import decimal, math, string
from typing import TYPE_CHECKING, Callable
from lucidgrad.dtype import dtypes, min_max, promote_types
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.gradient import VJP_RULES
from lucidgrad import return_types

if TYPE_CHECKING: from lucidgrad.tensor import Tensor

def _tensor_type():
  from lucidgrad.tensor import Tensor  # tensor.py imports this module, so the class is looked up at call time
  return Tensor

# ---- scans: blocked, so an axis of n costs O(n * block) work and two kernels up to n = 4096 ----
_SCAN_BLOCK = 64   # a block is one masked reduce (a loop) of at most this many terms

def _identity(op: str, dt):
  if op == "logaddexp": return -math.inf
  return 0 if op == "sum" else 1 if op == "prod" else min_max(dt)[0] if op == "max" else min_max(dt)[1]

def _fold(x: Tensor, op: str, axes: tuple[int, ...]) -> Tensor:
  if op == "logaddexp": return x.logsumexp(axes)
  return x.sum(axes) if op == "sum" else x.prod(axes) if op == "prod" else x.amax(axes) if op == "max" else x.amin(axes)

def _combine(a: Tensor, b: Tensor, op: str) -> Tensor:
  if op == "logaddexp": return a.logaddexp(b)
  return a + b if op == "sum" else a * b if op == "prod" else a.maximum(b) if op == "max" else a.minimum(b)

def _tri(x: Tensor, op: str) -> Tensor:
  """Scan of the last axis as one masked fold: out[i] folds x[j] for j <= i. O(n^2): for short axes."""
  n = x.shape[-1]
  i = _tensor_type().arange(n, dtype=dtypes.int32, device=x.device)
  return _fold((i.reshape(n, 1) >= i).where(x.unsqueeze(-2), _identity(op, x.dtype)), op, (-1,))

def _scan(x: Tensor, op: str) -> Tensor:
  """Inclusive scan of the last axis. A long axis is cut into blocks of ~sqrt(n) (at most _SCAN_BLOCK): each block is
  scanned by `_tri` and combined with the fold of all earlier blocks (its offset). With few blocks the offsets are
  one masked fold; with many, an exclusive scan of the block totals, recursively."""
  n = x.shape[-1]
  if n <= _SCAN_BLOCK: return _tri(x, op)
  b = min(_SCAN_BLOCK, math.isqrt(n - 1) + 1)
  nb, ident, lead = -(-n // b), _identity(op, x.dtype), x.shape[:-1]
  xb = x.pad(((0, 0),) * len(lead) + ((0, nb * b - n),), value=ident).reshape(*lead, nb, b)
  if nb <= _SCAN_BLOCK:
    k = _tensor_type().arange(nb, dtype=dtypes.int32, device=x.device)
    off = _fold((k.reshape(nb, 1) > k).reshape(nb, nb, 1).where(xb.unsqueeze(-3), ident), op, (-2, -1))
  else: off = _scan(_fold(xb, op, (-1,)).pad(((0, 0),) * len(lead) + ((1, -1),), value=ident), op)
  # the offsets are read by every element of their block: a buffer, not recomputed
  return _combine(_tri(xb, op), off.contiguous().unsqueeze(-1), op).reshape(*lead, nb * b)[..., :n]

def _along_last(x: Tensor, dim: int, fn) -> Tensor | tuple:
  """fn applied with axis `dim` moved last (a 0-d tensor as one element), and the result(s) moved back."""
  d = x._axis(dim)
  if x.ndim == 0: return _map(fn(x.reshape(1)), lambda t: t.reshape(()))
  return _map(fn(x.transpose(d, -1)), lambda t: t.transpose(d, -1))

def _map(r, f): return tuple(f(t) for t in r) if isinstance(r, tuple) else f(r)

# ---- sorting: a bitonic network on uint64 keys, (32 order-preserving bits of the value) << 32 | index ----
# One key carries value and index, so a stage reads the previous one at just two places (itself and its partner) and
# a kernel of s fused stages reads 2^s; distinct keys also make the sort stable and its ties need no extra test.
_STAGES_PER_KERNEL = 4

def _sort_keys(x: Tensor, descending: bool) -> Tensor:
  """uint64 keys of a dtype of at most 32 bits whose ascending order is the sort order (NaN last, or first when
  descending; -0 equals 0), ties broken by the index."""
  if x.dtype.is_float():
    f = x.cast(dtypes.float32)
    f = (f != f).where(math.nan, (f == 0).where(0.0, f))  # one NaN bit pattern, and -0 sorts as 0
    b = f.bitcast(dtypes.uint32)
    u = (b >> 31 == 1).where(~b, b | 0x80000000)  # negative floats (reversed) below the positive ones
  elif x.dtype.is_unsigned() or x.dtype == dtypes.bool: u = x.cast(dtypes.uint32)
  else: u = (x.cast(dtypes.int64) + 2**31).cast(dtypes.uint32)
  if descending: u = ~u
  idx = _tensor_type().arange(x.shape[-1], dtype=dtypes.int32, device=x.device).cast(dtypes.uint64)
  return (u.cast(dtypes.uint64) << 32) | idx

def _exchange(S: Tensor, b: int, mirror: bool) -> Tensor:
  """One compare-exchange stage on keys laid out with one axis of 2 per index bit (the last axis is bit 0): key p
  meets p ^ 2^b (`mirror`: the key at the mirrored place of its 2^(b+1)-block, all of bits 0..b flipped), and the
  one with bit b clear keeps the smaller. Partners are flips of size-2 axes, so the index math stays trivial."""
  P = S.flip(tuple(S.ndim - 1 - c for c in range(b + 1)) if mirror else (S.ndim - 1 - b,))
  lower = (_tensor_type().arange(2, dtype=dtypes.int32, device=S.device) == 0).reshape(2, *(1,) * b)
  return ((S < P) == lower).where(S, P)

def _select(S: Tensor, kb: int) -> Tensor:
  """Pairs of sorted 2^kb-blocks (told apart by bit kb) -> the smaller half of each pair, as a bitonic block: A[j]
  against B[K-1-j]."""
  A, B = S[(..., 0) + (slice(None),) * kb], S[(..., 1) + (slice(None),) * kb]
  if kb: B = B.flip(tuple(range(B.ndim - kb, B.ndim)))
  return (A < B).where(A, B)

def _bitonic(nbits: int) -> list[tuple[int, bool]]:
  """The stages (b, mirror) that sort every 2^nbits-block ascending: sorted halves of 2, 4, ... are merged by a
  mirror stage and then half-cleaners."""
  return [(c, c == b) for b in range(nbits) for c in range(b, -1, -1)]

def _before(v: Tensor, i: Tensor, pv: Tensor, pi: Tensor, descending: bool) -> Tensor:
  """Whether (v, i) sorts strictly before (pv, pi): by value (NaN last, first if descending), ties by index."""
  tie = (v == pv) & (i < pi)
  if not v.dtype.is_float(): return (v > pv if descending else v < pv) | tie
  a, b = v != v, pv != pv
  if descending: return a.where(b.logical_not() | (i < pi), b.logical_not() & ((v > pv) | tie))
  return a.where(b & (i < pi), b | (v < pv) | tie)

def _gather_last(x: Tensor, idx: Tensor) -> Tensor:
  """x[..., idx[..., r]] for each r, as a sum of one-hot picks: O(n) per pick, and the gradient reaches exactly the
  picked element."""
  pos = _tensor_type().arange(x.shape[-1], dtype=dtypes.int64, device=x.device)
  return (idx.unsqueeze(-1) == pos).where(x.unsqueeze(-2), 0).sum(-1).cast(x.dtype)

def _rank_sort(x: Tensor, k: int, descending: bool) -> tuple[Tensor, Tensor]:
  """The first k (value, index) pairs by counting, for each element, the elements that sort before it: O(n^2), for
  64-bit dtypes, whose values leave no room for an index in a 64-bit key."""
  T, n = _tensor_type(), x.shape[-1]
  i = T.arange(n, dtype=dtypes.int64, device=x.device)
  rank = _before(x.unsqueeze(-2), i, x.unsqueeze(-1), i.reshape(n, 1), descending).sum(-1)
  hit = rank.unsqueeze(-2) == T.arange(k, dtype=dtypes.int64, device=x.device).reshape(k, 1)
  return hit.where(x.unsqueeze(-2), 0).sum(-1).cast(x.dtype), hit.where(i, 0).sum(-1)

def _network(x: Tensor, k: int, descending: bool) -> tuple[Tensor, Tensor]:
  """The first k (value, index) pairs of the sorted last axis of x."""
  n, lead = x.shape[-1], x.shape[:-1]
  if k == 0 or n == 0: return x[..., :0], _tensor_type().zeros(*lead, 0, dtype=dtypes.int64, device=x.device)
  if x.dtype.itemsize == 8: return _rank_sort(x, k, descending)
  # a buffer first: each key is read 2^s times by the first kernel (free if x already is one)
  S = _sort_keys(x.contiguous(), descending)
  nb, kb = (n - 1).bit_length(), (k - 1).bit_length()  # N = 2^nb keys, blocks of K = 2^kb
  if (1 << nb) != n: S = S.pad(((0, 0),) * len(lead) + ((0, (1 << nb) - n),), value=2**64 - 1)  # sorts after every key
  S = S.reshape(*lead, *(2,) * nb)
  stages = [lambda S, b=b, m=m: _exchange(S, b, m) for b, m in _bitonic(min(kb, nb))]
  for _ in range(nb - kb):  # halve: pairs of sorted K-blocks give their first K, merged again
    stages += [lambda S: _select(S, kb)] + [lambda S, b=b: _exchange(S, b, False) for b in range(kb - 1, -1, -1)]
  for j, stage in enumerate(stages):
    if j and j % _STAGES_PER_KERNEL == 0: S = S.contiguous()
    S = stage(S)
  S = S.reshape(*lead, 1 << (S.ndim - len(lead)))[..., :k]
  idx = (S & 0xFFFFFFFF).cast(dtypes.int64)
  # float values are picked from x by index, so gradients reach x: that reads every index n times, so the indices
  # get a buffer (the last stages run once, in the kernel that writes them)
  if x.dtype.is_float(): return _gather_last(x, idx := idx.contiguous()), idx
  u = (S >> 32).cast(dtypes.uint32)
  if descending: u = ~u
  return (u if x.dtype.is_unsigned() or x.dtype == dtypes.bool else u.cast(dtypes.int64) - 2**31).cast(x.dtype), idx

# ---- einsum ----
def _diagonal(t: Tensor, a: int, b: int) -> Tensor:
  """The diagonal of axes a and b (equal sizes) as a new last axis, by movement ops alone: flatten the pair, pad each
  row of n by one more, and the diagonal is the first column."""
  rest = [i for i in range(t.ndim) if i not in (a, b)]
  t = t.permute(*rest, a, b)
  lead, n = t.shape[:-2], t.shape[-1]
  t = t.reshape(*lead, n * n).pad(((0, 0),) * len(lead) + ((0, n),)).reshape(*lead, n, n + 1)
  return t[..., 0]

def _parse_einsum(formula: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str]:
  """Input subscripts (one letter per axis, the ellipsis spelled out) and the output subscripts."""
  formula = formula.replace(" ", "")
  lhs, arrow, rhs = formula.partition("->")
  ins = lhs.split(",")
  if len(ins) != len(shapes): raise ValueError(f"einsum: {formula!r} names {len(ins)} operands, got {len(shapes)}")
  for s in ins + [rhs]:
    if not all(c.isalpha() for c in s.replace("...", "")): raise ValueError(f"einsum: subscripts must be letters (and ...), got {formula!r}")
  free = [c for c in string.ascii_letters if c not in formula]
  ell_n = max((len(sh) - len(s) + 3 for s, sh in zip(ins, shapes) if "..." in s), default=0)
  ell = "".join(free[:ell_n])
  out_ins = []
  for s, sh in zip(ins, shapes):
    if "..." in s:
      m = len(sh) - len(s) + 3
      if m < 0: raise ValueError(f"einsum: operand of shape {sh} has fewer axes than {s!r} names")
      s = s.replace("...", ell[len(ell) - m:])
    if len(s) != len(sh): raise ValueError(f"einsum: subscripts {s!r} do not match an operand of shape {sh}")
    out_ins.append(s)
  if arrow: out = rhs.replace("...", ell)
  else:
    letters = "".join(out_ins)
    out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
  if len(set(out)) != len(out): raise ValueError(f"einsum: output subscripts {rhs!r} repeat a letter")
  if (missing := set(out) - set("".join(out_ins))): raise ValueError(f"einsum: output letters {sorted(missing)} appear in no operand")
  return out_ins, out

def _dim0(dim, default: int):
  """A scan's or sort's axis: `default` when none was given."""
  return default if dim is None else dim

# ---- gradients by rule: VJP nodes (docs/design/0020) give a composite op the derivative torch's formula gives, exact at
# the edges (asin at 1 is inf, not 0 * inf = NaN through the composite), and reductions that pick one element per row
# (max(dim), median, mode) the gradient at that element alone, as torch ----
def _with_rule(value: Tensor, rule: str, *inputs: Tensor, params: tuple = ()) -> Tensor:
  """`value`, whose gradient reaches `inputs` through VJP_RULES[rule] instead of through its own graph; `value` itself
  when no input requires grad (inference graphs are unchanged)."""
  if not any(t.requires_grad for t in inputs): return value
  return _tensor_type()(UOp(Ops.VJP, value.dtype, (value.uop, *[t.uop for t in inputs]), (rule, params)))

def _rule(name: str):
  """Register fn(g, out, *inputs) -> the inputs' gradients (Tensors, None for none) as the VJP rule `name`."""
  def register(fn: Callable) -> Callable:
    def rule(g: UOp, ret: UOp) -> tuple:
      T = _tensor_type()
      grads = fn(T(g), T(ret.src[0]), *[T(s) for s in ret.src[1:]], *ret.arg[1])
      return tuple(None if d is None else d.uop for d in grads)
    VJP_RULES[name] = rule
    return fn
  return register

@_rule("pick")
def _pick_vjp(g: Tensor, out: Tensor, x: Tensor, idx: Tensor, d: int):
  """The gradient of values picked one per row along axis d at `idx` (kept axis d): to that element alone."""
  if x.ndim == 0: return g.reshape(()), None
  pos = _tensor_type().arange(x.shape[d], dtype=idx.dtype, device=x.device).reshape((x.shape[d],) + (1,) * (x.ndim - d - 1))
  return (idx == pos).where(g.reshape(idx.shape), 0), None

@_rule("scatter")
def _scatter_vjp(g: Tensor, out: Tensor, x: Tensor, idx: Tensor, d: int):
  """The gradient of values each taken from x at `idx` along axis d (idx of out's shape, as cummax's): each one's
  gradient added to the element it came from."""
  if x.ndim == 0: return g.reshape(()), None
  return x.zeros_like().scatter_add(d, idx, g), None

@_rule("even")
def _even_vjp(g: Tensor, out: Tensor, x: Tensor):
  """The gradient of a value (0-d) some elements equal: split evenly among them (NaN among NaNs), as torch's median()."""
  hit = (x == out) | ((x != x) & (out != out))
  return hit.where(g / hit.sum(dtype=g.dtype), 0),

# ---- bits of floats, and accurate exp for cosh and sinh ----
_UINT = {2: dtypes.uint16, 4: dtypes.uint32, 8: dtypes.uint64}

def _signbit(x: Tensor) -> Tensor:
  """Whether x's sign bit is set: true for -0.0 (and for NaNs that carry it), where x < 0 is not."""
  return (x.bitcast(_UINT[x.dtype.itemsize]) >> (8 * x.dtype.itemsize - 1)) == 1

def _with_sign(mag: Tensor, sgn: Tensor) -> Tensor:
  """|mag| with the sign bit of sgn (C's copysign): exact, and right for zeros, infinities and NaNs."""
  u, top = _UINT[mag.dtype.itemsize], 1 << (8 * mag.dtype.itemsize - 1)
  return ((mag.bitcast(u) & (top - 1)) | (sgn.bitcast(u) & top)).bitcast(mag.dtype)

def _ln2_split(bits: int) -> tuple[float, float]:
  """ln 2 as hi + lo: hi has `bits` bits after the point, so n * hi is exact for every n of at most (mantissa - bits)
  bits; lo is the rest, from ln 2 to 40 digits."""
  with decimal.localcontext() as ctx:
    ctx.prec = 40
    ln2 = decimal.Decimal(2).ln()
    hi = decimal.Decimal(math.floor(ln2 * 2**bits)) / 2**bits
    return float(hi), float(ln2 - hi)

# n stays below 2^8 (float32) and 2^11 (float64) where the result is finite: 16 and 42 bits leave room for it
_LN2_SPLIT = {dtypes.float32: _ln2_split(16), dtypes.float64: _ln2_split(42)}

def _exp_half(a: Tensor) -> Tensor:
  """e^a / 2 for a >= 0 (NaN kept), within a few ulp over the whole range. `exp` is 2^(x / ln 2), whose product's
  rounding grows with |x| (measured: 15 ulp at 88 in float32, 140 at 700 in float64); here a = n ln 2 + r with n an
  integer and r exact (Cody and Waite: ln 2 split so n * hi is exact), so 2^(r / ln 2) is accurate, and 2^(n-1) exact,
  applied as two powers of two so e^a / 2 overflows only where it is itself too big."""
  hi, lo = _LN2_SPLIT[a.dtype]
  n = (a.minimum(2000.0) * (1 / math.log(2)) + 0.5).floor()  # clipped: inf stays inf through 2^n, never inf - inf
  r = (a - n * hi) - n * lo
  h = ((n - 1) * 0.5).floor()
  return (r * (1 / math.log(2))).exp2() * h.exp2() * (n - 1 - h).exp2()

# ---- atan on [0, 1]: the basis of atan, atan2, asin and acos ----
# atan(t) = atan(c) + atan(u) with c = k/4 the nearest quarter and u = (t - c) / (1 + t c), |u| <= 0.125: t - c is exact
# (Sterbenz), and the odd series of atan(u) needs 4 terms (float32) or 9 (float64) past u
_ATAN_QUARTERS = [math.atan(k / 4) for k in range(5)]

def _atan01(t: Tensor) -> Tensor:
  """atan(t) for 0 <= t <= 1 (NaN kept), within about 1 ulp."""
  k = (t * 4 + 0.5).floor()
  c = k * 0.25
  u = (t - c) / (1 + t * c)
  z = u * u
  terms = 9 if t.dtype == dtypes.float64 else 4
  p: Tensor | float = (-1) ** terms / (2 * terms + 1)
  for j in range(terms - 1, 0, -1): p = p * z + (-1) ** j / (2 * j + 1)
  base = t._const(0.0)
  for j in range(1, 5): base = (k == j).where(t._const(_ATAN_QUARTERS[j]), base)  # constants of t's dtype, not float32
  return base + (u + u * z * p)

def _atan2(y: Tensor, x: Tensor) -> Tensor:
  """atan2(y, x) of floats of one dtype and shape, as C's: the quadrant from the signs (-0.0 too), +-0 for zeros,
  multiples of pi/4 for infinities. The smaller of |y|, |x| over the larger is in [0, 1], so its atan is accurate."""
  ay, ax = y.abs(), x.abs()
  swap = ay > ax
  num, den = swap.where(ax, ay), swap.where(ay, ax)
  both_inf = (ay == math.inf) & (ax == math.inf)
  q = both_inf.where(1.0, ((den == 0) & (num == 0)).where(0.0, num / den))  # (a NaN over 0 stays NaN)
  r0 = _atan01(q)
  neg = _signbit(x)
  # the quadrant: r0, pi/2 - r0, pi - r0 or pi/2 + r0, each one rounding from r0
  base = swap.where(y._const(math.pi / 2), neg.where(y._const(math.pi), y._const(0.0)))
  r = base + (swap != neg).where(-r0, r0)
  return _with_sign(r, y)

def _logaddexp(a: Tensor, b: Tensor, base2: bool) -> Tensor:
  """log(e^a + e^b) (base 2: log2(2^a + 2^b)) as max + log1p(e^-|a - b|): nothing overflows; a == b (infinities too)
  gives max + log(2), so -inf and -inf give -inf, not NaN from inf - inf."""
  m, d = a.maximum(b), (a == b).where(0.0, -(a - b).abs())
  return m + (d.exp2().log1p() * (1 / math.log(2)) if base2 else d.exp().log1p())

# derivatives as torch takes them (g: the output's gradient, out: the value)
_rule("asin")(lambda g, out, x: (g / ((1 - x) * (1 + x)).sqrt(),))
_rule("acos")(lambda g, out, x: (-g / ((1 - x) * (1 + x)).sqrt(),))
_rule("atan")(lambda g, out, x: (g / (x * x + 1),))
_rule("sinh")(lambda g, out, x: (g * x.cosh(),))
_rule("cosh")(lambda g, out, x: (g * x.sinh(),))
_rule("asinh")(lambda g, out, x: (g / (x * x + 1).sqrt(),))
_rule("acosh")(lambda g, out, x: (g / ((x - 1) * (x + 1) + 0.0).sqrt(),))  # + 0.0: at x = -1 the product is -0.0, torch's x^2 - 1 is +0
_rule("atanh")(lambda g, out, x: (g / ((1 - x) * (1 + x)),))

@_rule("atan2")
def _atan2_vjp(g: Tensor, out: Tensor, y: Tensor, x: Tensor):
  # x / (x^2 + y^2) and -y / (x^2 + y^2), scaled by the larger of |x|, |y| so the squares never underflow to 0 / 0;
  # 0 at the origin (as torch) and where an input is infinite (torch: NaN for one of the two)
  m = y.abs().maximum(x.abs())
  zero = (m == 0) | (m == math.inf)
  m = zero.where(1.0, m)
  ys, xs = y / m, x / m
  d = m * (ys * ys + xs * xs)
  return zero.where(0.0, g * xs / d), zero.where(0.0, -g * ys / d)

@_rule("hypot")
def _hypot_vjp(g: Tensor, out: Tensor, a: Tensor, b: Tensor): return g * a / out, g * b / out

@_rule("copysign")
def _copysign_vjp(g: Tensor, out: Tensor, a: Tensor, b: Tensor):
  # out / a is +-1: the gradient is g or -g, and 0 where a is 0 (as torch); b's sign bit has no gradient
  return (a == 0).where(0.0, g * (out / a)), b.zeros_like()

@_rule("logaddexp")
def _logaddexp_vjp(g: Tensor, out: Tensor, a: Tensor, b: Tensor, base2: bool):
  d = (a - b) * (math.log(2) if base2 else 1.0)
  return g * d.sigmoid(), g * (-d).sigmoid()

class MathMixin:
  # ---- scans ----
  def _scan_op(self, dim: int, op: str, dtype=None) -> Tensor:
    acc = dtype or (dtypes.int64 if self.dtype.is_int() or self.dtype == dtypes.bool else self.dtype)
    dt = dtypes.float32 if acc in (dtypes.float16, dtypes.bfloat16) else acc  # half floats accumulate in float32
    return _along_last(self.cast(dt), dim, lambda x: _scan(x, op) if x.shape[-1] else x).cast(acc)
  def cumsum(self, dim=None, dtype=None, *, axis=None) -> Tensor:
    """Running sum along `dim` (0 when not given); ints and bools sum into int64, as in PyTorch. Blocked scans: O(64 n)
    work, and two kernels up to n = 4096."""
    return self._scan_op(_dim0(self._dim(dim, axis, "cumsum"), 0), "sum", dtype)
  def cumprod(self, dim=None, dtype=None, *, axis=None) -> Tensor:
    """Running product along `dim` (0 when not given; ints into int64); gradients at zeros as in PyTorch."""
    return self._scan_op(_dim0(self._dim(dim, axis, "cumprod"), 0), "prod", dtype)
  def logcumsumexp(self, dim=None, *, axis=None) -> Tensor:
    """log(cumsum(exp(x))) along `dim` (0 when not given), as a scan whose step is logaddexp and whose blocks are
    log-sum-exps, each shifted by its own max: finite for any finite x, however large or spread out. Ints give floats."""
    dim = _dim0(self._dim(dim, axis, "logcumsumexp"), 0)
    return self._math(lambda x: _along_last(x, dim, lambda x: _scan(x, "logaddexp") if x.shape[-1] else x))
  def _cumext(self, dim: int, op: str) -> tuple[Tensor, Tensor]:
    def ext(x: Tensor) -> tuple[Tensor, Tensor]:
      if x.shape[-1] == 0: return x, x.cast(dtypes.int64)
      wx = x.cast(dtypes.uint8) if x.dtype == dtypes.bool else x
      v = _scan(wx, op)
      # the index of a running max is the last place where x reached it (or was NaN): a running max of those places
      hit = (wx == v) | (wx != wx) if wx.dtype.is_float() else wx == v
      pos = _tensor_type().arange(x.shape[-1], dtype=dtypes.int32, device=x.device)
      return v.cast(x.dtype), _scan(hit.where(pos, -1), "max").cast(dtypes.int64)
    values, indices = _along_last(self.detach(), dim, ext)
    return getattr(return_types, "cum" + op)(_with_rule(values, "scatter", self, indices, params=(self._axis(dim),)), indices)
  def cummax(self, dim=None, *, axis=None) -> tuple[Tensor, Tensor]:
    """Named tuple (values, indices) of the running maximum along `dim` (0 when not given); an index is the last place
    the maximum was reached, NaN propagates, and each running value's gradient goes to its index, as in PyTorch."""
    return self._cumext(_dim0(self._dim(dim, axis, "cummax"), 0), "max")
  def cummin(self, dim=None, *, axis=None) -> tuple[Tensor, Tensor]:
    """Named tuple (values, indices) of the running minimum along `dim`, as `cummax`."""
    return self._cumext(_dim0(self._dim(dim, axis, "cummin"), 0), "min")

  # ---- sorting ----
  def sort(self, dim=None, descending: bool = False, stable: bool = True, *, axis=None) -> tuple[Tensor, Tensor]:
    """Named tuple (values, indices) sorted along `dim` (the last axis when not given) by a bitonic network; always
    stable (equal values keep their order), NaN sorts as the largest value, as in PyTorch. Gradients flow to the element
    each value came from."""
    dim = _dim0(self._dim(dim, axis, "sort"), -1)
    return return_types.sort(*_along_last(self, dim, lambda x: _network(x, x.shape[-1], descending)))
  def argsort(self, dim=None, descending: bool = False, stable: bool = True, *, axis=None) -> Tensor:
    """The indices that sort `dim` (the last axis when not given; stable)."""
    return self.sort(self._dim(dim, axis, "argsort"), descending).indices
  def topk(self, k: int, dim=None, largest: bool = True, sorted: bool = True, *, axis=None) -> tuple[Tensor, Tensor]:
    """Named tuple (values, indices) of the k largest (smallest) along `dim` (the last axis when not given), always in
    sorted order, ties by lower index. Blocks of k are sorted and pairs of blocks halved, so it costs less than a full
    sort."""
    dim = _dim0(self._dim(dim, axis, "topk"), -1)
    n = self.shape[self._axis(dim)] if self.ndim else 1
    if not 0 <= k <= n: raise ValueError(f"topk: k={k} is out of range for a dimension of size {n} (shape {self.shape})")
    return return_types.topk(*_along_last(self, dim, lambda x: _network(x, k, largest)))

  # ---- einsum ----
  @staticmethod
  def einsum(formula: str, *operands: Tensor) -> Tensor:
    """Einstein summation as in torch.einsum: 'ij,jk->ik'; implicit output (letters seen once, sorted); repeated
    letters take diagonals ('ii->' is a trace); '...' broadcasts. Operands are contracted pairwise, left to right."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)): operands = tuple(operands[0])
    if not operands: raise ValueError("einsum: needs at least one operand")
    ins, out = _parse_einsum(formula, [t.shape for t in operands])
    dt = operands[0].dtype
    for t in operands[1:]: dt = promote_types(dt, t.dtype)
    sizes: dict[str, int] = {}
    terms = []
    for s, t in zip(ins, operands):
      t = t.cast(dt)
      while (rep := next((c for c in s if s.count(c) > 1), None)) is not None:  # a repeated letter: its diagonal
        a = s.index(rep)
        b = s.index(rep, a + 1)
        if t.shape[a] != t.shape[b]: raise ValueError(f"einsum: repeated subscript {rep!r} on axes of sizes {t.shape[a]} and {t.shape[b]}")
        t, s = _diagonal(t, a, b), "".join(c for i, c in enumerate(s) if i not in (a, b)) + rep
      for c, n in zip(s, t.shape):  # a size of 1 broadcasts
        if (prev := sizes.get(c, n)) != n and 1 not in (prev, n): raise ValueError(f"einsum: subscript {c!r} has sizes {prev} and {n} in {formula!r}")
        sizes[c] = max(prev, n) if 0 not in (prev, n) else 0
      terms.append((s, t))
    def contract(a: tuple[str, Tensor], b: tuple[str, Tensor] | None, keep: set[str]) -> tuple[str, Tensor]:
      letters = "".join(dict.fromkeys(a[0] + (b[0] if b else "")))
      def spread(s: str, t: Tensor) -> Tensor:  # t with an axis per letter of `letters`, size 1 where it has none
        dims = dict(zip(s, t.shape))
        return t.permute([s.index(c) for c in letters if c in s]).reshape([dims.get(c, 1) for c in letters])
      p = (spread(*a) if b is None else spread(*a) * spread(*b)).expand([sizes[c] for c in letters])
      gone = tuple(i for i, c in enumerate(letters) if c not in keep)
      if not gone: return letters, p
      return "".join(c for c in letters if c in keep), p.sum(gone).cast(dt)  # ints sum into int64: back to dt
    cur = terms[0]
    for j in range(1, len(terms)):
      cur = contract(cur, terms[j], set(out).union(*(s for s, _ in terms[j + 1:])))
    if len(terms) == 1 or set(cur[0]) - set(out): cur = contract(cur, None, set(out))
    s, t = cur
    return t.permute([s.index(c) for c in out]) if out else t.reshape(())

  # ---- norms ----
  def vector_norm(self, ord: float = 2, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """(sum |x|^ord)^(1/ord) over `dim` (all axes if None); ord inf / -inf is max / min |x|, 0 counts nonzeros. The
    gradient at a zero vector is 0, as in PyTorch."""
    dim = self._dim(dim, axis, "vector_norm")
    def norm(x: Tensor) -> Tensor:
      a = x.abs()
      if ord == math.inf: return a.amax(dim, keepdim)
      if ord == -math.inf: return a.amin(dim, keepdim)
      if ord == 0: return (x != 0).cast(x.dtype).sum(dim, keepdim)
      if ord == 1: return a.sum(dim, keepdim)
      s = (x * x).sum(dim, keepdim) if ord == 2 else a.pow(ord).sum(dim, keepdim)
      if ord < 0: return s.pow(1 / ord)
      # the root of a zero sum is taken of 1 instead, so its infinite derivative never meets the zero below it
      zero = s == 0
      return zero.where(0.0, zero.where(1.0, s).pow(1 / ord) if ord != 2 else zero.where(1.0, s).sqrt())
    if isinstance(ord, str): raise ValueError(f"vector_norm: ord must be a number, got {ord!r}")
    return self._math(norm)
  def norm(self, p="fro", dim=None, keepdim: bool = False, ord=None, *, axis=None) -> Tensor:
    """torch.norm: 'fro' (or None) is the 2-norm over `dim`, a number p the vector p-norm over `dim` (all if None).
    `ord` is accepted as another name for p."""
    dim = self._dim(dim, axis, "norm")
    p = ord if ord is not None else p
    if p is None or p == "fro": p = 2
    if isinstance(p, str): raise NotImplementedError(f"norm: p={p!r} is not supported (only 'fro' and numbers)")
    return self.vector_norm(p, dim, keepdim)
  def linalg_norm(self, ord=None, dim=None, keepdim: bool = False) -> Tensor:
    """torch.linalg.norm: a vector norm over one axis, a matrix norm ('fro', inf, -inf, 1, -1) over two; with no
    `dim`, ord None is the 2-norm of everything and a given ord needs a 1-D or 2-D tensor."""
    if dim is None:
      if ord is None: return self.vector_norm(2, None, keepdim)
      if self.ndim not in (1, 2): raise ValueError(f"linalg_norm: with ord={ord!r} and no dim the tensor must be 1-D or 2-D, got shape {self.shape}")
      dim = tuple(range(self.ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if len(dims) == 1: return self.vector_norm(2 if ord is None else ord, dims[0], keepdim)
    if len(dims) != 2: raise ValueError(f"linalg_norm: dim must name 1 or 2 axes, got {dim}")
    r, c = self._axis(dims[0]), self._axis(dims[1])
    if r == c: raise ValueError(f"linalg_norm: dim {dim} names one axis twice")
    if ord is None or ord == "fro": return self.vector_norm(2, (r, c), keepdim)
    if ord not in (math.inf, -math.inf, 1, -1): raise NotImplementedError(f"linalg_norm: matrix ord={ord!r} needs singular values, which lucidgrad lacks")
    # inf: the largest row sum of |x|; 1: the largest column sum (-inf, -1: the smallest)
    sums = self.vector_norm(1, c if abs(ord) == math.inf else r, keepdim=True)
    out = sums.amax(r if abs(ord) == math.inf else c, keepdim=True) if ord > 0 else sums.amin(r if abs(ord) == math.inf else c, keepdim=True)
    return out if keepdim else out.squeeze((r, c))

  # ---- elementwise math ----
  def lerp(self, end, weight) -> Tensor:
    """self + weight * (end - self), computed from the nearer end (as PyTorch) so weight 1 gives `end` exactly."""
    T = _tensor_type()
    end = end if isinstance(end, T) else self._const(end, promote_types(self.dtype, dtypes.from_py(end)))
    diff = end - self
    if not isinstance(weight, T): return self + weight * diff if abs(weight) < 0.5 else end - diff * (1 - weight)
    return (weight.abs() < 0.5).where(self + weight * diff, end - diff * (1 - weight))
  def isnan(self) -> Tensor:
    """Where the value is NaN (never, for ints)."""
    return self != self if self.dtype.is_float() else self.full_like(False, dtype=dtypes.bool)
  def isinf(self) -> Tensor:
    """Where the value is +inf or -inf."""
    return (self == math.inf) | (self == -math.inf) if self.dtype.is_float() else self.full_like(False, dtype=dtypes.bool)
  def isfinite(self) -> Tensor:
    """Where the value is neither NaN nor infinite."""
    return (self - self) == 0 if self.dtype.is_float() else self.full_like(True, dtype=dtypes.bool)
  def nan_to_num(self, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None) -> Tensor:
    """NaN, +inf and -inf replaced (by default with 0 and the dtype's largest and smallest finite values)."""
    if not self.dtype.is_float(): return self._new_value()
    big = {dtypes.float16: 65504.0, dtypes.bfloat16: 3.3895313892515355e38, dtypes.float32: 3.4028234663852886e38}.get(self.dtype, 1.7976931348623157e308)
    out = self.isnan().where(nan, self)
    out = (self == math.inf).where(big if posinf is None else posinf, out)
    return (self == -math.inf).where(-big if neginf is None else neginf, out).cast(self.dtype)
  def log1p(self) -> Tensor:
    """log(1 + x), accurate near 0: Kahan's trick, log(u) * x / (u - 1) with u = 1 + x, cancels u's rounding. Its
    derivative is taken from log(u) (1 / (1 + x)), since the trick's own derivative loses that precision."""
    def log1p(x: Tensor) -> Tensor:
      u = 1 + x
      plain = (u == 1) | (u == math.inf) | (u == 0)
      # the other branch stays finite, so no NaN leaks into the value or the gradient (at u = 0, lg - lg.detach() is -inf + inf)
      us = plain.where(2.0, u)
      lg = us.log()
      kahan = (lg * x / (us - 1)).detach() + (lg - lg.detach())
      return (u == 1).where(x, (u == math.inf).where(math.inf, (u == 0).where(-math.inf, kahan)))
    return self._math(log1p)
  def expm1(self) -> Tensor:
    """e^x - 1, accurate near 0: Kahan's trick, (u - 1) * x / log(u) with u = e^x, cancels u's rounding. Its
    derivative is taken from u (e^x), since the trick's own derivative loses that precision."""
    def expm1(x: Tensor) -> Tensor:
      u = x.exp()
      um1 = u - 1
      plain = (um1 == 0) | (um1 == -1) | (u == math.inf)
      us = plain.where(2.0, u)  # the other branch stays finite, so no NaN leaks into the gradient
      kahan = ((us - 1) * x / us.log()).detach() + (us - us.detach())
      return (um1 == 0).where(x, plain.where(um1, kahan))
    return self._math(expm1)

  # ---- activations (half floats compute in float32, through _math) ----
  def _softplus(self, beta: float = 1.0) -> Tensor:
    # max(bx, 0) + log1p(e^-|bx|), with |bx| and max(bx, 0) chosen by the same test so their kinks at 0 cancel in the
    # derivative (sigmoid(0) = 0.5); e^-|bx| <= 1 never overflows
    bx = self * beta
    pos = bx > 0
    return (pos.where(bx, 0.0) + pos.where(-bx, bx).exp().log1p()) / beta
  def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + e^(beta x)) / beta without overflow; x itself where beta * x > threshold, as in PyTorch."""
    return self._math(lambda x: (x * beta > threshold).where(x, x._softplus(beta)))
  def logsigmoid(self) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x): finite for every finite x, -inf at -inf."""
    return self._math(lambda x: -(-x)._softplus())
  def mish(self) -> Tensor:
    """x * tanh(softplus(x))."""
    return self._math(lambda x: x * x._softplus().tanh())
  def hardswish(self) -> Tensor:
    """x * relu6(x + 3) / 6, with PyTorch's derivative at the corners."""
    def hardswish(x: Tensor) -> Tensor:
      xm = x.clip(-3.0, 3.0)  # the unused branch stays finite, so its zero gradient never meets an inf
      return (x <= -3).where(0.0, (x < 3).where(xm * (xm + 3) / 6, x))
    return self._math(hardswish)
  def hardsigmoid(self) -> Tensor:
    """relu6(x + 3) / 6, with derivative 0 at the corners, as in PyTorch."""
    return self._math(lambda x: (x <= -3).where(0.0, (x >= 3).where(1.0, x / 6 + 0.5)))
  def elu(self, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (e^x - 1), from expm1 (accurate near 0, and never overflows in the unused branch)."""
    return self._math(lambda x: (x > 0).where(x, alpha * (x > 0).where(0.0, x).expm1()))
  def selu(self) -> Tensor:
    """scale * elu(x, alpha) with the self-normalising constants."""
    return self._math(lambda x: 1.0507009873554804934193349852946 * x.elu(1.6732632423543772848170429916717))
  def celu(self, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (e^(x / alpha) - 1)."""
    return self._math(lambda x: (x > 0).where(x, alpha * ((x > 0).where(0.0, x) / alpha).expm1()))
  def leaky_relu(self, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x."""
    return (self > 0).where(self, self * negative_slope)
  def hardtanh(self, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """x clamped to [min_val, max_val]; the derivative is 0 at the ends, as in PyTorch."""
    return (self <= min_val).where(min_val, (self >= max_val).where(max_val, self)).cast(self.dtype)
  def relu6(self) -> Tensor:
    """min(max(x, 0), 6)."""
    return self.hardtanh(0, 6)
  def softsign(self) -> Tensor:
    """x / (1 + |x|)."""
    return self._math(lambda x: x / (1 + x.abs()))
  def cosine_similarity(self, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 * x2) / (max(|x1|, eps) * max(|x2|, eps)) along `dim`, each vector normalised first, as PyTorch does."""
    x1, x2 = self._broadcasted(x2)
    n1 = x1.vector_norm(2, dim, keepdim=True).maximum(eps)
    n2 = x2.vector_norm(2, dim, keepdim=True).maximum(eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)

  # ---- inverse trigonometric and hyperbolic functions: ints become the default float; within a few ulp of float64
  # over the whole range, exact at the edges (torch's NaN outside the domain, +-inf at poles, -0.0 kept); gradients
  # by torch's formulas ----
  def _elementwise(self, rule: str, fn: Callable[[Tensor], Tensor]) -> Tensor:
    return self._math(lambda x: _with_rule(fn(x), rule, x))
  def atan(self) -> Tensor:
    """Elementwise arctangent, in (-pi/2, pi/2)."""
    def atan(x: Tensor) -> Tensor:
      a = x.abs()
      big = a > 1
      r0 = _atan01(big.where(1 / a, a))
      return _with_sign(big.where(x._const(math.pi / 2) - r0, r0), x)
    return self._elementwise("atan", atan)
  def asin(self) -> Tensor:
    """Elementwise arcsine, in [-pi/2, pi/2]; NaN outside [-1, 1]. atan2(x, sqrt((1 - x)(1 + x))), whose factors
    are exact near +-1."""
    return self._elementwise("asin", lambda x: _atan2(x, ((1 - x) * (1 + x)).sqrt()))
  def acos(self) -> Tensor:
    """Elementwise arccosine, in [0, pi]; NaN outside [-1, 1]. atan2(sqrt((1 - x)(1 + x)), x)."""
    return self._elementwise("acos", lambda x: _atan2(((1 - x) * (1 + x)).sqrt(), x))
  def atan2(self, other) -> Tensor:
    """Elementwise angle of the point (x=other, y=self), in [-pi, pi], broadcasting; C's values at zeros (signed) and
    infinities. Ints become the default float."""
    a, b = self._broadcasted(other)
    if not a.dtype.is_float(): a, b = a.cast(dtypes.default_float), b.cast(dtypes.default_float)
    if a.dtype in (dtypes.float16, dtypes.bfloat16):
      return a.cast(dtypes.float32).atan2(b.cast(dtypes.float32)).cast(a.dtype)
    return _with_rule(_atan2(a, b), "atan2", a, b)
  arctan, arcsin, arccos, arctan2 = atan, asin, acos, atan2
  def sinh(self) -> Tensor:
    """Elementwise hyperbolic sine: from expm1 below |x| = 1 (accurate near 0), from an accurate e^|x| / 2 above,
    finite up to where sinh itself overflows."""
    def sinh(x: Tensor) -> Tensor:
      a = x.abs()
      small = a < 1
      e1 = small.where(a, 0.0).expm1()
      big = _exp_half(small.where(1.0, a))  # >= e/2: 1 / (4 big) never overflows
      return _with_sign(small.where(0.5 * (e1 + e1 / (e1 + 1)), big - 0.25 / big), x)
    return self._elementwise("sinh", sinh)
  def cosh(self) -> Tensor:
    """Elementwise hyperbolic cosine: e^|x| / 2 + e^-|x| / 2 from an accurate e^|x| / 2, finite up to where cosh
    itself overflows."""
    def cosh(x: Tensor) -> Tensor:
      h = _exp_half(x.abs())
      return h + 0.25 / h
    return self._elementwise("cosh", cosh)
  def asinh(self) -> Tensor:
    """Elementwise inverse hyperbolic sine: log1p(a + a^2 / (1 + sqrt(1 + a^2))) for a = |x| (accurate near 0), and
    log(a) + log(2) past 2^28, where a^2 could overflow and the 1 no longer counts."""
    def asinh(x: Tensor) -> Tensor:
      a = x.abs()
      huge = a > 2.0**28
      s = huge.where(1.0, a)
      r = huge.where(a.log() + math.log(2), (s + s * s / (1 + (1 + s * s).sqrt())).log1p())
      return _with_sign(r, x)
    return self._elementwise("asinh", asinh)
  def acosh(self) -> Tensor:
    """Elementwise inverse hyperbolic cosine (NaN below 1): log1p(t + sqrt(t (t + 2))) with t = x - 1, exact near 1,
    and log(x) + log(2) past 2^28."""
    def acosh(x: Tensor) -> Tensor:
      huge = x > 2.0**28
      t = huge.where(1.0, x) - 1
      # below 1, t (t + 2) can be positive again (t < -2): NaN by hand there
      return (x < 1).where(math.nan, huge.where(x.log() + math.log(2), (t + (t * (t + 2)).sqrt()).log1p()))
    return self._elementwise("acosh", acosh)
  def atanh(self) -> Tensor:
    """Elementwise inverse hyperbolic tangent: log1p(2a / (1 - a)) / 2 for a = |x|; +-inf at +-1, NaN beyond."""
    return self._elementwise("atanh", lambda x: _with_sign(0.5 * (2 * x.abs() / (1 - x.abs())).log1p(), x))
  arcsinh, arccosh, arctanh = asinh, acosh, atanh

  # ---- binary float math ----
  def _floats(self, other) -> tuple[Tensor, Tensor]:
    """self and other broadcast to one float dtype (ints and bools become the default float, as torch promotes them)."""
    a, b = self._broadcasted(other)
    return (a, b) if a.dtype.is_float() else (a.cast(dtypes.default_float), b.cast(dtypes.default_float))
  def _binary_math(self, other, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """fn on self and other as floats; half floats go through float32 and round once, as `_math`."""
    a, b = self._floats(other)
    if a.dtype in (dtypes.float16, dtypes.bfloat16): return fn(a.cast(dtypes.float32), b.cast(dtypes.float32)).cast(a.dtype)
    return fn(a, b)
  def fmod(self, other) -> Tensor:
    """C's remainder: self - trunc(self / other) * other, with the sign of self (exact). Ints stay ints, and an
    integer division by zero gives 0 as everywhere in lucidgrad (docs/semantics.md; torch raises)."""
    a, b = self._broadcasted(other)
    return a._alu(Ops.MOD, b)
  def remainder(self, other) -> Tensor:
    """torch.remainder: self - floor(self / other) * other, with the sign of other (Python's %); a zero result keeps
    self's sign, as torch's does. Ints stay ints; an integer division by zero gives 0 (torch raises)."""
    a, b = self._broadcasted(other)
    r = a._alu(Ops.MOD, b)
    if a.dtype.is_unsigned() or a.dtype == dtypes.bool: return r
    return ((r != 0) & ((r < 0) != (b < 0))).where(r + b, r)
  def copysign(self, other) -> Tensor:
    """|self| with the sign of other, sign bits of -0.0 and NaN included, as floats (ints become the default float).
    The gradient is +-1 towards self (0 where self is 0) and none towards other, as torch."""
    def copysign(a: Tensor, b: Tensor) -> Tensor: return _with_rule(_with_sign(a, b), "copysign", a, b)
    a, b = self._floats(other)
    return copysign(a, b)
  def logaddexp(self, other) -> Tensor:
    """log(e^self + e^other) = max + log1p(e^-|self - other|): never overflows; equal infinities give themselves."""
    return self._binary_math(other, lambda a, b: _with_rule(_logaddexp(a, b, False), "logaddexp", a, b, params=(False,)))
  def logaddexp2(self, other) -> Tensor:
    """log2(2^self + 2^other), as logaddexp in base 2."""
    return self._binary_math(other, lambda a, b: _with_rule(_logaddexp(a, b, True), "logaddexp", a, b, params=(True,)))
  def hypot(self, other) -> Tensor:
    """sqrt(self^2 + other^2) without overflow or underflow: the larger of |self|, |other| times sqrt(1 + r^2), r the
    ratio of the smaller to it; inf if either is inf (even with a NaN), as C's. Ints become the default float (torch
    raises)."""
    def hypot(a: Tensor, b: Tensor) -> Tensor:
      aa, ab = a.abs(), b.abs()
      big, small = aa.maximum(ab), aa.minimum(ab)
      r = (big == 0).where(0.0, small / big)
      out = ((aa == math.inf) | (ab == math.inf)).where(math.inf, big * (1 + r * r).sqrt())
      return _with_rule(out, "hypot", a, b)
    return self._binary_math(other, hypot)

  # ---- reductions: truth, extremes, closeness ----
  def _truth(self, dim, keepdim: bool, axis, every: bool) -> Tensor:
    op = "all" if every else "any"
    axis = self._dim(dim, axis, op)
    axes = self._axes(axis)
    if isinstance(axis, (tuple, list)) and not axis: out = self != 0  # dim=(): no reduction, as torch
    elif any(self.shape[a] == 0 for a in axes):  # over nothing: all() is true, any() false
      shape = tuple(1 if i in axes else s for i, s in enumerate(self.shape)) if keepdim else tuple(s for i, s in enumerate(self.shape) if i not in axes)
      out = _tensor_type().full(shape, every, dtype=dtypes.bool, device=self.device)
    else: out = (self != 0).cast(dtypes.uint8)._extreme(axis, keepdim, not every).cast(dtypes.bool)  # NaN counts as true
    return out.cast(dtypes.uint8) if self.dtype == dtypes.uint8 else out
  def all(self, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """Whether every element along `dim` (an int or a tuple; all axes when None) is nonzero (NaN is); true over an
    empty axis. A bool tensor (uint8 for uint8 input, as torch)."""
    return self._truth(dim, keepdim, axis, True)
  def any(self, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """Whether some element along `dim` is nonzero; false over an empty axis. Bool (uint8 for uint8 input)."""
    return self._truth(dim, keepdim, axis, False)
  def amax(self, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """The largest values over `dim` (an int or a tuple; all axes when None or ()); ties share the gradient evenly."""
    dim = self._dim(dim, axis, "amax")
    return self._extreme(None if isinstance(dim, (tuple, list)) and not dim else dim, keepdim, True)
  def amin(self, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """The smallest values over `dim` (an int or a tuple; all axes when None or ()); ties share the gradient evenly."""
    dim = self._dim(dim, axis, "amin")
    return self._extreme(None if isinstance(dim, (tuple, list)) and not dim else dim, keepdim, False)
  def aminmax(self, *, dim=None, keepdim: bool = False, axis=None) -> tuple[Tensor, Tensor]:
    """Named tuple (min, max) over `dim` (one axis, or all when None), as torch.aminmax."""
    dim = self._dim(dim, axis, "aminmax")
    if dim is not None and not isinstance(dim, int): raise TypeError(f"aminmax: dim must be an int or None, got {dim!r}")
    return return_types.aminmax(self.amin(dim, keepdim), self.amax(dim, keepdim))
  def _values_indices(self, op: str, values: Tensor, indices: Tensor, dim: int, keepdim: bool):
    """The named tuple of `op` (max, min, median, mode, kthvalue): values picked one per row along `dim` at `indices`,
    whose gradient reaches that element alone, as torch's."""
    d = self._axis(dim)
    idx = indices if keepdim or self.ndim == 0 else indices.unsqueeze(d)
    return getattr(return_types, op)(_with_rule(values, "pick", self, idx, params=(d,)), indices)
  def isclose(self, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Tensor:
    """|self - other| <= atol + rtol * |other| elementwise, broadcasting; equal values (infinities too) are close, NaN
    only to NaN with equal_nan. Ints compare in the default float, bools by equality. Mixed dtypes promote (torch
    raises)."""
    if rtol < 0 or atol < 0: raise ValueError(f"isclose: rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    a, b = self._broadcasted(other)
    eq = a == b
    if a.dtype == dtypes.bool: return eq
    if equal_nan and a.dtype.is_float(): eq = eq | ((a != a) & (b != b))
    fa, fb = (a, b) if a.dtype.is_float() else (a.cast(dtypes.default_float), b.cast(dtypes.default_float))
    err = (fa - fb).abs()
    return eq | (err.isfinite() & (err <= atol + rtol * fb.abs()))
  def allclose(self, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    """Whether every element is close (`isclose`), as a Python bool."""
    return bool(self.isclose(other, rtol, atol, equal_nan).all().item())
  def equal(self, other) -> bool:
    """Whether other has the same shape and equal elements (dtypes promote; NaN is unequal), as a Python bool: False
    for another shape, as torch.equal."""
    if not isinstance(other, _tensor_type()): raise TypeError(f"equal: other must be a Tensor, got {type(other).__name__}")
    return self.shape == other.shape and bool((self == other).all().item())

  # ---- statistics ----
  def var_mean(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None) -> tuple[Tensor, Tensor]:
    """(var, mean) over `dim`, as torch.var_mean (a plain tuple)."""
    dim = self._dim(dim, axis, "var_mean")
    return self.var(dim, unbiased, keepdim, correction=correction), self.mean(dim, keepdim)
  def std_mean(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None) -> tuple[Tensor, Tensor]:
    """(std, mean) over `dim`, as torch.std_mean (a plain tuple)."""
    dim = self._dim(dim, axis, "std_mean")
    return self.std(dim, unbiased, keepdim, correction=correction), self.mean(dim, keepdim)
  def _moved_last(self, d: int) -> Tensor:
    """This tensor with axis d moved last, the others kept in order (a 0-d tensor as one element)."""
    return self.reshape(1) if self.ndim == 0 else self.permute(*[a for a in range(self.ndim) if a != d], d)
  def _kth(self, k: int, dim: int, keepdim: bool, op: str):
    """Named tuple (values, indices) of the k-th smallest (1-based) along `dim`, ties in index order (a stable sort);
    any NaN along a row makes its value NaN at the first NaN's index, as torch's median."""
    d = self._axis(dim)
    n = self.shape[d] if self.ndim else 1
    if not 1 <= k <= n: raise IndexError(f"{op}: k={k} is out of range for a dimension of size {n} (shape {self.shape})")
    x = self.detach()._moved_last(d)
    v, i = _network(x, k, False)
    v, i = v[..., k - 1], i[..., k - 1]
    if x.dtype.is_float():
      nan = x != x
      has = nan._extreme(-1, False, True)
      v, i = has.where(math.nan, v), has.where(nan._argext(-1, False, True), i)
    if keepdim and self.ndim: v, i = v.unsqueeze(d), i.unsqueeze(d)
    return self._values_indices(op, v, i, d, keepdim)
  def median(self, dim=None, keepdim: bool = False, *, axis=None):
    """torch's lower median: `median()` the ((n - 1) // 2)-th smallest of all elements (0-d; NaN if any is NaN or
    there are none), its gradient shared among the elements equal to it; `median(dim)` a named tuple (values, indices)
    along one axis, the index the one a stable sort puts there (torch's choice for ties), gradient to it alone."""
    dim = self._dim(dim, axis, "median")
    if dim is None:
      x = self.flatten()
      if x.shape[0] == 0:
        if not self.dtype.is_float(): raise ValueError(f"median() of an empty {self.dtype} tensor of shape {self.shape} has no value")
        return _tensor_type().full((), math.nan, dtype=self.dtype, device=self.device)
      return _with_rule(x.detach()._kth((x.shape[0] - 1) // 2 + 1, 0, False, "median").values, "even", self)
    d = self._axis(dim)
    n = self.shape[d] if self.ndim else 1
    if n == 0: raise IndexError(f"median: dimension {d} of shape {self.shape} is empty and has no median")
    return self._kth((n - 1) // 2 + 1, d, keepdim, "median")
  def kthvalue(self, k: int, dim=None, keepdim: bool = False, *, axis=None):
    """Named tuple (values, indices) of the k-th smallest (k from 1) along `dim` (the last axis when not given).
    On ties the index is the one a stable sort puts there; torch's may be another of the equal elements."""
    return self._kth(k, _dim0(self._dim(dim, axis, "kthvalue"), -1), keepdim, "kthvalue")
  def mode(self, dim=None, keepdim: bool = False, *, axis=None):
    """Named tuple (values, indices): the most frequent value along `dim` (the last axis when not given), the smallest
    of those on ties, and the last index it is at (torch's on rows of up to 7; on longer ones torch's unstable sort picks
    any); gradient to that element. Counts pairs of elements: O(n^2) work per row."""
    d = self._axis(_dim0(self._dim(dim, axis, "mode"), -1))
    n = self.shape[d] if self.ndim else 1
    if n == 0: raise IndexError(f"mode: dimension {d} of shape {self.shape} is empty and has no mode")
    x = self.detach()._moved_last(d)
    count = (x.unsqueeze(-1) == x.unsqueeze(-2)).sum(-1)
    top = count == count.amax(-1, keepdim=True)
    v = top.where(x, min_max(x.dtype)[1] if not x.dtype.is_float() else math.inf).amin(-1, keepdim=True)
    i = (x == v).where(_tensor_type().arange(n, dtype=dtypes.int64, device=x.device), -1).amax(-1)
    v = v.squeeze(-1)
    if keepdim and self.ndim: v, i = v.unsqueeze(d), i.unsqueeze(d)
    return self._values_indices("mode", v, i, d, keepdim)

  # ---- torch's names for products and views spelled otherwise here ----
  def view_as(self: Tensor, other: Tensor) -> Tensor:
    """torch.Tensor.view_as: this tensor reshaped to other's shape."""
    return self.reshape(other.shape)
  def expand_as(self: Tensor, other: Tensor) -> Tensor:
    """torch.Tensor.expand_as: this tensor broadcast to other's shape."""
    return self.expand(other.shape)
  def t(self: Tensor) -> Tensor:
    """torch.Tensor.t: a 2-D tensor transposed; 0-D and 1-D ones as they are."""
    if self.ndim > 2: raise ValueError(f"t() expects a tensor of at most 2 dimensions, got shape {self.shape}; use transpose(dim0, dim1) or .mT")
    return self.transpose(0, 1) if self.ndim == 2 else self
  def outer(self: Tensor, vec2: Tensor) -> Tensor:
    """torch.outer: the (n, m) products of this 1-D tensor's n values with vec2's m."""
    if self.ndim != 1 or vec2.ndim != 1: raise ValueError(f"outer: both operands must be 1-D, got shapes {self.shape} and {vec2.shape}")
    return self.reshape(-1, 1) * vec2.reshape(1, -1)
  ger = outer
  def mv(self: Tensor, vec: Tensor) -> Tensor:
    """torch.mv: this (n, m) matrix times the m-vector vec."""
    if self.ndim != 2 or vec.ndim != 1: raise ValueError(f"mv: expected a 2-D matrix and a 1-D vector, got shapes {self.shape} and {vec.shape}")
    return self @ vec
  def addmm(self: Tensor, mat1: Tensor, mat2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """torch.addmm: beta * self + alpha * (mat1 @ mat2), mat1 and mat2 2-D (beta 0 ignores self, NaNs included)."""
    if mat1.ndim != 2 or mat2.ndim != 2: raise ValueError(f"addmm: mat1 and mat2 must be 2-D, got shapes {mat1.shape} and {mat2.shape}")
    return _scaled_sum(self, mat1 @ mat2, beta, alpha)
  def baddbmm(self: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """torch.baddbmm: beta * self + alpha * (batch1 @ batch2), both batches 3-D."""
    if batch1.ndim != 3 or batch2.ndim != 3: raise ValueError(f"baddbmm: batch1 and batch2 must be 3-D, got shapes {batch1.shape} and {batch2.shape}")
    return _scaled_sum(self, batch1 @ batch2, beta, alpha)
  def true_divide(self: Tensor, other) -> Tensor:
    """torch.true_divide: division with a float result (ints promote), the same as /."""
    return self / other
  def negative(self: Tensor) -> Tensor:
    """torch.negative: -self."""
    return -self

def _scaled_sum(a: Tensor, prod: Tensor, beta, alpha) -> Tensor:
  """beta * a + alpha * prod as torch's addmm: a beta of 0 drops a (its NaNs too), factors of 1 are not multiplied."""
  prod = prod if alpha == 1 else prod * alpha
  return prod if beta == 0 else prod + (a if beta == 1 else a * beta)

