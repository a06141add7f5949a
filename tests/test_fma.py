"""Fused multiply-add (Ops.MULACC): a float sum's accumulator update acc + x*y rounds once, on the CPU (scalar and
vector) and on the PYTHON reference, which computes it exactly; an a*b + c the user wrote keeps its two roundings.
The exact fma is held to an oracle in integer arithmetic (docs/design/0013-fused-multiply-add.md)."""
import math, os, platform, subprocess
from fractions import Fraction
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.dtype import fma
from lucidgrad.device import Device, buffer_of
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import run_schedule, get_runner
from lucidgrad.codegen import get_program
from lucidgrad.codegen.opt import Opt, OptOps
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.uop.symbolic import exec_alu
from lucidgrad.uop.spec import kernel_spec
from lucidgrad.renderer.cuda import CUDARenderer
from lucidgrad.runtime.cpu import CCompiler, CPUProgram

# ---- the oracle: an exact rational rounded with integers only ----
FORMATS = {np.float32: (24, -126, 127), np.float64: (53, -1022, 1023)}  # significand bits, exponent range of normals

def round_exact(q: Fraction, fmt) -> float:
  """q rounded to the nearest value of `fmt`, ties to even, subnormals below 2**emin, inf from the overflow threshold."""
  p, emin, emax = FORMATS[fmt]
  sign, q = (-1.0 if q < 0 else 1.0), abs(q)
  e = q.numerator.bit_length() - q.denominator.bit_length()
  if Fraction(2) ** e > q: e -= 1  # 2**e <= q < 2**(e+1)
  quantum = Fraction(2) ** (max(e, emin) - p + 1)
  n, rest = divmod(q, quantum)
  if 2 * rest > quantum or (2 * rest == quantum and n % 2): n += 1
  v = n * quantum
  return sign * math.inf if v >= 2 ** (emax + 1) else sign * float(v)

def ref_fma(a: float, b: float, c: float, fmt) -> float:
  """IEEE 754 fusedMultiplyAdd: NaN in, NaN out; inf*0 and inf-inf are NaN; an exact zero is -0 only for -0 + -0."""
  if any(map(math.isnan, (a, b, c))): return math.nan
  sign = math.copysign(1.0, a) * math.copysign(1.0, b)
  if math.isinf(a) or math.isinf(b):
    if a == 0 or b == 0 or (math.isinf(c) and math.copysign(1.0, c) != sign): return math.nan
    return sign * math.inf
  if math.isinf(c): return c
  exact = Fraction(a) * Fraction(b) + Fraction(c)
  if exact == 0: return -0.0 if (a == 0 or b == 0) and c == 0 and sign < 0 and math.copysign(1.0, c) < 0 else 0.0
  return round_exact(exact, fmt)

def same_bits(got: np.ndarray, want: np.ndarray) -> np.ndarray:
  """Elementwise: equal values with equal signs (-0.0 is not 0.0), or both NaN."""
  return ((got == want) & (np.signbit(got) == np.signbit(want))) | (np.isnan(got) & np.isnan(want))

def check_fma(a, b, c, fmt):
  with np.errstate(over="ignore"): a, b, c = (np.asarray(x, dtype=fmt) for x in (a, b, c))
  got = fma(a, b, c)
  assert got.dtype == fmt
  want = np.array([ref_fma(float(x), float(y), float(z), fmt) for x, y, z in zip(a, b, c)], dtype=fmt)
  bad = ~same_bits(got, want)
  assert not bad.any(), f"{bad.sum()} wrong, first: fma({a[bad][:3]}, {b[bad][:3]}, {c[bad][:3]}) = {got[bad][:3]}, want {want[bad][:3]}"

