"""A probe, not part of lucidgrad: what Hopper's `wgmma` reaches on 8192^3 float16 (C = A @ B^T, float32 sums) when
its tiles are filled the way lucidgrad fills them today -- `cp.async` into unswizzled K-major tiles of 8x8 core
matrices, several buffers, every thread filling and two warpgroups each computing 64 x 256 -- with no TMA and no
warp specialisation. It decides whether a wgmma tensor core (issue 11's half matmuls, 0.47x cuBLAS with mma.sync on an
H100) is worth building on the existing staged-tile machinery. Written in the fourteenth session; compiled there
(nvcc 13, ptxas: 195 registers, no spills). First run (fifteenth session, H100): 183.5 TFLOP/s and a relative error
of 1.25 -- each k-step of 16 moved the descriptors 16 elements (32 bytes) on instead of two core matrices (256
bytes). Fixed, second run (H100): right (relative error 0) but 183.6 TFLOP/s, 0.24x torch's 777.6 and half the
mma.sync kernel's 356: the instruction alone does not pay on these tiles (unswizzled core matrices, every thread
filling, a barrier a k-tile); the layout wgmma reads fastest (128-byte swizzle), TMA fills and producer/consumer
warpgroups are what is left to try. Twentieth session: the same kernel with the 128-byte swizzle (its fill XORs each
16-byte chunk's place with its row, the descriptors say layout 1) ran 564.2 TFLOP/s on an H100, 0.73x torch's 773.2,
right against torch -- the shape lucidgrad's warpgroup tensor core now generates (docs/design/0026). On the device machine:
  python3 bench/bench_wgmma_probe.py
It writes the CUDA source to a temporary folder, builds it with nvcc for sm_90a, and times it beside torch's a @ b.T."""
import ctypes, os, subprocess, tempfile
N_ACC = 128  # m64n256: 256 / 2 floats a thread
regs = ", ".join(f"%{i}" for i in range(N_ACC))
outs = ", ".join(f'"+f"(d[{i}])' for i in range(N_ACC))
src = r'''
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cuda_fp16.h>
#define BM 128
#define BN 256
#define BK 64
#define STAGES 4
#define THREADS 256
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); exit(1);} } while (0)

__device__ __forceinline__ uint64_t desc(const void *p, uint32_t lbo, uint32_t sbo) {
  uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
  return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32);
}
// a tile of R rows x 64 k. Unswizzled (SW false): 8x8 core matrices, core (row group g, k group c) at (g*8 + c)*128
// bytes, its rows 16 bytes apart; chunk q of the tile (16 bytes) lands at q*16, and is row (q/64)*8 + q%8, k chunk
// (q/8)%8. Swizzled (SW true, the 128-byte swizzle wgmma reads fastest): row r's 128 bytes at r*128, its 16-byte
// chunk c at position c ^ (r % 8) -- the XOR the hardware applies to address bits 4-6 from bits 7-9, so the tile
// starts on a 1024-byte boundary; chunk q is row q/8, k chunk q%8 (eight threads read one row's 128 bytes)
template <int R, bool SW> __device__ __forceinline__ void fill(half *tile, const half *g, int ld, int tid) {
  #pragma unroll
  for (int i = 0; i < R * 8 / THREADS; i++) {
    int q = i * THREADS + tid, row = SW ? q / 8 : (q / 64) * 8 + q % 8, kc = SW ? q % 8 : (q / 8) % 8;
    uint32_t s = (uint32_t)__cvta_generic_to_shared(tile) + (SW ? row * 128 + ((kc ^ (row % 8)) * 16) : q * 16);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(s), "l"(g + (size_t)row * ld + kc * 8) : "memory");
  }
}
// the 128-byte swizzle's descriptor: layout 1, SBO 1024 (8-row groups), LBO unused (1); a k-step of 16 halves moves
// the start 32 bytes along the row
__device__ __forceinline__ uint64_t desc_sw(const void *p) {
  uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
  return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
__device__ __forceinline__ void wgmma(float *d, uint64_t da, uint64_t db) {
  asm volatile("wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {REGS}, %128, %129, 1, 1, 1, 0, 0;"
               : OUTS : "l"(da), "l"(db));
}
template <bool SW> __global__ void __launch_bounds__(THREADS) gemm(half *C, const half *A, const half *B, int M, int N, int K) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char *smem = smem_raw + ((1024 - ((uint32_t)__cvta_generic_to_shared(smem_raw) & 1023)) & 1023);
  half *sa = (half *)smem, *sb = (half *)(smem + STAGES * BM * BK * 2);
  int tid = threadIdx.x, wg = tid / 128, bm = blockIdx.y, bn = blockIdx.x;
  const half *ga = A + (size_t)bm * BM * K, *gb = B + (size_t)bn * BN * K;
  float d[128];
  #pragma unroll
  for (int i = 0; i < 128; i++) d[i] = 0.f;
  int KT = K / BK;
  for (int s = 0; s < STAGES - 2; s++) {
    fill<BM, SW>(sa + s * BM * BK, ga + s * BK, K, tid); fill<BN, SW>(sb + s * BN * BK, gb + s * BK, K, tid);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  for (int kt = 0; kt < KT; kt++) {
    asm volatile("cp.async.wait_group %0;" :: "n"(STAGES - 3) : "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    int nk = kt + STAGES - 2;
    if (nk < KT) { int b = nk % STAGES; fill<BM, SW>(sa + b * BM * BK, ga + nk * BK, K, tid); fill<BN, SW>(sb + b * BN * BK, gb + nk * BK, K, tid); }
    asm volatile("cp.async.commit_group;" ::: "memory");
    int b = kt % STAGES;
    const half *ta = sa + b * BM * BK + wg * 64 * BK, *tb = sb + b * BN * BK;
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
    #pragma unroll
    // a k-step of 16 is two core matrices along k: 2 x LBO = 256 bytes on, not 16 elements (the first run's 1.25 error)
    for (int s = 0; s < BK / 16; s++)
      if (SW) wgmma(d, desc_sw(ta + s * 16), desc_sw(tb + s * 16));
      else wgmma(d, desc(ta + s * 128, 128, 1024), desc(tb + s * 128, 128, 1024));
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
  int w = (tid % 128) / 32, l = tid % 32;
  int row = bm * BM + wg * 64 + w * 16 + l / 4;
  #pragma unroll
  for (int j = 0; j < 32; j++) {
    int col = bn * BN + j * 8 + 2 * (l % 4);
    *(half2 *)(C + (size_t)row * N + col) = __floats2half2_rn(d[j * 4 + 0], d[j * 4 + 1]);
    *(half2 *)(C + (size_t)(row + 8) * N + col) = __floats2half2_rn(d[j * 4 + 2], d[j * 4 + 3]);
  }
}

extern "C" float run(half *C, const half *A, const half *B, int M, int N, int K, int reps, int sw) {
  int smem = STAGES * (BM + BN) * BK * 2 + 1024;  // + room to align to 1024
  auto gemm = sw ? ::gemm<true> : ::gemm<false>;
  if (cudaFuncSetAttribute(gemm, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) return -1;
  dim3 grid(N / BN, M / BM);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  gemm<<<grid, THREADS, smem>>>(C, A, B, M, N, K);
  if (cudaGetLastError() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) return -2;
  float best = 1e9;
  for (int i = 0; i < reps; i++) {
    cudaEventRecord(e0); gemm<<<grid, THREADS, smem>>>(C, A, B, M, N, K); cudaEventRecord(e1); cudaEventSynchronize(e1);
    float ms; cudaEventElapsedTime(&ms, e0, e1); if (ms < best) best = ms;
  }
  return best;
}
'''

