"""The C-style renderer: a linear program -> one C function, in the plain C that the CPU (renderer/c.py) and CUDA
(renderer/cuda.py) share. A subclass fills the hooks: the signature and prelude, thread ids, local memory, barriers,
vector types and how vectors are loaded, stored and indexed, and bit casts."""
from __future__ import annotations
import math
from lucidgrad.dtype import DType, dtypes
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.renderer import Renderer, may_overflow

C_TYPES = {"bool": "_Bool", "int8": "signed char", "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
           "int32": "int", "uint32": "unsigned int", "int64": "long long", "uint64": "unsigned long long",
           "float16": "_Float16", "bfloat16": "unsigned short", "float32": "float", "float64": "double"}

# MULACC is C99's fma (one rounding; the compilers inline it as an fma instruction where the target has one)
MATH = {Ops.EXP2: "exp2", Ops.LOG2: "log2", Ops.SIN: "sin", Ops.COS: "cos", Ops.SQRT: "sqrt", Ops.TRUNC: "trunc", Ops.POW: "pow",
        Ops.MULACC: "fma"}
INFIX = {Ops.ADD: "+", Ops.SUB: "-", Ops.MUL: "*", Ops.FDIV: "/", Ops.CMPLT: "<", Ops.CMPNE: "!=", Ops.CMPEQ: "==",
         Ops.AND: "&", Ops.OR: "|", Ops.XOR: "^", Ops.SHL: "<<", Ops.SHR: ">>"}

def unsigned_of(dt: DType) -> DType:
  u = {1: dtypes.uint8, 2: dtypes.uint16, 4: dtypes.uint32, 8: dtypes.uint64}[dt.itemsize]
  return u.vec(dt.count) if dt.count > 1 else u

# Where C leaves integer arithmetic undefined, the renderer defines it as the PYTHON reference and the constant folder
# do: + - * wrap (computed in unsigned where the operands' bounds allow an overflow, renderer.may_overflow); INT_MIN / -1
# wraps to INT_MIN and INT_MIN % -1 is 0 (x86's idiv traps); x / 0 and x % 0 are 0; shifts by a negative amount or by
# >= the width give 0 (<<) or the sign fill (>>), as torch and NumPy do; a negative value shifts left as its
# two's-complement bits; float -> int casts NaN and +-inf to 0 and otherwise truncate and wrap modulo 2**bits, as
# int -> int casts do (__f2u32 and friends, which each subclass's prelude defines).
def _divmod(u: UOp, x: str, d: str) -> str:
  c = u.src[1]
  if c.op is Ops.CONST and c.arg not in (0, -1): return f"({x}{'/' if u.op is Ops.IDIV else '%'}{d})"
  if u.dtype.is_unsigned(): return f"({d}==0?0:{x}{'/' if u.op is Ops.IDIV else '%'}{d})"
  return f"({d}==0?0:{d}==-1?(-{x}):{x}/{d})" if u.op is Ops.IDIV else f"(({d}==0||{d}==-1)?0:{x}%{d})"

def shift_in_range(s: UOp, dt: DType) -> bool:
  """Whether every amount `s` can take is in [0, bits), from its bounds: exact for a constant, and `k & 63` has them."""
  return 0 <= s.vmin and s.vmax < 8 * dt.itemsize

