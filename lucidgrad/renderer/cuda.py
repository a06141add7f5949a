"""CUDA C source: one `extern "C" __global__` function per kernel; output ranges are block and thread ids, GROUP
partials go through `__shared__` arrays and `__syncthreads()`. Vector types are small aligned structs used for loads
and stores only: CUDA has no vector arithmetic, so codegen leaves lanes scalar (vector_alu) and pre_render splits the
vector accumulators an unrolled reduce builds. No runtime yet: the source is checked by compiling it (tests/test_renderers.py)."""
from __future__ import annotations
from lucidgrad.dtype import DType, min_max
from lucidgrad.helpers import prod
from lucidgrad.uop.ops import UOp, Ops, GroupOp
from lucidgrad.uop.pattern import UPat, PatternMatcher
from lucidgrad.renderer import pm_half_via_float32, MMA_16816
from lucidgrad.renderer.cstyle import CStyleRenderer, C_TYPES

def _split_lanes(x: UOp) -> UOp | None:
  if x.dtype.count == 1: return None
  def lane(s: UOp, i: int) -> UOp: return UOp(Ops.GEP, s.dtype.scalar(), (s,), i) if s.dtype.count > 1 else s
  return UOp(Ops.VECTORIZE, x.dtype, tuple(UOp(x.op, x.dtype.scalar(), tuple(lane(s, i) for s in x.src), x.arg) for i in range(x.dtype.count)))

# a vector op becomes the op on each lane, and a lane of a VECTORIZE is its source
pm_split_lanes = PatternMatcher([
  (UPat(tuple(GroupOp.ALU | {Ops.CAST, Ops.BITCAST}), name="x"), _split_lanes),
  (UPat(Ops.GEP, src=(UPat(Ops.VECTORIZE, name="v"),), name="g"), lambda g, v: v.src[g.arg]),
])

def multiple_of(x: UOp, n: int) -> bool:
  """Whether index `x` is provably a multiple of n, so a vector of n lanes there is aligned (a misaligned vector load
  faults on CUDA). Conservative: False when unsure, and the access goes lane by lane."""
  if x.op is Ops.CONST: return x.arg % n == 0
  if x.op is Ops.MUL: return any(multiple_of(s, n) for s in x.src)
  if x.op in (Ops.ADD, Ops.SUB): return all(multiple_of(s, n) for s in x.src)
  # x % m keeps the multiple where m is one; XOR of two multiples of a power of two leaves the low bits zero (a
  # swizzled tile's index: tensor_core.swizzled)
  if x.op is Ops.MOD: return multiple_of(x.src[0], n) and x.src[1].op is Ops.CONST and x.src[1].arg % n == 0
  if x.op is Ops.XOR: return n & (n - 1) == 0 and all(multiple_of(s, n) for s in x.src)
  return False

PRELUDE = """#include <cuda_fp16.h>
/* bit casts the intrinsics (__float_as_uint, ...) do not cover: bfloat16 bits, vectors */
template <class T, class F> __device__ __forceinline__ T __bits(F x) { T t; memcpy(&t, &x, sizeof(t)); return t; }
/* float -> int: the low bits of trunc(x); NaN and inf give 0, as on the CPU (renderer/c.py has the derivation) */
__device__ __noinline__ unsigned long long __f2u_slow(double x) {
  if (fabs(x) < 0x1p63) return (unsigned long long)(long long)x;
  unsigned long long b = (unsigned long long)__double_as_longlong(x), m = (b & 0xfffffffffffffull) | 0x10000000000000ull, e = (b >> 52 & 0x7ffull) - 1075ull;
  unsigned long long big = e < 64ull ? m << e : 0ull;
  return b >> 63 ? 0ull - big : big;
}
__device__ __forceinline__ unsigned int __f2u32(float x) { return fabsf(x) < 0x1p31f ? (unsigned int)(int)x : (unsigned int)__f2u_slow(x); }
__device__ __forceinline__ unsigned int __d2u32(double x) { return fabs(x) < 0x1p31 ? (unsigned int)(int)x : (unsigned int)__f2u_slow(x); }
__device__ __forceinline__ unsigned long long __f2u64(float x) { return fabsf(x) < 0x1p63f ? (unsigned long long)(long long)x : __f2u_slow(x); }
__device__ __forceinline__ unsigned long long __d2u64(double x) { return fabs(x) < 0x1p63 ? (unsigned long long)(long long)x : __f2u_slow(x); }
/* bfloat16 is its 16 bits, converted through float32 with round-to-nearest-even, as on the CPU */
__device__ __forceinline__ float __bf16_to_f32(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ unsigned short __f32_to_bf16(float f) {
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return 0x7fc0;
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
"""

