"""The GPU path without a GPU: the heuristic's opts for GPU-style targets (blocks of threads, coalesced neighbours,
GROUP reduces) checked on the PYTHON device against NumPy, the grid limits, and the CUDA device's clear errors on a
machine without cuda-bindings or a GPU. bench/gpu.sh runs the op tests on a real GPU (DEV=CUDA)."""
import importlib.util
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.device import Device, buffer_of
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import run_schedule
from lucidgrad.codegen import get_program
from lucidgrad.codegen.opt import Kernel, Opt, OptOps, BLOCK_THREADS
from lucidgrad.codegen.expand import ranges_to_threads
from lucidgrad.renderer.cuda import CUDARenderer
from lucidgrad.uop.ops import Ops

rng = np.random.default_rng(0)
def arr(*shape): return rng.standard_normal(shape).astype(np.float32)

def last_kernel(t: Tensor):
  items, _, _ = create_schedule([t.uop])
  run_schedule(items[:-1])
  return items[-1]

def run_default(item, device="PYTHON"):
  """The kernel of `item` with the heuristic's opts, run on `device`; its output and program."""
  dev = Device[device]
  spec = get_program(item.ast, dev.renderer)
  bufs = [buffer_of(b) for b in item.bufs]
  dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(
    *[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size)
  return bufs[0].numpy().reshape(item.bufs[0].shape if hasattr(item.bufs[0], "shape") else -1), spec

def threads(spec) -> int: return int(np.prod(spec.local_size))

A, B, E, P = arr(64, 48), arr(48, 40), arr(8, 512), arr(13, 7)
CASES = {  # name: (program, NumPy reference, what the block must look like)
  "elementwise": (lambda T: (T(E) * 2 + 1), lambda: E.astype(np.float64) * 2 + 1, lambda ops: {OptOps.UPCAST, OptOps.LOCAL} <= ops),
  "row_sum": (lambda T: T(A).sum(axis=1), lambda: A.astype(np.float64).sum(axis=1), lambda ops: OptOps.GROUP in ops),
  "column_sum": (lambda T: T(A).sum(axis=0), lambda: A.astype(np.float64).sum(axis=0), lambda ops: OptOps.LOCAL in ops and OptOps.GROUP not in ops),
  "matmul": (lambda T: T(A) @ T(B), lambda: A.astype(np.float64) @ B, lambda ops: list(ops).count(OptOps.LOCAL) >= 1 and OptOps.UPCAST in ops),
  "prime_rows": (lambda T: T(P).exp(), lambda: np.exp(P.astype(np.float64)), lambda ops: True),  # nothing divides: few threads, still right
}

@pytest.mark.parametrize("name", CASES)
def test_gpu_heuristic_blocks_are_right_on_the_emulator(name):
  prog, ref, shape_ok = CASES[name]
  item = last_kernel(prog(lambda x: Tensor(x, device="PYTHON")))
  out, spec = run_default(item)
  want = ref()
  np.testing.assert_allclose(out.reshape(np.shape(want)), want, rtol=1e-5, atol=1e-5)
  assert shape_ok({o.op for o in spec.opts}), spec.opts
  assert threads(spec) <= BLOCK_THREADS

@pytest.mark.parametrize("shape,perm,dt", [((2, 16, 10, 12), (0, 2, 3, 1), dtypes.float16), ((64, 96), (1, 0), dtypes.float32),
                                          ((3, 40, 24), (0, 2, 1), dtypes.float32), ((5, 7, 9), (2, 1, 0), dtypes.float16)])
def test_a_transposing_copy_reads_and_writes_along_its_own_contiguous_axes(shape, perm, dt):
  """A copy into another layout (a conv's channels-last input): each thread stores 16 bytes along the output's contiguous
  axis and the block's fastest threads run along the input's, so a warp's reads and stores both coalesce. The values are
  NumPy's on the emulator, for shapes whose axes no warp divides too."""
  x = arr(*shape)
  item = last_kernel(Tensor(x, device="PYTHON").cast(dt).permute(*perm).contiguous())
  out, spec = run_default(item)
  np.testing.assert_array_equal(out.reshape(np.transpose(x, perm).shape), np.transpose(x.astype(dt.np), perm))
  assert threads(spec) <= BLOCK_THREADS
  if shape == (2, 16, 10, 12):  # channels-last: 8 halves (16 bytes) a thread along C, the warp along W
    cuda = get_program(item.ast, CUDARenderer())
    assert Opt(OptOps.UPCAST, 3, 8) in cuda.opts and cuda.local_size[0] == 12, (cuda.opts, cuda.local_size)

def test_gpu_heuristic_fills_a_block_and_coalesces():
  """An elementwise kernel over 2**20 floats: threads side by side, 4 consecutive floats each (one 16-byte load and
  store), every element covered once."""
  item = last_kernel(Tensor(arr(1024, 1024), device="PYTHON") * 2 + 1)
  spec = get_program(item.ast, CUDARenderer())
  assert BLOCK_THREADS // 2 <= threads(spec) <= BLOCK_THREADS and threads(spec) * spec.global_size[0] * 4 == 1 << 20, (spec.opts, spec.local_size, spec.global_size)
  assert spec.src.count("= *(const float32x4*)(data1+") == 1 and spec.src.count("*(float32x4*)(data0+") == 1

def test_a_loop_past_the_grid_limit_stays_a_loop():
  """Grid dimensions 1 and 2 take at most 65535 blocks on CUDA: a larger outer loop stays a loop in every thread."""
  item = last_kernel(Tensor(arr(9, 3, 5), device="PYTHON").permute(2, 0, 1) * 2)  # a permute keeps three loops
  k = Kernel(item.ast, Device["PYTHON"].renderer)
  sizes = sorted(k.sizes())
  sink, gsize, lsize = ranges_to_threads(k.sink, (2**31 - 1, 4, 4))
  assert all(g <= m for g, m in zip(gsize, (2**31 - 1, 4, 4))) and len(gsize) < 3
  assert any(r.src[0].arg > 4 for r in sink.toposort if r.op is Ops.RANGE), sizes
  # and run end to end with the limit: values unchanged
  ren = Device["PYTHON"].renderer
  old = ren.global_max
  try:
    type(ren).global_max = (2**31 - 1, 4, 4)
    out, spec = run_default(item)
  finally: type(ren).global_max = old
  assert all(g <= m for g, m in zip(spec.global_size, (2**31 - 1, 4, 4)))
  np.testing.assert_allclose(out.reshape(5, 9, 3), np.transpose(np.asarray(buffer_of(item.bufs[1]).numpy()).reshape(9, 3, 5), (2, 0, 1)) * 2, rtol=1e-6)

def test_a_group_reduce_in_a_loop_every_thread_runs_takes_two_rounds(monkeypatch):
  """A row sum whose rows pass the grid's limit: the row loop stays a loop in every thread, and the block's partials
  are rewritten once per row. One round would let a fast thread overwrite its slot while a slower one still reads the
  last row's (the emulator runs a block in lockstep and cannot show it): such a group takes two rounds, each array
  rewritten only after the other round's barrier. Values right on the emulator; two barriers a row in the source."""
  from lucidgrad.codegen.opt import Opt
  x = arr(12, 3, 64)
  item = last_kernel(Tensor(x, device="PYTHON").sum(axis=2))
  monkeypatch.setattr(type(Device["PYTHON"].renderer), "global_max", (2, 1, 1))
  monkeypatch.setattr(CUDARenderer, "global_max", (2, 1, 1))
  opts = [Opt(OptOps.GROUP, 2, 8)]  # 8 threads: one round would do (8 reads); in a loop it must not
  spec = get_program(item.ast, Device["PYTHON"].renderer, opts)
  assert spec.global_size[0] <= 2 and any(u.op is Ops.RANGE and u.src[0].arg > 2 for u in spec.uops)  # rows loop in each thread
  dev, bufs = Device["PYTHON"], [buffer_of(b) for b in item.bufs]
  dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(
    *[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size)
  np.testing.assert_allclose(bufs[0].numpy().reshape(12, 3), x.astype(np.float64).sum(axis=2), rtol=1e-5, atol=1e-5)
  src = get_program(item.ast, CUDARenderer(), opts).src
  assert src.count("__syncthreads();") == 2, src[src.index("__global__"):]

def test_cuda_device_says_what_is_missing():
  """No cuda-bindings, or no GPU: opening the device raises naming what is missing, not a crash deep inside."""
  import lucidgrad.runtime.cuda  # noqa: F401  (imports with nothing of CUDA installed)
  if importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None:
    try: Device["CUDA"]
    except RuntimeError as e: assert "NVIDIA GPU" in str(e) or "CUDA device" in str(e)
    else: pytest.skip("a GPU is here: bench/gpu.sh tests it")
  else:
    with pytest.raises(RuntimeError, match="cuda-bindings"): Tensor([1.0, 2.0], device="CUDA").numpy()

def test_an_empty_buffer_read_under_a_gate_on_the_emulator():
  """An empty index (0 rows selected) padded out: every load of the empty buffer is gated off (found by the fuzzer with
  DEV=PYTHON: the interpreter viewed the 1-byte allocation as int32, then indexed the empty array)."""
  x = np.arange(12, dtype=np.float32).reshape(3, 4)
  out = Tensor(x, device="PYTHON").index_select(1, Tensor(np.array([], np.int32), device="PYTHON")).pad(((1, 1), (1, 1)), value=0.5)
  np.testing.assert_array_equal(out.numpy(), np.pad(x[:, []], ((1, 1), (1, 1)), constant_values=0.5))

@pytest.mark.parametrize("shape, transposed", [((128, 64, 128), False), ((128, 64, 192), True), ((120, 40, 128), False)],
                         ids=["a_b", "x_wT", "padded_m"])
def test_large_matmuls_take_staged_block_tiles(shape, transposed, monkeypatch):
  """A matmul with a 64 x 64 tile for every multiprocessor takes staged block tiles (opt/__init__.py _staged_tiles):
  8 x 4 outputs a thread, 8 x 16 threads, both inputs staged in local memory 8 reduce steps at a time; an axis no
  tile divides is padded (120 rows -> 128). Right on the emulator (made a GPU of one multiprocessor, so small
  shapes qualify)."""
  monkeypatch.setattr(Device["PYTHON"].renderer, "gpu_threads", 2048)
  m, kk, n = shape
  a, b = arr(m, kk), arr(n, kk) if transposed else arr(kk, n)
  item = last_kernel(Tensor(a, device="PYTHON") @ (Tensor(b, device="PYTHON").T if transposed else Tensor(b, device="PYTHON")))
  out, spec = run_default(item)
  ops = [o.op for o in spec.opts]
  assert ops.count(OptOps.STAGE) == 2 and threads(spec) == 128 and (OptOps.PADTO in ops) == (m % 64 != 0), spec.opts
  np.testing.assert_allclose(out.reshape(m, n), a.astype(np.float64) @ (b.T if transposed else b), rtol=1e-5, atol=1e-5)

# ---- a block per row (OptOps.ROW, docs/design/0023) ----
def np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)

@pytest.mark.parametrize("shape", [(4, 1024), (3, 1000), (5, 7), (2, 3, 256), (6, 13)])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layernorm"])
def test_row_reductions_are_one_kernel_a_block_per_row(shape, op):
  """Softmax, log-softmax and layer norm over the last axis on a GPU-style target: one kernel whose blocks each take a
  row, the block's threads sharing its reductions and its outputs (250 threads for a row of 1000, one for 13)."""
  x = rng.standard_normal(shape).astype(np.float32)
  fn = {"softmax": lambda t: t.softmax(-1), "log_softmax": lambda t: t.log_softmax(-1), "layernorm": lambda t: t.layer_norm(t.shape[-1])}[op]
  ref = {"softmax": np_softmax, "log_softmax": lambda v: np.log(np_softmax(v)),
         "layernorm": lambda v: (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)}[op](x.astype(np.float64))
  t = fn(Tensor(x, device="PYTHON"))
  items, _, _ = create_schedule([t.uop])
  kernels = [it for it in items if it.kind == "kernel"]
  assert len(kernels) == 1
  spec = get_program(kernels[0].ast, Device["PYTHON"].renderer)
  row = next(o for o in spec.opts if o.op is OptOps.ROW)
  assert shape[-1] % row.amount == 0 and (row.amount >= 32 or shape[-1] < 64), spec.opts
  assert spec.global_size == [int(np.prod(shape[:-1]))] or len(shape) > 2
  np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5, atol=1e-5)
  src = get_program(kernels[0].ast, CUDARenderer()).src
  if row.amount > 1: assert "__shared__" in src and "__syncthreads();" in src