def build(folder: str) -> str:
  cu, so = os.path.join(folder, "wg.cu"), os.path.join(folder, "wg.so")
  with open(cu, "w") as f: f.write(src.replace("{REGS}", "{" + regs + "}").replace("OUTS", outs))
  subprocess.run(["nvcc", "-O3", "-gencode", "arch=compute_90a,code=sm_90a", "-shared", "-Xcompiler", "-fPIC", "-Xptxas", "-v",
                  "-o", so, cu], check=True)
  return so

if __name__ == "__main__":
  import torch
  with tempfile.TemporaryDirectory() as d:
    lib = ctypes.CDLL(build(d))
    lib.run.restype = ctypes.c_float
    n = 8192
    a, b = torch.randn(n, n, device="cuda", dtype=torch.float16), torch.randn(n, n, device="cuda", dtype=torch.float16)
    c = torch.empty(n, n, device="cuda", dtype=torch.float16)
    ref = (a @ b.T)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = 1e9
    for _ in range(10):
      s.record(); a @ b.T; e.record(); e.synchronize(); best = min(best, s.elapsed_time(e))
    fl = 2 * n ** 3
    print(f"torch a @ b.T {best:.3f} ms {fl / best / 1e9:.1f} TFLOP/s")
    for sw in (0, 1):
      c.fill_(float("nan"))
      ms = lib.run(ctypes.c_void_p(c.data_ptr()), ctypes.c_void_p(a.data_ptr()), ctypes.c_void_p(b.data_ptr()), n, n, n, 10, sw)
      if ms < 0: raise SystemExit(f"the probe kernel did not run: {'too much shared memory' if ms == -1 else 'launch failed'}")
      err = ((c.float() - ref.float()).abs().max() / ref.float().abs().max()).item()  # NaN where an element was never written
      print(f"wgmma probe (cp.async, 4 stages, 128x256x64, {'128-byte swizzle' if sw else 'no swizzle'}): {ms:.3f} ms "
            f"{fl / ms / 1e9:.1f} TFLOP/s | {best / ms:.2f}x torch | rel err {err:.2e}")
