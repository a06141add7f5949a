"""PYTHON: an interpreter of the linear program, the reference the compiled paths are held to. Every thread of a
GPU-style launch (gidx/lidx) runs at once as one NumPy lane; loops run in Python. Reads out of bounds raise."""
from __future__ import annotations
import base64, pickle, time
import numpy as np
from lucidgrad.dtype import DType, dtypes, fma, f32_to_bf16_array
from lucidgrad.device import Allocator, Compiler, Compiled
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.renderer.python import PythonRenderer

class PythonAllocator(Allocator):
  def _alloc(self, nbytes: int): return np.zeros(nbytes, dtype=np.uint8)
  def copyin(self, raw, src: memoryview): raw[:len(src)] = np.frombuffer(src, dtype=np.uint8)
  def copyout(self, dest: memoryview, raw): np.frombuffer(dest, dtype=np.uint8)[:] = raw[:len(dest)]
  def host_view(self, raw) -> memoryview: return memoryview(raw)

class PythonCompiler(Compiler):
  """The "source" is a pickle of the linear program and the binary is that pickle: kept in memory only. A pickle read
  back from a cache folder would run whatever its writer put in it, so neither it nor the program holding it
  (engine/realize.py's program cache) is ever written to disk."""
  key = "python"
  disk_cached = False
  def compile(self, src: str) -> bytes: return base64.b64decode(src)
  def compile_timed(self, src: str) -> tuple[bytes, float | None]: return self.compile(src), None  # never on disk

def _np(dt: DType): return np.uint16 if dt.scalar() == dtypes.bfloat16 else dt.scalar().np

bf16_bits = f32_to_bf16_array  # the one rounding to bfloat16, shared with tensor creation
def bf16_value(b: np.ndarray) -> np.ndarray:
  """float32 values of bfloat16 bits (uint16), or of an ml_dtypes bfloat16 array (what Buffer.numpy gives where it is
  installed: its bits are read, not its values converted)."""
  if b.dtype.itemsize == 2 and b.dtype.kind not in "ui": b = b.view(np.uint16)
  return (b.astype(np.uint32) << 16).view(np.float32)

def _cast(x: np.ndarray, src: DType, dst: DType) -> np.ndarray:
  if src.scalar() == dtypes.bfloat16: x, src = bf16_value(x), dtypes.float32
  if dst.scalar() == dtypes.bfloat16: return bf16_bits(x.astype(np.float32))
  if dst.is_bool(): return x != 0
  if dst.is_int() and src.is_float(): return _float_to_int(x).astype(dst.np)
  return x.astype(dst.np)

def _float_to_int(x: np.ndarray) -> np.ndarray:
  """Floats as uint64 bits, as lucidgrad defines the cast (C leaves it undefined out of range): NaN and +-inf give 0,
  anything else is truncated and wrapped modulo 2**64; the caller narrows it as int -> int casts do. Matches the
  constant folder (dtype.as_const) and the C renderer's __f2u32 and friends."""
  x = np.trunc(np.where(np.isfinite(x), x, 0).astype(np.float64))
  big = np.abs(x) >= 2.0**63
  r = np.fmod(np.where(big, x, 0), 2.0**64)  # exact: a double this large is an integer
  wide = np.where(r < 0, r + 2.0**64, r).astype(np.uint64)
  return np.where(big, wide, np.where(big, 0, x).astype(np.int64).view(np.uint64))

def _idiv(a, b):
  safe = np.where(b == 0, 1, b).astype(a.dtype)
  q = a // safe
  if np.issubdtype(a.dtype, np.signedinteger): q = q + ((a % safe != 0) & ((a < 0) != (safe < 0))).astype(a.dtype)
  return np.where(b == 0, 0, q).astype(a.dtype)

def _precise(fn):
  """float32 transcendentals in float64, rounded once: NumPy's float32 versions can be 1 ulp off C's."""
  return lambda a, *b: fn(a.astype(np.float64), *b).astype(a.dtype) if a.dtype == np.float32 else fn(a, *b)

