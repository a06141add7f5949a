"""C source for the CPU: one function per kernel, loops for ranges, GCC vector types for grouped loads and stores."""
from __future__ import annotations
import math
from lucidgrad.dtype import DType, dtypes
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.renderer import Renderer, pm_half_via_float32
from lucidgrad.codegen.linearize import parallel_loop

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

_MATH = {Ops.EXP2: "exp2", Ops.LOG2: "log2", Ops.SIN: "sin", Ops.SQRT: "sqrt", Ops.TRUNC: "trunc", Ops.POW: "pow"}
_INFIX = {Ops.ADD: "+", Ops.SUB: "-", Ops.MUL: "*", Ops.FDIV: "/", Ops.CMPLT: "<", Ops.CMPNE: "!=", Ops.CMPEQ: "==",
          Ops.AND: "&", Ops.OR: "|", Ops.XOR: "^", Ops.SHL: "<<", Ops.SHR: ">>"}

PRELUDE = """#include <math.h>
#define __bits(T, x) ({ T _t; __typeof__(x) _x = (x); __builtin_memcpy(&_t, &_x, sizeof(_t)); _t; })
static inline float __bf16_to_f32(unsigned short b) { unsigned int u = ((unsigned int)b) << 16; return __bits(float, u); }
static inline unsigned short __f32_to_bf16(float f) {
  unsigned int u = __bits(unsigned int, f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return 0x7fc0;
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
"""

class CRenderer(Renderer):
  device = "CPU"
  upcast_width = 8
  vector_bytes = 32
  pre_render = pm_half_via_float32

  def _alu(self, u: UOp, a: list[str]) -> str:
    dt = u.src[0].dtype if u.src else u.dtype
    fsuf = "f" if dt.scalar() == dtypes.float32 else ""
    if u.op in _MATH: return f"{_MATH[u.op]}{fsuf}({', '.join(a)})"
    if u.op is Ops.NEG: return f"(!{a[0]})" if dt.is_bool() else f"(-{a[0]})"
    if u.op is Ops.RECIPROCAL: return f"(({ctype(u.dtype)})1/{a[0]})"
    if u.op is Ops.WHERE: return f"({a[0]}?{a[1]}:{a[2]})"
    if u.op is Ops.MAX: return f"(({a[0]}>{a[1]}||{a[0]}!={a[0]})?{a[0]}:{a[1]})" if dt.is_float() else f"({a[0]}>{a[1]}?{a[0]}:{a[1]})"
    if u.op is Ops.MOD and dt.is_float(): return f"fmod{fsuf}({a[0]}, {a[1]})"
    if u.op in (Ops.IDIV, Ops.MOD): return f"({a[1]}==0?0:{a[0]}{'/' if u.op is Ops.IDIV else '%'}{a[1]})"
    if u.op is Ops.FDIV and not dt.is_float(): return f"(({ctype(u.dtype)}){a[0]}/{a[1]})"
    if u.op in _INFIX: return f"({a[0]}{_INFIX[u.op]}{a[1]})"
    raise NotImplementedError(f"C renderer: no rule for {u.op}")

  def _cast(self, u: UOp, x: str) -> str:
    src, dst = u.src[0].dtype, u.dtype
    if src == dtypes.bfloat16 and dst == dtypes.bfloat16: return x
    if src == dtypes.bfloat16: return f"(({ctype(dst)})__bf16_to_f32({x}))"
    if dst == dtypes.bfloat16: return f"__f32_to_bf16((float)({x}))"
    return f"(({ctype(dst)})({x}))"

  def render(self, name: str, uops: list[UOp]) -> str:
    names: dict[UOp, str] = {}
    lines: list[str] = []
    params = sorted((u for u in uops if u.op is Ops.DEFINE_GLOBAL), key=lambda u: u.arg[0])
    written = {u.src[0].src[0] for u in uops if u.op is Ops.STORE}
    vec_types = {u.dtype for u in uops if u.dtype.count > 1 and not u.dtype.ptr} | {u.dtype.base() for u in uops if u.dtype.ptr and u.dtype.count > 1}
    counters: dict[str, int] = {}
    def fresh(prefix: str) -> str:
      counters[prefix] = counters.get(prefix, -1) + 1
      return f"{prefix}{counters[prefix]}"
    depth, par = 1, parallel_loop(uops)
    def emit(s: str): lines.append("  " * depth + s)
    for p in params: names[p] = f"data{p.arg[0]}"
    for u in uops:
      a = [names.get(s, "") for s in u.src]
      match u.op:
        case Ops.SINK | Ops.DEFINE_GLOBAL | Ops.DEVICE: continue
        case Ops.CONST: names[u] = render_const(u.arg, u.dtype)
        case Ops.RANGE:
          names[u] = v = fresh("ridx")
          # thread `core` of `ncores` takes its share of the outer loop
          lo, hi = (f"{a[0]}*core/ncores", f"{a[0]}*(core+1)/ncores") if u is par else ("0", a[0])
          emit(f"for (int {v} = {lo}; {v} < {hi}; {v}++) {{")
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
          if u.src[1].dtype.count > 1: emit(f"__builtin_memcpy({a[0]}, &{a[1]}, sizeof({a[1]}));")
          else: emit(f"*{a[0]} = {a[1]};")
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
    return PRELUDE + typedefs + f"void {name}({args}, int core, int ncores) {{\n" + "\n".join(lines) + "\n}\n"
