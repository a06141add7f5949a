"""Symbolic shapes (docs/design/0029): a Variable as a tensor dimension and in shrink/pad/reshape bounds, bound per call;
values against NumPy for several bound values on the CPU and PYTHON devices, each kernel built once for the whole
range, and a jitted KV-cache step that replays with a new position without scheduling or compiling."""
import itertools, os
import numpy as np
import pytest
from lucidgrad import Tensor, Variable, jit, GlobalCounters

DEVICES = ["CPU", "PYTHON"] + (["CUDA"] if os.environ.get("DEV", "").startswith("CUDA") else [])  # bench/gpu.sh sets DEV=CUDA
_names = itertools.count()

def var(lo: int, hi: int):
  """A Variable with a name of its own: a bound value is kept per name, process-wide."""
  return Variable(f"v{next(_names)}", lo, hi)

def built() -> int:
  """Kernels made so far: a codegen pass or a program read back from the disk cache (each new runner is one)."""
  return GlobalCounters.codegen_passes + GlobalCounters.program_cache_hits

def rand(*shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)

def softmax(a, axis=-1):
  e = np.exp(a - a.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)

def check_each(values, make, ref):
  """For each bound value: make(n) realized equals ref(n); kernels are built for the first value only."""
  for i, n in enumerate(values):
    before = built()
    got = make(n).numpy()
    want = ref(n)
    assert got.shape == want.shape and got.dtype == want.dtype, (n, got.shape, want.shape, got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"bound value {n}")
    if i: assert built() == before, f"bound value {n} built {built() - before} new kernels"

# ---- the Variable itself ----
def test_bind_checks_range_and_type():
  v = var(2, 5)
  b = v.bind(5)
  assert b.val == 5 and b.src[0] is v and v.bind(2).val == 2 and (b + 1).vmax == 6  # an expression of it is bounded by the range
  with pytest.raises(ValueError, match=r"\[2, 5\], got 6"): v.bind(6)
  with pytest.raises(ValueError, match=r"\[2, 5\], got 1"): v.bind(1)
  with pytest.raises(TypeError, match="takes an int"): v.bind(2.5)
  with pytest.raises(ValueError, match="0 <= min <= max"): Variable("bad", 3, 1)
  with pytest.raises(ValueError, match="identifier"): Variable("not a name", 0, 1)

def test_unbound_variable_raises_when_read():
  v = Variable(f"unbound{next(_names)}", 1, 4)
  x = Tensor(rand(2, 4)).realize()
  with pytest.raises(RuntimeError, match="without a value|has no value"): x[:, :v].numpy()

# ---- shrink, elementwise ----
@pytest.mark.parametrize("device", DEVICES)
def test_symbolic_shrink_is_one_kernel_for_every_value(device):
  v, a = var(1, 8), rand(3, 8)
  x = Tensor(a, device=device).realize()
  assert x[:, :v].shape == (3, v)
  check_each([3, 8, 1, 5], lambda n: x[:, :v.bind(n)] * 2 + 1, lambda n: a[:, :n] * 2 + 1)

@pytest.mark.parametrize("device", DEVICES)
def test_symbolic_offset_and_end_on_a_transposed_input(device):
  v, a = var(0, 5), rand(7, 4)
  x = Tensor(a, device=device).realize().T  # (4, 7), not contiguous
  check_each([0, 2, 5], lambda n: x[1:3, (b := v.bind(n)):b + 2], lambda n: a.T[1:3, n:n + 2])

def test_elementwise_of_two_tensors_of_one_symbolic_shape():
  v, a, b = var(1, 6), rand(2, 6), rand(2, 6, seed=1)
  x, y = Tensor(a).realize(), Tensor(b).realize()
  check_each([2, 6, 1], lambda n: x[:, :(b := v.bind(n))] * y[:, :b] - y[:, :b].exp(), lambda n: a[:, :n] * b[:, :n] - np.exp(b[:, :n]))

# ---- reduces ----
@pytest.mark.parametrize("device", DEVICES)
def test_reduces_over_a_symbolic_axis(device):
  v, a = var(1, 8), rand(3, 8) - 0.5
  x = Tensor(a, device=device).realize()
  check_each([4, 1, 8], lambda n: x[:, :v.bind(n)].sum(1), lambda n: a[:, :n].sum(1))
  check_each([4, 1, 8], lambda n: x[:, :v.bind(n)].amax(1), lambda n: a[:, :n].max(1))
  check_each([4, 1, 8], lambda n: x[:, :v.bind(n)].softmax(-1), lambda n: softmax(a[:, :n]))

