"""C source for the CPU: one function per kernel, loops for ranges, GCC vector types for grouped loads and stores."""
from __future__ import annotations
import math
from lucidgrad.dtype import DType, dtypes
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.renderer import Renderer, pm_half_via_float32, may_overflow

C_TYPES = {"bool": "_Bool", "int8": "signed char", "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
           "int32": "int", "uint32": "unsigned int", "int64": "long long", "uint64": "unsigned long long",
           "float16": "_Float16", "bfloat16": "unsigned short", "float32": "float", "float64": "double"}

def ctype(dt: DType) -> str:
  if dt.count > 1: return f"{dt.name}x{dt.count}"
  return C_TYPES[dt.name] + ("*" if dt.ptr else "")

def render_const(v, dt: DType) -> str:
  """A C literal; negative ones are parenthesised so `a - -2` never becomes `a--2`."""
  if dt.is_bool(): return "1" if v else "0"
  if dt == dtypes.bfloat16: return f"__f32_to_bf16({render_const(v, dtypes.float32)})"
  out = _literal(v, dt)
  return f"({out})" if out.startswith("-") else out

def _literal(v, dt: DType) -> str:
  if dt.is_float():
    if math.isnan(v): return "NAN" if dt.itemsize >= 4 else f"(({ctype(dt)})NAN)"
    if math.isinf(v): return ("-" if v < 0 else "") + "INFINITY"
    if dt == dtypes.float64: return f"{v!r}"
    if dt == dtypes.float32: return f"{float(v)!r}f"
    return f"(({ctype(dt)}){float(v)!r}f)"
  if dt in (dtypes.int64,): return f"{v}LL" if v != -2**63 else "(-9223372036854775807LL-1)"
  if dt == dtypes.uint64: return f"{v}ULL"
  if dt == dtypes.uint32: return f"{v}u"
  if dt == dtypes.int32 and v == -2**31: return "(-2147483647-1)"
  return f"(({ctype(dt)}){v})" if dt.itemsize < 4 else str(v)

_MATH = {Ops.EXP2: "exp2", Ops.LOG2: "log2", Ops.SIN: "sin", Ops.COS: "cos", Ops.SQRT: "sqrt", Ops.TRUNC: "trunc", Ops.POW: "pow"}
_INFIX = {Ops.ADD: "+", Ops.SUB: "-", Ops.MUL: "*", Ops.FDIV: "/", Ops.CMPLT: "<", Ops.CMPNE: "!=", Ops.CMPEQ: "==",
          Ops.AND: "&", Ops.OR: "|", Ops.XOR: "^", Ops.SHL: "<<", Ops.SHR: ">>"}

PRELUDE = """#include <math.h>
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
"""

# Where C leaves integer arithmetic undefined, the renderer defines it as the PYTHON reference and the constant folder
# do: + - * wrap (computed in unsigned where the operands' bounds allow an overflow, renderer.may_overflow); INT_MIN / -1 wraps to INT_MIN and INT_MIN % -1 is 0 (x86's idiv traps);
# x / 0 and x % 0 are 0; shifts by a negative amount or by >= the width give 0 (<<) or the sign fill (>>), as torch
# and NumPy do; a negative value shifts left as its two's-complement bits; float -> int casts NaN and +-inf to 0 and
# otherwise truncate and wrap modulo 2**bits, as int -> int casts do (__f2u32 and friends).
def _divmod(u: UOp, x: str, d: str) -> str:
  c = u.src[1]
  if c.op is Ops.CONST and c.arg not in (0, -1): return f"({x}{'/' if u.op is Ops.IDIV else '%'}{d})"
  if u.dtype.is_unsigned(): return f"({d}==0?0:{x}{'/' if u.op is Ops.IDIV else '%'}{d})"
  return f"({d}==0?0:{d}==-1?(-{x}):{x}/{d})" if u.op is Ops.IDIV else f"(({d}==0||{d}==-1)?0:{x}%{d})"

def _shift_in_range(s: UOp, dt: DType) -> bool:
  return all(c.op is Ops.CONST and 0 <= c.arg < 8 * dt.itemsize for c in (s.src if s.op is Ops.VECTORIZE else (s,)))

def _shift(op: Ops, dt: DType, x: str, s: str, amount: UOp | None = None) -> str:
  t = ctype(dt)
  val = f"(({t})((unsigned {'long long' if dt.itemsize == 8 else 'int'}){x}<<{s}))" if op is Ops.SHL and not dt.is_unsigned() else \
        f"({x}{'<<' if op is Ops.SHL else '>>'}{s})"
  if amount is not None and _shift_in_range(amount, dt): return val
  out = "0" if op is Ops.SHL or dt.is_unsigned() else f"({x}<0?-1:0)"
  return f"((unsigned long long){s}<{8 * dt.itemsize}?{val}:{out})"

def _unsigned(dt: DType) -> DType:
  u = {1: dtypes.uint8, 2: dtypes.uint16, 4: dtypes.uint32, 8: dtypes.uint64}[dt.itemsize]
  return u.vec(dt.count) if dt.count > 1 else u

