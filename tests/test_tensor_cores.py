"""Tensor cores without a GPU (docs/design/0024): the TC opt's kernels run on the PYTHON device, which emulates each
warp's mma as a matrix product over the fragment layouts, against NumPy in float64. The layouts themselves are checked
as tables, and the opt's refusals name what is wrong. bench/gpu.sh runs the same kernels on the GPU's tensor cores."""
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.device import Device
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import run_schedule
from lucidgrad.codegen import get_program, KernelOptError
from lucidgrad.codegen.opt import Kernel, Opt, OptOps
from lucidgrad.renderer import MMA_16816
from lucidgrad.runtime.python import bf16_value
from lucidgrad.dtype import f32_to_bf16_array
from lucidgrad.uop.ops import AxisType, Ops
from lucidgrad.helpers import Context

rng = np.random.default_rng(7)
def arr(*shape): return rng.standard_normal(shape).astype(np.float32)

def rounded(x: np.ndarray, dt) -> np.ndarray:
  """x rounded to dt, as float64: the values a half tensor holds."""
  if dt == dtypes.bfloat16: return bf16_value(f32_to_bf16_array(np.asarray(x, np.float32))).astype(np.float64)
  return np.asarray(x).astype(np.float16).astype(np.float64)

@pytest.mark.parametrize("tc", MMA_16816, ids=lambda tc: tc.name)
def test_each_lane_element_is_one_matrix_element(tc):
  """The layouts are bijections: the warp's (lane, element) pairs cover A, B and C once each."""
  assert_each_element_held_once(tc)
  # the PTX ISA's first lanes, by hand: lane 5 is groupID 1, threadID_in_group 1
  assert tc.a(5, 0) == (1, 2) and tc.a(5, 3) == (9, 3) and tc.a(5, 6) == (9, 10)
  assert tc.b(5, 1) == (3, 1) and tc.b(5, 2) == (10, 1) and tc.c(5, 3) == (9, 3)

def assert_each_element_held_once(tc):
  """The core's layouts are bijections: its lanes' (lane, element) pairs cover A, B and C once each."""
  (M, N, K), lanes = tc.dims, np.arange(tc.threads)
  for layout, (rows, cols), count in zip((tc.a, tc.b, tc.c), ((M, K), (K, N), (M, N)), tc.elements):
    seen = np.zeros((rows, cols), int)
    for i in range(count):
      r, c = layout(lanes, i)
      np.add.at(seen, (r, c), 1)
    assert (seen == 1).all(), (tc.name, layout.__name__)

def assert_half_matmul_close(got, want, a, b, dt):
  """A half matmul (float32 sums of exact products, rounded to `dt` once) against `want`, the float64 product of the same
  half inputs rounded to `dt`: one unit in the last place of `dt`, plus what float32 sums in any order can lose, at
  most K * 2^-24 of the sum of |terms| (an output near zero made of large terms has no relative bound)."""
  ulp = 2.0 ** -10 if dt == dtypes.float16 else 2.0 ** -7
  bound = np.abs(want) * ulp * 1.01 + a.shape[1] * 2.0 ** -24 * (np.abs(a) @ np.abs(b)) + 1e-6
  np.testing.assert_array_less(np.abs(got - want), bound)

def first_split(opts) -> Opt:
  """The first opt that splits an axis: TC, after whatever only reshapes the kernel's loops (PADTO, MERGE, SWAP)."""
  return next(o for o in opts if o.op not in (OptOps.PADTO, OptOps.MERGE, OptOps.SWAP))

def unmerged_opts(item) -> list[Opt]:
  """The heuristic's tensor-core opts for a kernel as it is, its loops not merged first (the path a conv took before
  MERGE, and one BEAM can still take)."""
  from lucidgrad.codegen.opt import _tensor_core, _tensor_core_tiles
  k = Kernel(item.ast, Device["PYTHON"].renderer)
  return _tensor_core_tiles(k, list(_tensor_core(k))).applied

def last_kernel(t: Tensor):
  items, _, _ = create_schedule([t.uop])
  run_schedule(items[:-1])
  return items[-1]