def test_reduce_of_all_negative_values_is_not_the_masked_tail():
  v, a = var(1, 8), -np.arange(1, 25, dtype=np.float32).reshape(3, 8)[:, ::-1].copy()  # the largest value of a row is last
  x = Tensor(a).realize()
  check_each([2, 5], lambda n: x[:, :v.bind(n)].amax(1), lambda n: a[:, :n].max(1))

# ---- matmul ----
@pytest.mark.parametrize("device", DEVICES)
def test_matmul_with_a_symbolic_reduce_axis(device):
  v, a, b = var(1, 6), rand(3, 6), rand(6, 4, seed=1)
  x, w = Tensor(a, device=device).realize(), Tensor(b, device=device).realize()
  check_each([2, 6, 1], lambda n: x[:, :(b := v.bind(n))] @ w[:b, :], lambda n: a[:, :n] @ b[:n, :])

def test_matmul_with_a_symbolic_output_axis():
  v, a, b = var(1, 6), rand(6, 5), rand(5, 3, seed=1)
  x, w = Tensor(a).realize(), Tensor(b).realize()
  check_each([3, 6], lambda n: x[:v.bind(n)] @ w, lambda n: a[:n] @ b)

# ---- writes at a symbolic position ----
@pytest.mark.parametrize("device", DEVICES)
def test_assign_into_a_symbolic_shrink(device):
  pos, ref = var(0, 5), np.zeros((2, 6, 3), np.float32)
  cache = Tensor(ref.copy(), device=device).contiguous().realize()
  before = None
  for p in range(6):
    k = rand(2, 1, 3, seed=p)
    b = pos.bind(p)
    if p % 2: cache[:, b:b + 1] = Tensor(k, device=device)
    else: cache[:, b:b + 1].assign(Tensor(k, device=device))
    cache.realize()
    ref[:, p:p + 1] = k
    np.testing.assert_array_equal(cache.numpy(), ref)
    if p == 3: before = built()
  assert built() == before, "later positions built new kernels"

def test_kv_cache_attention_over_a_symbolic_length():
  """The llama decode step eagerly: write one position, attend over :pos+1 (matmul, softmax, matmul)."""
  H, M, D = 2, 8, 4
  pos, ref = var(0, M - 1), np.zeros((1, H, M, D), np.float32)
  cache = Tensor(ref.copy()).contiguous().realize()
  for p in range(5):
    q, k = rand(1, H, 1, D, seed=10 + p), rand(1, H, 1, D, seed=20 + p)
    b = pos.bind(p)
    cache[:, :, b:b + 1] = Tensor(k)
    kv = cache[:, :, :b + 1]
    out = ((Tensor(q) @ kv.transpose(-1, -2)) / 2.0).softmax(-1) @ kv
    ref[:, :, p:p + 1] = k
    r = ref[:, :, :p + 1]
    np.testing.assert_allclose(out.numpy(), softmax(q @ r.transpose(0, 1, 3, 2) / 2.0) @ r, rtol=1e-5, atol=1e-5)

# ---- @jit ----
@pytest.mark.parametrize("device", DEVICES)
def test_jit_replays_a_kv_cache_step_with_a_new_position(device):
  H, M, D = 2, 8, 4
  pos, ref = var(0, M - 1), np.zeros((1, H, M, D), np.float32)
  cache = Tensor(ref.copy(), device=device).contiguous().realize()
  @jit
  def step(q, k, p):
    cache[:, :, p:p + 1] = k
    kv = cache[:, :, :p + 1]
    return ((q @ kv.transpose(-1, -2)) / 2.0).softmax(-1) @ kv
  for p in range(M):
    q, k = rand(1, H, 1, D, seed=30 + p), rand(1, H, 1, D, seed=40 + p)
    qt, kt = Tensor(q, device=device).realize(), Tensor(k, device=device).realize()
    b0, s0 = built(), GlobalCounters.schedules_built
    out = step(qt, kt, pos.bind(p))
    if p >= 2: assert (built() - b0, GlobalCounters.schedules_built - s0) == (0, 0), f"position {p} compiled or scheduled"
    ref[:, :, p:p + 1] = k
    r = ref[:, :, :p + 1]
    np.testing.assert_allclose(out.numpy(), softmax(q @ r.transpose(0, 1, 3, 2) / 2.0) @ r, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cache.numpy(), ref)

# ---- pad and reshape ----
@pytest.mark.parametrize("device", DEVICES)
def test_pad_with_symbolic_amounts(device):
  v, a = var(1, 6), rand(2, 6)
  x = Tensor(a, device=device).realize()
  # the symbolic slice padded back to the fixed length: the tail is zeros, whatever the buffer held past the bound
  check_each([2, 6, 1], lambda n: x[:, :(b := v.bind(n))].pad(((0, 0), (0, 6 - b))), lambda n: np.pad(a[:, :n], ((0, 0), (0, 6 - n))))
  check_each([2, 5], lambda n: x[:, :v.bind(n)].pad(((0, 0), (1, 2)), value=3.0), lambda n: np.pad(a[:, :n], ((0, 0), (1, 2)), constant_values=3.0))
  p = var(0, 3)
  check_each([0, 3, 1], lambda n: x[:, :2].pad(((0, 0), (p.bind(n), 0))), lambda n: np.pad(a[:, :2], ((0, 0), (n, 0))))