@pytest.mark.parametrize("n, resident", [(8192, True), (32768, False)])
def test_a_row_that_fits_the_registers_is_read_once(n, resident):
  """Softmax over rows of 8192: a thread's 32 floats of the row stay in registers (the ROW loop becomes lanes), so the
  CUDA source loads each element once and computes each exp once; rows of 32768 (128 floats a thread) keep their
  loops and read the row three times. Both right on the emulator."""
  from lucidgrad.codegen.opt import ROW_REGISTER_BYTES
  x = rng.standard_normal((2, n)).astype(np.float32)
  item = last_kernel(Tensor(x, device="PYTHON").softmax(-1))
  src = get_program(item.ast, CUDARenderer()).src
  vector_loads, exps = src.count("*(const float32x4*)(data1+"), src.count("exp2f(")
  if resident: assert (vector_loads, exps) == (n // BLOCK_THREADS // 4, n // BLOCK_THREADS), (vector_loads, exps)
  else: assert n // BLOCK_THREADS * 4 > ROW_REGISTER_BYTES and "for (" in src and vector_loads == 3 and exps == 8, (vector_loads, exps)
  out, spec = run_default(item)
  np.testing.assert_allclose(out.reshape(x.shape), np_softmax(x.astype(np.float64)), rtol=1e-5, atol=1e-7)

@pytest.mark.parametrize("opts, shape, axis", [
  ([("GROUP", 1, 256)], (3, 4096), 1),                        # 16 x 16: two rounds of 16 reads
  ([("UPCAST", 0, 4), ("GROUPTOP", 2, 64)], (512, 8), 0),     # 8 x 8, each slot 4 upcast lanes wide
  ([("GROUP", 1, 250)], (2, 1000), 1),                        # 10 x 25
  ([("GROUP", 1, 32)], (2, 1024), 1),                         # one round: two would save too little
  ([("GROUP", 1, 127)], (2, 127), 1)])                        # prime: one round
def test_a_large_group_combines_in_two_rounds(opts, shape, axis):
  """A group of G threads combines its partials in two rounds of a + b reads (G = a * b) where that saves three
  quarters of the reads (codegen/group.py): each of the five shapes right on the emulator, and two barriers where two
  rounds were taken."""
  from lucidgrad.codegen.opt import Opt
  from lucidgrad.codegen.group import two_rounds
  x = rng.standard_normal(shape).astype(np.float32)
  item = last_kernel(Tensor(x, device="PYTHON").sum(axis=axis))
  spec = get_program(item.ast, Device["PYTHON"].renderer, [Opt(OptOps[o], a, n) for o, a, n in opts])
  dev, bufs = Device["PYTHON"], [buffer_of(b) for b in item.bufs]
  dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(
    *[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size)
  np.testing.assert_allclose(bufs[0].numpy(), x.astype(np.float64).sum(axis=axis), rtol=1e-5, atol=1e-5)
  rounds = 1 if two_rounds(opts[-1][2]) is None else 2
  assert get_program(item.ast, CUDARenderer(), [Opt(OptOps[o], a, n) for o, a, n in opts]).src.count("__syncthreads();") == rounds

def test_row_needs_a_reduce_computed_once_per_row():
  from lucidgrad.codegen.opt import Opt, KernelOptError
  item = last_kernel(Tensor(arr(8, 64), device="PYTHON").sum(axis=1))  # the reduce is the output: no row to share
  k = Kernel(item.ast, Device["PYTHON"].renderer)
  with pytest.raises(KernelOptError, match="no reduce"): k.apply_opt(Opt(OptOps.ROW, 0, 8))
  cpu = Kernel(last_kernel(Tensor(arr(8, 64)).softmax(-1)).ast, Device["CPU"].renderer)
  with pytest.raises(KernelOptError, match="no thread blocks"): cpu.apply_opt(Opt(OptOps.ROW, 1, 8))

def test_row_keeps_a_reduce_that_moves_with_the_row_per_thread():
  """A prod's gradient (reduces once per row) beside a reversed cumsum (a reduce per output column) in one kernel: the
  cumsum's reduce moves with the row's threads through the output index, and a shared row would have summed it across
  them (found by the fuzzer with DEV=PYTHON). Such a kernel keeps one thread a row."""
  x = np.array([[4, -4], [4, -2], [4, 2], [-3, 2], [0, 2], [4, 0], [-1, -2]], np.float32)
  w1, w2 = rng.standard_normal((7, 2)), rng.standard_normal(7)
  grads = []
  for dev in ("PYTHON", "CPU"):
    v = Tensor(x, device=dev, requires_grad=True)
    ((v.cumsum(1) * Tensor(w1.astype(np.float32), device=dev)).sum() + (v.prod(1) * Tensor(w2.astype(np.float32), device=dev)).sum()).backward()
    grads.append(v.grad.numpy())
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)
  # the reference: d/dx of sum(cumsum(x) * w1) is the reversed cumsum of w1; of prod(x) * w2, w2 * prod / x (no zero here but one)
  xd = x.astype(np.float64)
  ref = np.flip(np.cumsum(np.flip(w1, 1), 1), 1) + w2[:, None] * np.stack([xd[:, 1], xd[:, 0]], 1)
  np.testing.assert_allclose(grads[0], ref, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize("make", [lambda t: t.full_like(3.0)[2:4].var(0, correction=0), lambda t: t.var(0, correction=0),
                                  lambda t: t.full_like(3.0).log_softmax(1)], ids=["var_of_constants", "var_axis0", "log_softmax_of_constants"])
def test_row_ties_only_reduces_that_walk_the_row(make):
  """A reduce of the row's extent that does not read along the row (var over axis 0 of a 2 x 2; a reduce of constants)
  is not the row's: tied to the row's threads it lost their shares (found by the fuzzer with DEV=PYTHON)."""
  x = rng.standard_normal((5, 2)).astype(np.float32)
  np.testing.assert_allclose(make(Tensor(x, device="PYTHON")).numpy(), make(Tensor(x)).numpy(), rtol=1e-5, atol=1e-6)

def _staged(item, opts_before, stage_params, renderer):
  """`item`'s kernel with `opts_before` (in the kernel's axes as they are when each is applied), then STAGE of each input
  in `stage_params` at the reduce loop."""
  from lucidgrad.codegen.opt import Opt
  from lucidgrad.codegen.program import program_of
  from lucidgrad.uop.ops import AxisType
  k = Kernel(item.ast, renderer).apply_opts(opts_before)
  for p in stage_params: k.apply_opt(Opt(OptOps.STAGE, next(i for i, t in enumerate(k.kinds()) if t is AxisType.REDUCE), p))
  return program_of(k)

@pytest.mark.parametrize("group", [False, True], ids=["plain", "with_group"])
@pytest.mark.parametrize("transposed", [False, True], ids=["a_b", "x_wT"])
def test_staged_tiles_in_local_memory_are_right_on_the_emulator(transposed, group):
  """STAGE on a GPU-style target (docs/design/0010): the block's threads copy A's and B's tiles into local memory
  together, once per step of k, between two barriers; every thread's reads then come from there. Against NumPy, with
  and without a GROUP splitting k over the block too (its partials and the tiles share local memory)."""
  from lucidgrad.codegen.opt import Opt
  a, w = arr(64, 48), arr(32, 48)
  b = w.T.copy()
  item = last_kernel(Tensor(a, device="PYTHON") @ (Tensor(w, device="PYTHON").T if transposed else Tensor(b, device="PYTHON")))
  opts = [Opt(OptOps.UPCAST, 0, 4), Opt(OptOps.UPCAST, 2, 4), Opt(OptOps.UNROLL, 4, 4)]
  opts += [Opt(OptOps.LOCAL, 0, 2), Opt(OptOps.LOCAL, 3, 2), Opt(OptOps.GROUP, 6, 4)] if group else [Opt(OptOps.LOCAL, 0, 4), Opt(OptOps.LOCAL, 3, 4)]
  spec = _staged(item, opts, (1, 2), Device["PYTHON"].renderer)
  dev = Device["PYTHON"]
  bufs = [buffer_of(x) for x in item.bufs]
  dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(*[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size)
  np.testing.assert_allclose(bufs[0].numpy().reshape(64, 32), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
  assert sum(u.op is Ops.DEFINE_LOCAL for u in spec.uops) == 2 + group  # A's tile, B's tile (and the group's partials)
  src = _staged(item, opts, (1, 2), CUDARenderer()).src
  body = src[src.index("for (int ridx0"):]
  # in the k loop: a barrier before the fills (the last step's reads are done), one after each fill, 16-byte reads
  assert body.count("__syncthreads();") >= 3 and "= *(const float32x4*)(data1+" in body, body[:1500]

def test_a_staged_fill_the_block_does_not_divide_reads_only_inside_its_input():
  """3 x 3 threads fill a 12 x 4 tile of A and a 4 x 12 tile of B (48 slots for 9 threads: 6 steps, the last gated):
  a gated-off slot's number wraps to a slot inside the tile, so the last block reads nothing past its input (the
  emulator raises on an out-of-bounds load)."""
  from lucidgrad.codegen.opt import Opt
  a, b = arr(24, 16), arr(16, 24)
  item = last_kernel(Tensor(a, device="PYTHON") @ Tensor(b, device="PYTHON"))
  opts = [Opt(OptOps.UPCAST, 0, 4), Opt(OptOps.UPCAST, 2, 4), Opt(OptOps.UNROLL, 4, 4), Opt(OptOps.LOCAL, 0, 3), Opt(OptOps.LOCAL, 3, 3)]
  spec = _staged(item, opts, (1, 2), Device["PYTHON"].renderer)
  dev, bufs = Device["PYTHON"], [buffer_of(x) for x in item.bufs]
  dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(*[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size)
  np.testing.assert_allclose(bufs[0].numpy().reshape(24, 24), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
  assert np.prod(spec.local_size) == 9 and any(u.op is Ops.INDEX and u.src[0].op is Ops.DEFINE_LOCAL and u.src[2].op is not Ops.CONST for u in spec.uops)

def test_stage_on_a_gpu_refuses_an_output_loop_and_a_tensor_cores_other_axes():
  from lucidgrad.codegen.opt import Opt
  from lucidgrad.codegen import KernelOptError
  item = last_kernel(Tensor(arr(64, 48), device="PYTHON") @ Tensor(arr(48, 32), device="PYTHON"))
  k = Kernel(item.ast, Device["PYTHON"].renderer)
  with pytest.raises(KernelOptError, match="stages once per step of a reduce loop"): k.apply_opt(Opt(OptOps.STAGE, 0, 1))
  from lucidgrad import dtypes
  half = last_kernel(Tensor(arr(64, 48), device="PYTHON").cast(dtypes.float16) @ Tensor(arr(48, 32), device="PYTHON").cast(dtypes.float16))
  k = Kernel(half.ast, Device["PYTHON"].renderer).apply_opt(Opt(OptOps.TC, 2, 0))
  # a tensor core's operands are staged whole, at its k loop only, each once
  with pytest.raises(KernelOptError, match="stages once per step of a reduce loop"): k.apply_opt(Opt(OptOps.STAGE, 0, 1))
  with pytest.raises(KernelOptError, match="read by neither operand"): k.apply_opt(Opt(OptOps.STAGE, 2, 0))
  k.apply_opt(Opt(OptOps.STAGE, 2, 1))
  with pytest.raises(KernelOptError, match="staged already"): k.apply_opt(Opt(OptOps.STAGE, 2, 1))

def test_a_group_refuses_a_reduce_nested_in_the_one_it_splits():
  """sum_i (logsumexp_j x[j, i])^2 in one kernel: the inner reduce reads along i, so with i split over a group's threads
  each thread's inner sum is its own value, not a partial -- group.py combined them across the threads (DEV=PYTHON
  fuzz, seed 41871: 121.3 for 86.3). GROUP now refuses; the heuristic's kernel is right."""
  from lucidgrad.codegen.opt import Kernel, Opt, OptOps, KernelOptError
  x = rng.standard_normal((5, 8)).astype(np.float32) * 3
  t = Tensor(x, device="PYTHON").logsumexp(0)
  out = (t * t).sum()
  item = last_kernel(out)
  k = Kernel(item.ast, Device["PYTHON"].renderer)
  with pytest.raises(KernelOptError, match="nested in the reduce"): k.apply_opt(Opt(OptOps.GROUP, 0, 2))
  with pytest.raises(KernelOptError, match="nested in the reduce"): k.apply_opt(Opt(OptOps.GROUPTOP, 0, 2))
  want = np.log(np.exp(x.astype(np.float64)).sum(0))
  np.testing.assert_allclose(out.numpy(), (want * want).sum(), rtol=1e-5)
