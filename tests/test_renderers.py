"""Renderers without their device: programs codegen builds for the CUDA renderer (GPU-style: block and thread ids,
local memory, barriers) are checked for what they say and compiled -- by nvcc where it is installed, and always, as a
syntax check, by the host C++ compiler against CUDA stand-ins (stand-ins only: it proves the source is well-formed, not
that it computes the right thing; that needs a CUDA runtime). The CPU renderer on the shared C-style base is checked
by process replay and by every test that runs on the CPU."""
import pathlib, re, shutil, subprocess
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.schedule import create_schedule
from lucidgrad.codegen import get_program
from lucidgrad.codegen.opt import Opt, OptOps
from lucidgrad.uop.ops import Ops, GroupOp
from lucidgrad.renderer.c import CRenderer
from lucidgrad.renderer.cuda import CUDARenderer
import lucidgrad.renderer.cstyle as cstyle

rng = np.random.default_rng(0)
def T(*shape, dtype=np.float32): return Tensor(rng.standard_normal(shape).astype(dtype), device="PYTHON")
A, V = T(64, 64), T(1000)
# (lucidgrad program, opts or None for the heuristic's); built, never run
KERNELS = {
  "elementwise": (lambda: (V * 2 + 1).exp2().sqrt(), None),
  "reduce_max": (lambda: A.max(axis=1), None),
  "matmul": (lambda: A @ A, None),
  "matmul_local_upcast_unroll": (lambda: A @ A, [Opt(OptOps.LOCAL, 0, 4), Opt(OptOps.UPCAST, 2, 4), Opt(OptOps.UNROLL, 4, 4)]),
  "group_sum": (lambda: A.sum(axis=1), [Opt(OptOps.GROUP, 1, 16)]),
  "grouptop_upcast": (lambda: A.sum(axis=0), [Opt(OptOps.UPCAST, 0, 4), Opt(OptOps.GROUPTOP, 2, 16)]),
  "half": (lambda: (A.cast(dtypes.float16) * 2 + 1).max(axis=1), None),
  "bfloat16": (lambda: A.cast(dtypes.bfloat16).sum(axis=0).cast(dtypes.bfloat16), None),
  "int_ops": (lambda: (V.cast(dtypes.int32) // (V.cast(dtypes.int32) + 3)) << 3, None),
  "bitcast": (lambda: V.bitcast(dtypes.int32) + 1, None),
  # a load whose address is a loaded value (docs/design/0014), gated and clamped
  "gather": (lambda: A[Tensor(rng.integers(-64, 64, (5,)).astype(np.int32), device="PYTHON")] * 2, None),
  # a store whose address is a loaded value, adding into what is there (docs/design/0017): lanes (heuristic) or one add
  # at a time (no opts: an atomicAdd)
  "scatter_add": (lambda: Tensor.zeros(10, 64, device="PYTHON").scatter_add(0, Tensor(rng.integers(0, 10, (7, 64)), device="PYTHON"), A[:7]), None),
  "scatter_add_scalar": (lambda: Tensor.zeros(10, 64, device="PYTHON").scatter_add(0, Tensor(rng.integers(0, 10, (7, 64)), device="PYTHON"), A[:7]), []),
  "int64_index": (lambda: (Tensor.empty(3, 2**30, device="PYTHON") * 2).sum(axis=0), None),  # 3 * 2**30 elements
  # a block per row (OptOps.ROW, docs/design/0023): two group reduces and the row's outputs on one set of threads
  "softmax_row": (lambda: A.softmax(axis=1), None),
  "int_min": (lambda: V.reshape(10, 100).cast(dtypes.int32).min(axis=1), None),  # a negation written as a select on CUDA
  # half matmuls on the tensor core (OptOps.TC, docs/design/0024): fragments, mma.sync, an epilogue per element
  "tensor_core_f16": (lambda: (A.cast(dtypes.float16) @ A.cast(dtypes.float16)).relu(), None),
  "tensor_core_bf16": (lambda: A.cast(dtypes.bfloat16) @ A.cast(dtypes.bfloat16), None),
}

def program(name: str, renderer):
  make, opts = KERNELS[name]
  items, _, _ = create_schedule([make().uop])
  return get_program([i for i in items if i.kind == "kernel"][-1].ast, renderer, opts)

@pytest.fixture(scope="module")
def cuda_programs(): return {name: program(name, CUDARenderer()) for name in KERNELS}

def test_thread_ids_are_block_and_thread_indices(cuda_programs):
  for name, p in cuda_programs.items():
    specials = [u for u in p.uops if u.op is Ops.SPECIAL]
    assert specials, name  # every kernel here has an output axis, which a GPU-style target turns into ids
    for u in specials:
      dim = "xyz"[int(u.arg[0][4:])]
      assert re.search(rf"\b{u.arg[0]} = {'blockIdx' if u.arg[0][0] == 'g' else 'threadIdx'}\.{dim};", p.src), (name, u.arg)
    assert f"__launch_bounds__({np.prod(p.local_size)})" in p.src, name

def test_group_reduce_uses_shared_memory_and_a_barrier(cuda_programs):
  for name in ("group_sum", "grouptop_upcast"):
    src = cuda_programs[name].src
    assert re.search(r"__shared__ __align__\(16\) float temp0\[\d+\];", src) and "__syncthreads();" in src, name
    assert src.index("__syncthreads();") < src.rindex("temp0+"), name  # the partials are read after the barrier
  plain = cuda_programs["matmul_local_upcast_unroll"].src  # no group: no local memory, no barrier
  assert "__shared__" not in plain and "__syncthreads" not in plain

def test_cuda_has_vector_loads_but_no_vector_arithmetic(cuda_programs):
  p = cuda_programs["matmul_local_upcast_unroll"]
  assert any(u.op is Ops.LOAD and u.dtype.count == 4 for u in p.uops) and "*(const float32x4*)" in p.src
  for name, p in cuda_programs.items():
    assert not [u for u in p.uops if (u.op in GroupOp.ALU or u.op is Ops.CAST) and u.dtype.count > 1], name
  # the same kernel for the CPU, whose vector types have arithmetic, does get vector ops: the capability decides
  cpu = program("matmul", CRenderer())
  assert any(u.op in GroupOp.ALU and u.dtype.count > 1 for u in cpu.uops)

def test_half_matmuls_run_on_the_tensor_core(cuda_programs):
  for name, ty in (("tensor_core_f16", "f16"), ("tensor_core_bf16", "bf16")):
    p = cuda_programs[name]
    assert next(o for o in p.opts if o.op not in (OptOps.PADTO, OptOps.MERGE, OptOps.SWAP)).op is OptOps.TC and p.local_size[0] == 32, (name, p.opts, p.local_size)  # a warp's lanes are threadIdx.x
    assert f"mma.sync.aligned.m16n8k16.row.col.f32.{ty}.{ty}.f32" in p.src, name
    # the accumulator is the instruction's C operand, and an unrolled k chains the mmas: each C is an accumulator or
    # the mma before it, never a vector add of their results
    calls = re.findall(r"(\w+) = __mma_m16n8k16_\w+\((\w+), (\w+), (\w+)\);", p.src)
    results = {d for d, *_ in calls} | set(re.findall(r"float32x4 (\w+) = \{0.0f, 0.0f, 0.0f, 0.0f\};", p.src))  # (a k unrolled whole starts from 0)
    assert calls and all(c.startswith("acc") or c in results for *_, c in calls), calls[:4]

def test_int64_index_math_renders_in_long_long(cuda_programs):
  src = cuda_programs["int64_index"].src
  assert "long long gidx0 = blockIdx.x;" in src and "1073741824LL" in src

def test_a_scatter_add_is_an_atomic_add_on_cuda(cuda_programs):
  src = cuda_programs["scatter_add_scalar"].src
  assert re.search(r"atomicAdd\(\(data0\+", src), src
  assert not re.search(r"\*\(data0\+[^;]*\) = ", src)  # no plain store into the output: every write is the atomic one

def test_no_gcc_extensions_in_the_shared_base_or_cuda(cuda_programs):
  gcc_only = ("__attribute__", "__builtin_", "vector_size", "__typeof__")
  base = pathlib.Path(cstyle.__file__).read_text()
  assert not [g for g in gcc_only if g in base]
  for name, p in cuda_programs.items(): assert not [g for g in gcc_only + ("({",) if g in p.src], name  # ({ opens a statement expression

# CUDA's keywords and builtins as plain C++ declarations: enough for the host compiler to parse the source and check
# names and types, nothing more. The source includes <cuda_fp16.h>, so this file takes that name.
STAND_INS = """#pragma once
#include <math.h>
#include <string.h>
#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __launch_bounds__(n)
#define __align__(n) __attribute__((aligned(n)))
struct __dim3 { unsigned int x, y, z; };
extern __dim3 blockIdx, threadIdx;
void __syncthreads();
struct half { unsigned short bits; half() = default; half(float); operator float() const; };
float atomicAdd(float*, float);
float __int_as_float(int); float __uint_as_float(unsigned int); int __float_as_int(float); unsigned int __float_as_uint(float);
long long __double_as_longlong(double); double __longlong_as_double(long long);
short __half_as_short(half); unsigned short __half_as_ushort(half); half __short_as_half(short); half __ushort_as_half(unsigned short);
"""

def _sources(tmp_path: pathlib.Path, programs) -> list[str]:
  for name, p in programs.items(): (tmp_path / f"{name}.cu").write_text(p.src)
  return [f"{name}.cu" for name in programs]

@pytest.mark.skipif(shutil.which("g++") is None, reason="no host C++ compiler")
def test_cuda_source_is_well_formed_cpp(cuda_programs, tmp_path):
  (tmp_path / "stub").mkdir()
  (tmp_path / "stub" / "cuda_fp16.h").write_text(STAND_INS)
  r = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-I", "stub", "-x", "c++", *_sources(tmp_path, cuda_programs)],
                     cwd=tmp_path, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-3000:]

def test_the_stand_in_check_catches_a_broken_source(cuda_programs, tmp_path):
  """The syntax check is only worth something if it fails: drop one semicolon, then use an undeclared name."""
  if shutil.which("g++") is None: pytest.skip("no host C++ compiler")
  (tmp_path / "stub").mkdir()
  (tmp_path / "stub" / "cuda_fp16.h").write_text(STAND_INS)
  src = cuda_programs["group_sum"].src
  for broken in (src.replace("__syncthreads();", "__syncthreads()", 1), src.replace("__syncthreads();", "__syncwarp_all();", 1)):
    (tmp_path / "broken.cu").write_text(broken)
    assert subprocess.run(["g++", "-fsyntax-only", "-I", "stub", "-x", "c++", "broken.cu"], cwd=tmp_path, capture_output=True).returncode != 0

@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
def test_cuda_source_compiles_with_nvcc(cuda_programs, tmp_path):
  files = _sources(tmp_path, cuda_programs)
  r = subprocess.run(["nvcc", "--ptx", "-arch=sm_80", *files], cwd=tmp_path, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  for name in cuda_programs: assert f".entry {cuda_programs[name].name}" in (tmp_path / f"{name}.ptx").read_text(), name

def test_a_row_kernel_shares_its_threads_between_reduces_and_outputs(cuda_programs):
  """Softmax over rows of 64: one block per row of 16 threads, each reading and writing 4 neighbours as one vector, a
  barrier after each reduce's partials (max, then sum), and every thread storing its own outputs (no thread-0 gate)."""
  p = cuda_programs["softmax_row"]
  assert p.global_size == [64] and p.local_size == [16] and any(o.op is OptOps.ROW for o in p.opts)
  assert p.src.count("__syncthreads();") == 2 and "temp1" in p.src
  assert "= *(const float32x4*)(data1+" in p.src
  store = next(line for line in p.src.splitlines() if line.strip().startswith("*(float32x4*)(data0+"))
  assert "lidx0==0" not in store.replace(" ", "") and "if" not in store

def test_int_negation_is_a_select_on_cuda(cuda_programs):
  src = cuda_programs["int_min"].src
  assert "==(-2147483647-1)?" in src and "-(unsigned int)" not in src

def test_a_vector_load_gated_per_lane_reads_each_lane_it_lets_through():
  """CRenderer.vec_load under a gate per lane, compiled by the CPU device's compiler with its flags and run: lanes 0-6
  read under one gate, lane 7 under its negation, then lanes summed across the vector (what an avg pool's two rows in
  one 64-byte load do). Built lane by lane with stores into the vector, GCC 12.2 at -O1 and above summed lanes 4 and 5
  where 5 and 6 were asked (fuzz seed 7098); the renderer builds the vector from selects instead."""
  import ctypes
  from lucidgrad.device import Device
  from lucidgrad.uop.ops import UOp
  dev = Device["CPU"]
  ren, f64x8 = dev.renderer, dtypes.float64.vec(8)
  load = ren.vec_load(UOp(Ops.LOAD, f64x8, ()), "v", "in", ["a"] * 7 + ["b"])
  t8, t4 = ren.ctype(f64x8), ren.ctype(dtypes.float64.vec(4))
  src = (f"typedef double {t8} __attribute__((vector_size(64)));\ntypedef double {t4} __attribute__((vector_size(32)));\n"
         "void f(double* restrict out, const double* restrict in, int n) {\n  for (int r = 0; r < n; r++) {\n"
         "    _Bool a = (r < 1), b = a ^ 1;\n" + "".join(f"    {line}\n" for line in load) +
         f"    {t4} x = {{v[0], v[1], v[3], v[5]}};\n    {t4} y = {{v[7], v[2], v[4], v[6]}};\n    {t4} s = x + y;\n"
         "    __builtin_memcpy(out + 4*r, &s, sizeof(s));\n  }\n}\n")
  prog = dev.program_cls("f", dev.compiler.compile(src))
  inp, out = np.arange(1, 9, dtype=np.float64), np.zeros(8)
  prog.fxn(out.ctypes.data_as(ctypes.c_void_p), inp.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(2))
  np.testing.assert_array_equal(out, [1, 5, 9, 13, 8, 0, 0, 0])  # r = 1: only lane 7 (8) is read

def test_lane_picks_are_one_shuffle_in_both_forms():
  """A VECTORIZE of lanes of one or two vectors renders as `__lanes`: __builtin_shufflevector where the compiler has it
  (GCC built the lane-by-lane form through the stack: the MNIST net's fused max pool ran 1.7x slower), else lane by
  lane. Both forms, compiled by the CPU device's compiler and run, pick the same lanes (the second vector's from 8)."""
  import ctypes
  from lucidgrad.device import Device
  from lucidgrad.renderer.c import LANES
  dev = Device["CPU"]
  fallback = LANES.split("#else\n")[1].split("#endif")[0]  # the lane-by-lane definition alone
  for lanes in (LANES, fallback):
    src = ("typedef float f8 __attribute__((vector_size(32)));\ntypedef float f4 __attribute__((vector_size(16)));\n" + lanes +
           "void f(float* restrict out, const float* restrict in) {\n  f8 a, b;\n  __builtin_memcpy(&a, in, 32);\n"
           "  __builtin_memcpy(&b, in + 8, 32);\n  f4 even = __lanes(f4, a, a, 0, 2, 4, 6);\n  f4 mixed = __lanes(f4, a, b, 7, 8, 1, 15);\n"
           "  __builtin_memcpy(out, &even, 16);\n  __builtin_memcpy(out + 4, &mixed, 16);\n}\n")
    prog = dev.program_cls("f", dev.compiler.compile(src))
    inp, out = np.arange(16, dtype=np.float32), np.zeros(8, np.float32)
    prog.fxn(out.ctypes.data_as(ctypes.c_void_p), inp.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_array_equal(out, [0, 2, 4, 6, 7, 8, 1, 15])

def test_a_stride_two_pool_picks_its_columns_with_shuffles():
  """A 2x2 max pool over rows of 24 takes its even and odd columns from 8-lane loads as picks of lanes: rendered as
  shuffles, and its values NumPy's."""
  from lucidgrad.device import Device
  x = rng.standard_normal((2, 3, 8, 24)).astype(np.float32)
  out = Tensor(x).max_pool2d(2)
  item = create_schedule([out.uop])[0][-1]
  src = get_program(item.ast, Device["CPU"].renderer).src
  assert "__lanes(" in src
  np.testing.assert_array_equal(out.numpy(), x.reshape(2, 3, 4, 2, 12, 2).max(axis=(3, 5)))
