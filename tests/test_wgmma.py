"""Hopper's warpgroup tensor core (renderer.WarpgroupCore, wgmma; docs/design/0026's twentieth-session addendum): its
layouts, its kernels on the PYTHON device's emulator (which reads the swizzled tiles through the descriptors as the
hardware does) against NumPy and against the same kernel unstaged, the CUDA source, and the heuristic's choice on a
Hopper-like renderer. The products at the end run on the default device: on CUDA (bench/gpu.sh, DEV=CUDA) they are
wgmma kernels on an H100/H200, checked against float64."""
import numpy as np
import pytest
from lucidgrad import Tensor, Device, dtypes
from lucidgrad.codegen.opt import Opt, OptOps, gpu_opts
from lucidgrad.codegen.opt.kernel import Kernel
from lucidgrad.codegen.program import get_program
from lucidgrad.renderer import MMA_16816, WGMMA_64N16
from lucidgrad.renderer.cuda import CUDARenderer
from lucidgrad.runtime.python import bf16_value
from lucidgrad.schedule import create_schedule
from lucidgrad.uop.ops import Ops
from test_tensor_cores import last_kernel, run_kernel, rounded, assert_half_matmul_close, assert_each_element_held_once

HALVES = [dtypes.float16, dtypes.bfloat16]

@pytest.mark.parametrize("tc", WGMMA_64N16, ids=lambda tc: tc.name)
def test_each_lane_element_is_one_matrix_element(tc):
  """The warpgroup's (lane, element) pairs cover A (64 x 16), B (16 x N) and D (64 x N) once each; D's rows are mma's
  C layout with warp w 16 rows down, its columns repeated every 8."""
  assert_each_element_held_once(tc)
  # lane 37 is warp 1, groupID 1, threadID_in_group 1: D element 6 is fragment 1's element 2, row 16 + 1 + 8, column 8 + 2
  assert tc.c(37, 6) == (25, 10) and tc.a(37, 0) == (17, 2)

@pytest.fixture
def hopper(monkeypatch):
  """The PYTHON device's renderer with the warpgroup cores first and an H100's shared memory, as runtime/cuda.py sets
  up an sm_90 device."""
  ren = Device["PYTHON"].renderer
  monkeypatch.setattr(ren, "tensor_cores", WGMMA_64N16 + MMA_16816)
  monkeypatch.setattr(ren, "shared_max", 227 * 1024)
  return ren

def wgmma_opts(k: Kernel, dt, buffers: int) -> list[Opt]:
  """TC on the warpgroup core for dt, two warpgroups along m, four instructions a k-step, both operands staged."""
  opts: list[Opt] = []
  def do(op, kind: str, amount: int):
    opts.append(o := Opt(op, next(i for i, x in enumerate(k.kinds()) if x.name == kind), amount))
    k.apply_opt(o)
  do(OptOps.TC, "REDUCE", [tc.dtype_in for tc in k.renderer.tensor_cores].index(dt))
  do(OptOps.LOCAL, "LOOP", 2)
  do(OptOps.UNROLL, "REDUCE", 4)
  if buffers > 1: do(OptOps.PIPE, "REDUCE", buffers)
  do(OptOps.STAGE, "REDUCE", 1)
  do(OptOps.STAGE, "REDUCE", 2)
  return opts

LAYOUTS = {"a_b": (False, False), "a_bT": (False, True), "aT_b": (True, False)}  # which operand is read transposed

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dt", HALVES, ids=lambda d: d.name)
def test_wgmma_kernels_match_numpy_and_the_unstaged_kernel(hopper, dt, layout):
  """K-major and M/N-major operands (a @ b reads B along n, a @ b.T along k, a.T @ b reads A along m): the staged,
  pipelined kernel's values equal the same core's kernel without staging (fragments gathered from the lanes) bit for
  bit -- so every element the descriptors name through the swizzle is the one the fill put there -- and NumPy's."""
  ta, tb = LAYOUTS[layout]
  rng = np.random.default_rng(5)
  M, N, K = 128, 256, 128
  a, b = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32), rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
  A, B = (Tensor(x, device="PYTHON").cast(dt).realize() for x in (a, b))
  item = last_kernel((A.T if ta else A) @ (B.T if tb else B))
  opts = wgmma_opts(Kernel(item.ast, hopper), dt, buffers=2)
  out, spec = run_kernel(item, opts)
  plain, _ = run_kernel(item, [o for o in opts if o.op not in (OptOps.STAGE, OptOps.PIPE)])
  assert np.array_equal(out, plain)
  assert spec.local_size[0] == 128 and any(u.op is Ops.LOAD and isinstance(u.arg, tuple) and u.arg[0] == "desc" for u in spec.uops)
  A_, B_ = rounded(a.T if ta else a, dt), rounded(b.T if tb else b, dt)
  got = (bf16_value(out) if dt == dtypes.bfloat16 else out).astype(np.float64).reshape(M, N)
  assert_half_matmul_close(got, rounded(A_ @ B_, dt), A_, B_, dt)