def test_reshape_keeping_a_symbolic_axis_whole():
  v, a = var(1, 5), rand(4, 5)
  x = Tensor(a).realize()
  check_each([3, 5], lambda n: x[:, :(b := v.bind(n))].reshape(2, 2, b).sum(-1), lambda n: a[:, :n].reshape(2, 2, n).sum(-1))
  check_each([3, 5], lambda n: x[:, :(b := v.bind(n))].reshape(4, b, 1).amax(1), lambda n: a[:, :n].reshape(4, n, 1).max(1))

# ---- what cannot take a symbolic size says so ----
def test_unsupported_symbolic_ops_raise():
  v, x = var(1, 5), Tensor(rand(4, 5)).realize()
  with pytest.raises(ValueError, match="symbolic axis must stay whole"): x[:, :v].reshape(-1)
  with pytest.raises(ValueError, match="cannot be flipped"): x[:, :v].flip(1)
  with pytest.raises(ValueError, match="can leave the axis"): x[:, :v + 1]
  with pytest.raises(ValueError, match="can leave the axis"): x[:, v - 2:]
  with pytest.raises(IndexError, match="step 1"): x[:, :v:2]
  with pytest.raises(ValueError, match="can be negative"): x.pad(((0, 0), (v - 3, 0)))
  with pytest.raises(ValueError, match="mode 'reflect'"): x[:, :v].pad(((0, 0), (1, 1)), mode="reflect")
  with pytest.raises(TypeError, match="arange: a symbolic bound"): Tensor.arange(v)
  with pytest.raises(TypeError, match="arange: a symbolic bound"): x[:, :v.bind(3)].max(1)  # torch's (values, indices)
  with pytest.raises(ValueError, match="gather over a symbolic shape"): x[:, :v.bind(3)].gather(1, Tensor([[0], [1], [0], [2]])).numpy()

# ---- a value that depends on the binding is never read under another ----
def test_equal_graphs_under_two_bindings_give_two_values():
  """Graphs are interned and the bound value is not in them: a value computed under one binding must not be reused
  for the same graph built under the next (the first tensor is kept alive while the second is built)."""
  v, a = var(1, 6), rand(2, 6)
  x = Tensor(a).realize()
  first = (x[:, :v.bind(2)] * 3).sum(1)
  np.testing.assert_allclose(first.numpy(), (a[:, :2] * 3).sum(1), rtol=1e-5)
  second = (x[:, :v.bind(5)] * 3).sum(1)
  np.testing.assert_allclose(second.numpy(), (a[:, :5] * 3).sum(1), rtol=1e-5)
  np.testing.assert_allclose(first.numpy(), (a[:, :2] * 3).sum(1), rtol=1e-5)  # and the first keeps its own
  lazy = x[:, :v.bind(4)].sum(1)
  v.bind(1)  # a later bind does not change a graph built with another value
  np.testing.assert_allclose(lazy.numpy(), a[:, :4].sum(1), rtol=1e-5)

def test_mean_over_a_symbolic_axis_divides_by_the_bound_length():
  v, a = var(1, 6), rand(3, 6)
  x = Tensor(a).realize()
  check_each([2, 6, 1], lambda n: x[:, :v.bind(n)].mean(1), lambda n: a[:, :n].mean(1))

