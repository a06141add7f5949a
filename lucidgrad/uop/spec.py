"""What a valid UOp graph is at each stage, as rules: the tensor graph (shapes and dtypes agree), the kernel graph from
lowering to control flow (pointer INDEXes, LOAD/STORE, RANGE/REDUCE, accumulators and ENDs) and the linear program
(sources first, loops nested). Checked in tests, and on every kernel under SPEC=1."""
from __future__ import annotations
from typing import Any
from lucidgrad.dtype import DType, dtypes, as_const
from lucidgrad.helpers import all_same, prod
from lucidgrad.uop.ops import UOp, Ops, GroupOp, AxisType, pretty
from lucidgrad.uop.pattern import UPat, PatternMatcher

class SpecError(AssertionError):
  """A graph that breaks the spec of its stage; the message names the rule and the node."""

# A spec is a PatternMatcher whose rules return True for a valid node, or a string saying what is wrong with it; a node
# no rule speaks for is invalid. Rules that do not apply return None, so a later rule for the same op is tried.

def _is(ok: bool, why: str) -> bool | str: return True if ok else why
def _int(u: UOp) -> bool: return u.dtype.is_int() and u.dtype.count == 1 and not u.dtype.ptr
def _bool(u: UOp) -> bool: return u.dtype == dtypes.bool
def _const_ok(x: UOp) -> bool | str:
  if x.dtype.count != 1 or x.dtype.ptr or x.dtype == dtypes.void: return "a CONST is one scalar value"
  v = as_const(x.arg, x.dtype)
  return _is(type(v) is type(x.arg) and (v == x.arg or v != v and x.arg != x.arg), f"CONST arg {x.arg!r} is not a {x.dtype} value")

# ---- ALU: the same rules on tensors and in kernels ----
_NEEDS = {**{op: ("ints", DType.is_int) for op in (Ops.IDIV, Ops.SHL, Ops.SHR)},
          **{op: ("ints or bools", lambda d: d.is_int() or d.is_bool()) for op in (Ops.AND, Ops.OR, Ops.XOR)},
          **{op: ("floats", DType.is_float) for op in (Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.COS, Ops.SQRT, Ops.RECIPROCAL, Ops.TRUNC)},
          # rounded once in the dtype itself: float16/bfloat16 arithmetic is done in float32 and rounded again (docs/design/0013)
          Ops.MULACC: ("float32 or float64", lambda d: d in (dtypes.float32, dtypes.float64))}

def _alu_ok(x: UOp, val=lambda d: d) -> bool | str:
  """`val` maps a dtype to the value type compared (the tensor graph reads a param's pointer as its values)."""
  n = 1 if x.op in GroupOp.Unary else 3 if x.op in GroupOp.Ternary else 2
  if len(x.src) != n: return f"{x.op.name} takes {n} sources, not {len(x.src)}"
  if any(val(s.dtype).ptr for s in x.src): return "ALU on a pointer"
  if x.op is Ops.WHERE:
    c, a, b = x.src
    if val(c.dtype).scalar() != dtypes.bool: return f"WHERE condition is {c.dtype}, not bool"
    return _is(val(a.dtype) == val(b.dtype) == x.dtype, f"WHERE branches ({a.dtype}, {b.dtype}) and result ({x.dtype}) differ")
  dts = [val(s.dtype) for s in x.src]
  if not all_same(dts): return f"{x.op.name} sources differ in dtype: {dts}"
  if x.op in _NEEDS and not _NEEDS[x.op][1](dts[0].scalar()): return f"{x.op.name} works on {_NEEDS[x.op][0]}, not {dts[0]}"
  if x.op in GroupOp.Comparison: return _is(x.dtype == dtypes.bool.vec(dts[0].count), f"a comparison gives bool, not {x.dtype}")
  return _is(x.dtype == dts[0], f"{x.op.name} of {dts[0]} gives {x.dtype}")

def _cast_ok(x: UOp, val=lambda d: d) -> bool | str:
  if len(x.src) != 1 or val(x.src[0].dtype).ptr or x.dtype.ptr: return f"{x.op.name} takes one value"
  s = val(x.src[0].dtype)
  if x.op is Ops.BITCAST: return _is(s.nbytes == x.dtype.nbytes, f"BITCAST {s} -> {x.dtype} changes the size")
  return _is(s.count == x.dtype.count, f"CAST {s} -> {x.dtype} changes the vector width")