def test_the_cuda_source_copies_into_swizzled_tiles_and_fences_them_for_wgmma(hopper):
  """The fills are cp.async into 1024-byte aligned tiles, each step's barrier waits for them and fences them for the
  async proxy, and each instruction reads two descriptors (128-byte swizzle: layout 1 at bit 62) with B read N-major."""
  A, B = (Tensor.empty(256, 512, device="PYTHON", dtype=dtypes.float16), Tensor.empty(512, 512, device="PYTHON", dtype=dtypes.float16))
  item = last_kernel(A @ B)
  opts = wgmma_opts(Kernel(item.ast, hopper), dtypes.float16, buffers=3)
  ren = CUDARenderer()
  ren.tensor_cores, ren.shared_max = hopper.tensor_cores, hopper.shared_max
  src = get_program(item.ast, ren, opts).src
  body = src[src.index("__global__"):]
  assert "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16" in src and ", 1, 1, 1, 0, 1;" in src  # trans-b: N-major B
  assert body.count("__wgmma_m64n256k16_float16_01(") == 4  # four k16 instructions a 64-wide step
  assert body.count("fence.proxy.async.shared::cta") == 1 and 'cp.async.wait_group 1;" ::: "memory"); asm volatile("fence.proxy.async' in body
  assert body.count("cp.async.cg.shared.global") == 2 * 3 and body.count("(1ull << 62)") == 8
  assert "& 1023)) & 1023)" in body  # the dynamic tiles' start rounded up to 1024 bytes

def kernel_for(ren, M: int, N: int, K: int, dt):
  A, B = Tensor.empty(M, K, device="PYTHON", dtype=dt), Tensor.empty(K, N, device="PYTHON", dtype=dt)
  items, _, _ = create_schedule([(A @ B).uop])
  return gpu_opts(Kernel(items[-1].ast, ren))

@pytest.mark.parametrize("dt", HALVES, ids=lambda d: d.name)
def test_the_heuristic_takes_the_warpgroup_core_where_its_grid_fills_the_gpu(hopper, dt):
  """8192^3 takes wgmma: 128 x 256 blocks of two warpgroups, four buffers of 64-wide k-steps, both operands staged; a
  256^3 product (2 blocks of that size for 132 multiprocessors) stays on mma.sync's smaller tiles."""
  k = kernel_for(hopper, 8192, 8192, 8192, dt)
  tc = next(o for o in k.applied if o.op is OptOps.TC)
  assert hopper.tensor_cores[tc.amount].shared_operands and sorted(k.tc_tile.staged) == ["a", "b"]
  assert Opt(OptOps.PIPE, 3, 4) in k.applied and Opt(OptOps.LOCAL, 0, 2) in k.applied
  small = kernel_for(hopper, 256, 256, 256, dt)
  assert not hopper.tensor_cores[next(o for o in small.applied if o.op is OptOps.TC).amount].shared_operands

@pytest.mark.parametrize("shape", [(512, 512, 512), (1024, 768, 256)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dt", HALVES, ids=lambda d: d.name)
def test_half_products_on_the_default_device_match_float64(dt, shape):
  """a @ b and a @ b.T in half on the default device against float64 (on an sm_90 GPU: wgmma kernels, both majors)."""
  M, N, K = shape
  rng = np.random.default_rng(7)
  a, b = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
  A, B = Tensor(a).cast(dt), Tensor(b).cast(dt)
  for got, b_used in (((A @ B).float().numpy(), b), ((A @ Tensor(np.ascontiguousarray(b.T)).cast(dt).T).float().numpy(), b)):
    A_, B_ = rounded(a, dt), rounded(b_used, dt)
    assert_half_matmul_close(got.astype(np.float64), rounded(A_ @ B_, dt), A_, B_, dt)

def test_a_conv_on_the_warpgroup_core_matches_float64(hopper):
  """A 3x3 conv merged into a matmul (design 0026's fourteenth-session addendum) whose pixel operand is a gather with
  padding gates, on the warpgroup core with both tiles staged and swizzled: against the unstaged kernel bit for bit,
  and a float64 conv."""
  from lucidgrad.codegen.opt import _merged_for_tc
  from test_tensor_cores import conv_ref
  rng = np.random.default_rng(3)
  x, w = rng.standard_normal((2, 64, 16, 16)).astype(np.float32), rng.standard_normal((128, 64, 3, 3)).astype(np.float32)
  X, W = (Tensor(v, device="PYTHON").half().realize() for v in (x, w))
  item = last_kernel(X.conv2d(W, padding=1))
  merged = _merged_for_tc(Kernel(item.ast, hopper))
  opts = list(merged.applied) + wgmma_opts(merged, dtypes.float16, buffers=2)
  out, spec = run_kernel(item, opts)
  plain, _ = run_kernel(item, [o for o in opts if o.op not in (OptOps.STAGE, OptOps.PIPE)])
  assert np.array_equal(out, plain) and spec.local_size[0] == 128
  want = rounded(conv_ref(rounded(x, dtypes.float16), rounded(w, dtypes.float16)), dtypes.float16)
  got = out.astype(np.float64).reshape(want.shape)
  bound = np.abs(want) * 2.0 ** -10 * 1.01 + 576 * 2.0 ** -24 * conv_ref(np.abs(rounded(x, dtypes.float16)), np.abs(rounded(w, dtypes.float16))) + 1e-6
  np.testing.assert_array_less(np.abs(got - want), bound)