def _wrapping(u: UOp, a: list[str]) -> str:
  t, ut = ctype(u.dtype), ctype(_unsigned(u.dtype))
  if u.op is Ops.NEG: return f"(({t})(-({ut}){a[0]}))"
  return f"(({t})(({ut}){a[0]}{_INFIX[u.op]}({ut}){a[1]}))"

def _vf2i32(n: int) -> str:
  """__f2u32 on a float32 vector of n lanes, in vector ops: lanes in int32 range convert in hardware, the others are
  integers m * 2**e (e >= 8) whose low 32 bits are m << e."""
  i, f = f"int32x{n}", f"float32x{n}"
  return (f"static inline {i} __vf2i32x{n}({f} x) {{\n"
          f"  {i} b = ({i})x, in = (x > -0x1p31f) & (x < 0x1p31f), e = ((b >> 23) & 0xff) - 150, m = (b & 0x7fffff) | 0x800000, s = b >> 31;\n"
          f"  {i} fast = __builtin_convertvector(({f})(b & in), {i}), big = (m << (e & 31)) & ((e >= 0) & (e < 32));\n"
          f"  return (fast & in) | (((big ^ s) - s) & ~in);\n}}\n")

def _vshift(op: Ops, dt: DType, x: str, s: str) -> str:
  """_shift on vectors: `ok` is -1 in the lanes whose amount is in range; out-of-range lanes of a signed >> shift by
  bits-1 (the sign fill)."""
  t, bits = ctype(dt), 8 * dt.itemsize
  ok = f"(({t})(({s}<{bits}){'' if dt.is_unsigned() else f'&({s}>=0)'}))"
  if op is Ops.SHL or dt.is_unsigned(): return f"(({x}{'<<' if op is Ops.SHL else '>>'}({s}&{bits - 1}))&{ok})"
  return f"({x}>>(({s}&{ok})|({bits - 1}&~{ok})))"

