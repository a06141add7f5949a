"""C source for the CPU: one function per kernel, loops for ranges, a THREAD range split by the `core`/`ncores`
arguments, GCC vector types (vector_size) for grouped loads, stores and vector arithmetic."""
from __future__ import annotations
import pathlib
from lucidgrad.helpers import getenv
from lucidgrad.dtype import DType, dtypes, signed_int_like
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.renderer import pm_half_via_float32, may_overflow
from lucidgrad.uop.pattern import UPat, PatternMatcher
from lucidgrad.renderer.cstyle import CStyleRenderer, C_TYPES, INFIX, unsigned_of, shift_in_range

# Every helper is guarded, so several kernels' sources concatenated compile as one file (docs/design/0027); typedefs
# may repeat (C11)
def _guarded(name: str, text: str) -> str: return f"#ifndef LG_{name}\n#define LG_{name}\n{text}#endif\n"

PRELUDE = _guarded("PRELUDE", """#include <math.h>
#define __bits(T, x) ({ T _t; __typeof__(x) _x = (x); __builtin_memcpy(&_t, &_x, sizeof(_t)); _t; })
/* float -> int: the low bits of trunc(x); NaN and inf give 0. In range the hardware converts; out of it (rare, so out
   of line) int64 converts, and beyond that x is an integer, m * 2**e with e >= 11, whose low 64 bits are m << e */
__attribute__((noinline, cold, const)) static unsigned long long __f2u_slow(double x) {
  if (fabs(x) < 0x1p63) return (unsigned long long)(long long)x;
  unsigned long long b = __bits(unsigned long long, x), m = (b & 0xfffffffffffffull) | 0x10000000000000ull, e = (b >> 52 & 0x7ffull) - 1075ull;
  unsigned long long big = e < 64ull ? m << e : 0ull;  /* NaN and inf have e = 972 */
  return b >> 63 ? 0ull - big : big;
}
static inline unsigned int __f2u32(float x) { return fabsf(x) < 0x1p31f ? (unsigned int)(int)x : (unsigned int)__f2u_slow(x); }
static inline unsigned int __d2u32(double x) { return fabs(x) < 0x1p31 ? (unsigned int)(int)x : (unsigned int)__f2u_slow(x); }
static inline unsigned long long __f2u64(float x) { return fabsf(x) < 0x1p63f ? (unsigned long long)(long long)x : __f2u_slow(x); }
static inline unsigned long long __d2u64(double x) { return fabs(x) < 0x1p63 ? (unsigned long long)(long long)x : __f2u_slow(x); }
static inline float __bf16_to_f32(unsigned short b) { unsigned int u = ((unsigned int)b) << 16; return __bits(float, u); }
static inline unsigned short __f32_to_bf16(float f) {
  unsigned int u = __bits(unsigned int, f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return 0x7fc0;
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
""")

def _vf2i32(n: int) -> str:
  """__f2u32 on a float32 vector of n lanes, in vector ops: lanes in int32 range convert in hardware, the others are
  integers m * 2**e (e >= 8) whose low 32 bits are m << e."""
  i, f = f"int32x{n}", f"float32x{n}"
  return _guarded(f"VF2I32X{n}", f"static inline {i} __vf2i32x{n}({f} x) {{\n"
          f"  {i} b = ({i})x, in = (x > -0x1p31f) & (x < 0x1p31f), e = ((b >> 23) & 0xff) - 150, m = (b & 0x7fffff) | 0x800000, s = b >> 31;\n"
          f"  {i} fast = __builtin_convertvector(({f})(b & in), {i}), big = (m << (e & 31)) & ((e >= 0) & (e < 32));\n"
          f"  return (fast & in) | (((big ^ s) - s) & ~in);\n}}\n")

# the x86 builtins of the fma instructions on the vector types codegen makes (at most vector_bytes = 64): GCC has them
# without immintrin.h, whose parsing would cost every compile. AVX-512's take a lane mask (all lanes) and a rounding
# mode (4: the current one)
_X86_FMA = {(dtypes.float32, 4): "__builtin_ia32_vfmaddps", (dtypes.float32, 8): "__builtin_ia32_vfmaddps256",
            (dtypes.float64, 2): "__builtin_ia32_vfmaddpd", (dtypes.float64, 4): "__builtin_ia32_vfmaddpd256"}
_X86_FMA512 = {(dtypes.float32, 16): ("__builtin_ia32_vfmaddps512_mask", "(unsigned short)-1"),
               (dtypes.float64, 8): ("__builtin_ia32_vfmaddpd512_mask", "(unsigned char)-1")}