# ---- the tensor graph ----
def _same_shape(x: UOp) -> bool | str:
  shapes = [s.shape for s in x.src]
  if any(s is None for s in shapes): return f"{x.op.name} of a source with no shape"
  return _is(all_same(shapes), f"{x.op.name} sources have shapes {shapes}")

def _movement_ok(x: UOp) -> bool | str:
  if len(x.src) != 1 or (sh := x.src[0].shape) is None: return f"{x.op.name} of a source with no shape"
  if x.dtype.base() != x.src[0].dtype.base(): return f"{x.op.name} changes the dtype {x.src[0].dtype} -> {x.dtype}"
  a, n = x.arg, len(sh)
  if not isinstance(a, tuple): return f"{x.op.name} arg {a!r} is not a tuple"
  if _has_uop(a) or any(isinstance(s, UOp) for s in sh): return _symbolic_movement_ok(x, a, sh)
  match x.op:
    case Ops.RESHAPE: return _is(all(isinstance(s, int) and s >= 0 for s in a) and prod(a) == prod(sh), f"RESHAPE {sh} -> {a}")
    case Ops.PERMUTE: return _is(sorted(a) == list(range(n)), f"PERMUTE {a} of {n} axes")
    case Ops.EXPAND: return _is(len(a) == n and all(s == e or s == 1 for s, e in zip(sh, a)), f"EXPAND {sh} -> {a}")
    case Ops.PAD: return _is(len(a) == n and all(isinstance(p, int) and p >= 0 for pa in a for p in pa), f"PAD {a} of {sh}")
    case Ops.SHRINK: return _is(len(a) == n and all(0 <= b <= e <= s for (b, e), s in zip(a, sh)), f"SHRINK {a} of {sh}")
    case Ops.FLIP: return _is(len(set(a)) == len(a) and all(0 <= i < n for i in a), f"FLIP axes {a} of {n} axes")
  return f"no rule for {x.op.name}"

def _has_uop(a) -> bool: return isinstance(a, UOp) or (isinstance(a, tuple) and any(_has_uop(b) for b in a))
def _sym_int(s) -> bool: return isinstance(s, int) or (isinstance(s, UOp) and s.dtype == dtypes.int32 and s.shape is None)

def _symbolic_movement_ok(x: UOp, a: tuple, sh: tuple) -> bool | str:
  """A movement whose arg or source shape holds expressions of Variables (docs/design/0029): checked over the
  Variables' whole ranges."""
  lo, hi = (lambda s: s.vmin if isinstance(s, UOp) else s), (lambda s: s.vmax if isinstance(s, UOp) else s)
  match x.op:
    case Ops.SHRINK: return _is(len(a) == len(sh) and all(_sym_int(b) and _sym_int(e) for b, e in a) and
                                all(lo(b) >= 0 and hi(e) <= hi(s) for (b, e), s in zip(a, sh)), f"SHRINK {a} of {sh}")
    case Ops.PAD: return _is(len(a) == len(sh) and all(_sym_int(p) and lo(p) >= 0 for pa in a for p in pa), f"PAD {a} of {sh}")
    case Ops.RESHAPE | Ops.EXPAND: return _is(all(_sym_int(s) and lo(s) >= 0 for s in a), f"{x.op.name} {sh} -> {a}")
    case Ops.PERMUTE: return _is(sorted(a) == list(range(len(sh))), f"PERMUTE {a} of {len(sh)} axes")
  return f"{x.op.name} of a symbolic shape {sh}"

def _var_ok(x: UOp) -> bool | str:
  return _is(x.dtype == dtypes.int32 and isinstance(x.arg, tuple) and len(x.arg) == 3 and isinstance(x.arg[0], str) and 0 <= x.arg[1] <= x.arg[2],
             "DEFINE_VAR is an int32 with arg (name, min, max)")

