"""The spec of each stage: real programs pass it at every step from the tensor graph to the linear program, on the CPU
(loops) and on PYTHON (thread ids), and hand-built invalid graphs fail it with an error naming the bad node."""
import numpy as np
import pytest
import lucidgrad.codegen as codegen
from lucidgrad import Tensor
from lucidgrad.device import Device
from lucidgrad.dtype import dtypes
from lucidgrad.helpers import Context
from lucidgrad.schedule import create_schedule
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.spec import SpecError, check_tensor_graph, check_kernel, check_linear

gen = np.random.default_rng(0)
def rand(*shape, dtype=np.float32) -> np.ndarray: return gen.standard_normal(shape).astype(dtype)

PROGRAMS = {
  "add_broadcast": lambda T: T(rand(4, 8)) + T(rand(8)),
  "transposed_add": lambda T: T(rand(8, 4)).T * 2 + T(rand(4, 8)),
  "unary_chain": lambda T: (T(rand(16, 16)).exp() + 1).log().sqrt(),
  "int_math": lambda T: (T(np.arange(24, dtype=np.int32)).reshape(4, 6) // 5 + T(np.arange(6, dtype=np.int32)) % 4) * 3,
  "where_compare": lambda T: (T(rand(6, 10)) > 0).where(T(rand(6, 10)), -1.0),
  "casts": lambda T: T(rand(8, 8)).half().float() + T(np.arange(8, dtype=np.int32)).float(),
  "sum_all": lambda T: T(rand(7, 9)).sum(),
  "sum_axis0": lambda T: T(rand(16, 12)).sum(axis=0),
  "max_axis1": lambda T: T(rand(12, 32)).max(axis=1),
  "mean_var": lambda T: T(rand(8, 32)).var(axis=1),
  "argmax": lambda T: T(rand(5, 20)).argmax(axis=1),
  "matmul": lambda T: T(rand(16, 32)) @ T(rand(32, 8)),
  "matmul_odd": lambda T: T(rand(5, 7)) @ T(rand(7, 3)),
  "batched_matmul": lambda T: T(rand(2, 8, 16)) @ T(rand(2, 16, 4)),
  "pad": lambda T: T(rand(4, 8)).pad(((1, 2), (3, 0))),
  "pad_then_sum": lambda T: T(rand(6, 6)).pad(((2, 2), (2, 2))).sum(axis=1),
  "shrink_flip": lambda T: T(rand(10, 12)).flip(0)[2:7, 1:9] * 3,
  "softmax": lambda T: T(rand(8, 50)).softmax(-1),
  "log_softmax": lambda T: T(rand(4, 16)).log_softmax(0),
  "cat": lambda T: T(rand(3, 4)).cat(T(rand(2, 4)), dim=0) + 1,
  "permute_sum": lambda T: T(rand(3, 5, 7)).permute(2, 0, 1).sum(axis=2),
  "expand_reduce_twice": lambda T: (T(rand(4, 8)) - T(rand(4, 8)).max(axis=1, keepdim=True)).sum(axis=1),
  "bit_ops": lambda T: ((T(np.arange(16, dtype=np.int32)) << 2) ^ 5 | 1) >> 1,
  "bool_logic": lambda T: ((T(rand(8)) > 0) & (T(rand(8)) < 1)) | (T(rand(8)) == 0),
  "contiguous_detach": lambda T: (T(rand(4, 8)) * 2).contiguous().detach().sum(axis=1),
  "copy": lambda T: T(rand(4, 8)).to("CPU").to("PYTHON") + 1,
  "gather": lambda T: (T(rand(6, 8)) * 2)[T(np.array([5, -1, 0], np.int32))].exp(),
  "random": lambda T: (x := T(rand(4, 4))) * Tensor.rand(4, 4, device=x.device),
}

def stage_checker(monkeypatch) -> list[str]:
  """Wraps each pass get_program calls so that every kernel graph it hands on is checked; returns the passes seen."""
  seen: list[str] = []
  def wrap(name, fn):
    def checked(*args, **kw):
      out = fn(*args, **kw)
      sink = out[0] if isinstance(out, tuple) else out
      if isinstance(sink, UOp) and sink.op is Ops.SINK:
        seen.append(kw.get("name") or name)
        check_kernel(sink)
      return out
    monkeypatch.setattr(module, name, checked)
  from lucidgrad.codegen.opt import kernel
  from lucidgrad.codegen import program
  for module, names in ((kernel, ("lower_kernel", "graph_rewrite")),
                        (program, ("graph_rewrite", "expand_upcast", "ranges_to_threads", "group_vectors", "add_control_flow"))):
    for name in names: wrap(name, getattr(module, name))
  return seen

@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
@pytest.mark.parametrize("program", list(PROGRAMS))
def test_real_programs_pass_every_stage(program, device, monkeypatch):
  t = PROGRAMS[program](lambda x: Tensor(x, device=device))
  check_tensor_graph(UOp.sink(t.uop))
  items, _, _ = create_schedule([t.uop])
  for it in items: check_tensor_graph(it.ast if it.ast.op is Ops.SINK else UOp.sink(it.ast))
  kernels = [it for it in items if it.kind == "kernel"]
  assert kernels
  seen = stage_checker(monkeypatch)
  for it in kernels:
    with Context(SPEC=1): spec = codegen.get_program(it.ast, Device[device].renderer)
    check_linear(spec.uops)
  assert {"lower_kernel", "simplify", "add_control_flow"} <= set(seen)
  # the last kernel writes the output: with more than one element, PYTHON runs it on thread ids
  if device == "PYTHON" and t.numel() > 1: assert any(u.op is Ops.SPECIAL for u in spec.uops)

def test_spec_flag_checks_kernels_that_run():
  with Context(SPEC=1):
    out = (Tensor(rand(6, 10)).softmax(-1) @ Tensor(rand(10, 3))).numpy()
  assert out.shape == (6, 3) and np.isfinite(out).all()

# ---- invalid graphs ----
DEV = UOp(Ops.DEVICE, arg="CPU")
def buf(*shape, dt=dtypes.float32) -> UOp: return UOp.new_buffer("CPU", int(np.prod(shape)), dt).reshape(shape)
def raises(check, graph, *words):
  """`check` fails on `graph`, and its error's first two lines (what is wrong, and the node) hold `words`."""
  with pytest.raises(SpecError) as e: check(graph)
  head = "\n".join(str(e.value).splitlines()[:2])
  for w in words: assert w in head, str(e.value)

def test_tensor_graph_rejects_a_gather_off_its_table():
  t, ix = buf(2, 3), buf(4, 3, dt=dtypes.int32)
  check_tensor_graph(UOp.sink(t.gather(ix, 0)))
  raises(check_tensor_graph, UOp.sink(t.gather(ix, 1)), "GATHER", "differ off axis 1")
  raises(check_tensor_graph, UOp.sink(t.gather(buf(4, 3), 0)), "GATHER", "not an int")

def test_tensor_graph_rejects_mismatched_shapes_and_dtypes():
  a, b = buf(2, 3), buf(3, 2)
  raises(check_tensor_graph, UOp.sink(UOp(Ops.ADD, dtypes.float32, (a, b))), "ADD", "shapes")
  raises(check_tensor_graph, UOp.sink(UOp(Ops.ADD, dtypes.float32, (a, buf(2, 3, dt=dtypes.int32)))), "ADD", "dtype")
  raises(check_tensor_graph, UOp.sink(UOp(Ops.CMPLT, dtypes.float32, (a, a))), "CMPLT", "bool")
  raises(check_tensor_graph, UOp.sink(UOp(Ops.WHERE, dtypes.float32, (buf(2, 3, dt=dtypes.int32), a, a))), "WHERE", "condition")
  raises(check_tensor_graph, UOp.sink(UOp(Ops.IDIV, dtypes.float32, (a, a))), "IDIV", "ints")

@pytest.mark.parametrize("op,arg,word", [
  (Ops.RESHAPE, (4, 2), "RESHAPE"), (Ops.PERMUTE, (0, 0), "PERMUTE"), (Ops.EXPAND, (4, 3), "EXPAND"),
  (Ops.PAD, ((1, -1), (0, 0)), "PAD"), (Ops.SHRINK, ((0, 3), (0, 3)), "SHRINK"), (Ops.FLIP, (2,), "FLIP"),
])
def test_tensor_graph_rejects_bad_movement_args(op, arg, word):
  raises(check_tensor_graph, UOp.sink(UOp(op, dtypes.float32, (buf(2, 3),), arg)), word)

def test_tensor_graph_rejects_bad_reduce_axes():
  x = buf(2, 3)
  check_tensor_graph(UOp.sink(x.reduce_axis(Ops.ADD, (1,))))
  raises(check_tensor_graph, UOp.sink(UOp(Ops.REDUCE_AXIS, dtypes.float32, (x,), (Ops.ADD, (2,)))), "REDUCE_AXIS", "axes")
  raises(check_tensor_graph, UOp.sink(UOp(Ops.REDUCE_AXIS, dtypes.float32, (x,), (Ops.SUB, (0,)))), "REDUCE_AXIS")

def test_tensor_graph_rejects_kernel_level_nodes():
  raises(check_tensor_graph, UOp.sink(buf(4) + UOp(Ops.SPECIAL, dtypes.index, (), ("gidx0", 4))), "SPECIAL")
  raises(check_tensor_graph, UOp.sink(buf(4) + UOp.const(dtypes.float32, 1.0)), "CONST", "DEVICE")

G = UOp(Ops.DEFINE_GLOBAL, dtypes.float32.as_ptr(), (), (0, 16))
TRUE = UOp.const(dtypes.bool, True)
def r(end=16, k=0) -> UOp: return UOp.range(end, rid=(k,))
def idx(i, gate=TRUE, g=G, dt=None) -> UOp: return UOp(Ops.INDEX, dt or g.dtype, (g, i, gate))
def store(i, v, gate=TRUE) -> UOp: return UOp.sink(UOp(Ops.STORE, dtypes.void, (idx(i, gate), v)))

def test_kernel_accepts_a_hand_built_kernel():
  i, j = r(16, 0), r(4, 1)
  red = UOp(Ops.REDUCE, dtypes.float32, (UOp(Ops.LOAD, dtypes.float32, (idx((i * 4 + j) % 16),)), j), Ops.ADD)
  check_kernel(store(i, red))

@pytest.mark.parametrize("name,sink,words", [
  ("float index", lambda: store(UOp.const(dtypes.float32, 1.0), UOp.const(dtypes.float32, 0.0)), ["INDEX", "not an int"]),
  ("int gate", lambda: store(r(), UOp.const(dtypes.float32, 0.0), gate=r() + 1), ["INDEX", "gate"]),
  ("load of a buffer", lambda: store(r(), UOp(Ops.LOAD, dtypes.float32, (G,))), ["LOAD"]),
  ("store of another dtype", lambda: store(r(), UOp.const(dtypes.int32, 0)), ["STORE", "int32"]),
  ("range to a variable", lambda: store(UOp(Ops.RANGE, dtypes.index, (r(4, 1),), ((0,), AxisType.LOOP)), UOp.const(dtypes.float32, 0.0)), ["RANGE", "CONST"]),
  ("reduce over a value", lambda: store(r(), UOp(Ops.REDUCE, dtypes.float32, (UOp.const(dtypes.float32, 1.0), r() + 1), Ops.ADD)), ["REDUCE"]),
  ("unlowered index", lambda: store(r(), UOp(Ops.INDEX, dtypes.float32, (G, r(), TRUE))), ["INDEX", "lowering"]),
  ("buffer in a kernel", lambda: store(r(), UOp(Ops.LOAD, dtypes.float32, (idx(r(), g=buf(16)),))), ["DEVICE"]),
  ("tensor op", lambda: store(r(), UOp(Ops.RESHAPE, dtypes.float32, (G,), (4, 4))), ["RESHAPE"]),
  ("two ranges one id", lambda: store(r(16, 0) + UOp.range(8, rid=(0,)), UOp.const(dtypes.float32, 0.0)), ["RANGE", "id"]),
  ("gep past the end", lambda: store(r(), UOp(Ops.GEP, dtypes.float32, (UOp.const(dtypes.float32.vec(2), 1.0),), 2)), ["GEP"]),
])
def test_kernel_rejects(name, sink, words):
  raises(check_kernel, sink(), *words)

def real_linear() -> list[UOp]:
  t = Tensor(rand(40, 16)).sum(axis=1)  # 40 rows: a loop left after the upcast
  items, _, _ = create_schedule([t.uop])
  return codegen.get_program(items[-1].ast, Device["CPU"].renderer).uops

def test_linear_accepts_real_program_and_rejects_reordering():
  uops = real_linear()
  check_linear(uops)
  rng_at = next(i for i, u in enumerate(uops) if u.op is Ops.RANGE)
  end_at = max(i for i, u in enumerate(uops) if u.op is Ops.END)
  # a source placed after its user
  user = next(i for i, u in enumerate(uops) if i > rng_at and uops[rng_at] in u.src)
  raises(check_linear, uops[:rng_at] + [uops[user]] + uops[rng_at:user] + uops[user + 1:], "not placed before")
  # a node placed twice
  raises(check_linear, uops + [uops[rng_at]], "twice")
  # a loop never closed, and an END with no open loop
  raises(check_linear, uops[:end_at] + uops[end_at + 1:], "RANGE")
  raises(check_linear, uops[:end_at + 1] + [uops[end_at]], "END")

def test_linear_rejects_crossed_loops_and_values_outside_their_loop():
  i, j = r(4, 0), r(4, 1)
  v = UOp(Ops.LOAD, dtypes.float32, (idx(i * 4 + j),))
  st = UOp(Ops.STORE, dtypes.void, (idx(i * 4 + j), v + UOp.const(dtypes.float32, 1.0)))
  ej = UOp(Ops.END, dtypes.void, (j, st))
  ei = UOp(Ops.END, dtypes.void, (i, ej))
  head = [G, UOp.const(dtypes.index, 4), TRUE, i, j, i * 4, i * 4 + j, idx(i * 4 + j), v, UOp.const(dtypes.float32, 1.0), v + UOp.const(dtypes.float32, 1.0), st]
  check_linear(head + [ej, ei, UOp.sink(ei)])
  crossed_i = UOp(Ops.END, dtypes.void, (i, st))
  raises(check_linear, head + [crossed_i], "innermost")
  # the load's value used after its loop closed
  late = UOp(Ops.STORE, dtypes.void, (idx(UOp.const(dtypes.index, 0)), v))
  raises(check_linear, head + [ej, ei, UOp.const(dtypes.index, 0), idx(UOp.const(dtypes.index, 0)), late], "outside the loop")