def odd_significands(rng, n: int, bits: int) -> np.ndarray:
  """Values 1.xxx1 with `bits` significant bits: products of two are often exactly halfway between two values."""
  return (2.0 ** (bits - 1) + 2 * rng.integers(0, 2 ** (bits - 2), n) + 1) / 2.0 ** (bits - 1)

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
def test_exact_fma_on_random_inputs(fmt):
  rng, n = np.random.default_rng(1), 3000
  a, b = rng.standard_normal(n), rng.standard_normal(n)
  c_cancel = -(a.astype(fmt).astype(np.float64) * b.astype(fmt)) * (1 + rng.standard_normal(n) * 10.0 ** rng.integers(-17, 0, n))
  check_fma(a, b, rng.standard_normal(n), fmt)
  check_fma(a, b, c_cancel, fmt)  # c cancels most of the product: the low bits decide
  lo, hi = (-150, 130) if fmt == np.float32 else (-1080, 1030)  # the whole range, subnormals and overflow included
  scale = lambda: np.ldexp(1.0, rng.integers(lo // 2, hi // 2, n))
  with np.errstate(over="ignore"): c_spread = np.ldexp(c_cancel, rng.integers(lo, hi, n))  # inf beyond the range: also a case
  check_fma(a * scale(), b * scale(), c_spread, fmt)
  check_fma(a * scale(), b * scale(), c_cancel, fmt)

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
def test_exact_fma_when_the_sum_is_halfway(fmt):
  """A product of two odd significands of p/2+1 bits has p+1 bits: exactly halfway between two values, so a tiny c
  decides the direction -- the case rounding twice gets wrong."""
  rng, n = np.random.default_rng(2), 2000
  p = FORMATS[fmt][0]
  a, b = odd_significands(rng, n, p // 2 + 1), odd_significands(rng, n, p - p // 2)
  e = rng.integers(-20, 20, n)
  a, b = (a * 2.0 ** e).astype(fmt), (b * 2.0 ** -e).astype(fmt)
  assert np.array_equal(a.astype(np.float64) * b if fmt == np.float32 else a * b, (a.astype(np.float64) * b)), "inputs exact"
  tiny = (a.astype(np.float64) * b * 2.0 ** -(p + 20)).astype(fmt)
  for c in (tiny, -tiny, np.zeros(n), -(a.astype(np.float64) * b).astype(fmt)): check_fma(a, b, c, fmt)
  check_fma(-a, b, tiny, fmt)

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
def test_exact_fma_at_the_edges(fmt):
  info = np.finfo(fmt)
  tiny_sub = float(np.nextafter(fmt(0), fmt(1)))
  specials = [0.0, -0.0, 1.0, -1.0, 1.5, math.inf, -math.inf, math.nan, float(info.max), -float(info.max), float(info.tiny),
              tiny_sub, -tiny_sub, 3 * tiny_sub, float(info.eps), 2.0 ** ((FORMATS[fmt][2] + 1) // 2), 2.0 ** (FORMATS[fmt][1] // 2)]
  trip = [(x, y, z) for x in specials for y in specials for z in specials]
  check_fma(*zip(*trip), fmt)

def test_exact_fma_keeps_shapes_and_scalars():
  out = fma(np.float32(1 + 2**-12), np.float32(1 + 2**-12), np.float32(-(1 + 2**-11)))
  assert out.dtype == np.float32 and out == np.float32(2.0**-24)
  x = np.full((2, 3), 2.0**-600)  # through the rational path: the fast path's split would underflow
  assert np.array_equal(fma(x, x, np.zeros((2, 3))), np.full((2, 3), 0.0)) and not np.signbit(fma(x, x, np.zeros((2, 3)))).any()
  with pytest.raises(TypeError): fma(np.ones(2, np.float16), np.ones(2, np.float16), np.ones(2, np.float16))

def test_constant_folding_rounds_once():
  a, c = 1 + 2**-12, -(1 + 2**-11)
  assert exec_alu(Ops.MULACC, dtypes.float32, (a, a, c)) == 2.0**-24
  assert exec_alu(Ops.MULACC, dtypes.float64, (1 + 2**-27, 1 + 2**-27, -(1 + 2**-26))) == 2.0**-54

def test_spec_takes_mulacc_of_float32_and_float64_only():
  for dt in (dtypes.float32, dtypes.float64, dtypes.float32.vec(8)):
    x = UOp.const(dt, 1.5) if dt.count == 1 else UOp(Ops.VECTORIZE, dt, tuple(UOp.const(dt.scalar(), 1.5) for _ in range(dt.count)))
    assert kernel_spec.rewrite(UOp(Ops.MULACC, dt, (x, x, x))) is True
  for dt in (dtypes.float16, dtypes.bfloat16, dtypes.int32):
    x = UOp.const(dt, 1)
    assert "MULACC works on float32 or float64" in kernel_spec.rewrite(UOp(Ops.MULACC, dt, (x, x, x)))
  x = UOp.const(dtypes.float32, 1.0)
  assert "takes 3 sources" in kernel_spec.rewrite(UOp(Ops.MULACC, dtypes.float32, (x, x)))

# ---- kernels ----
def last_item(t: Tensor):
  items, _, _ = create_schedule([t.uop])
  run_schedule(items[:-1])
  return items[-1]

def run_with_opts(item, device: str, opts) -> tuple[np.ndarray, object]:
  """The output of `item`'s kernel built with exactly `opts` on `device`, and its program."""
  dev = Device[device]
  spec = get_program(item.ast, dev.renderer, list(opts))
  bufs = [buffer_of(b) for b in item.bufs]
  dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(
    *[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size)
  return bufs[0].numpy().copy(), spec

# a*b rounds to c's negation, so acc + a*b is 0 rounded twice and one unit of the last place below 1 rounded once
CANCEL = {np.float32: (1 + 2.0**-12, -(1 + 2.0**-11), 2.0**-24), np.float64: (1 + 2.0**-27, -(1 + 2.0**-26), 2.0**-54)}

def cancelling_matmul(fmt, m: int, k: int, n: int):
  """x @ w where every output sums c*1 (at k=0) and then a*a (at k=8, or 16 in a reduce longer than 16), the rest zeros:
  lanes of an unrolled reduce (2, 4, 8, or 16 where the vectors are that wide) put both in one chain, so every opt below
  gives the one-rounding answer exactly."""
  a, c, _ = CANCEL[fmt]
  x, w = np.zeros((m, k), fmt), np.zeros((k, n), fmt)
  at = 16 if k > 16 else 8
  x[:, 0], w[0, :], x[:, at], w[at, :] = c, 1, a, a
  return x, w

# axes of a 4x16 @ 16x8 kernel: (LOOP 4, LOOP 8, REDUCE 16); an opt's new part comes right after the axis it splits
OPTS = {"none": [], "upcast": [Opt(OptOps.UPCAST, 0, 4)], "unroll": [Opt(OptOps.UNROLL, 2, 4)],
        "upcast_unroll": [Opt(OptOps.UPCAST, 1, 8), Opt(OptOps.UPCAST, 0, 2), Opt(OptOps.UNROLL, 4, 8)]}

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
@pytest.mark.parametrize("opts", list(OPTS))
def test_matmul_accumulates_with_one_rounding(fmt, device, opts):
  x, w = cancelling_matmul(fmt, 4, 16, 8)
  a, c, fused = CANCEL[fmt]
  assert fmt(fmt(a * a) + c) == 0 and fmt(fused) != 0  # what separate roundings would give
  out, spec = run_with_opts(last_item(Tensor(x, device=device) @ Tensor(w, device=device)), device, OPTS[opts])
  assert np.array_equal(out, np.full(4 * 8, fused, fmt)), out[:4]
  fmas = [u for u in spec.uops if u.op is Ops.MULACC]
  assert fmas and all(u.src[1].op is Ops.MULACC for u in spec.uops if u.op is Ops.ASSIGN)  # every accumulator update
  # the unrolled lanes' vector accumulator: vector fma -- except where a GPU-style target (PYTHON) chains an unroll
  # under upcast lanes into one accumulator (codegen/expand.py), each update then a chain of scalar fmas
  chained = device == "PYTHON" and opts == "upcast_unroll"
  if "unroll" in opts: assert any(u.dtype.count > 1 for u in fmas) != chained

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
def test_default_opts_accumulate_with_one_rounding(fmt):
  """The heuristic's CPU kernels (vector accumulators, CPU threads) and a dot product's unrolled reduce. (A GPU-style
  target's heuristic splits a long reduce over a block's threads, GROUP, whose partials are then added: the cancelling
  terms land in two threads. Its accumulators are held to one rounding with explicit opts, in the test above.)"""
  x, w = cancelling_matmul(fmt, 64, 64, 64)
  _, _, fused = CANCEL[fmt]
  for device in ("CPU",):
    assert np.array_equal((Tensor(x, device=device) @ Tensor(w, device=device)).numpy(), np.full((64, 64), fused, fmt)), device
    assert (Tensor(x[0], device=device) @ Tensor(w[:, 0], device=device)).numpy() == fused, device

def sequential(x: np.ndarray, w: np.ndarray, fused: bool) -> np.ndarray:
  """x @ w accumulated in order k = 0, 1, ... from 0, each step rounded once (fused) or twice."""
  acc = np.zeros((x.shape[0], w.shape[1]), x.dtype)
  for k in range(x.shape[1]):
    xk, wk = np.broadcast_to(x[:, k:k+1], acc.shape), np.broadcast_to(w[k:k+1, :], acc.shape)
    acc = fma(xk, wk, acc) if fused else acc + xk * wk
  return acc

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
def test_random_matmul_and_dot_are_bitwise_the_reference(fmt):
  """Random inputs, no opts: both devices accumulate k = 0, 1, ... and must give the sequential fma's bits; the
  sequential mul-then-add differs in many elements, so a target that did not fuse would fail here."""
  rng = np.random.default_rng(3)
  x, w = rng.standard_normal((9, 33)).astype(fmt), rng.standard_normal((33, 7)).astype(fmt)
  want, unfused = sequential(x, w, True), sequential(x, w, False)
  assert (want != unfused).sum() >= 5
  for device in ("CPU", "PYTHON"):
    out, _ = run_with_opts(last_item(Tensor(x, device=device) @ Tensor(w, device=device)), device, [])
    assert np.array_equal(out.reshape(want.shape), want), device
    out, _ = run_with_opts(last_item(Tensor(x[2], device=device) @ Tensor(w[:, 3], device=device)), device, [])
    assert out[0] == want[2, 3], device

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
def test_every_vector_width_is_bitwise_the_reference(fmt):
  """Upcasts of 2 and 3 lanes: 8- and 16-byte vector accumulators (float32x2 has no x86 builtin: lane by lane) and a
  scalar one beside a vector."""
  rng = np.random.default_rng(8)
  x, w = rng.standard_normal((6, 20)).astype(fmt), rng.standard_normal((20, 6)).astype(fmt)
  want = sequential(x, w, True)
  for opts in ([Opt(OptOps.UPCAST, 1, 2)], [Opt(OptOps.UPCAST, 1, 3)], [Opt(OptOps.UPCAST, 1, 2), Opt(OptOps.UPCAST, 0, 3)]):
    for device in ("CPU", "PYTHON"):
      out, spec = run_with_opts(last_item(Tensor(x, device=device) @ Tensor(w, device=device)), device, opts)
      assert np.array_equal(out.reshape(6, 6), want), (device, opts)
      assert any(u.op is Ops.MULACC and u.dtype.count == 2 for u in spec.uops)

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
def test_conv_is_bitwise_the_reference_on_both_devices(fmt):
  """A 3x3 convolution with padding, no opts: a sum over (channel, ky, kx) in that order, padded taps reading zeros."""
  rng = np.random.default_rng(4)
  x, w = rng.standard_normal((2, 3, 5, 5)).astype(fmt), rng.standard_normal((4, 3, 3, 3)).astype(fmt)
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  cols = np.stack([xp[:, :, i:i+3, j:j+3].reshape(2, 27) for i in range(5) for j in range(5)], 1).reshape(50, 27)  # (n, y, x) x (c, ky, kx)
  to_out = lambda r: r.reshape(2, 5, 5, 4).transpose(0, 3, 1, 2)
  want, unfused = to_out(sequential(cols, w.reshape(4, 27).T, True)), to_out(sequential(cols, w.reshape(4, 27).T, False))
  assert (want != unfused).sum() >= 5
  outs = {}
  for device in ("CPU", "PYTHON"):
    out, _ = run_with_opts(last_item(Tensor(x, device=device).conv2d(Tensor(w, device=device), padding=1)), device, [])
    outs[device] = out.reshape(want.shape)
    assert np.array_equal(outs[device], want), device
  # the heuristic's opts for the CPU (its THREAD split aside, which PYTHON lacks) on both devices: still the same bits
  item = last_item(Tensor(x).conv2d(Tensor(w), padding=1))
  cpu_opts = [o for o in get_runner("CPU", item.ast).spec.opts if o.op is not OptOps.THREAD]
  cpu, _ = run_with_opts(item, "CPU", cpu_opts)
  py, _ = run_with_opts(last_item(Tensor(x, device="PYTHON").conv2d(Tensor(w, device="PYTHON"), padding=1)), "PYTHON", cpu_opts)
  assert np.array_equal(cpu, py)
  np.testing.assert_allclose(cpu.reshape(want.shape), want, rtol=1e-5 if fmt == np.float32 else 1e-12, atol=1e-5 if fmt == np.float32 else 1e-12)

def test_a_group_reduce_fuses_each_threads_partial_only():
  """GROUP (PYTHON's thread blocks): each thread's partial sum of products is fused; the sum over the threads'
  partials (loads from local memory) is a plain add."""
  x, w = cancelling_matmul(np.float32, 2, 16, 2)
  item = last_item(Tensor(x, device="PYTHON") @ Tensor(w, device="PYTHON"))
  out, spec = run_with_opts(item, "PYTHON", [Opt(OptOps.GROUP, 2, 2)])  # thread g sums k = 2j + g: 0 and 8 in thread 0
  assert np.array_equal(out, np.full(4, 2.0**-24, np.float32))
  assigns = [u.src[1] for u in spec.uops if u.op is Ops.ASSIGN]
  assert sorted(a.op.name for a in assigns) == ["ADD", "MULACC"]
  assert next(a for a in assigns if a.op is Ops.ADD).src[1].src[0].src[0].op is Ops.DEFINE_LOCAL

@pytest.mark.parametrize("fmt", [np.float32, np.float64])
@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
def test_elementwise_multiply_add_is_not_fused(fmt, device):
  """x*y + z the user wrote rounds twice, as NumPy does, and so does a sum of such terms (its value is an add)."""
  a, c, _ = CANCEL[fmt]
  rng = np.random.default_rng(5)
  x, y, z = (rng.standard_normal(64).astype(fmt) for _ in range(3))
  x[:8], y[:8], z[:8] = a, a, c
  X, Y, Z = (Tensor(v, device=device) for v in (x, y, z))
  assert np.array_equal((X * Y + Z).numpy(), x * y + z)
  assert (X * Y + Z).numpy()[0] == 0
  assert np.array_equal((X * Y + Z).reshape(8, 8).sum(axis=1).numpy()[:1], [fmt(0)])
  item = last_item(X * Y + Z)
  assert not any(u.op is Ops.MULACC for u in get_program(item.ast, Device[device].renderer).uops)

@pytest.mark.parametrize("dt", [dtypes.float16, dtypes.bfloat16])
def test_half_precision_sums_never_fuse_in_half(dt):
  """float16/bfloat16 arithmetic is done in float32 and rounded back per op: an fma in float32 then rounded to half
  would round twice, so a half product is never fused (a product of float32 casts of halves is exact, and may be)."""
  rng = np.random.default_rng(6)
  x, w = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal((16, 8)).astype(np.float32)
  outs = {}
  for device in ("CPU", "PYTHON"):
    t = Tensor(x, device=device).cast(dt) @ Tensor(w, device=device).cast(dt)
    uops = get_program(last_item(t).ast, Device[device].renderer).uops
    assert not [u for u in uops if u.op is Ops.MULACC and u.dtype.scalar() not in (dtypes.float32, dtypes.float64)]
    outs[device] = t.float().numpy()
  assert np.array_equal(outs["CPU"], outs["PYTHON"])

# ---- rendering ----
def c_program(fmt, opts=None):
  x = np.ones((32, 32), fmt)
  return get_program(last_item(Tensor(x) @ Tensor(x)).ast, Device["CPU"].renderer, opts)

def test_c_renders_scalar_and_vector_fma():
  assert "fmaf(" in c_program(np.float32, []).src and "fma(" in c_program(np.float64, []).src
  lanes = Device["CPU"].renderer.vector_bytes // 4  # 8 on AVX2, 16 on AVX-512
  for fmt, helper in ((np.float32, f"__fma_float32x{lanes}"), (np.float64, f"__fma_float64x{lanes // 2}")):
    src = c_program(fmt).src
    assert f"static inline {helper.removeprefix('__fma_')} {helper}(" in src and f"= {helper}(" in src
    assert "__builtin_elementwise_fma" in src and "__builtin_ia32_vfmadd" in src and "#else" in src
  # the helper comes only with a kernel that uses it, and the compiler never contracts anything else
  elementwise = get_program(last_item(Tensor(np.ones(64, np.float32)) * 2 + 1).ast, Device["CPU"].renderer).src
  assert "fma" not in elementwise
  assert "-ffp-contract=off" in CCompiler().flags

def test_cuda_renders_fmaf_per_lane():
  x = Tensor(np.ones((64, 64), np.float32), device="PYTHON")
  spec = get_program(last_item(x @ x).ast, CUDARenderer(), [Opt(OptOps.UPCAST, 1, 4), Opt(OptOps.UNROLL, 3, 4)])
  assert spec.src.count("fmaf(") >= 16 and "__builtin" not in spec.src

def test_flops_count_a_multiply_and_an_add():
  for fmt in (np.float32, np.float64): assert c_program(fmt).flops == 2 * 32**3

def _x86_with_fma(cc: str) -> bool:
  if platform.machine() not in ("x86_64", "AMD64"): return False
  r = subprocess.run([cc, "-march=native", "-dM", "-E", "-x", "c", os.devnull], capture_output=True, text=True)
  return "#define __FMA__ 1" in r.stdout

def test_matmul_inner_loop_is_vector_fma_instructions(tmp_path):
  comp = CCompiler()
  if not _x86_with_fma(comp.cc): pytest.skip("not an x86 CPU with FMA")
  (tmp_path / "k.c").write_text(c_program(np.float32).src)
  flags = [f for f in comp.flags if f not in ("-shared",)]
  subprocess.run([comp.cc, *flags, "-S", "-o", str(tmp_path / "k.s"), str(tmp_path / "k.c")], check=True)
  asm = (tmp_path / "k.s").read_text()
  assert asm.count("vfmadd") >= 8 and ("ymm" in asm or "zmm" in asm) and "vmulps" not in asm

def test_lane_by_lane_fallback_gives_the_same_bits():
  """The helper's #else branch (no FMA instructions, no clang): C99 fma per lane, correctly rounded by the library."""
  comp = CCompiler()
  if not _x86_with_fma(comp.cc): pytest.skip("not an x86 CPU with FMA to switch off")
  rng = np.random.default_rng(7)
  x, w = rng.standard_normal((16, 40)).astype(np.float32), rng.standard_normal((40, 16)).astype(np.float32)
  item = last_item(Tensor(x) @ Tensor(w))
  spec = get_program(item.ast, Device["CPU"].renderer, [Opt(OptOps.UPCAST, 1, 8), Opt(OptOps.UNROLL, 3, 4)])
  assert "__fma_float32x" in spec.src
  outs = []
  for extra in ([], ["-mno-fma"]):
    comp.flags = [*CCompiler().flags, *extra]
    bufs = [buffer_of(b) for b in item.bufs]
    CPUProgram(spec.name, comp.compile(spec.src), spec=spec)(*[bufs[i].raw for i in spec.slots])
    outs.append(bufs[0].numpy().copy())
  assert np.array_equal(outs[0], outs[1])
  # and both are the reference: the unrolled lanes k % 4 accumulate apart and are added pairwise after the loop
  lanes = [sequential(x[:, j::4], w[j::4, :], True) for j in range(4)]
  assert np.array_equal(outs[0].reshape(16, 16), (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