def _vfma(dt: DType) -> str:
  """MULACC on a GCC vector type, one rounding per lane. GCC has no generic vector fma: clang's elementwise builtin
  where the compiler has it, else the x86 instruction where the target has FMA, else lane by lane (C99 fma, which
  the compiler turns into the target's scalar instruction or a correctly rounded library call)."""
  t, f = f"{dt.name}x{dt.count}", "f" if dt.scalar() == dtypes.float32 else ""
  x86 = _X86_FMA.get((dt.scalar(), dt.count))
  lanes = ", ".join(f"__builtin_fma{f}(a[{i}], b[{i}], c[{i}])" for i in range(dt.count))
  x512 = (f"#elif defined(__AVX512F__)\n  return {_X86_FMA512[k][0]}(a, b, c, {_X86_FMA512[k][1]}, 4);\n"
          if (k := (dt.scalar(), dt.count)) in _X86_FMA512 else "")
  return _guarded(f"FMA_{t.upper()}", f"static inline {t} __fma_{t}({t} a, {t} b, {t} c) {{\n#if __has_builtin(__builtin_elementwise_fma)\n"
          f"  return __builtin_elementwise_fma(a, b, c);\n" + (f"#elif defined(__FMA__)\n  return {x86}(a, b, c);\n" if x86 else "") + x512 +
          f"#else\n  return ({t}){{{lanes}}};\n#endif\n}}\n")

# lanes of one or two vectors in a new order (a stride-2 pool's even and odd columns): GCC builds a vector initialised
# lane by lane from another's lanes through the stack, a scalar move per lane, where a shuffle is one or two
# instructions (the MNIST net's fused max-pool, 1.44 -> 0.83 ms on cached data). An older compiler without the builtin
# picks the lanes one by one
LANES = _guarded("LANES", """#if __has_builtin(__builtin_shufflevector)
#define __lanes(T, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define __lanes(T, a, b, ...) ({ const int _i[] = {__VA_ARGS__}; __typeof__(a) _a = (a), _b = (b); T _r; const int _n = sizeof(_a) / sizeof(_a[0]); \\
  for (int _k = 0; _k < (int)(sizeof(_r) / sizeof(_r[0])); _k++) _r[_k] = _i[_k] < _n ? _a[_i[_k]] : _b[_i[_k] - _n]; _r; })
#endif
""")

def _picked_from(u: UOp) -> list[UOp] | None:
  """The vectors (one or two, of one type) a VECTORIZE takes every lane of from, or None if it is not such a one. One
  lane in every lane is left as it is: GCC broadcasts it from memory where it can, which takes a load port, not the
  shuffle port (AVX-512's second FMA port: a matmul's broadcasts of A's lanes)."""
  if u.dtype.scalar() == dtypes.bool or not all(s.op is Ops.GEP and s.dtype.count == 1 for s in u.src) or all(s is u.src[0] for s in u.src): return None
  parents = list(dict.fromkeys(s.src[0] for s in u.src))
  return parents if len(parents) <= 2 and len({p.dtype for p in parents}) == 1 else None

def _vshift(op: Ops, dt: DType, x: str, s: str) -> str:
  """_shift on vectors: `ok` is -1 in the lanes whose amount is in range; out-of-range lanes of a signed >> shift by
  bits-1 (the sign fill)."""
  t, bits = f"{dt.name}x{dt.count}", 8 * dt.itemsize
  ok = f"(({t})(({s}<{bits}){'' if dt.is_unsigned() else f'&({s}>=0)'}))"
  if op is Ops.SHL or dt.is_unsigned(): return f"(({x}{'<<' if op is Ops.SHL else '>>'}({s}&{bits - 1}))&{ok})"
  return f"({x}>>(({s}&{ok})|({bits - 1}&~{ok})))"

_mask_of = signed_int_like  # the int vector a select of dt's bits is done in

def _l2_bytes(default: int = 1 << 20) -> int:
  """This machine's per-core L2 cache in bytes (Linux sysfs), or `default` where it cannot be read."""
  try:
    for idx in pathlib.Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
      if (idx / "level").read_text().strip() == "2" and (idx / "type").read_text().strip() in ("Unified", "Data"):
        size = (idx / "size").read_text().strip().upper()
        return int(size[:-1]) * {"K": 1 << 10, "M": 1 << 20}[size[-1]] if size[-1] in "KM" else int(size)
  except (OSError, ValueError): pass
  return default