def test_prefill_attention_with_grouped_heads_and_a_causal_mask_at_start_pos():
  """A llama prefill of T tokens at a symbolic start position: K repeated for grouped query heads (reshape/expand of a
  symbolic axis), a causal mask padded on the left by start_pos, softmax over start_pos+T."""
  B, H, KVH, M, D, T = 1, 4, 2, 8, 4, 3
  pos = var(0, M - T)
  cache, q = rand(B, KVH, M, D), rand(B, H, T, D, seed=1)
  ck, qt = Tensor(cache).realize(), Tensor(q).realize()
  def make(p):
    n = (b := pos.bind(p)) + T
    k = ck[:, :, :n].reshape(B, KVH, 1, n, D).expand(B, KVH, H // KVH, n, D).reshape(B, H, n, D)
    mask = Tensor.full((T, T), float("-inf")).triu(1).pad(((0, 0), (b, 0)))
    return ((qt @ k.transpose(-1, -2)) / 2.0 + mask).softmax(-1) @ k
  def ref(p):
    k = np.repeat(cache[:, :, :p + T], H // KVH, axis=1)
    mask = np.pad(np.triu(np.full((T, T), -np.inf, np.float32), 1), ((0, 0), (p, 0)))
    return softmax(q @ k.transpose(0, 1, 3, 2) / 2.0 + mask) @ k
  check_each([0, 2, 5], make, ref)

def test_cuda_source_takes_the_variable_after_the_buffers():
  """The CUDA renderer (no GPU needed to render): the Variable is a 64-bit parameter after the buffers, read as an int,
  and the spec names it, so the launch passes its value there."""
  from lucidgrad.schedule import create_schedule
  from lucidgrad.codegen import get_program
  from lucidgrad.renderer.cuda import CUDARenderer
  v = var(1, 8)
  x = Tensor(rand(4, 8), device="PYTHON").realize()
  items, _, _ = create_schedule([x[:, :v.bind(3)].sum(1).uop])
  spec = get_program(items[-1].ast, CUDARenderer())
  name = v.arg[0]
  assert spec.vars == (name,) and f"long long var_{name})" in spec.src and f"((int)var_{name})" in spec.src, spec.src

def test_a_write_at_a_symbolic_position_moves_that_row_only():
  """cache[:, pos:pos+1] = k stores into the row alone (schedule._region_write), not the whole cache rewritten through a
  mask: the bytes the kernels move are a few rows' worth, whatever the cache's length."""
  pos, ref = var(0, 1023), np.zeros((2, 1024, 16), np.float32)
  cache = Tensor(ref.copy()).contiguous().realize()
  for p in (5, 700):
    k = Tensor(rand(2, 1, 16, seed=p)).realize()
    b = pos.bind(p)
    before = GlobalCounters.global_mem
    cache[:, b:b + 1] = k
    cache.realize()
    ref[:, p:p + 1] = k.numpy()
    assert GlobalCounters.global_mem - before <= 4 * k.numel() * 4, GlobalCounters.global_mem - before
  np.testing.assert_array_equal(cache.numpy(), ref)

def test_sizes_of_symbolic_movements_simplify_to_ints():
  """The symbolic simplifier folds what a shape rule builds: pos:pos+1 has length 1, a pad by (b, 5-b) a fixed length."""
  v = var(0, 5)
  b = v.bind(3)
  x = Tensor(rand(4, 6)).realize()
  assert x[:, b:b + 1].shape == (4, 1)
  assert x.pad(((0, 0), (b, 5 - b))).shape == (4, 11)
  assert x[:, :b + 1].shape[1].vmin == 1 and x[:, :b + 1].shape[1].vmax == 6
  np.testing.assert_array_equal(x.pad(((0, 0), (b, 5 - b))).numpy(), np.pad(x.numpy(), ((0, 0), (3, 2))))

def test_jit_takes_the_bound_variable_as_a_keyword_and_refuses_another_variable():
  from lucidgrad import JitError
  v, w, a = var(1, 6), var(1, 6), rand(2, 6)
  x = Tensor(a).realize()
  f = jit(lambda t, n: (t[:, :n] * 2).sum(1).contiguous())
  for i, k in enumerate([2, 3, 6, 1]):
    s0 = GlobalCounters.schedules_built
    np.testing.assert_allclose(f(x, n=v.bind(k)).numpy(), (a[:, :k] * 2).sum(1), rtol=1e-5)
    if i >= 2: assert GlobalCounters.schedules_built == s0
  with pytest.raises(JitError, match="non-tensor arguments"): f(x, n=w.bind(2))

@pytest.mark.parametrize("device", DEVICES)
def test_a_reduce_over_a_symbolic_axis_loops_to_the_bound(device):
  """The masked reduce's RANGE carries the Variable's bound (codegen/opt/kernel.end_masked_reduces): its size stays the
  maximum for every opt, and a loop that reaches the renderer whole stops at the bound. With NOOPT the loop is whole."""
  from lucidgrad.schedule import create_schedule
  from lucidgrad.codegen.opt.kernel import Kernel
  from lucidgrad.device import Device
  from lucidgrad.helpers import Context
  v, a = var(0, 511), rand(3, 512)
  x = Tensor(a, device=device).realize()
  items, _, _ = create_schedule([x[:, :v.bind(10) + 1].sum(1).uop])
  bounded = [u for u in Kernel(items[-1].ast, Device[device].renderer).sink.toposort if u.op.name == "RANGE" and len(u.src) == 2]
  assert len(bounded) == 1 and bounded[0].src[0].arg == 512 and bounded[0].src[1].vmax == 512
  with Context(NOOPT=1):
    check_each([10, 0, 511], lambda n: x[:, :v.bind(n) + 1].sum(1), lambda n: a[:, :n + 1].sum(1))