def _reduce_axis_ok(x: UOp) -> bool | str:
  if not (isinstance(x.arg, tuple) and len(x.arg) == 2 and isinstance(x.arg[1], tuple)): return f"REDUCE_AXIS arg {x.arg!r} is not (op, axes)"
  op, axes = x.arg
  if op not in GroupOp.Reduce: return f"REDUCE_AXIS with {op}: only {sorted(o.name for o in GroupOp.Reduce)} reduce"
  n = len(x.src[0].shape)
  if not (axes and list(axes) == sorted(set(axes)) and all(0 <= a < n for a in axes)): return f"REDUCE_AXIS axes {axes} of {n} axes"
  return _is(x.dtype.base() == x.src[0].dtype.base(), f"REDUCE_AXIS changes the dtype {x.src[0].dtype} -> {x.dtype}")

def _gather_ok(x: UOp) -> bool | str:
  (t, ix), d = x.src, x.arg
  if t.shape is None or ix.shape is None or len(t.shape) != len(ix.shape): return "GATHER of a table and an index of one ndim"
  if not (type(d) is int and 0 <= d < len(t.shape)): return f"GATHER axis {d!r} of {len(t.shape)} axes"
  if not _tval(ix.dtype).is_int(): return f"GATHER index of {ix.dtype}, not an int"
  if any(a != b for k, (a, b) in enumerate(zip(t.shape, ix.shape)) if k != d): return f"GATHER index {ix.shape} and table {t.shape} differ off axis {d}"
  return _is(x.dtype.base() == _tval(t.dtype), f"GATHER changes the dtype {t.dtype} -> {x.dtype}")

def _take_ok(x: UOp) -> bool | str:
  (t, ix), d = x.src, x.arg
  if t.shape is None or ix.shape is None: return "TAKE of a table and an index"
  if not (type(d) is int and 0 <= d < len(t.shape)): return f"TAKE axis {d!r} of {len(t.shape)} axes"
  if not _tval(ix.dtype).is_int(): return f"TAKE index of {ix.dtype}, not an int"
  return _is(x.dtype.base() == _tval(t.dtype), f"TAKE changes the dtype {t.dtype} -> {x.dtype}")

def _scatter_ok(x: UOp) -> bool | str:
  (t, ix, src), (d, op) = x.src, x.arg
  if t.shape is None or ix.shape is None or len(t.shape) != len(ix.shape): return "SCATTER into a base and an index of one ndim"
  if not (type(d) is int and 0 <= d < len(t.shape)): return f"SCATTER axis {d!r} of {len(t.shape)} axes"
  if op not in (Ops.ADD, None): return f"SCATTER with {op}: only ADD, or None to store"
  if not _tval(ix.dtype).is_int(): return f"SCATTER index of {ix.dtype}, not an int"
  if src.shape != ix.shape: return f"SCATTER source {src.shape} and index {ix.shape} differ"
  if any(a > b for k, (a, b) in enumerate(zip(ix.shape, t.shape)) if k != d): return f"SCATTER index {ix.shape} larger than the base {t.shape} off axis {d}"
  return _is(x.dtype.base() == _tval(t.dtype) == _tval(src.dtype), f"SCATTER of {src.dtype} into {t.dtype} as {x.dtype}")

def _elementwise_ok(x: UOp) -> bool | str:
  if (ok := _same_shape(x)) is not True: return ok
  return _alu_ok(x, _tval) if x.op in GroupOp.ALU else _cast_ok(x, _tval)

def _realize_ok(x: UOp) -> bool | str:
  if len(x.src) != 1 or x.src[0].shape is None: return f"{x.op.name} takes one tensor"
  if x.op is Ops.COPY and not isinstance(x.arg, str): return "COPY names the device it copies to"
  return _is(x.dtype.base() == x.src[0].dtype.base(), f"{x.op.name} changes the dtype {x.src[0].dtype} -> {x.dtype}")

def _vjp_ok(x: UOp) -> bool | str:
  from lucidgrad.gradient import VJP_RULES
  if not x.src or any(s.shape is None for s in x.src): return "VJP takes a value and its inputs, all tensors"
  if not (isinstance(x.arg, tuple) and len(x.arg) == 2 and x.arg[0] in VJP_RULES): return f"VJP names no known gradient rule: {x.arg!r}"
  return _is(x.dtype == x.src[0].dtype, f"VJP changes the dtype {x.src[0].dtype} -> {x.dtype}")

