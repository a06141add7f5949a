"""A second probe, not part of lucidgrad: what Hopper's `wgmma` reaches on 8192^3 float16 and bfloat16 (C = A @ B^T,
float32 sums) when its tiles come the way cuBLAS-class kernels bring them -- the first probe (bench_wgmma_probe.py,
cp.async into unswizzled tiles, every thread filling) reached only 183.6 TFLOP/s on an H100. Here:
- TMA: `cp.async.bulk.tensor.2d` copies a 64-wide k slice of A (128 rows) and B (256 rows) into shared memory with
  the 128-byte swizzle, completing on an mbarrier (expect_tx); the tensor maps are made on the host by the driver's
  cuTensorMapEncodeTiled (fetched through the runtime's entry-point query, so no libcuda stub is needed to link);
- warp specialisation: warpgroup 0 is the producer (one thread issues the copies; `setmaxnreg` gives its registers
  away), warpgroups 1 and 2 each run `wgmma m64n256k16` over their 64 rows of the 128 x 256 block tile, both operands
  read through 128-byte-swizzle descriptors;
- a ring of STAGES buffers with a full and an empty mbarrier each; a consumer keeps one wgmma group in flight and
  frees a buffer as soon as the group that read it is done;
- a persistent grid (one block an SM, tiles handed out in a grouped order so that blocks at work together share rows
  of A in L2), or one block a tile in the same order.
Written in the nineteenth session and compiled here (nvcc 13.0, sm_90a: 168 registers, no spills; SASS, read with
cuobjdump: four HGMMA.64x256x16 a k-tile back to back, UTMALDG, USETMAXREG, no local memory). Not yet run: the
session's device time had fallen under the share this task could spend. A wrong barrier phase traps (a failed launch)
instead of hanging the call.
On the device machine:
  python3 bench/bench_wgmma_tma_probe.py
It writes the CUDA source to a temporary folder, builds it with nvcc for sm_90a (printing ptxas's register line),
checks each variant against a float64 reference on a sample of rows (every output element written: C is poisoned
with NaN first), and times it beside torch's a @ b.T (median and best of REPS, CUDA events, the same process)."""
import ctypes, os, shutil, subprocess, sys, tempfile
N_ACC = 128  # m64n256: 64 x 256 floats over 128 threads
regs = ", ".join(f"%{i}" for i in range(N_ACC))
outs = ", ".join(f'"+f"(d[{i}])' for i in range(N_ACC))
src = r'''
#include <cstdint>
#include <cuda.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define BM 128
#define BN 256
#define BK 64  // 64 halves = 128 bytes: one swizzle row
#define STAGES 4
#define CONSUMERS 2
#define THREADS (128 * (CONSUMERS + 1))
#define A_BYTES (BM * BK * 2)
#define B_BYTES (BN * BK * 2)
#define SMEM (STAGES * (A_BYTES + B_BYTES) + 2 * STAGES * 8 + 1024)  // + barriers + room to align to 1024

__device__ __forceinline__ void bar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void bar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done, tries = 0;
  do {
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    if (++tries == (1u << 22)) __trap();  // a wrong phase would hang the call: fail the launch instead
  } while (!done);
}
__device__ __forceinline__ void bar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bar) : "memory");
}
__device__ __forceinline__ void bar_expect(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(bytes) : "memory");
}
// a box of the tensor map (k at x, row at y) into shared memory, counted against the barrier's expected bytes
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap *map, int x, int y, uint32_t bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
               :: "r"(dst), "l"((uint64_t)map), "r"(x), "r"(y), "r"(bar) : "memory");
}
// K-major tile of 128-byte rows swizzled by TMA: 8-row groups 1024 bytes apart (SBO), LBO unused, layout 1 = 128B.
// A k-step of 16 elements moves the start 32 bytes along the row; the hardware swizzles the absolute address, so
// every tile starts on a 1024-byte boundary.
__device__ __forceinline__ uint64_t desc(uint32_t addr) {
  return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
template <bool BF> __device__ __forceinline__ void wgmma(float *d, uint64_t da, uint64_t db, uint32_t accumulate) {
  if (BF)
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %130, 0; wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {REGS}, %128, %129, p, 1, 1, 0, 0; }"
                 : OUTS : "l"(da), "l"(db), "r"(accumulate));
  else
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %130, 0; wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {REGS}, %128, %129, p, 1, 1, 0, 0; }"
                 : OUTS : "l"(da), "l"(db), "r"(accumulate));
}
template <bool BF> __device__ __forceinline__ uint32_t pack2(float x, float y) {
  if (BF) { __nv_bfloat162 v = __floats2bfloat162_rn(x, y); return *(uint32_t *)&v; }
  __half2 v = __floats2half2_rn(x, y); return *(uint32_t *)&v;
}
// tile t in a grouped order: GROUP m-tiles a column of n-tiles at a time, so the blocks at work together read few rows
__device__ __forceinline__ void tile_at(int t, int tiles_m, int tiles_n, int group, int &bm, int &bn) {
  int per = group * tiles_n, first = t / per * group, rows = min(tiles_m - first, group), r = t % per;
  bm = first + r % rows; bn = r / rows;
}

template <bool BF> __global__ void __launch_bounds__(THREADS, 1)
gemm(uint16_t *C, const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b, int M, int N,
     int K, int group) {
  extern __shared__ unsigned char smem_raw[];
  uint32_t base = ((uint32_t)__cvta_generic_to_shared(smem_raw) + 1023) & ~1023u;
  uint32_t full = base + STAGES * (A_BYTES + B_BYTES), empty = full + STAGES * 8;
  int wg = threadIdx.x / 128, tid = threadIdx.x % 128, tiles_m = M / BM, tiles_n = N / BN, KT = K / BK;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; s++) { bar_init(full + s * 8, 1); bar_init(empty + s * 8, CONSUMERS); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (wg == 0) {  // producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
    if (tid == 0) {
      int it = 0;
      for (int t = blockIdx.x; t < tiles_m * tiles_n; t += gridDim.x) {
        int bm, bn; tile_at(t, tiles_m, tiles_n, group, bm, bn);
        for (int kt = 0; kt < KT; kt++, it++) {
          int s = it % STAGES;
          bar_wait(empty + s * 8, ((it / STAGES) & 1) ^ 1);  // a fresh barrier passes the wait on the odd phase
          bar_expect(full + s * 8, A_BYTES + B_BYTES);
          tma_load(base + s * A_BYTES, &map_a, kt * BK, bm * BM, full + s * 8);
          tma_load(base + STAGES * A_BYTES + s * B_BYTES, &map_b, kt * BK, bn * BN, full + s * 8);
        }
      }
    }
  } else {  // consumers: warpgroup c computes rows c*64 .. c*64+63 of the block tile
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    int c = wg - 1, it = 0;
    float d[128];
    for (int t = blockIdx.x; t < tiles_m * tiles_n; t += gridDim.x) {
      int bm, bn; tile_at(t, tiles_m, tiles_n, group, bm, bn);
      for (int kt = 0; kt < KT; kt++, it++) {
        int s = it % STAGES;
        bar_wait(full + s * 8, (it / STAGES) & 1);
        uint32_t ta = base + s * A_BYTES + c * 64 * 128, tb = base + STAGES * A_BYTES + s * B_BYTES;
        asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
        #pragma unroll
        for (int k = 0; k < BK / 16; k++) wgmma<BF>(d, desc(ta + k * 32), desc(tb + k * 32), kt > 0 || k > 0);
        asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");  // the previous k-tile's group is done
        if (kt > 0 && tid == 0) bar_arrive(empty + ((it - 1) % STAGES) * 8);
      }
      asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
      if (tid == 0) bar_arrive(empty + ((it - 1) % STAGES) * 8);
      // the accumulator layout: warp w holds rows w*16 + lane/4 (+8), n-fragment j columns j*8 + 2*(lane%4) (+1)
      int w = tid / 32, l = tid % 32, row = bm * BM + c * 64 + w * 16 + l / 4;
      #pragma unroll
      for (int j = 0; j < 32; j++) {
        int col = bn * BN + j * 8 + 2 * (l % 4);
        *(uint32_t *)(C + (size_t)row * N + col) = pack2<BF>(d[j * 4 + 0], d[j * 4 + 1]);
        *(uint32_t *)(C + (size_t)(row + 8) * N + col) = pack2<BF>(d[j * 4 + 2], d[j * 4 + 3]);
      }
    }
  }
}

typedef CUresult (*encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                              const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
// a row-major rows x K matrix, boxes of box_rows x BK with the 128-byte swizzle
static int make_map(encode_fn encode, CUtensorMap *map, const void *p, int rows, int K, int box_rows, int bf) {
  cuuint64_t dim[2] = {(cuuint64_t)K, (cuuint64_t)rows}, stride[1] = {(cuuint64_t)K * 2};
  cuuint32_t box[2] = {BK, (cuuint32_t)box_rows}, elem[2] = {1, 1};
  return encode(map, bf ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, (void *)p, dim, stride,
                box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS ? 0 : -3;
}

// runs the kernel once (checked), then reps timed launches into ms[]; 0, or a negative code saying what failed
extern "C" int run(uint16_t *C, const void *A, const void *B, int M, int N, int K, int bf, int persistent, int group,
                   int reps, float *ms) {
  if (M % BM || N % BN || K % BK) return -4;
  void *fn = nullptr; cudaDriverEntryPointQueryResult q;
  if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess || !fn) return -5;
  CUtensorMap ma, mb;
  if (make_map((encode_fn)fn, &ma, A, M, K, BM, bf) || make_map((encode_fn)fn, &mb, B, N, K, BN, bf)) return -3;
  auto kernel = bf ? gemm<true> : gemm<false>;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM) != cudaSuccess) return -1;
  int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  int tiles = (M / BM) * (N / BN), grid = persistent ? (sms < tiles ? sms : tiles) : tiles;
  kernel<<<grid, THREADS, SMEM>>>(C, ma, mb, M, N, K, group);
  if (cudaGetLastError() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) return -2;
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  for (int i = 0; i < reps; i++) {
    cudaEventRecord(e0); kernel<<<grid, THREADS, SMEM>>>(C, ma, mb, M, N, K, group); cudaEventRecord(e1);
    cudaEventSynchronize(e1); cudaEventElapsedTime(&ms[i], e0, e1);
  }
  cudaEventDestroy(e0); cudaEventDestroy(e1);
  return cudaGetLastError() == cudaSuccess ? 0 : -2;
}
'''
ERRORS = {-1: "too much shared memory", -2: "launch failed", -3: "cuTensorMapEncodeTiled refused a map",
          -4: "sizes not multiples of the tile", -5: "no cuTensorMapEncodeTiled from the driver"}