def _host_vector_bytes() -> int:
  """The widest vectors -march=native gives this CPU's float math: 64 bytes where it has AVX-512 (and its 32 zmm
  registers), else 32 (AVX2's ymm; GCC splits them where the target is narrower). CPU_VECTOR_BYTES=32 or 64 says it."""
  if (forced := getenv("CPU_VECTOR_BYTES", 0)): return int(forced)
  try: flags = next((l for l in pathlib.Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "").split()
  except OSError: flags = []
  return 64 if "avx512f" in flags else 32

# x86 has no shift of 8- or 16-bit lanes (GCC widens, shifts and packs back: ~6 instructions a nibble vector), and a
# narrow int converts to float through int32 anyway (cast below): so bit ops on narrow unsigned lanes whose result is
# widened are done on the widened lanes. For zero-extended values >>, &, | and ^ give the same bits in 32 (a byte's
# nibbles: one widening load, then a 32-bit shift and mask each; docs/design/0033)
_NARROW_BITS = (Ops.SHR, Ops.AND, Ops.OR, Ops.XOR)

def _const_lanes(x: UOp) -> int | None:
  """The value of every lane of a constant or a vector of one constant, else None."""
  if x.op is Ops.CONST: return x.arg
  if x.op is Ops.VECTORIZE and all(s.op is Ops.CONST and s.arg == x.src[0].arg for s in x.src): return x.src[0].arg
  return None

def _widened(x: UOp, dt: DType) -> tuple[UOp, int]:
  """x (narrow unsigned lanes) as int32 lanes of the same values, and the largest value they can hold: its bit ops
  rebuilt on widened operands, a shift by 0 and a mask that keeps every bit the value can have dropped (a nibble's
  `(q >> 4) & 15` is `q >> 4` for a byte q)."""
  if (c := _const_lanes(x)) is not None: return UOp.const(dt, c), c
  if x.op in _NARROW_BITS and all(s.dtype.count == x.dtype.count for s in x.src):
    (a, amax), (b, bmax) = (_widened(s, dt) for s in x.src)
    bc = _const_lanes(x.src[1])
    if x.op is Ops.SHR and bc is not None: return (a, amax) if bc == 0 else (UOp(Ops.SHR, dt, (a, b)), amax >> bc if bc < 32 else 0)
    if x.op is Ops.AND and bc is not None and bc & ((1 << amax.bit_length()) - 1) == (1 << amax.bit_length()) - 1: return a, amax
    top = (1 << max(amax, bmax).bit_length()) - 1
    return UOp(x.op, dt, (a, b)), min(amax, bmax) if x.op is Ops.AND else amax if x.op is Ops.SHR else top
  if x.op is Ops.VECTORIZE: return UOp(Ops.VECTORIZE, dt, tuple(s.cast(dtypes.int32) for s in x.src)), (1 << 8 * x.dtype.itemsize) - 1
  return x.cast(dt), (1 << 8 * x.dtype.itemsize) - 1

def _widen_narrow_bits(c: UOp) -> UOp | None:
  x = c.src[0]
  if x.dtype.count == 1 or x.op not in _NARROW_BITS or not x.dtype.scalar().is_unsigned() or x.dtype.itemsize > 2: return None
  if not (c.dtype.is_float() or (c.dtype.is_int() and c.dtype.itemsize >= 4)): return None
  return _widened(x, dtypes.int32.vec(x.dtype.count))[0].cast(c.dtype)

pm_widen_narrow_bits = PatternMatcher([(UPat(Ops.CAST, name="c"), _widen_narrow_bits)])

class CRenderer(CStyleRenderer):
  device = "CPU"
  has_cpu_threads = True
  vector_bytes = _host_vector_bytes()
  upcast_width = vector_bytes // 4  # float32 lanes of a vector
  vector_registers = 32 if vector_bytes == 64 else 16  # AVX-512's zmm registers; AVX2's ymm (16 is what every target of 32-byte vectors has)
  cache_bytes = _l2_bytes()
  vector_alu = True
  # a stack array, one per call and so one per CPU thread (8 MiB stacks): half the L2, where a staged panel still sits
  # beside the other operand's rows (GPT-2's c_proj, K = 3072: a 32-column panel is 384 KiB; at 256 KiB only a
  # 16-column one fit, 245 against 265-281 GFLOP/s)
  scratch_max = min(max(cache_bytes // 2, 256 * 1024), 2 << 20)
  prefetch = True  # __builtin_prefetch: gcc and clang
  gated_vector_loads = True
  pre_render = pm_widen_narrow_bits + pm_half_via_float32
  strided_stores = True  # GCC's time grows faster than linearly with a block's lane stores: 416 of them took 2.6 s

  def range_bounds(self, u: UOp, end: str) -> tuple[str, str]:
    # thread `core` of `ncores` takes its share of a THREAD loop, computed in 64 bits: end*ncores may pass 2**31
    return (f"{end}*(long long)core/ncores", f"{end}*(long long)(core+1)/ncores") if u.arg[1] is AxisType.THREAD else ("0", end)
  def define_local(self, u: UOp, name: str, uops: list[UOp]) -> str:  # staging scratch (OptOps.STAGE), aligned for vector loads
    return f"{self.ctype(u.dtype.base())} {name}[{u.arg[1]}] __attribute__((aligned(64)));"
  # into L2 and not L1 (prefetcht1): the next block is a panel of up to a few hundred KB, which L1 cannot hold beside
  # the one in use (GPT-2's c_proj from memory, bench_weight_stream: 2.65-2.85 ms against 2.95-3.18 kept in L1 too)
  def prefetch_hint(self, ptr: str) -> str: return f"__builtin_prefetch({ptr}, 0, 2);"
  def vec_load(self, u: UOp, v: str, ptr: str, gate: str | list[str] | None) -> list[str]:
    if not isinstance(gate, list):
      return [f"{self.ctype(u.dtype)} {v} = {{0}};", (f"if ({gate}) " if gate else "") + f"__builtin_memcpy(&{v}, {ptr}, sizeof({v}));"]
    # a gate per lane: where every lane is valid (all but a border) the vector is read at once; else each valid lane is
    # read alone, so no address a gate rules out (past a buffer's end) is ever read. The lanes are built as one vector
    # of selects, not stored one by one into it: GCC 12.2 at -O1 and above loses a conditional store of one lane of a
    # 64-byte vector (an 8-lane double load under two gates summed lanes 4 and 5 where 5 and 6 were asked: avg_pool2d,
    # fuzz seed 7098)
    every = " && ".join(dict.fromkeys(gate))
    lanes = ", ".join(f"{g} ? {ptr}[{i}] : 0" for i, g in enumerate(gate))
    return [f"{self.ctype(u.dtype)} {v} = {{0}};", f"if ({every}) __builtin_memcpy(&{v}, {ptr}, sizeof({v}));",
            f"else {v} = ({self.ctype(u.dtype)}){{{lanes}}};"]
  # a vector is stored through a pointer to its type's unaligned, may-alias twin, not a memcpy: GCC 12.2 with AVX-512
  # turns a memcpy of a constant vector into a 256-bit integer store and takes {1,1,1,1,0,0,0,0} for a broadcast of
  # 1.0 (ones(8, 8).tril() gave rows 3 and 5 all ones; fuzz seed 50531)
  def vec_store(self, u: UOp, ptr: str, val: str) -> str: return f"*({self.ctype(u.src[1].dtype)}_u*)({ptr}) = {val};"
  def gep(self, x: str, lane: int) -> str: return f"{x}[{lane}]"
  def bitcast(self, u: UOp, x: str) -> str: return f"__bits({self.ctype(u.dtype)}, {x})"
  def ctype(self, dt: DType) -> str:
    # a bool vector is what GCC's vector compare gives: int lanes of 0 / -1 as wide as the operands' (codegen groups only
    # like compares into one), so its C type is inferred
    return "__auto_type" if dt.count > 1 and dt.scalar() == dtypes.bool else super().ctype(dt)

  def _select(self, m: str, x: str, y: str, dt: DType) -> str:
    """Lanes of x where the mask m is set, else of y: bit selects in the int lanes of dt's width."""
    i = self.ctype(_mask_of(dt))
    return f"({{ {i} _m = __builtin_convertvector({m}, {i}); ({self.ctype(dt)})((({i}){x}&_m)|(({i}){y}&~_m)); }})"

  def lane_picks(self, u: UOp, names: dict[UOp, str]) -> str | None:
    if (parents := _picked_from(u)) is None: return None
    first, n = parents[0], parents[0].dtype.count
    lanes = [s.arg if s.src[0] is first else n + s.arg for s in u.src]
    return f"__lanes({self.ctype(u.dtype)}, {names[first]}, {names[parents[-1]]}, {', '.join(map(str, lanes))})"

  def vec_alu(self, u: UOp, a: list[str]) -> str | None:
    if u.dtype.count == 1: return None
    if u.op in (Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ): return f"({a[0]}{INFIX[u.op]}{a[1]})"
    if u.op is Ops.NEG and u.dtype.scalar() == dtypes.bool: return f"(~{a[0]})"
    if u.op is Ops.WHERE: return self._select(a[0], a[1], a[2], u.dtype)
    if u.op is Ops.MAX:  # as the scalar rule: a NaN in either operand is the result
      m = f"(({a[0]}>{a[1]})|({a[0]}!={a[0]}))" if u.dtype.is_float() else f"({a[0]}>{a[1]})"
      return self._select(m, a[0], a[1], u.dtype)
    if u.op is Ops.MULACC: return f"__fma_{self.ctype(u.dtype)}({', '.join(a)})"
    if u.op in (Ops.SHL, Ops.SHR) and not shift_in_range(u.src[1], u.src[0].dtype): return _vshift(u.op, u.dtype, *a)
    return None

  def cast(self, u: UOp, x: str) -> str:
    dst = u.dtype
    if dst.count > 1 and dst.is_float():  # float32 <-> float64, and ints of at most 4 bytes to float32
      src = u.src[0].dtype.scalar()
      # narrow ints widen to int32 first (exact): GCC 12 converts them lane by lane otherwise (extracts and scalar
      # converts). The empty asm keeps the narrow vector a register: a widening of a vector straight from memory GCC
      # turns into one byte load per lane (the Q8_0 matvec 5x slower)
      if src.is_int() and src.itemsize < 4:
        x = f"({{ {self.ctype(u.src[0].dtype)} _n = {x}; __asm__(\"\" : \"+x\"(_n)); __builtin_convertvector(_n, {self.ctype(dtypes.int32.vec(dst.count))}); }})"
      return f"__builtin_convertvector({x}, {self.ctype(dst)})"
    if dst.count > 1 and u.src[0].dtype.is_int() and dst.itemsize > u.src[0].dtype.itemsize:  # a widening (_widened's): as above
      return f"__builtin_convertvector(({{ {self.ctype(u.src[0].dtype)} _n = {x}; __asm__(\"\" : \"+x\"(_n)); _n; }}), {self.ctype(dst)})"
    if dst.count > 1:  # codegen vectorizes only float32 -> int casts of at most 4 bytes (codegen/expand.py vector_cast)
      out = f"__vf2i32x{dst.count}({x})"
      return out if dst.scalar() == dtypes.int32 else f"(({self.ctype(dst)}){out})" if dst.itemsize == 4 else f"__builtin_convertvector({out}, {self.ctype(dst)})"
    return super().cast(u, x)

  def prelude(self, uops: list[UOp]) -> str:
    vecs = [u for u in uops if u.dtype.count > 1]  # one pass over the program: most uops are scalar
    vec_types = {u.dtype.base() if u.dtype.ptr else u.dtype for u in vecs if u.dtype.scalar() != dtypes.bool}  # bool lanes are a load's gates
    vec_types |= {_mask_of(u.dtype) for u in vecs if u.op in (Ops.WHERE, Ops.MAX)}
    vcasts = sorted({u.dtype.count for u in vecs if u.op is Ops.CAST})
    vec_types |= {dt.vec(n) for n in vcasts for dt in (dtypes.int32, dtypes.float32)}
    vec_types |= {unsigned_of(u.dtype) for u in vecs if u.dtype.kind == "i" and may_overflow(u)}
    typedefs = "".join(f"typedef {C_TYPES[d.name]} {self.ctype(d)} __attribute__((vector_size({d.nbytes})));\n" for d in sorted(vec_types, key=repr))
    stored = sorted({u.src[1].dtype for u in uops if u.op is Ops.STORE and u.src[1].dtype.count > 1}, key=repr)
    typedefs += "".join(f"typedef {C_TYPES[d.name]} {self.ctype(d)}_u __attribute__((vector_size({d.nbytes}), aligned({d.itemsize}), may_alias));\n" for d in stored)
    fmas = sorted({u.dtype for u in vecs if u.op is Ops.MULACC}, key=repr)
    lanes = LANES if any(u.op is Ops.VECTORIZE and _picked_from(u) for u in vecs) else ""
    return PRELUDE + lanes + typedefs + "".join(_vf2i32(n) for n in vcasts) + "".join(map(_vfma, fmas))

  def signature(self, name: str, params: list[UOp], written: set[UOp], names: dict[UOp, str], uops: list[UOp]) -> str:
    args = ", ".join([f"{'' if p in written else 'const '}{self.ctype(p.dtype)} restrict {names[p]}" for p in params] + self.var_params(uops))
    return f"void {name}({args}, int core, int ncores)"