_ALU = {
  Ops.ADD: np.add, Ops.SUB: np.subtract, Ops.MUL: np.multiply, Ops.FDIV: np.divide, Ops.IDIV: _idiv,
  Ops.MOD: lambda a, b: np.fmod(a, b) if a.dtype.kind == "f" else np.where(b == 0, 0, a - b * _idiv(a, b)).astype(a.dtype), Ops.MAX: np.maximum, Ops.POW: _precise(np.power),
  Ops.CMPLT: np.less, Ops.CMPNE: np.not_equal, Ops.CMPEQ: np.equal, Ops.AND: np.bitwise_and, Ops.OR: np.bitwise_or,
  Ops.XOR: np.bitwise_xor, Ops.SHL: np.left_shift, Ops.SHR: np.right_shift, Ops.EXP2: _precise(np.exp2), Ops.LOG2: _precise(np.log2),
  Ops.SIN: _precise(np.sin), Ops.COS: _precise(np.cos), Ops.SQRT: np.sqrt, Ops.RECIPROCAL: lambda a: np.divide(1, a).astype(a.dtype), Ops.TRUNC: np.trunc,
  Ops.NEG: lambda a: np.logical_not(a) if a.dtype == np.bool_ else np.negative(a), Ops.WHERE: np.where, Ops.MULACC: fma,
}

def _wmma(tc, a: list, b: list, c: list, lanes: int) -> list:
  """A tensor core's D = A @ B + C for every warp at once: a warp is `tc.threads` consecutive threads (the lane range
  is the block's fastest thread id, docs/design/0024). Each lane's elements are placed in the matrices by the core's
  layouts; products of 16-bit floats are exact, the sum is taken in float64 and rounded to float32 once."""
  if lanes % tc.threads: raise RuntimeError(f"{tc.name}: a block's fastest thread id has {lanes} threads, not whole warps of {tc.threads}")
  (M, N, K), T = tc.dims, tc.threads
  def value(x): return bf16_value(x) if x.dtype == np.uint16 else x
  def gather(vals: list, layout, rows: int, cols: int) -> np.ndarray:
    lane_vals = np.stack([value(v).astype(np.float64) for v in vals], -1).reshape(-1, T, len(vals))  # warp, lane, element
    out = np.zeros((lane_vals.shape[0], rows, cols))
    for i in range(len(vals)):
      r, col = layout(np.arange(T), i)
      out[:, r, col] = lane_vals[:, :, i]
    return out
  def operand(x, layout, rows: int, cols: int, is_a: bool) -> np.ndarray:
    return _described(x, rows, cols, is_a, T) if isinstance(x, tuple) else gather(x, layout, rows, cols)
  d = operand(a, tc.a, M, K, True) @ operand(b, tc.b, K, N, False) + gather(c, tc.c, M, N)
  out = []
  for i in range(len(c)):
    r, col = tc.c(np.arange(T), i)
    out.append(d[:, r, col].reshape(-1).astype(np.float32))
  return out