def run_kernel(item, opts=None):
  """The kernel of `item` with `opts` (None: the heuristic's) on the PYTHON device; its output and program."""
  from lucidgrad.device import buffer_of
  dev = Device["PYTHON"]
  spec = get_program(item.ast, dev.renderer, opts)
  bufs = [buffer_of(b) for b in item.bufs]
  dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(
    *[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size)
  return bufs[0].numpy(), spec

A, B, BIAS = arr(64, 96), arr(96, 48), arr(48)
X, Y = arr(3, 32, 64), arr(3, 64, 16)
IMG, W = arr(2, 32, 8, 8), arr(16, 32, 3, 3)

def conv_ref(x, w):
  """A 3x3 conv, padding 1, in float64."""
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (B, C, H, W, 3, 3)
  return np.einsum("bchwij,ocij->bohw", win, w)

CASES = {  # name: (program on half tensors, float64 reference on the rounded inputs)
  "matmul": (lambda T: T(A) @ T(B), lambda R: R(A) @ R(B)),
  "bias_relu": (lambda T: (T(A) @ T(B) + T(BIAS)).relu(), lambda R: np.maximum(R(R(A) @ R(B)) + R(BIAS), 0)),
  "transposed_a": (lambda T: T(A.T.copy()).T @ T(B), lambda R: R(A) @ R(B)),
  "batched": (lambda T: T(X) @ T(Y), lambda R: R(X) @ R(Y)),
  "conv3x3": (lambda T: T(IMG).conv2d(T(W), padding=1), lambda R: conv_ref(R(IMG), R(W))),
}

@pytest.mark.parametrize("dt", [dtypes.float16, dtypes.bfloat16], ids=lambda d: d.name)
@pytest.mark.parametrize("name", CASES)
def test_tensor_core_kernels_match_numpy(name, dt):
  prog, ref = CASES[name]
  item = last_kernel(prog(lambda x: Tensor(x, device="PYTHON").cast(dt)))
  out, spec = run_kernel(item)
  assert first_split(spec.opts).op is OptOps.TC and spec.local_size[0] == 32, spec.opts
  assert any(u.op is Ops.WMMA for u in spec.uops)
  got = (bf16_value(out) if dt == dtypes.bfloat16 else out).astype(np.float64)
  want = rounded(ref(lambda x: rounded(x, dt)), dt)
  # products of halves are exact and the sum is float32: the output's own rounding is all that may differ, by at
  # most one unit in its last place where the float32 sum sits near a rounding boundary
  ulp = np.abs(want) * (2.0 ** -10 if dt == dtypes.float16 else 2.0 ** -7)
  np.testing.assert_array_less(np.abs(got.reshape(want.shape) - want), ulp + 1e-6)

def test_warps_and_register_tiles_after_tc_stay_right():
  """LOCAL (warps per block) and UPCAST (fragments per warp) of the TC's outer axes, an UNROLL of its k: the same
  values. The lane range stays threadIdx.x, the warps take the other thread dimensions."""
  item = last_kernel(Tensor(A, device="PYTHON").cast(dtypes.float16) @ Tensor(B, device="PYTHON").cast(dtypes.float16))
  want = rounded(rounded(A, dtypes.float16) @ rounded(B, dtypes.float16), dtypes.float16)
  def at(k: Kernel, kind: AxisType, nth: int) -> int: return [i for i, t in enumerate(k.kinds()) if t is kind][nth]
  plans = [[(OptOps.UPCAST, AxisType.LOOP, 0, 2), (OptOps.UPCAST, AxisType.LOOP, 1, 3), (OptOps.LOCAL, AxisType.LOOP, 0, 2), (OptOps.UNROLL, AxisType.REDUCE, 0, 2)],
           [(OptOps.LOCAL, AxisType.LOOP, 1, 2), (OptOps.UNROLL, AxisType.REDUCE, 0, 6)]]
  for plan in plans:
    k = Kernel(item.ast, Device["PYTHON"].renderer).apply_opt(Opt(OptOps.TC, 2, 0))
    for op, kind, nth, amount in plan: k.apply_opt(Opt(op, at(k, kind, nth), amount))
    out, spec = run_kernel(item, k.applied)
    assert spec.local_size[0] == 32 and np.prod(spec.local_size) > 32, spec.local_size
    np.testing.assert_array_less(np.abs(out.reshape(want.shape) - want), np.abs(want) * 2.0 ** -10 + 1e-6)
    # an unrolled k chains the mmas through the accumulator: no vector adds of their results
    assert not any(u.op is Ops.ADD and u.dtype.count == 4 for u in spec.uops)

@pytest.mark.parametrize("transposed", [False, True], ids=["a_b", "x_wT"])
@pytest.mark.parametrize("dt", [dtypes.float16, dtypes.bfloat16], ids=lambda d: d.name)
def test_staged_tiles_feed_the_tensor_core(dt, transposed):
  """The heuristic's tensor-core kernel with 2 x 2 warps of 4 x 8 fragments stages both operands' block tiles in local
  memory (tensor_core.stage_tc, docs/design/0026): the same values as the unstaged kernel, and the CUDA source fills
  each tile with 16-byte copies between barriers."""
  from lucidgrad.renderer.cuda import CUDARenderer
  a, b = arr(128, 64), arr(128, 64) if transposed else arr(64, 128)
  ta, tb = (Tensor(x, device="PYTHON").cast(dt).realize() for x in (a, b))  # the kernel reads halves (a fused cast works too)
  item = last_kernel(ta @ (tb.T if transposed else tb))
  out, spec = run_kernel(item)
  assert [o.op for o in spec.opts].count(OptOps.STAGE) == 2 and list(spec.local_size) == [32, 2, 2], spec.opts
  plain, _ = run_kernel(item, [o for o in spec.opts if o.op is not OptOps.STAGE])
  assert np.array_equal(out, plain)  # the same sums in the same order: staging moves reads, not arithmetic
  want = rounded(rounded(a, dt) @ rounded(b.T if transposed else b, dt), dt)
  got = (bf16_value(out) if dt == dtypes.bfloat16 else out).astype(np.float64).reshape(want.shape)
  assert_half_matmul_close(got, want, rounded(a, dt), rounded(b.T if transposed else b, dt), dt)
  src = get_program(item.ast, CUDARenderer()).src
  body = src[src.index("__global__"):]
  # each tile is filled by 16-byte copies that skip the registers (cp.async), waited for at the barrier after them
  assert body.count("__syncthreads();") == 3 and body.count("cp.async.wait_all") == 3 and body.count("cp.async.cg.shared.global [%0], [%1], 16,") == 2, body[:2000]
  # a tile is laid out like its operand's memory, and fragments read it as 8x8 matrices (ldmatrix): A's four at a time;
  # B's two at a time, two fragments a read (pair_matrix_loads): B of a @ b is n-major, so read transposed, W of x @ W.T
  # is k-major, read as it is
  assert "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in body and ".x2" not in body
  assert ("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in body) != transposed
  with Context(MATRIX_LOADS=0):  # element by element instead: the same values on the emulator
    assert np.array_equal(run_kernel(item)[0], out)

def test_a_conv_whose_row_is_few_fragments_tiles_its_rows_too():
  """A conv's n axis is its pixel row: 24 pixels are 3 fragments of 8, which no 8 or 4 divides, so the heuristic's
  register tile takes its n-side fragments from the output rows (an axis the weights, A, stay still along): 2 weight
  fragments x 8 rows. The weights' tile is staged; the input's, moving with those rows, is not. Values against float64
  on the PYTHON device's mma."""
  img, w = arr(2, 32, 8, 24), arr(32, 32, 3, 3)
  item = last_kernel(Tensor(img, device="PYTHON").cast(dtypes.float16).conv2d(Tensor(w, device="PYTHON").cast(dtypes.float16), padding=1))
  out, spec = run_kernel(item, unmerged_opts(item))
  k = Kernel(item.ast, Device["PYTHON"].renderer).apply_opts(spec.opts)
  ups = [s for s, t in zip(k.sizes(), k.kinds()) if t is AxisType.UPCAST]
  assert spec.opts[0].op is OptOps.TC and sorted(ups) == [2, 8], (spec.opts, k.sizes())
  assert [o.amount for o in spec.opts if o.op is OptOps.STAGE] == [2], spec.opts  # the weights (buffer 2) only
  want = rounded(conv_ref(rounded(img, dtypes.float16), rounded(w, dtypes.float16)), dtypes.float16)
  np.testing.assert_array_less(np.abs(out.astype(np.float64).reshape(want.shape) - want), np.abs(want) * 2.0 ** -10 + 1e-6)

@pytest.mark.parametrize("stride", [1, 2])
def test_a_conv_is_a_matmul_over_merged_loops(stride):
  """The heuristic merges a conv's window and channel loops into one reduce loop and its images, rows and columns into
  one pixel axis (MERGE): both operands' tiles then stage, and a reduce of 9 x 64 / 16 = 36 k-steps pipelines, like a
  matmul's. The pixels' tile is a gather (each 16-byte chunk's image, row, column and window position divided out of
  the merged indices). Values against float64 on the PYTHON device's mma, and against the same kernel unmerged."""
  rng = np.random.default_rng(12)
  img, w = rng.standard_normal((2, 64, 8, 16)).astype(np.float32), rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
  item = last_kernel(Tensor(img, device="PYTHON").cast(dtypes.float16).conv2d(Tensor(w, device="PYTHON").cast(dtypes.float16), padding=1, stride=stride))
  out, spec = run_kernel(item)
  merges = [o for o in spec.opts if o.op is OptOps.MERGE]
  assert len(merges) == 4 and first_split(spec.opts).op is OptOps.TC, spec.opts  # 3 reduce loops -> 1, 3 pixel loops -> 1
  k = Kernel(item.ast, Device["PYTHON"].renderer).apply_opts(spec.opts)
  assert sorted(k.tc_tile.staged) == ["a", "b"] and k.tc_tile.stages > 1, spec.opts
  want = rounded(conv_ref(rounded(img, dtypes.float16), rounded(w, dtypes.float16))[:, :, ::stride, ::stride], dtypes.float16)
  # float32 sums (in the merged loop's order) may round to the neighbouring half: one unit in the last place
  one_ulp = np.spacing(np.abs(want).astype(np.float16)).astype(np.float64) * 1.01 + 1e-6
  np.testing.assert_array_less(np.abs(out.astype(np.float64).reshape(want.shape) - want), one_ulp)
  plain, _ = run_kernel(item, unmerged_opts(item))
  np.testing.assert_array_less(np.abs(out.astype(np.float64) - plain.astype(np.float64)), 2 * one_ulp.reshape(-1))

def test_merge_joins_two_loops_of_one_kind_before_any_split():
  """MERGE's refusals name what is wrong; a merged loop is the slow axis times the fast one's size plus the fast one,
  in the fast one's place (a matmul's m and n merged computes the same outputs)."""
  T16 = lambda *s: Tensor(arr(*s), device="PYTHON").cast(dtypes.float16)
  def refusal(k: Kernel, opt: Opt) -> str:
    with pytest.raises(KernelOptError) as e: k.apply_opt(opt)
    return str(e.value)
  assert "only two LOOP or two REDUCE axes merge" in refusal(kernel_of(T16(32, 32) @ T16(32, 16)), Opt(OptOps.MERGE, 1, 2))
  k = kernel_of(T16(32, 32) @ T16(32, 16)).apply_opt(Opt(OptOps.UPCAST, 0, 2))
  assert "MERGE comes first" in refusal(k, Opt(OptOps.MERGE, 0, 2))
  img = Tensor(arr(2, 16, 8, 8), device="PYTHON")
  k = kernel_of(img.conv2d(Tensor(arr(8, 16, 3, 3), device="PYTHON"), padding=1))
  reds = [i for i, t in enumerate(k.kinds()) if t is AxisType.REDUCE]
  k.apply_opt(Opt(OptOps.MERGE, reds[1], reds[2]))
  assert sorted(s for s, t in zip(k.sizes(), k.kinds()) if t is AxisType.REDUCE) == [9, 16]
  assert any(o.op is OptOps.MERGE for o in kernel_of(T16(32, 32) @ T16(32, 16)).valid_opts())
  # the merged kernel's values, through every later opt the heuristic picks, on the CPU renderer too
  a, b = arr(24, 40), arr(40, 16)
  item = last_kernel(Tensor(a, device="PYTHON") @ Tensor(b, device="PYTHON"))
  out, _ = run_kernel(item, [Opt(OptOps.MERGE, 0, 1)])
  np.testing.assert_allclose(out.reshape(24, 16), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)

def test_a_staged_tile_that_the_block_does_not_divide_is_filled_under_a_gate():
  """Three warps (LOCAL 3 on m: 96 threads) fill a 48 x 32 tile of A: 1536 elements are not a whole number of 16-byte
  chunks per thread, so the fill goes one element a thread a step, its last step gated; B's 32 x 8 tile likewise.
  Right on the emulator, against the unstaged kernel and NumPy."""
  a, b = arr(48, 64), arr(64, 8)
  ta, tb = (Tensor(x, device="PYTHON").cast(dtypes.float16).realize() for x in (a, b))
  item = last_kernel(ta @ tb)
  k = Kernel(item.ast, Device["PYTHON"].renderer).apply_opts([Opt(OptOps.TC, 2, 0), Opt(OptOps.LOCAL, 0, 3)])
  k.apply_opt(Opt(OptOps.UNROLL, kr := next(i for i, t in enumerate(k.kinds()) if t is AxisType.REDUCE), 2))
  opts = k.applied + [Opt(OptOps.STAGE, kr, 1), Opt(OptOps.STAGE, kr, 2)]
  out, spec = run_kernel(item, opts)
  plain, _ = run_kernel(item, k.applied)
  assert np.prod(spec.local_size) == 96 and np.array_equal(out, plain)
  assert any(u.op is Ops.INDEX and u.src[0].op is Ops.DEFINE_LOCAL and u.src[2].op is not Ops.CONST for u in spec.uops)  # a gated fill
  want = rounded(rounded(a, dtypes.float16) @ rounded(b, dtypes.float16), dtypes.float16)
  np.testing.assert_array_less(np.abs(out.reshape(want.shape).astype(np.float64) - want), np.abs(want) * 2.0 ** -10 + 1e-6)

def kernel_of(t: Tensor) -> Kernel: return Kernel(last_kernel(t).ast, Device["PYTHON"].renderer)

def test_tc_refuses_what_it_cannot_compute():
  T16 = lambda *s: Tensor(arr(*s), device="PYTHON").cast(dtypes.float16)
  def refusal(k: Kernel, opt: Opt) -> str:
    with pytest.raises(KernelOptError) as e: k.apply_opt(opt)
    return str(e.value)
  assert "do not divide" in refusal(kernel_of(T16(24, 32) @ T16(32, 16)), Opt(OptOps.TC, 2, 0))  # m = 24
  assert "not of dtypes.bfloat16" in refusal(kernel_of(T16(32, 32) @ T16(32, 16)), Opt(OptOps.TC, 2, 1))
  f32 = kernel_of(Tensor(arr(32, 32), device="PYTHON") @ Tensor(arr(32, 16), device="PYTHON"))
  assert "not of dtypes.float16" in refusal(f32, Opt(OptOps.TC, 2, 0))  # no silent tf32: float32 stays on the FMA path
  assert "not REDUCE" in refusal(kernel_of(T16(32, 32) @ T16(32, 16)), Opt(OptOps.TC, 0, 0))
  k = kernel_of(T16(32, 32) @ T16(32, 16))
  k.apply_opt(Opt(OptOps.LOCAL, 0, 2))
  assert "TC comes first" in refusal(k, Opt(OptOps.TC, 3, 0))  # the reduce axis moved one on
  k = kernel_of(T16(32, 32) @ T16(32, 16)).apply_opt(Opt(OptOps.TC, 2, 0))
  red = next(i for i, t in enumerate(k.kinds()) if t is AxisType.REDUCE)
  assert "tensor core" in refusal(k, Opt(OptOps.GROUP, red, 2))
  # the action list BEAM searches offers TC where it applies and nowhere else
  assert Opt(OptOps.TC, 2, 0) in kernel_of(T16(32, 32) @ T16(32, 16)).valid_opts()
  assert not any(o.op is OptOps.TC for o in f32.valid_opts())

def pipelined(opts, unroll: int = 2, buffers: int = 2) -> list[Opt]:
  """The heuristic's staged opts with PIPE `buffers` before the STAGEs and the k loop unrolled by `unroll`."""
  stages = [o for o in opts if o.op is OptOps.STAGE]
  rest = [Opt(OptOps.UNROLL, o.axis, unroll) if o.op is OptOps.UNROLL else o for o in opts if o.op not in (OptOps.STAGE, OptOps.PIPE)]
  return rest + [Opt(OptOps.PIPE, stages[0].axis, buffers)] + stages

@pytest.mark.parametrize("buffers", [2, 3])
@pytest.mark.parametrize("transposed", [False, True], ids=["a_b", "x_wT"])
@pytest.mark.parametrize("dt", [dtypes.float16, dtypes.bfloat16], ids=lambda d: d.name)
def test_pipelined_tiles_fill_the_next_step_while_this_one_is_read(dt, transposed, buffers, monkeypatch):
  """PIPE S (docs/design/0026, addendum): each operand's tile in S buffers, steps 0..S-2 filled before the k loop and
  step k+S-1 filled while step k is read, one barrier a step. On the emulator (which runs the fills in order) the
  values are the unstaged kernel's, bit for bit, and NumPy's; the CUDA source copies with cp.async, one commit group
  a step for both operands, and its barrier waits until at most S-2 groups are in flight."""
  from lucidgrad.renderer.cuda import CUDARenderer
  monkeypatch.setattr(Device["PYTHON"].renderer, "shared_max", 227 * 1024)  # three buffers of two tiles: an H200's room
  a, b = arr(128, 192), arr(128, 192) if transposed else arr(192, 128)
  ta, tb = (Tensor(x, device="PYTHON").cast(dt).realize() for x in (a, b))
  item = last_kernel(ta @ (tb.T if transposed else tb))
  opts = pipelined(run_kernel(item)[1].opts, buffers=buffers)
  out, spec = run_kernel(item, opts)
  plain, _ = run_kernel(item, [o for o in opts if o.op not in (OptOps.STAGE, OptOps.PIPE)])
  assert np.array_equal(out, plain)
  want = rounded(rounded(a, dt) @ rounded(b.T if transposed else b, dt), dt)
  got = (bf16_value(out) if dt == dtypes.bfloat16 else out).astype(np.float64).reshape(want.shape)
  assert_half_matmul_close(got, want, rounded(a, dt), rounded(b.T if transposed else b, dt), dt)
  ren = CUDARenderer()
  ren.shared_max = 227 * 1024
  body = (src := get_program(item.ast, ren, opts).src)[src.index("__global__"):]
  # one barrier, in the k loop, after the step's copies landed; each operand's tile: S-1 copies before the loop, one
  # in it; a commit group for each of those steps, shared by the two operands
  assert body.count("__syncthreads();") == 1 and body.count(f'cp.async.wait_group {buffers - 2};" ::: "memory"); __syncthreads();') == 1
  assert body.count("cp.async.cg.shared.global") == 2 * buffers and body.count("cp.async.commit_group") == buffers
  assert body.index("cp.async.cg") < body.index("__syncthreads")
  assert ("temp0[" in body or "__smem + " in body) and "= *(const float16x8*)(data" not in body  # no fill goes through registers

def test_a_pipelined_conv_refills_buffer_zero_after_a_barrier_in_its_window_loops():
  """A conv's k loop (input channels) runs inside its window loops: step 0's tile is filled again for every window
  position, after a barrier there (the last pass may still read buffer 0). Values against the unstaged kernel and
  float64."""
  rng = np.random.default_rng(11)  # its own draws: the values, and so the rounding, do not depend on the tests run before
  img, w = rng.standard_normal((2, 64, 8, 24)).astype(np.float32), rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
  item = last_kernel(Tensor(img, device="PYTHON").cast(dtypes.float16).conv2d(Tensor(w, device="PYTHON").cast(dtypes.float16), padding=1))
  opts = pipelined(unmerged_opts(item))
  out, spec = run_kernel(item, opts)
  plain, _ = run_kernel(item, [o for o in opts if o.op not in (OptOps.STAGE, OptOps.PIPE)])
  # two barriers (one in the window loops before step 0's fill, one a step), besides the two copy groups' commits
  assert np.array_equal(out, plain) and sum(u.op is Ops.BARRIER and not (isinstance(u.arg, tuple) and u.arg[0] == "commit") for u in spec.uops) == 2
  want = rounded(conv_ref(rounded(img, dtypes.float16), rounded(w, dtypes.float16)), dtypes.float16)
  # float32 sums in another order may round to the neighbouring half: one unit in the last place
  np.testing.assert_array_less(np.abs(out.astype(np.float64).reshape(want.shape) - want), np.spacing(np.abs(want).astype(np.float16)).astype(np.float64) * 1.01 + 1e-6)

def test_pipe_comes_after_tc_and_before_staging():
  T16 = lambda *s: Tensor(arr(*s), device="PYTHON").cast(dtypes.float16)
  k = kernel_of(T16(64, 64) @ T16(64, 64))
  with pytest.raises(KernelOptError, match="tensor core"): k.apply_opt(Opt(OptOps.PIPE, 2, 2))
  k.apply_opt(Opt(OptOps.TC, 2, 0))
  kr = next(i for i, t in enumerate(k.kinds()) if t is AxisType.REDUCE)
  assert Opt(OptOps.PIPE, kr, 2) in k.valid_opts()
  k.apply_opt(Opt(OptOps.STAGE, kr, 1))
  with pytest.raises(KernelOptError, match="staging comes last"): k.apply_opt(Opt(OptOps.PIPE, kr, 2))

def test_tiles_past_48k_live_in_dynamic_shared_memory():
  """Two buffers of 4 k-steps of a 128 x 128 block tile are 72 KiB: past what a block declares statically, so on a device
  that allows more (an H100 or H200 opts in to 227 KiB) the tiles are slices of the dynamic shared memory the launch
  sizes (runtime/cuda.py asks for dynamic_shared_bytes). Within 48 KiB they stay static arrays."""
  from lucidgrad.renderer.cuda import CUDARenderer, dynamic_shared_bytes
  ta, tb = (Tensor(arr(256, 256), device="PYTHON").cast(dtypes.float16).realize() for _ in range(2))
  item = last_kernel(ta @ tb)
  ren = CUDARenderer()
  ren.shared_max = 227 * 1024
  opts = pipelined(get_program(item.ast, ren).opts, unroll=4)
  spec = get_program(item.ast, ren, opts)
  # two buffers each of A's tile (128 rows of 64 k, 72 halves a line) and B's (64 k-lines of 128 n, 136 halves a line)
  assert dynamic_shared_bytes(spec.uops) == 2 * (128 * 72 * 2) + 2 * (64 * 136 * 2)
  assert "extern __shared__ __align__(16) unsigned char __smem[];" in spec.src and "(half*)(__smem + 36864)" in spec.src
  # the launch's size travels in the spec, so a program read back from the disk cache (no uops) still asks for it
  from lucidgrad.engine.realize import spec_to_data, spec_from_data
  assert spec.launch_local_bytes == dynamic_shared_bytes(spec.uops) == spec_from_data(type(spec), spec_to_data(spec)).launch_local_bytes
  with pytest.raises(KernelOptError, match="pass the renderer's 49152"):  # the PYTHON emulator, like a static-only GPU, refuses
    Kernel(item.ast, Device["PYTHON"].renderer).apply_opts(opts)
  small = get_program(item.ast, ren, pipelined(opts, unroll=2))
  assert dynamic_shared_bytes(small.uops) == 0 and "__shared__ __align__(16) half temp0[" in small.src

def test_the_heuristic_pipelines_a_long_k_loop_but_not_a_short_one():
  """_tensor_core_tiles takes PIPE 2 where the k loop runs PIPE_MIN_STEPS steps or more and both double tiles fit the
  renderer's shared memory (the emulator's 48 KiB: two buffers of two k-steps); a conv's channel loop of 2 steps a window
  position keeps one buffer. Values against float64."""
  a, b = arr(128, 256), arr(256, 128)
  item = last_kernel(Tensor(a, device="PYTHON").cast(dtypes.float16) @ Tensor(b, device="PYTHON").cast(dtypes.float16))
  out, spec = run_kernel(item)
  assert [o for o in spec.opts if o.op in (OptOps.PIPE, OptOps.UNROLL)][-2:] == [Opt(OptOps.UNROLL, 6, 2), Opt(OptOps.PIPE, 6, 2)], spec.opts
  ra, rb = rounded(a, dtypes.float16), rounded(b, dtypes.float16)
  # an output near zero made of large terms has no relative bound: assert_half_matmul_close adds the float32 sum's
  # own error (which output that is depends on the draws, so on which tests ran before in this process)
  assert_half_matmul_close(out.reshape(128, 128).astype(np.float64), rounded(ra @ rb, dtypes.float16), ra, rb, dtypes.float16)
  short = last_kernel(Tensor(arr(128, 64), device="PYTHON").cast(dtypes.float16) @ Tensor(arr(64, 128), device="PYTHON").cast(dtypes.float16))
  assert not any(o.op is OptOps.PIPE for o in run_kernel(short)[1].opts)

def test_a_tile_contiguous_along_its_rows_is_read_as_transposed_matrices():
  """a.T @ b: A's memory is m-contiguous, so its staged tile is laid out rows of k and each A fragment is one
  `ldmatrix.x4.trans` (tensor_core.matrix_load). The emulator's gather gives the element-by-element kernel's values bit
  for bit, and NumPy's."""
  from lucidgrad.renderer.cuda import CUDARenderer
  a, b = arr(64, 128), arr(64, 128)
  item = last_kernel(Tensor(a, device="PYTHON").cast(dtypes.float16).T @ Tensor(b, device="PYTHON").cast(dtypes.float16))
  out, spec = run_kernel(item)
  assert OptOps.STAGE in [o.op for o in spec.opts], spec.opts
  with Context(MATRIX_LOADS=0): assert np.array_equal(run_kernel(item)[0], out)
  ra, rb = rounded(a.T, dtypes.float16), rounded(b, dtypes.float16)
  assert_half_matmul_close(out.astype(np.float64).reshape(128, 128), rounded(ra @ rb, dtypes.float16), ra, rb, dtypes.float16)
  assert "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in get_program(item.ast, CUDARenderer()).src

def test_rastered_blocks_compute_the_same_tiles():
  """RASTER G (docs/design/0026): G neighbouring m tiles become block id 0, so blocks launched one after another share
  B's tiles. It only renumbers the blocks: on the emulator the kernel's values are the unrastered kernel's bit for bit,
  and NumPy's; the group is the grid's fastest dimension (all 4 m tiles: m and n swap places). An elementwise kernel rasters too (any output loop)."""
  a, b = arr(512, 128), arr(128, 512)
  item = last_kernel(Tensor(a, device="PYTHON").cast(dtypes.float16) @ Tensor(b, device="PYTHON").cast(dtypes.float16))
  plain, spec = run_kernel(item)
  opts = [o for o in spec.opts if o.op is not OptOps.RASTER]
  at = next(i for i, o in enumerate(opts) if o.op in (OptOps.PIPE, OptOps.STAGE))
  m_loop = next(o.axis for o in opts if o.op is OptOps.LOCAL)
  for g in (2, 4):
    out, rspec = run_kernel(item, opts[:at] + [Opt(OptOps.RASTER, m_loop, g)] + opts[at:])
    assert rspec.global_size[0] == g and np.prod(rspec.global_size) == np.prod(spec.global_size), rspec.global_size
    assert np.array_equal(out, plain)
  ra, rb = rounded(a, dtypes.float16), rounded(b, dtypes.float16)
  assert_half_matmul_close(plain.astype(np.float64).reshape(512, 512), rounded(ra @ rb, dtypes.float16), ra, rb, dtypes.float16)
  x = arr(64, 96)
  ew = last_kernel(Tensor(x, device="PYTHON") * 2 + 1)
  eopts = [o for o in get_program(ew.ast, Device["PYTHON"].renderer).opts]
  loops = [i for i, r in enumerate(Kernel(ew.ast, Device["PYTHON"].renderer).apply_opts(eopts).axes) if r.arg[1] is AxisType.LOOP]
  out, _ = run_kernel(ew, eopts + [Opt(OptOps.RASTER, loops[0], 4)])
  np.testing.assert_allclose(out.reshape(64, 96), x.astype(np.float64) * 2 + 1, rtol=1e-6)
  with pytest.raises(KernelOptError, match="does not split"): Kernel(item.ast, Device["PYTHON"].renderer).apply_opt(Opt(OptOps.RASTER, 0, 3))
  with pytest.raises(KernelOptError, match="launches no blocks"): Kernel(item.ast, Device["CPU"].renderer).apply_opt(Opt(OptOps.RASTER, 0, 4))

def test_a_large_product_takes_wide_rastered_block_tiles():
  """On an H100/H200-sized renderer an 8192^3 float16 product has blocks to spare: 2 x 4 warps a block (128 x 256
  outputs) and RASTER_GROUP m tiles a block group; a 2048^3 one (64 blocks of 128 x 256: under a wave) keeps 2 x 2 warps,
  and a batched one (three grid dimensions already) is not rastered.
  Kernels are only built (the emulator would take hours); their values are the tests above's."""
  from lucidgrad.renderer.cuda import CUDARenderer
  from lucidgrad.codegen.opt import RASTER_GROUP
  ren = CUDARenderer()
  ren.shared_max = 227 * 1024
  def spec(*shape):
    a, b = (Tensor.empty(*shape, dtype=dtypes.float16, device="PYTHON") for _ in range(2))
    return get_program(create_schedule([(a @ b).uop])[0][-1].ast, ren)
  big, small, batched = spec(8192, 8192), spec(2048, 2048), spec(4, 4096, 4096)
  assert [o.amount for o in big.opts if o.op is OptOps.LOCAL] == [2, 4] and Opt(OptOps.RASTER, 0, RASTER_GROUP) in big.opts, big.opts
  assert [o.amount for o in small.opts if o.op is OptOps.LOCAL] == [2, 2], small.opts
  # a batched product's grid has no dimension left for the group: no RASTER, every block its own batch entry
  assert not any(o.op is OptOps.RASTER for o in batched.opts) and batched.global_size == [16, 32, 4], (batched.opts, batched.global_size)

def test_tensor_core_ops_are_placed_step_by_step_of_their_chains():
  """linearize places the first mma of every accumulator chain, then the second, ...: adjacent mma ops are independent,
  so none waits for the one before it (the order of a k-unrolled 4 x 8 fragment tile)."""
  item = last_kernel(Tensor(arr(128, 256), device="PYTHON").cast(dtypes.float16) @ Tensor(arr(256, 128), device="PYTHON").cast(dtypes.float16))
  uops = get_program(item.ast, Device["PYTHON"].renderer).uops
  wmmas = [u for u in uops if u.op is Ops.WMMA]
  assert len(wmmas) > 32
  for prev, nxt in zip(wmmas, wmmas[1:]): assert prev not in nxt.src, "an mma placed right after the one it accumulates onto"

MERGED_CASES = {  # name: (input shape, weight shape, the op on half tensors, the same in torch float64)
  "linear_3d": ((2, 24, 32), (16, 32), lambda x, w: x @ w.T, lambda F, x, w: x @ w.T),
  "conv_dilated": ((2, 16, 10, 12), (16, 16, 3, 3), lambda x, w: x.conv2d(w, padding=2, dilation=2), lambda F, x, w: F.conv2d(x, w, padding=2, dilation=2)),
  "conv1d": ((4, 16, 24), (16, 16, 3), lambda x, w: x.conv1d(w, padding=1), lambda F, x, w: F.conv1d(x, w, padding=1)),
  "conv3d": ((1, 16, 4, 6, 8), (16, 16, 3, 3, 3), lambda x, w: x.conv(w, padding=1), lambda F, x, w: F.conv3d(x, w, padding=1)),
  "conv1x1": ((2, 32, 8, 8), (16, 32, 1, 1), lambda x, w: x.conv2d(w), lambda F, x, w: F.conv2d(x, w)),
}

@pytest.mark.parametrize("name", MERGED_CASES)
def test_merged_tensor_core_kernels_match_torch(name):
  """Each operand's own loops and the reduce's loops merged (a Linear's batch and tokens, a conv's pixels and window):
  the heuristic merges and takes the tensor core, and the values match torch in float64 on the same half inputs to
  the output's rounding."""
  torch = pytest.importorskip("torch")
  xs, ws, op, ref = MERGED_CASES[name]
  rng = np.random.default_rng(21)
  x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
  item = last_kernel(op(Tensor(x, device="PYTHON").cast(dtypes.float16), Tensor(w, device="PYTHON").cast(dtypes.float16)))
  out, spec = run_kernel(item)
  assert any(o.op is OptOps.MERGE for o in spec.opts) and first_split(spec.opts).op is OptOps.TC, spec.opts
  want = rounded(ref(torch.nn.functional, torch.tensor(rounded(x, dtypes.float16)), torch.tensor(rounded(w, dtypes.float16))).numpy(), dtypes.float16)
  one_ulp = np.spacing(np.abs(want).astype(np.float16)).astype(np.float64) * 1.01 + 1e-6
  np.testing.assert_array_less(np.abs(out.astype(np.float64).reshape(want.shape) - want), one_ulp)