def _assign_ok(x: UOp) -> bool | str:
  if (ok := _same_shape(x)) is not True: return ok
  return _is(x.src[0].dtype.base() == x.src[1].dtype.base() == x.dtype.base(), f"ASSIGN of {x.src[1].dtype} to {x.src[0].dtype}")

def _store_ok(x: UOp) -> bool | str:
  if len(x.src) != 2: return "a kernel's STORE writes a value to a DEFINE_GLOBAL"
  out, v = x.src
  # a write into a region of its buffer stores through SHRINK(RESHAPE(param)) (schedule._region_write)
  if out.op is Ops.SHRINK and out.src[0].op is Ops.RESHAPE and out.src[0].src[0].op is Ops.DEFINE_GLOBAL:
    return _is(v.shape == out.shape and out.dtype.base() == v.dtype.base(), f"STORE of shape {v.shape} into a region of shape {out.shape}")
  if out.op is not Ops.DEFINE_GLOBAL: return "a kernel's STORE writes a value to a DEFINE_GLOBAL"
  if v.shape is None or v.size != out.size: return f"STORE of shape {v.shape} into a buffer of {out.size}"
  return _is(out.dtype.base() == v.dtype.base(), f"STORE of {v.dtype} into {out.dtype}")

def _is_slot(a: Any) -> bool: return isinstance(a, tuple) and len(a) == 2 and all(isinstance(v, int) and v >= 0 for v in a)
def _is_buffer_arg(a: Any) -> bool:
  return isinstance(a, tuple) and len(a) == 4 and _is_slot(a[:2]) and isinstance(a[2], int) and a[2] >= 0 and isinstance(a[3], bool)
_tval = lambda d: d.base()
_dg = (UPat(Ops.DEFINE_GLOBAL, name="x"), lambda x: _is(x.dtype.ptr and not x.src and _is_slot(x.arg), "DEFINE_GLOBAL is a pointer with arg (slot, size)"))

tensor_spec = PatternMatcher([
  (UPat(Ops.SINK, name="x"), lambda x: _is(x.dtype == dtypes.void and all(s.shape is not None or s.op is Ops.STORE for s in x.src),
                                           "a tensor SINK holds tensors or a kernel's STOREs")),
  (UPat(Ops.DEVICE, name="x"), lambda x: _is(not x.src and isinstance(x.arg, str), "DEVICE has a name and no sources")),
  (UPat(Ops.BUFFER, src=(UPat(Ops.DEVICE),), name="x"), lambda x: _is(not x.dtype.ptr and _is_buffer_arg(x.arg), "BUFFER arg is (id, size, version, requires_grad)")),
  _dg,
  (UPat(Ops.CONST, src=(UPat(Ops.DEVICE),), name="x"), _const_ok),
  (UPat(Ops.CONST), lambda: "a tensor CONST has a DEVICE"),
  (UPat(Ops.DEFINE_VAR, src=(UPat(Ops.DEVICE),), name="x"), _var_ok),
  (UPat(tuple(GroupOp.Movement), name="x"), _movement_ok),
  (UPat(Ops.REDUCE_AXIS, src=(UPat(),), name="x"), _reduce_axis_ok),
  (UPat(Ops.GATHER, src=(UPat(), UPat()), name="x"), _gather_ok),
  (UPat(Ops.TAKE, src=(UPat(), UPat()), name="x"), _take_ok),
  (UPat(Ops.SCATTER, src=(UPat(), UPat(), UPat()), name="x"), _scatter_ok),
  (UPat(tuple(GroupOp.Elementwise), name="x"), _elementwise_ok),
  (UPat((Ops.CONTIGUOUS, Ops.COPY, Ops.DETACH), name="x"), _realize_ok),
  (UPat(Ops.ASSIGN, src=(UPat(), UPat()), name="x"), _assign_ok),
  (UPat(Ops.VJP, name="x"), _vjp_ok),
  (UPat(Ops.STORE, name="x"), _store_ok),
])