class CRenderer(Renderer):
  device = "CPU"
  has_cpu_threads = True
  upcast_width = 8
  vector_bytes = 32
  pre_render = pm_half_via_float32

  def _alu(self, u: UOp, a: list[str]) -> str:
    dt = u.src[0].dtype if u.src else u.dtype
    fsuf = "f" if dt.scalar() == dtypes.float32 else ""
    if u.op in _MATH: return f"{_MATH[u.op]}{fsuf}({', '.join(a)})"
    if may_overflow(u): return _wrapping(u, a)
    if u.op is Ops.NEG: return f"(!{a[0]})" if dt.is_bool() else f"(-{a[0]})"
    if u.op is Ops.RECIPROCAL: return f"(({ctype(u.dtype)})1/{a[0]})"
    if u.op is Ops.WHERE: return f"({a[0]}?{a[1]}:{a[2]})"
    if u.op is Ops.MAX: return f"(({a[0]}>{a[1]}||{a[0]}!={a[0]})?{a[0]}:{a[1]})" if dt.is_float() else f"({a[0]}>{a[1]}?{a[0]}:{a[1]})"
    if u.op is Ops.MOD and dt.is_float(): return f"fmod{fsuf}({a[0]}, {a[1]})"
    if u.op in (Ops.IDIV, Ops.MOD): return _divmod(u, *a)
    if u.op in (Ops.SHL, Ops.SHR) and u.dtype.count == 1: return _shift(u.op, dt, *a, u.src[1])
    if u.op in (Ops.SHL, Ops.SHR) and not _shift_in_range(u.src[1], dt): return _vshift(u.op, u.dtype, *a)
    if u.op is Ops.FDIV and not dt.is_float(): return f"(({ctype(u.dtype)}){a[0]}/{a[1]})"
    if u.op in _INFIX: return f"({a[0]}{_INFIX[u.op]}{a[1]})"
    raise NotImplementedError(f"C renderer: no rule for {u.op}")

  def _cast(self, u: UOp, x: str) -> str:
    src, dst = u.src[0].dtype, u.dtype
    if dst.count > 1:  # codegen vectorizes only float32 -> int casts of at most 4 bytes (codegen/expand.py vector_cast)
      out = f"__vf2i32x{dst.count}({x})"
      return out if dst.scalar() == dtypes.int32 else f"(({ctype(dst)}){out})" if dst.itemsize == 4 else f"__builtin_convertvector({out}, {ctype(dst)})"
    if src == dtypes.bfloat16 and dst == dtypes.bfloat16: return x
    if src == dtypes.bfloat16: x, src = f"__bf16_to_f32({x})", dtypes.float32
    if dst == dtypes.bfloat16: return f"__f32_to_bf16((float)({x}))"
    if src.is_float() and dst.is_int(): return f"(({ctype(dst)})__{'f' if src.itemsize <= 4 else 'd'}2u{32 if dst.itemsize <= 4 else 64}({x}))"
    return f"(({ctype(dst)})({x}))"

  def render(self, name: str, uops: list[UOp]) -> str:
    names: dict[UOp, str] = {}
    lines: list[str] = []
    params = sorted((u for u in uops if u.op is Ops.DEFINE_GLOBAL), key=lambda u: u.arg[0])
    written = {u.src[0].src[0] for u in uops if u.op is Ops.STORE}
    vec_types = {u.dtype for u in uops if u.dtype.count > 1 and not u.dtype.ptr} | {u.dtype.base() for u in uops if u.dtype.ptr and u.dtype.count > 1}
    vcasts = sorted({u.dtype.count for u in uops if u.op is Ops.CAST and u.dtype.count > 1})
    vec_types |= {dt.vec(n) for n in vcasts for dt in (dtypes.int32, dtypes.float32)}
    vec_types |= {_unsigned(u.dtype) for u in uops if u.dtype.count > 1 and may_overflow(u)}
    counters: dict[str, int] = {}
    def fresh(prefix: str) -> str:
      counters[prefix] = counters.get(prefix, -1) + 1
      return f"{prefix}{counters[prefix]}"
    depth = 1
    def emit(s: str): lines.append("  " * depth + s)
    for p in params: names[p] = f"data{p.arg[0]}"
    for u in uops:
      a = [names.get(s, "") for s in u.src]
      match u.op:
        case Ops.SINK | Ops.DEFINE_GLOBAL | Ops.DEVICE: continue
        case Ops.CONST: names[u] = render_const(u.arg, u.dtype)
        case Ops.RANGE:
          names[u] = v = fresh("ridx")
          # thread `core` of `ncores` takes its share of a THREAD loop, computed in 64 bits: end*ncores may pass 2**31
          lo, hi = (f"{a[0]}*(long long)core/ncores", f"{a[0]}*(long long)(core+1)/ncores") if u.arg[1] is AxisType.THREAD else ("0", a[0])
          emit(f"for ({ctype(u.dtype)} {v} = {lo}; {v} < {hi}; {v}++) {{")
          depth += 1
        case Ops.END:
          depth -= 1
          emit("}")
        case Ops.SPECIAL: raise NotImplementedError("the C renderer has no thread ids")
        case Ops.INDEX: names[u] = f"({a[0]}+{a[1]})"
        case Ops.LOAD if u.src[0].op is Ops.DEFINE_REG: names[u] = a[0]
        case Ops.LOAD:
          idx = u.src[0]
          gate = names[idx.src[2]] if idx.src[2].op is not Ops.CONST else None
          names[u] = v = fresh("val")
          if u.dtype.count > 1:
            emit(f"{ctype(u.dtype)} {v} = {{0}};")
            emit((f"if ({gate}) " if gate else "") + f"__builtin_memcpy(&{v}, {a[0]}, sizeof({v}));")
          elif gate: emit(f"{ctype(u.dtype)} {v} = ({gate}?*{a[0]}:0);")
          else: emit(f"{ctype(u.dtype)} {v} = *{a[0]};")
        case Ops.STORE:
          if (gate := u.src[0].src[2]).op is Ops.CONST and not gate.arg: continue  # a store that never happens
          emit(("" if gate.op is Ops.CONST else f"if ({names[gate]}) ") +
               (f"__builtin_memcpy({a[0]}, &{a[1]}, sizeof({a[1]}));" if u.src[1].dtype.count > 1 else f"*{a[0]} = {a[1]};"))
        case Ops.DEFINE_REG:
          names[u] = v = fresh("acc")
          emit(f"{ctype(u.dtype)} {v} = {{{', '.join([render_const(u.arg[1], u.dtype.scalar())] * u.dtype.count)}}};")
        case Ops.ASSIGN: emit(f"{a[0]} = {a[1]};")
        case Ops.GEP: names[u] = f"{a[0]}[{u.arg}]"
        case Ops.VECTORIZE:
          names[u] = v = fresh("vec")
          emit(f"{ctype(u.dtype)} {v} = {{{', '.join(a)}}};")
        case Ops.CAST:
          names[u] = v = fresh("cast")
          emit(f"{ctype(u.dtype)} {v} = {self._cast(u, a[0])};")
        case Ops.BITCAST:
          names[u] = v = fresh("cast")
          emit(f"{ctype(u.dtype)} {v} = __bits({ctype(u.dtype)}, {a[0]});")
        case _:
          names[u] = v = fresh("alu")
          emit(f"{ctype(u.dtype)} {v} = {self._alu(u, a)};")
    args = ", ".join(f"{'' if p in written else 'const '}{ctype(p.dtype)} restrict {names[p]}" for p in params)
    typedefs = "".join(f"typedef {C_TYPES[d.name]} {ctype(d)} __attribute__((vector_size({d.nbytes})));\n" for d in sorted(vec_types, key=repr))
    return PRELUDE + typedefs + "".join(_vf2i32(n) for n in vcasts) + f"void {name}({args}, int core, int ncores) {{\n" + "\n".join(lines) + "\n}\n"