_BITCASTS = {("float32", "int32"): "__float_as_int", ("float32", "uint32"): "__float_as_uint", ("int32", "float32"): "__int_as_float",
             ("uint32", "float32"): "__uint_as_float", ("float64", "int64"): "__double_as_longlong", ("int64", "float64"): "__longlong_as_double",
             ("float16", "int16"): "__half_as_short", ("float16", "uint16"): "__half_as_ushort", ("int16", "float16"): "__short_as_half",
             ("uint16", "float16"): "__ushort_as_half"}

STATIC_SHARED_MAX = 48 * 1024  # what a block may declare statically; more is dynamic, asked for at launch

def has_wgmma(uops: list[UOp]) -> bool:
  """Whether a kernel runs a warpgroup core (renderer.WarpgroupCore): its tiles are swizzled and read by the async proxy."""
  return any(u.op is Ops.WMMA and u.arg.shared_operands for u in uops)

def local_alignment(uops: list[UOp]) -> int:
  """Bytes each DEFINE_LOCAL starts on: 1024 for a wgmma kernel's swizzled tiles (the swizzle's pattern repeats every
  1024 bytes, and the hardware swizzles absolute addresses), else 16 (the widest vector)."""
  return 1024 if has_wgmma(uops) else 16

def local_layout(uops: list[UOp]) -> tuple[dict[UOp, int], int]:
  """Each DEFINE_LOCAL's byte offset in the block's shared memory (program order, aligned), and the total."""
  out, at, align = {}, 0, local_alignment(uops)
  for u in uops:
    if u.op is Ops.DEFINE_LOCAL: out[u], at = at, at + -(-u.arg[1] * u.dtype.itemsize // align) * align
  return out, at

def dynamic_shared_bytes(uops: list[UOp]) -> int:
  """Bytes of dynamic shared memory a kernel's launch must ask for: 0 where its local memory fits statically. Past
  16-byte alignment, the kernel rounds its dynamic memory's start up itself (define_local): room for that is asked too."""
  total = local_layout(uops)[1]
  return total + (align - 16 if (align := local_alignment(uops)) > 16 else 0) if total > STATIC_SHARED_MAX else 0

class CUDARenderer(CStyleRenderer):
  device = "CUDA"
  has_local = True
  local_max = 1024
  shared_max = 48 * 1024
  global_max = (2**31 - 1, 65535, 65535)
  upcast_width = 4
  vector_bytes = 16
  min_vector_bytes = 4    # half2 / bfloat162: a tensor core fragment's pairs of k values read from a staged tile
  vector_alu = False
  # CUDA's exp2f/log2f/sinf/cosf (no fast math: within 2 ulp, the hardware's special function unit plus range handling)
  # cost a few instructions where codegen's polynomials cost ~25: gelu over 2^28 floats ran 1.16 ms with them and
  # 0.85 ms with CUDA's, against 0.75 ms for torch.compile (docs/design/0015)
  native_transcendentals = True
  pre_render = pm_split_lanes + pm_half_via_float32
  tensor_cores = MMA_16816
  types = {**C_TYPES, "bool": "bool", "float16": "half"}
  nan, inf = "__int_as_float(0x7fc00000)", "__int_as_float(0x7f800000)"  # no math.h under NVRTC

  def alu(self, u: UOp, a: list[str]) -> str:
    # ptxas (CUDA 13.0, sm_90, -O3) miscompiles a signed max over negated loads in a loop -- `acc = max(acc, -x)`,
    # whether -x is written -x, 0u - x or -(unsigned)x -- and so every int min, argmin and cummin. The same negation
    # through a select (MIN stays MIN, as two's complement wraps it) compiles right (bench/gpu.sh's op tests)
    if u.op is Ops.NEG and u.dtype.kind == "i":
      x, t = a[0], self.ctype(u.dtype)
      return f"(({t})({x}=={self.const(min_max(u.dtype)[0], u.dtype)}?{x}:-{x}))"
    if u.op is Ops.WMMA:
      if u.arg.shared_operands:  # both operands are descriptors of staged tiles; their majorness names the helper
        if not all(s.op is Ops.LOAD and isinstance(s.arg, tuple) and s.arg[0] == "desc" for s in u.src[:2]):
          raise NotImplementedError(f"{u.arg.name}: wgmma reads both operands from staged tiles (STAGE each operand after TC)")
        return f"__{u.arg.name}_{int(u.src[0].arg[1])}{int(u.src[1].arg[1])}({', '.join(a)})"
      return f"__{u.arg.name}({', '.join(a)})"
    return super().alu(u, a)

  def special(self, u: UOp) -> str: return f"{'blockIdx' if u.arg[0].startswith('g') else 'threadIdx'}.{'xyz'[int(u.arg[0][4:])]}"
  def define_local(self, u: UOp, name: str, uops: list[UOp]) -> str:
    """A static __shared__ array where the kernel's local memory fits the 48 KiB every block may have; past that (a
    double-buffered tensor-core tile, up to the device's opt-in limit) a slice of the dynamic shared memory the launch
    sizes (CUDAProgram), each at a 16-byte aligned offset."""
    offsets, total = local_layout(uops)
    align = local_alignment(uops)
    if total <= STATIC_SHARED_MAX: return f"__shared__ __align__({align}) {self.ctype(u.dtype.base())} {name}[{u.arg[1]}];"
    at = offsets[u]
    # dynamic shared memory is only promised 16-byte aligned: a larger alignment rounds its start up (and the launch
    # asks for the room: dynamic_shared_bytes)
    base = "__smem" if align == 16 else f"(__smem + (({align} - ((unsigned)__cvta_generic_to_shared(__smem) & {align - 1})) & {align - 1}))"
    return ("extern __shared__ __align__(16) unsigned char __smem[];  /* " + f"{total} bytes */ " if at == 0 else "") + \
      f"{self.ctype(u.dtype.base())}* {name} = ({self.ctype(u.dtype.base())}*)({base} + {at});"
  def launch_local_bytes(self, uops: list[UOp]) -> int: return dynamic_shared_bytes(uops)
  def barrier(self, u: UOp, copies: bool, uops: list[UOp]) -> str:
    """A block barrier; in a kernel with background copies (cp.async) it first waits for them: for all of them, or
    (arg ("wait", n), a pipelined tile's step) until at most n commit groups are in flight. A BARRIER with arg
    ("commit", i) closes the group of a step's copies and is no barrier (tensor_core.stage_tc). Where wgmma reads the
    tiles (the async proxy), the copies' writes (the generic proxy) are fenced for it before the barrier."""
    kind, n = u.arg if isinstance(u.arg, tuple) else (None, 0)
    if kind == "commit": return 'asm volatile("cp.async.commit_group;" ::: "memory");' if copies else ""
    fence = ' asm volatile("fence.proxy.async.shared::cta;" ::: "memory");' if has_wgmma(uops) else ""
    if not copies: return fence.strip() + (" " if fence else "") + "__syncthreads();"
    return f'asm volatile("{"cp.async.wait_all" if kind is None else f"cp.async.wait_group {n}"};" ::: "memory");{fence} __syncthreads();'

  def async_copies(self, uops: list[UOp]) -> dict[UOp, UOp]:
    """Stores into local memory of 4, 8 or 16 bytes loaded from global memory and used for nothing else (a staged
    tile's fill, tensor_core.stage_tc), both addresses aligned: each becomes a cp.async, which copies without holding
    registers while the warp goes on to its mma. Local memory is read only after a barrier (staging's rule), and every
    barrier of such a kernel waits for the copies first."""
    users: dict[UOp, int] = {}
    for u in uops:
      for s in u.src: users[s] = users.get(s, 0) + 1
    out = {}
    for st in uops:
      if st.op is not Ops.STORE or st.arg is not None or st.src[0].src[0].op is not Ops.DEFINE_LOCAL: continue
      ld = v = st.src[1]
      # the lanes of one load in order, regrouped for the store (the fill's vector of values)
      if v.op is Ops.VECTORIZE and v.src and all(g.op is Ops.GEP and g.arg == i and g.src[0] is v.src[0].src[0] for i, g in enumerate(v.src)):
        ld = v.src[0].src[0]
      if ld.op is not Ops.LOAD or any(x.op is not Ops.BARRIER for x in ld.src[1:]) or ld.src[0].src[0].op is not Ops.DEFINE_GLOBAL or ld.dtype != v.dtype: continue
      n, size = ld.dtype.count, ld.dtype.itemsize * ld.dtype.count
      if size not in (4, 8, 16) or ld.src[0].src[2].dtype.count > 1 or users.get(ld, 0) != (1 if ld is v else v.dtype.count) or users.get(v, 0) != 1: continue
      if not (multiple_of(ld.src[0].src[1], n) and multiple_of(st.src[0].src[1], n)): continue
      out[st] = ld
    return out

  def matrix_load(self, u: UOp, v: str, ptr: str) -> list[str]:
    """ldmatrix (tensor_core.matrix_load): the fragment's registers from 8x8 matrices whose row addresses the lanes give.
    A descriptor (tensor_core.stage_tc, a wgmma operand): the tile's address, LBO and SBO in 16-byte units, and the
    128-byte swizzle (layout 1), in the bit fields of the PTX ISA's matrix descriptor."""
    if u.arg[0] == "desc":
      _, _, lbo, sbo = u.arg
      return [f"unsigned long long {v} = (unsigned long long)((((unsigned)__cvta_generic_to_shared({ptr})) & 0x3FFFF) >> 4) | "
              f"({lbo >> 4}ull << 16) | ({sbo >> 4}ull << 32) | (1ull << 62);"]
    _, regs, trans = u.arg
    outs = ", ".join(f'"=r"(((unsigned*)&{v})[{i}])' for i in range(regs))
    return [f"{self.ctype(u.dtype)} {v};",
            f'asm volatile("ldmatrix.sync.aligned.m8n8.x{regs}{".trans" if trans else ""}.shared.b16 {{{", ".join(f"%{i}" for i in range(regs))}}}, [%{regs}];" '
            f': {outs} : "r"((unsigned)__cvta_generic_to_shared({ptr})) : "memory");']

  def async_copy(self, store: UOp, load: UOp, names: dict[UOp, str]) -> str:
    """cp.async of the load's bytes into the store's address; a gated-off load copies zeros (no bytes read)."""
    size, g = load.dtype.itemsize * load.dtype.count, load.src[0].src[2]
    src_bytes = (str(size) if g.arg else "0") if g.op is Ops.CONST else f"({names[g]}?{size}:0)"
    cache = "cg" if size == 16 else "ca"  # .cg (L2 only) takes 16-byte copies alone
    return (f'asm volatile("cp.async.{cache}.shared.global [%0], [%1], {size}, %2;" :: "r"((unsigned)__cvta_generic_to_shared({names[store.src[0]]})), '
            f'"l"({names[load.src[0]]}), "r"({src_bytes}) : "memory");')
  def zero(self, dt: DType) -> str: return self.const(0, dt) if dt.is_float() else "0"  # `c ? half : 0` is ambiguous in C++
  def gep(self, x: str, lane: int) -> str: return f"{x}.v[{lane}]"
  def bitcast(self, u: UOp, x: str) -> str:
    fn = _BITCASTS.get((u.src[0].dtype.name, u.dtype.name)) if u.dtype.count == 1 else None
    return f"{fn}({x})" if fn else f"__bits<{self.ctype(u.dtype)}>({x})"

  def vec_load(self, u: UOp, v: str, ptr: str, gate: str | None) -> list[str]:
    t, n = self.ctype(u.dtype), u.dtype.count
    val = f"*(const {t}*){ptr}" if multiple_of(u.src[0].src[1], n) else f"{t}{{{', '.join(f'{ptr}[{i}]' for i in range(n))}}}"
    return [f"{t} {v} = {val};"] if gate is None else [f"{t} {v} = {{}};", f"if ({gate}) {v} = {val};"]
  def vec_store(self, u: UOp, ptr: str, val: str) -> str:
    n = u.src[1].dtype.count
    if multiple_of(u.src[0].src[1], n): return f"*({self.ctype(u.src[1].dtype)}*){ptr} = {val};"
    return "{ " + " ".join(f"{ptr}[{i}] = {val}.v[{i}];" for i in range(n)) + " }"

  def store(self, u: UOp, ptr: str, val: str, names: dict[UOp, str]) -> str:
    """A scatter's add into memory (STORE(p, LOAD(p) + v), the address a loaded index: docs/design/0017) is an
    atomicAdd, correct whichever threads share an address; its plain load is then unused."""
    target, v = u.src
    if v.op is Ops.ADD and v.dtype.name in ("float32", "float64", "int32", "uint32", "uint64") and any(n.op is Ops.LOAD for n in target.src[1].toposort):
      if (other := next((b for a, b in (v.src, v.src[::-1]) if a.op is Ops.LOAD and a.src[0] is target), None)) is not None:
        return f"atomicAdd({ptr}, {names[other]});"
    return super().store(u, ptr, val, names)

  def prelude(self, uops: list[UOp]) -> str:
    vecs = {u.dtype for u in uops if u.dtype.count > 1 and not u.dtype.ptr} | {u.dtype.base() for u in uops if u.dtype.ptr and u.dtype.count > 1}
    # lanes in an array, aligned to the whole vector (up to the 16 bytes of the widest load) so a load is one instruction
    return PRELUDE + "".join(f"struct __align__({min(d.nbytes, 16)}) {self.ctype(d)} {{ {self.types[d.name]} v[{d.count}]; }};\n"
                             for d in sorted(vecs, key=repr)) + "".join(map(self._mma, sorted({u.arg for u in uops if u.op is Ops.WMMA and not u.arg.shared_operands}, key=repr))) + \
      "".join(self._wgmma(tc, ta, tb) for tc, ta, tb in sorted({(u.arg, u.src[0].arg[1], u.src[1].arg[1]) for u in uops if u.op is Ops.WMMA and u.arg.shared_operands
                                                                 and all(isinstance(s.arg, tuple) for s in u.src[:2])}, key=repr))

  def _wgmma(self, tc, trans_a: bool, trans_b: bool) -> str:
    """The helper a warpgroup core's WMMA calls: wgmma.mma_async on two shared-memory descriptors (trans: the operand's
    tile runs along M or N, not K), accumulating into c, and waited for before it returns -- each call is complete, so
    the accumulator is an ordinary value to the code around it and a tile may be refilled after the next barrier."""
    (_, _, ec), ty, (M, N, K) = tc.elements, {"float16": "f16", "bfloat16": "bf16"}[tc.dtype_in.name], tc.dims
    ct = self.ctype(tc.dtype_acc.vec(ec))
    outs = ", ".join(f'"+f"(c.v[{i}])' for i in range(ec))
    return (f"__device__ __forceinline__ {ct} __{tc.name}_{int(trans_a)}{int(trans_b)}(unsigned long long a, unsigned long long b, {ct} c) {{\n"
            f'  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");\n'
            f'  asm volatile("wgmma.mma_async.sync.aligned.m{M}n{N}k{K}.f32.{ty}.{ty} {{{", ".join(f"%{i}" for i in range(ec))}}}, %{ec}, %{ec + 1}, 1, 1, 1, {int(trans_a)}, {int(trans_b)};"\n'
            f'      : {outs} : "l"(a), "l"(b) : "memory");\n'
            f'  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");\n'
            f'  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");\n  return c;\n}}\n')

  def _mma(self, tc) -> str:
    """The helper a WMMA calls: PTX mma.sync on the fragments, whose 16-bit elements travel in pairs per register."""
    (ea, eb, ec), ty = tc.elements, {"float16": "f16", "bfloat16": "bf16"}[tc.dtype_in.name]
    M, N, K = tc.dims
    regs = [f"%{i}" for i in range(ec + ea // 2 + eb // 2 + ec)]
    d, a, b, c = regs[:ec], regs[ec:ec + ea // 2], regs[ec + ea // 2:ec + ea // 2 + eb // 2], regs[ec + ea // 2 + eb // 2:]
    at, bt, ct = (self.ctype(tc.dtype_in.vec(ea)), self.ctype(tc.dtype_in.vec(eb)), self.ctype(tc.dtype_acc.vec(ec)))
    outs = ", ".join(f'"=f"(d.v[{i}])' for i in range(ec))
    ins = ", ".join([f'"r"(A[{i}])' for i in range(ea // 2)] + [f'"r"(B[{i}])' for i in range(eb // 2)] + [f'"f"(c.v[{i}])' for i in range(ec)])
    return (f"__device__ __forceinline__ {ct} __{tc.name}({at} a, {bt} b, {ct} c) {{\n"
            f"  const unsigned *A = (const unsigned*)&a, *B = (const unsigned*)&b; {ct} d;\n"
            f'  asm("mma.sync.aligned.m{M}n{N}k{K}.row.col.f32.{ty}.{ty}.f32 {{{", ".join(d)}}}, {{{", ".join(a)}}}, {{{", ".join(b)}}}, {{{", ".join(c)}}};"\n'
            f"      : {outs} : {ins});\n  return d;\n}}\n")

  def signature(self, name: str, params: list[UOp], written: set[UOp], names: dict[UOp, str], uops: list[UOp]) -> str:
    threads = prod(u.arg[1] for u in uops if u.op is Ops.SPECIAL and u.arg[0].startswith("l"))
    args = ", ".join([f"{'' if p in written else 'const '}{self.ctype(p.dtype)} __restrict__ {names[p]}" for p in params] + self.var_params(uops))
    return f'extern "C" __global__ void __launch_bounds__({threads}) {name}({args})'