# ---- the kernel graph, from lowering to control flow ----
def _index_ok(x: UOp) -> bool | str:
  if not x.dtype.ptr: return "INDEX of a tensor value: lowering did not finish"
  if len(x.src) != 3 or x.src[0].op not in (Ops.DEFINE_GLOBAL, Ops.DEFINE_LOCAL): return "INDEX is (DEFINE_GLOBAL, index, gate)"
  buf, idx, gate = x.src
  if not _int(idx): return f"INDEX by a {idx.dtype}, not an int"
  # a vector INDEX may have a gate per lane (renderer.gated_vector_loads)
  if not (_bool(gate) or (gate.op is Ops.VECTORIZE and gate.dtype.scalar() == dtypes.bool and gate.dtype.count == x.dtype.count)):
    return f"INDEX gate is {gate.dtype}, not bool"
  return _is(x.dtype.scalar() == buf.dtype.scalar(), f"INDEX of {buf.dtype} as {x.dtype}")

_INDEX = (dtypes.index, dtypes.int64)
def _effects(srcs) -> bool: return len(srcs) > 0 and all(s.op in (Ops.STORE, Ops.ASSIGN, Ops.END, Ops.BARRIER, Ops.PREFETCH) for s in srcs)
def _grouped(v: UOp) -> bool: return any(u.op is Ops.RANGE and u.arg[1] is AxisType.GROUP for u in v.toposort)

def _ranges(srcs) -> bool: return all(s.op is Ops.RANGE for s in srcs)

def _wmma_ok(x: UOp) -> bool | str:
  """WMMA(A, B, C), arg a renderer.TensorCore: each operand a vector of the elements one lane holds (docs/design/0024)."""
  tc = x.arg
  want = [tc.dtype_in.vec(tc.elements[0]), tc.dtype_in.vec(tc.elements[1]), tc.dtype_acc.vec(tc.elements[2])]
  return _is(len(x.src) == 3 and [s.dtype for s in x.src] == want and x.dtype == want[2],
             f"WMMA {tc.name} takes {want} and gives {want[2]}, not {[s.dtype for s in x.src]} -> {x.dtype}")