VARIANTS = [("persistent, group 16", 1, 16), ("persistent, group 8", 1, 8), ("persistent, group 32", 1, 32),
            ("a block a tile, group 16", 0, 16)]
REPS = 20

def build(folder: str) -> str:
  """Writes the CUDA source into folder and builds it to a shared library for sm_90a; returns its path."""
  cu, so = os.path.join(folder, "wg_tma.cu"), os.path.join(folder, "wg_tma.so")
  with open(cu, "w") as f: f.write(src.replace("{REGS}", "{" + regs + "}").replace("OUTS", outs))
  subprocess.run(["nvcc", "-O3", "-std=c++17", "-gencode", "arch=compute_90a,code=sm_90a", "-shared", "-Xcompiler", "-fPIC",
                  "-Xptxas", "-v", "-o", so, cu], check=True)
  return so

def median(xs: list[float]) -> float:
  s = sorted(xs)
  return s[len(s) // 2]

if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "--build":  # compile only (where there is nvcc but no GPU)
    with tempfile.TemporaryDirectory() as d: build(d)
    raise SystemExit(0)
  import torch
  with tempfile.TemporaryDirectory() as d:
    lib = ctypes.CDLL(so := build(d))
    if shutil.which("cuobjdump"):  # the instructions we meant: HGMMA from wgmma, UTMALDG from the bulk tensor copy
      sass = subprocess.run(["cuobjdump", "-sass", so], capture_output=True, text=True).stdout
      print("SASS:", {op: sass.count(op) for op in ("HGMMA", "UTMALDG", "SYNCS", "USETMAXREG", "LDL", "STL")})
  n, fl, rows = 8192, 2 * 8192 ** 3, 256
  print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
  table = []
  for dt in (torch.float16, torch.bfloat16):
    name = str(dt).split(".")[-1]
    g = torch.Generator(device="cuda").manual_seed(1 if dt == torch.float16 else 2)
    a = torch.randn(n, n, device="cuda", dtype=dt, generator=g)
    b = torch.randn(n, n, device="cuda", dtype=dt, generator=g)
    c = torch.empty(n, n, device="cuda", dtype=dt)
    sample = torch.randperm(n, device="cuda", generator=g)[:rows]
    ref = a[sample].double() @ b.double().T
    def rel_err(out: torch.Tensor) -> float: return ((out[sample].double() - ref).norm() / ref.norm()).item()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch_ms = []
    for i in range(REPS + 3):
      s.record(); out = a @ b.T; e.record(); e.synchronize()
      if i >= 3: torch_ms.append(s.elapsed_time(e))
    torch_err, torch_tf = rel_err(out), fl / median(torch_ms) / 1e9
    table.append((name, "torch a @ b.T (cuBLAS)", median(torch_ms), min(torch_ms), torch_tf, 1.0, torch_err))
    for label, persistent, group in VARIANTS:
      c.fill_(float("nan"))
      ms = (ctypes.c_float * REPS)()
      rc = lib.run(ctypes.c_void_p(c.data_ptr()), ctypes.c_void_p(a.data_ptr()), ctypes.c_void_p(b.data_ptr()), n, n, n,
                   int(dt == torch.bfloat16), persistent, group, REPS, ms)
      if rc < 0: raise SystemExit(f"{name} {label}: the probe kernel did not run: {ERRORS.get(rc, rc)}")
      torch.cuda.synchronize()
      unwritten = int(torch.isnan(c).sum().item())
      err = rel_err(c) if unwritten == 0 else float("nan")
      med = median(list(ms))
      table.append((name, f"TMA+wgmma, {label}", med, min(ms), fl / med / 1e9, fl / med / 1e9 / torch_tf, err))
      if unwritten: print(f"{name} {label}: {unwritten} output elements never written")
    del a, b, c, ref
  print(f"\n8192^3 C = A @ B^T, median (best) of {REPS}; relative error ||out - ref|| / ||ref|| on {rows} rows vs float64")
  print(f"{'dtype':9} {'kernel':34} {'ms':>7} {'best':>7} {'TFLOP/s':>8} {'x torch':>7} {'rel err':>9}")
  for name, label, med, best, tf, ratio, err in table:
    print(f"{name:9} {label:34} {med:7.3f} {best:7.3f} {tf:8.1f} {ratio:7.3f} {err:9.2e}")