class CStyleRenderer(Renderer):
  types = C_TYPES
  nan, inf = "NAN", "INFINITY"  # float literals the target's headers name
  math_names = MATH             # a float32 op appends "f" (expf, exp2f): C's and CUDA's names agree

  # ---- hooks ----
  def prelude(self, uops: list[UOp]) -> str: raise NotImplementedError  # headers, helpers, vector types
  def signature(self, name: str, params: list[UOp], written: set[UOp], names: dict[UOp, str], uops: list[UOp]) -> str:
    raise NotImplementedError
  def range_bounds(self, u: UOp, end: str) -> tuple[str, str]: return "0", end
  def var_params(self, uops: list[UOp]) -> list[str]:
    """The Variables a kernel reads, as parameters after its buffers, by name (ProgramSpec.vars): 64-bit, as every
    other argument is, so the launchers pass them like addresses."""
    return [f"long long var_{n}" for n in sorted({u.arg[0] for u in uops if u.op is Ops.DEFINE_VAR})]
  def special(self, u: UOp) -> str: raise NotImplementedError(f"{type(self).__name__}: no thread ids")
  def define_local(self, u: UOp, name: str, uops: list[UOp]) -> str: raise NotImplementedError(f"{type(self).__name__}: no local memory")
  def barrier(self, u: UOp, copies: bool, uops: list[UOp]) -> str: raise NotImplementedError(f"{type(self).__name__}: no barriers")
  def prefetch_hint(self, ptr: str) -> str: raise NotImplementedError(f"{type(self).__name__}: no prefetch (Renderer.prefetch)")
  def async_copies(self, uops: list[UOp]) -> dict[UOp, UOp]: return {}  # store -> the global load it copies in the background
  def async_copy(self, store: UOp, load: UOp, names: dict[UOp, str]) -> str: raise NotImplementedError
  def matrix_load(self, u: UOp, v: str, ptr: str) -> list[str]: raise NotImplementedError(f"{type(self).__name__}: no matrix loads")
  def vec_load(self, u: UOp, v: str, ptr: str, gate: str | list[str] | None) -> list[str]: raise NotImplementedError  # gate: one, or one per lane
  def vec_store(self, u: UOp, ptr: str, val: str) -> str: raise NotImplementedError
  def gep(self, x: str, lane: int) -> str: raise NotImplementedError
  def bitcast(self, u: UOp, x: str) -> str: raise NotImplementedError
  def zero(self, dt: DType) -> str: return "0"  # the value a gated-off scalar load reads
  def vec_alu(self, u: UOp, a: list[str]) -> str | None: return None  # a vector op with target-specific rules
  def lane_picks(self, u: UOp, names: dict[UOp, str]) -> str | None: return None  # a VECTORIZE of lanes of vectors, as one shuffle

  # ---- plain C ----
  def ctype(self, dt: DType) -> str:
    if dt.count > 1: return f"{dt.name}x{dt.count}"
    return self.types[dt.name] + ("*" if dt.ptr else "")

  def const(self, v, dt: DType) -> str:
    """A C literal; negative ones are parenthesised so `a - -2` never becomes `a--2`."""
    if dt.is_bool(): return "1" if v else "0"
    if dt == dtypes.bfloat16: return f"__f32_to_bf16({self.const(v, dtypes.float32)})"
    out = self._literal(v, dt)
    return f"({out})" if out.startswith("-") else out

  def _literal(self, v, dt: DType) -> str:
    if dt.is_float():
      if math.isnan(v): return self.nan if dt.itemsize >= 4 else f"(({self.ctype(dt)}){self.nan})"
      # a 16-bit float's inf as its own type: CUDA's `c ? half : float` is ambiguous (a half cummin's select did not compile)
      if math.isinf(v): return ("-" if v < 0 else "") + (self.inf if dt.itemsize >= 4 else f"(({self.ctype(dt)}){self.inf})")
      if dt == dtypes.float64: return f"{v!r}"
      if dt == dtypes.float32: return f"{float(v)!r}f"
      return f"(({self.ctype(dt)}){float(v)!r}f)"
    if dt in (dtypes.int64,): return f"{v}LL" if v != -2**63 else "(-9223372036854775807LL-1)"
    if dt == dtypes.uint64: return f"{v}ULL"
    if dt == dtypes.uint32: return f"{v}u"
    if dt == dtypes.int32 and v == -2**31: return "(-2147483647-1)"
    return f"(({self.ctype(dt)}){v})" if dt.itemsize < 4 else str(v)

  def _shift(self, op: Ops, dt: DType, x: str, s: str, amount: UOp | None = None) -> str:
    val = f"(({self.ctype(dt)})((unsigned {'long long' if dt.itemsize == 8 else 'int'}){x}<<{s}))" if op is Ops.SHL and not dt.is_unsigned() else \
          f"({x}{'<<' if op is Ops.SHL else '>>'}{s})"
    if amount is not None and shift_in_range(amount, dt): return val
    out = "0" if op is Ops.SHL or dt.is_unsigned() else f"({x}<0?-1:0)"
    return f"((unsigned long long){s}<{8 * dt.itemsize}?{val}:{out})"

  def _wrapping(self, u: UOp, a: list[str]) -> str:
    t, ut = self.ctype(u.dtype), self.ctype(unsigned_of(u.dtype))
    if u.op is Ops.NEG: return f"(({t})(-({ut}){a[0]}))"
    return f"(({t})(({ut}){a[0]}{INFIX[u.op]}({ut}){a[1]}))"

  def alu(self, u: UOp, a: list[str]) -> str:
    dt = u.src[0].dtype if u.src else u.dtype
    # names and kinds, not dt.scalar(): that builds a DType for every vector op rendered
    if (out := self.vec_alu(u, a)) is not None: return out
    if u.op in self.math_names: return f"{self.math_names[u.op]}{'f' if dt.name == 'float32' else ''}({', '.join(a)})"
    if u.dtype.kind == "i" and may_overflow(u): return self._wrapping(u, a)  # only signed ints can overflow
    if u.op is Ops.NEG: return f"(!{a[0]})" if dt.is_bool() else f"(-{a[0]})"
    if u.op is Ops.RECIPROCAL: return f"(({self.ctype(u.dtype)})1/{a[0]})"
    if u.op is Ops.WHERE: return f"({a[0]}?{a[1]}:{a[2]})"
    if u.op is Ops.MAX: return f"(({a[0]}>{a[1]}||{a[0]}!={a[0]})?{a[0]}:{a[1]})" if dt.is_float() else f"({a[0]}>{a[1]}?{a[0]}:{a[1]})"
    if u.op is Ops.MOD and dt.is_float(): return f"fmod{'f' if dt.name == 'float32' else ''}({a[0]}, {a[1]})"
    if u.op in (Ops.IDIV, Ops.MOD): return _divmod(u, *a)
    if u.op in (Ops.SHL, Ops.SHR) and u.dtype.count == 1: return self._shift(u.op, dt, *a, u.src[1])
    if u.op is Ops.FDIV and not dt.is_float(): return f"(({self.ctype(u.dtype)}){a[0]}/{a[1]})"
    if u.op in INFIX: return f"({a[0]}{INFIX[u.op]}{a[1]})"
    raise NotImplementedError(f"{type(self).__name__}: no rule for {u.op}")

  def cast(self, u: UOp, x: str) -> str:
    src, dst = u.src[0].dtype, u.dtype
    if src == dtypes.bfloat16 and dst == dtypes.bfloat16: return x
    if src == dtypes.bfloat16: x, src = f"__bf16_to_f32({x})", dtypes.float32
    if dst == dtypes.bfloat16: return f"__f32_to_bf16((float)({x}))"
    if src.is_float() and dst.is_int(): return f"(({self.ctype(dst)})__{'f' if src.itemsize <= 4 else 'd'}2u{32 if dst.itemsize <= 4 else 64}({x}))"
    return f"(({self.ctype(dst)})({x}))"

  def store(self, u: UOp, ptr: str, val: str, names: dict[UOp, str]) -> str:
    """A scalar store; a target with parallel writers makes a scatter's read-modify-write atomic here."""
    return f"*{ptr} = {val};"

  def render(self, name: str, uops: list[UOp]) -> str:
    names: dict[UOp, str] = {}
    lines: list[str] = []
    params = sorted((u for u in uops if u.op is Ops.DEFINE_GLOBAL), key=lambda u: u.arg[0])
    written = {u.src[0].src[0] for u in uops if u.op is Ops.STORE}
    counters: dict[str, int] = {}
    def fresh(prefix: str) -> str:
      counters[prefix] = counters.get(prefix, -1) + 1
      return f"{prefix}{counters[prefix]}"
    depth = 1
    def emit(s: str): lines.append("  " * depth + s)
    for p in params: names[p] = f"data{p.arg[0]}"
    # a copy from global to local memory the target runs in the background: its load (and the lanes regrouped for the
    # store) are not rendered, the store is the copy, and each barrier first waits for the copies in flight
    copies = self.async_copies(uops)
    unrendered = {x for st, ld in copies.items() for x in (st.src[1], ld)}
    for u in uops:
      if u in unrendered: continue
      a = [names.get(s, "") for s in u.src]
      match u.op:
        case Ops.SINK | Ops.DEFINE_GLOBAL | Ops.DEVICE: continue
        case Ops.DEFINE_VAR: names[u] = f"((int)var_{u.arg[0]})"  # a scalar parameter (docs/design/0029)
        case Ops.CONST: names[u] = self.const(u.arg, u.dtype)
        case Ops.RANGE:
          names[u] = v = fresh("ridx")
          lo, hi = self.range_bounds(u, a[0] if len(u.src) == 1 else a[1])  # a bound a Variable sets: end_masked_reduces
          emit(f"for ({self.ctype(u.dtype)} {v} = {lo}; {v} < {hi}; {v}++) {{")
          depth += 1
        case Ops.END:
          depth -= 1
          emit("}")
        case Ops.SPECIAL:
          names[u] = u.arg[0]
          emit(f"{self.ctype(u.dtype)} {u.arg[0]} = {self.special(u)};  /* 0..{u.arg[1] - 1} */")
        case Ops.DEFINE_LOCAL:
          names[u] = v = f"temp{u.arg[0]}"
          emit(self.define_local(u, v, uops))
        case Ops.BARRIER:
          if line := self.barrier(u, bool(copies), uops): emit(line)
        case Ops.INDEX: names[u] = f"({a[0]}+{a[1]})"
        case Ops.PREFETCH: emit(self.prefetch_hint(a[0]))
        case Ops.LOAD if u.src[0].op is Ops.DEFINE_REG: names[u] = a[0]
        case Ops.LOAD:  # u.src[1:] is a barrier a local read waits for: the order of the lines already keeps it
          g = u.src[0].src[2]
          # a vector load's gate is one bool, or one per lane (renderer.gated_vector_loads): a VECTORIZE, named by its lanes
          gate = (None if g.arg else "0") if g.op is Ops.CONST else [names[x] for x in g.src] if g.dtype.count > 1 else names[g]
          names[u] = v = fresh("val")
          if u.arg is not None:
            for line in self.matrix_load(u, v, a[0]): emit(line)
          elif u.dtype.count > 1:
            for line in self.vec_load(u, v, a[0], gate): emit(line)
          elif gate: emit(f"{self.ctype(u.dtype)} {v} = ({gate}?*{a[0]}:{self.zero(u.dtype)});")
          else: emit(f"{self.ctype(u.dtype)} {v} = *{a[0]};")
        case Ops.STORE:
          if (gate := u.src[0].src[2]).op is Ops.CONST and not gate.arg: continue  # a store that never happens
          if u in copies: store = self.async_copy(u, copies[u], names)
          elif u.arg is not None:  # a strided store (renderer.strided_stores): lane l at ptr + l*stride
            n = u.src[1].dtype.count  # the last lane's offset in 64 bits where it passes an int's range (a 64-bit indexed kernel)
            lane = "int" if (n - 1) * abs(u.arg) < 2**31 else "long long"
            store = f"for ({lane} lane = 0; lane < {n}; lane++) {a[0]}[lane*{u.arg}] = {a[1]}[lane];"
          else: store = self.vec_store(u, a[0], a[1]) if u.src[1].dtype.count > 1 else self.store(u, a[0], a[1], names)
          emit(("" if gate.op is Ops.CONST else f"if ({names[gate]}) ") + store)
        case Ops.DEFINE_REG:
          names[u] = v = fresh("acc")
          emit(f"{self.ctype(u.dtype)} {v} = {{{', '.join([self.const(u.arg[1], u.dtype.scalar())] * u.dtype.count)}}};")
        case Ops.ASSIGN: emit(f"{a[0]} = {a[1]};")
        case Ops.GEP: names[u] = self.gep(a[0], u.arg)
        case Ops.VECTORIZE if u.dtype.scalar() == dtypes.bool: continue  # only a vector load's lane gates: C has no bool vectors
        case Ops.VECTORIZE:
          names[u] = v = fresh("vec")
          emit(f"{self.ctype(u.dtype)} {v} = {picks if (picks := self.lane_picks(u, names)) is not None else '{' + ', '.join(a) + '}'};")
        case Ops.CAST:
          names[u] = v = fresh("cast")
          emit(f"{self.ctype(u.dtype)} {v} = {self.cast(u, a[0])};")
        case Ops.BITCAST:
          names[u] = v = fresh("cast")
          emit(f"{self.ctype(u.dtype)} {v} = {self.bitcast(u, a[0])};")
        case _:
          names[u] = v = fresh("alu")
          emit(f"{self.ctype(u.dtype)} {v} = {self.alu(u, a)};")
    return self.prelude(uops) + self.signature(name, params, written, names, uops) + " {\n" + "\n".join(lines) + "\n}\n"