kernel_spec = PatternMatcher([
  (UPat(Ops.SINK, name="x"), lambda x: _is(x.dtype == dtypes.void and _effects(x.src), "a kernel SINK holds STOREs and ENDs")),
  (UPat(Ops.CONST, src=(), name="x"), _const_ok),
  (UPat(Ops.DEFINE_VAR, src=(), name="x"), _var_ok),  # a Variable: the kernel's scalar parameter
  _dg,
  (UPat(Ops.DEFINE_LOCAL, src=(), name="x"), lambda x: _is(x.dtype.ptr, "DEFINE_LOCAL is a pointer")),
  (UPat(Ops.DEFINE_REG, name="x"), lambda x: _is(not x.dtype.ptr and _ranges(x.src) and isinstance(x.arg, tuple) and len(x.arg) == 2,
                                                 "DEFINE_REG holds a value, has the loops outside it as sources and arg (id, initial value)")),
  # indices are int32, or int64 in a kernel whose index values do not fit int32 (codegen/lower.py index_dtype)
  (UPat(Ops.SPECIAL, src=(), name="x"), lambda x: _is(x.dtype in _INDEX and isinstance(x.arg, tuple) and isinstance(x.arg[0], str)
                                                      and isinstance(x.arg[1], int) and x.arg[1] >= 1, "SPECIAL is an index with arg (name, size)")),
  (UPat(Ops.RANGE, src=(UPat(Ops.CONST, name="end"),), name="x"),
   lambda x, end: _is(x.dtype in _INDEX and end.dtype == x.dtype and end.arg >= 0 and isinstance(x.arg, tuple) and len(x.arg) == 2
                      and isinstance(x.arg[0], tuple) and isinstance(x.arg[1], AxisType), "RANGE is an index to a constant end, arg (id, AxisType)")),
  (UPat(Ops.RANGE, src=(UPat(Ops.CONST, name="end"), UPat(name="bound")), name="x"),  # codegen/opt/kernel.end_masked_reduces
   lambda x, end, bound: _is(x.dtype in _INDEX and bound.dtype == x.dtype and bound.vmax <= end.arg, "a RANGE's bound is an index no larger than its end")),
  (UPat(Ops.RANGE), lambda: "a RANGE ends at an int CONST"),
  (UPat(Ops.INDEX, name="x"), _index_ok),
  (UPat(Ops.LOAD, src=(UPat(Ops.INDEX, name="idx"),), name="x"),
   lambda x, idx: _is(idx.dtype.ptr and x.dtype == idx.dtype.base(), f"LOAD of {x.dtype} through {idx.dtype}")),
  # ordering sources: a read of local memory waits for the barrier (or the END of the copy loop) after the stores it
  # reads; a staging fill's read of its input waits for the barrier that ends the last step's reads of its scratch
  # (OptOps.STAGE, a tensor core's tiles: docs/design/0010, 0026)
  (UPat(Ops.LOAD, src=(UPat(Ops.INDEX, name="idx"),), allow_any_len=True, name="x"),
   lambda x, idx: _is(x.dtype == idx.dtype.base() and all(s.op is Ops.BARRIER or (s.op is Ops.END and idx.src[0].op is Ops.DEFINE_LOCAL)
                                                          for s in x.src[1:]), "a LOAD waits only for BARRIERs, and a read of local memory for a copy's END")),
  (UPat(Ops.LOAD, src=(UPat(Ops.DEFINE_REG, name="acc"),), allow_any_len=True, name="x"),
   lambda x, acc: _is(x.dtype == acc.dtype and len(x.src) > 1 and all(s.op in (Ops.RANGE, Ops.END) for s in x.src[1:]),
                      "an accumulator is read inside its loops (after its RANGEs) or after them (after their END)")),
  (UPat(Ops.LOAD), lambda: "LOAD reads a pointer INDEX or a DEFINE_REG"),
  (UPat(Ops.STORE, src=(UPat(Ops.INDEX, name="idx"), UPat(name="v")), name="x"),
   lambda x, idx, v: _is(x.dtype == dtypes.void and idx.dtype.ptr and (v.dtype == idx.dtype.base() if x.arg is None else
                         isinstance(x.arg, int) and v.dtype.count > 1 and v.dtype.scalar() == idx.dtype.base()),
                         f"STORE of {v.dtype} through {idx.dtype}" + ("" if x.arg is None else f" at stride {x.arg}"))),
  (UPat(Ops.STORE), lambda: "STORE writes a value through a pointer INDEX"),
  (UPat(Ops.ASSIGN, src=(UPat(Ops.DEFINE_REG, name="acc"), UPat(name="v")), allow_any_len=True, name="x"),
   lambda x, acc, v: _is(x.dtype == acc.dtype == v.dtype and _ranges(x.src[2:]), "ASSIGN is (DEFINE_REG, value of its dtype, *its loops)")),
  (UPat(Ops.ASSIGN), lambda: "ASSIGN in a kernel updates a DEFINE_REG"),
  (UPat(Ops.END, src=(UPat(Ops.RANGE),), allow_any_len=True, name="x"),
   lambda x: _is(x.dtype == dtypes.void and _effects(x.src[1:]), "END closes a RANGE around STOREs, ASSIGNs, PREFETCHes and ENDs")),
  (UPat(Ops.END), lambda: "END's first source is the RANGE it closes"),
  # a reduce split whole over a block's threads (GROUP or ROW as large as its range) loops no more but still combines
  # the threads' values (opt/kernel.py, codegen/group.py): no RANGE left, a GROUP range in its value
  (UPat(Ops.REDUCE, name="x"), lambda x: _is(x.arg in GroupOp.Reduce and (len(x.src) > 1 or _grouped(x.src[0])) and _ranges(x.src[1:])
                                             and x.dtype == x.src[0].dtype, "REDUCE is (value, *RANGEs) with an ADD, MUL or MAX arg and "
                                             "the value's dtype (no RANGE only where the value moves with a GROUP range)")),
  (UPat(Ops.GEP, src=(UPat(name="v"),), name="x"),
   lambda x, v: _is(isinstance(x.arg, int) and 0 <= x.arg < v.dtype.count and x.dtype == v.dtype.scalar() and not v.dtype.ptr,
                    f"GEP {x.arg} of a {v.dtype} as {x.dtype}")),
  (UPat(Ops.VECTORIZE, name="x"), lambda x: _is(x.dtype.count == len(x.src) > 1 and all(s.dtype == x.dtype.scalar() for s in x.src),
                                                f"VECTORIZE of {[s.dtype for s in x.src]} as {x.dtype}")),
  (UPat(Ops.BARRIER, name="x"), lambda x: _is(x.dtype == dtypes.void, "BARRIER is void")),
  (UPat(Ops.PREFETCH, src=(UPat(Ops.INDEX),), name="x"), lambda x: _is(x.dtype == dtypes.void, "PREFETCH is void")),
  (UPat(Ops.PREFETCH), lambda: "PREFETCH hints one INDEX"),
  (UPat(Ops.WMMA, name="x"), _wmma_ok),
  (UPat(tuple(GroupOp.ALU), name="x"), _alu_ok),
  (UPat((Ops.CAST, Ops.BITCAST), name="x"), _cast_ok),
])