def _described(desc: tuple, rows: int, cols: int, is_a: bool, T: int) -> np.ndarray:
  """The operand a wgmma reads through a shared-memory descriptor (tensor_core.stage_tc), for each group of T threads
  (from its first thread's descriptor), as the hardware computes it: the place each element would have unswizzled
  -- 128-byte rows of the contiguous axis, 8-row groups SBO bytes apart and, along a contiguous M or N, 64-element
  atoms LBO bytes apart -- with the 128-byte swizzle applied to it. A: (rows m, cols k); B: (rows k, cols n)."""
  buf, idx, (mn_major, lbo, sbo) = desc
  starts = idx[::T].astype(np.int64)
  m, kk = np.meshgrid(np.arange(rows if is_a else cols), np.arange(cols if is_a else rows), indexing="ij")  # (m or n, k)
  elem = buf.itemsize
  place = (m // 64) * (lbo // elem) + (kk // 8) * (sbo // elem) + (kk % 8) * 64 + m % 64 if mn_major else \
    (m // 8) * (sbo // elem) + (m % 8) * 64 + kk
  e = starts[:, None, None] + place[None]
  vals = buf[e ^ ((e // 64) % 8 * 8)]
  vals = (bf16_value(vals) if vals.dtype == np.uint16 else vals).astype(np.float64)
  return vals if is_a else vals.transpose(0, 2, 1)

def _matrix_load(buf: np.ndarray, idx: np.ndarray, regs: int, trans: bool) -> list:
  """ldmatrix for every warp at once: lane L's register j holds row L/4, columns 2(L%4) and 2(L%4)+1 of matrix j, whose
  row addresses lanes 8j..8j+7 gave (transposed: column L/4 of rows 2(L%4) and 2(L%4)+1); warps are 32 consecutive threads."""
  t = np.arange(idx.size)
  lane, warp = t % 32, t - t % 32
  out = []
  for j in range(regs):
    for e in range(2):
      row, col = (2 * (lane % 4) + e, lane // 4) if trans else (lane // 4, 2 * (lane % 4) + e)
      out.append(buf[idx[warp + 8 * j + row] + col])
  return out

class PythonProgram:
  def __init__(self, name: str, lib: bytes, **_):
    self.name, self.uops = pickle.loads(lib)
    self.slots = sorted(u.arg[0] for u in self.uops if u.op is Ops.DEFINE_GLOBAL)  # the buffers come in this order
    self.vars = sorted({u.arg[0] for u in self.uops if u.op is Ops.DEFINE_VAR})  # and then the Variables' values
    self.ends = {}
    stack = []
    for i, u in enumerate(self.uops):
      if u.op is Ops.RANGE: stack.append(i)
      if u.op is Ops.END: self.ends[stack.pop()] = i
  def __call__(self, *bufs, global_size=(1,), local_size=(1,), wait=True, vals=()) -> float:
    st = time.perf_counter()
    self.vals = dict(zip(self.vars, vals))
    with np.errstate(all="ignore"): self._run(bufs, list(global_size), list(local_size))
    return time.perf_counter() - st

  def _run(self, bufs, gsize, lsize):
    uops, n = self.uops, int(np.prod(gsize) * np.prod(lsize))
    # thread t has ids: local ids fastest, then block ids; dimension 0 fastest in each
    tid, ids = np.arange(n), {}
    block = tid // int(np.prod(lsize))  # local memory is one array per block: a slot's address is offset by the block
    for kind, sizes in (("lidx", lsize), ("gidx", gsize)):
      for d, s in enumerate(sizes): ids[f"{kind}{d}"], tid = tid % s, tid // s
    env: dict[UOp, object] = {}
    pc, loop_start = 0, {}
    full = lambda v, dt: np.full(n, v, dtype=_np(dt))
    while pc < len(uops):
      u = uops[pc]
      a = [env.get(s) for s in u.src]
      match u.op:
        case Ops.SINK | Ops.DEVICE: pass
        case Ops.DEFINE_GLOBAL:  # an empty buffer holds one byte (allocations are never empty): no element of it
          raw = bufs[self.slots.index(u.arg[0])]
          env[u] = raw[:len(raw) - len(raw) % np.dtype(_np(u.dtype)).itemsize].view(_np(u.dtype))
        case Ops.CONST: env[u] = full(_cast(np.array([u.arg], dtype=np.float32), dtypes.float32, u.dtype)[0] if u.dtype == dtypes.bfloat16 else u.arg, u.dtype)
        case Ops.SPECIAL: env[u] = ids[u.arg[0]].astype(_np(u.dtype))
        case Ops.DEFINE_VAR: env[u] = full(self.vals[u.arg[0]], u.dtype)
        case Ops.RANGE:
          end = a[-1][0]  # a bound a Variable sets, where the range has one (codegen/opt/kernel.end_masked_reduces)
          if end <= 0: pc = self.ends[pc] + 1; continue
          env[u] = full(0, u.dtype)
          loop_start[u] = pc
        case Ops.END:
          r = u.src[0]
          env[r] = env[r] + 1
          if env[r][0] < env[r.src[-1]][0]: pc = loop_start[r] + 1; continue
        case Ops.DEFINE_LOCAL: env[u] = np.zeros(u.arg[1] * (n // int(np.prod(lsize))), dtype=_np(u.dtype))
        case Ops.BARRIER: pass  # every thread runs each op before any runs the next: all stores land before any load
        case Ops.INDEX if u.src[0].op is Ops.DEFINE_LOCAL: env[u] = (a[0], a[1] + block * u.src[0].arg[1], a[2])
        case Ops.INDEX: env[u] = (a[0], a[1], a[2])
        case Ops.LOAD if u.src[0].op is Ops.DEFINE_REG: env[u] = env[u.src[0]]
        case Ops.LOAD if u.arg is not None and u.arg[0] == "desc":  # a wgmma operand's descriptor: the tile, read by the WMMA
          buf, idx, _ = a[0]
          env[u] = (buf, np.broadcast_to(idx, (n,)), u.arg[1:])
        case Ops.LOAD if u.arg is not None:  # ("matrix", registers, transposed): a warp reads 8x8 matrices (tensor_core.matrix_load)
          buf, idx, _ = a[0]
          env[u] = _matrix_load(buf, np.broadcast_to(idx, (n,)), *u.arg[1:])
        case Ops.LOAD:
          buf, idx, gate = a[0]
          lanes = [self._load(buf, idx + k, gate, u) for k in range(u.dtype.count)]
          env[u] = lanes if u.dtype.count > 1 else lanes[0]
        case Ops.STORE:
          buf, idx, gate = a[0]
          vals = a[1] if isinstance(a[1], list) else [a[1]]
          for k, v in enumerate(vals):
            i = np.broadcast_to(idx + k, (n,))
            m = np.broadcast_to(gate, (n,))
            if ((i < 0) | (i >= buf.size))[m].any(): raise IndexError(f"{self.name}: store out of bounds")
            buf[i[m]] = np.broadcast_to(v, (n,))[m]
        case Ops.DEFINE_REG: env[u] = [full(u.arg[1], u.dtype) for _ in range(u.dtype.count)] if u.dtype.count > 1 else full(u.arg[1], u.dtype)
        case Ops.ASSIGN: env[u.src[0]] = a[1]
        case Ops.GEP: env[u] = a[0][u.arg]
        case Ops.VECTORIZE: env[u] = list(a)
        case Ops.WMMA: env[u] = _wmma(u.arg, *a, lanes=int(lsize[0]))
        case Ops.CAST: env[u] = [_cast(x, u.src[0].dtype, u.dtype) for x in a[0]] if isinstance(a[0], list) else _cast(a[0], u.src[0].dtype, u.dtype)
        case Ops.BITCAST: env[u] = [x.view(_np(u.dtype.scalar())) for x in a[0]] if isinstance(a[0], list) else a[0].view(_np(u.dtype))
        case _:
          lane = lambda x, i: x[i] if isinstance(x, list) else x
          outs = [_ALU[u.op](*[lane(x, i) for x in a]) for i in range(u.dtype.count)]
          outs = [np.asarray(o).astype(_np(u.dtype), copy=False) for o in outs]
          env[u] = outs if u.dtype.count > 1 else outs[0]
      pc += 1

  def _load(self, buf, idx, gate, u):
    n = max(np.size(idx), np.size(gate))
    i, m = np.broadcast_to(idx, (n,)), np.broadcast_to(gate, (n,))
    if ((i < 0) | (i >= buf.size))[m].any(): raise IndexError(f"{self.name}: load out of bounds at {i[m][(i[m] < 0) | (i[m] >= buf.size)][:4]}")
    if buf.size == 0: return np.zeros(n, dtype=buf.dtype)  # every lane is gated off (checked above): nothing to read
    return np.where(m, buf[np.where(m, i, 0)], np.zeros((), dtype=buf.dtype))

class PythonDevice(Compiled):
  def graph(self, launches: list[tuple]):
    """A graph as a GPU has one: the launches fixed once, run in order by one call. The interpreter gains nothing by
    it; it is here so CPU CI runs the JIT's graph replay (engine/jit.py) as a CUDA device does."""
    def run():
      for program, raws, global_size, local_size, _ in launches: program(*raws, global_size=global_size, local_size=local_size)
    return run

def make_device(name: str) -> Compiled: return PythonDevice(name, PythonAllocator(), PythonRenderer(), PythonCompiler(), PythonProgram)