# ---- checking ----
def _describe(u: UOp) -> str:
  return f"{u.op.name} {u.dtype} arg={u.arg!r} src=({', '.join(f'{s.op.name} {s.dtype}' for s in u.src)})"

def _fail(stage: str, why: str, u: UOp, graph: UOp | None = None) -> SpecError:
  return SpecError(f"{stage}: {why}\n  at {_describe(u)}" + (f"\n{pretty(graph)}" if graph is not None else ""))

def _check_nodes(nodes, spec: PatternMatcher, stage: str, graph: UOp | None):
  for u in nodes:
    if (ret := spec.rewrite(u)) is not True: raise _fail(stage, ret if isinstance(ret, str) else f"no rule allows {u.op.name} here", u, graph)

def check_tensor_graph(sink: UOp) -> None:
  """Raises SpecError unless every node of the tensor graph `sink` (a user's graph or a kernel's ast) is valid."""
  _check_nodes(sink.toposort, tensor_spec, "tensor graph", sink)

def _check_range_ids(nodes, stage: str, graph: UOp | None):
  ids: dict[Any, UOp] = {}
  for r in nodes:
    if r.op is Ops.RANGE and ids.setdefault(r.arg[0], r) is not r: raise _fail(stage, f"two RANGEs share the id {r.arg[0]}", r, graph)

def check_kernel(sink: UOp) -> None:
  """Raises SpecError unless `sink` is a valid kernel graph: any stage from lowering to add_control_flow."""
  _check_nodes(sink.toposort, kernel_spec, "kernel graph", sink)
  _check_range_ids(sink.toposort, "kernel graph", sink)

def check_linear(uops: list[UOp]) -> None:
  """Raises SpecError unless `uops` is a valid linear program: valid kernel nodes, each once and after its sources,
  RANGE/END nested, and no value used outside the loops it was computed in."""
  _check_nodes(uops, kernel_spec, "linear program", None)
  _check_range_ids(uops, "linear program", None)
  scope: dict[UOp, frozenset[UOp]] = {}  # the loops open where each node was placed
  stack: list[UOp] = []
  for i, u in enumerate(uops):
    if u in scope: raise _fail("linear program", f"placed twice (again at {i})", u)
    if u.op is Ops.REDUCE: raise _fail("linear program", "REDUCE left after control flow", u)
    open_ = frozenset(stack)
    for s in u.src:
      if s not in scope: raise _fail("linear program", f"source {_describe(s)} is not placed before its use at {i}", u)
      if not scope[s] <= open_: raise _fail("linear program", f"uses {s.op.name} outside the loop it was computed in", u)
    if u.op is Ops.END:
      if not stack or stack[-1] is not u.src[0]: raise _fail("linear program", "END does not close the innermost open RANGE", u)
      stack.pop()
    if u.op is Ops.RANGE: stack.append(u)
    scope[u] = frozenset(stack)
  if stack: raise _fail("linear program", "RANGE never closed", stack[-1])
