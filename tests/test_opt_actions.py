"""The opt space: every action the Kernel object lists is valid (it applies and builds) and leaves results unchanged, on
the CPU and on the PYTHON device (which takes the GPU-style actions), for sizes that are prime, 1, and not divisible by
the amount; an action a kernel or its renderer cannot take raises KernelOptError before any code is built."""
import random, re
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.device import Device, buffer_of
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import run_schedule
from lucidgrad.codegen import get_program
from lucidgrad.codegen.opt import Kernel, Opt, OptOps, KernelOptError, hand_coded_opts
from lucidgrad.uop.ops import AxisType, Ops
from lucidgrad.codegen.opt.kernel import stride_of

def last_kernel(t: Tensor):
  """Runs everything `t` needs but its last kernel; returns that kernel's schedule item."""
  items, _, _ = create_schedule([t.uop])
  run_schedule(items[:-1])
  assert items[-1].kind == "kernel"
  return items[-1]

def run_with_opts(item, device: str, opts) -> np.ndarray:
  """The output of `item`'s kernel built with exactly `opts`."""
  dev = Device[device]
  spec = get_program(item.ast, dev.renderer, list(opts))
  bufs = [buffer_of(b) for b in item.bufs]
  dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(
    *[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size)
  return bufs[0].numpy().copy()

rng = np.random.default_rng(0)
def arr(*shape): return rng.standard_normal(shape).astype(np.float32)
A, B, C, V, S = arr(13, 7), arr(7, 5), arr(1, 11), arr(6, 8), arr(8, 8)
# reduces long enough for TILE's blocks (8, 16, ...): 48 splits into 8 and 16, 24 into 8
L, R, X, W = arr(5, 48), arr(48, 3), arr(2, 16, 5, 5), arr(3, 16, 3, 3)
GI = rng.integers(-13, 13, (5, 3)).astype(np.int32)
def conv_ref(x, w):
  """A 3x3 convolution with padding 1, in float64."""
  xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
  return np.stack([np.einsum("ncij,kcij->nk", xp[:, :, i:i+3, j:j+3], w) for i in range(x.shape[2]) for j in range(x.shape[3])], -1).reshape(x.shape[0], w.shape[0], *x.shape[2:])
# (name, lucidgrad program, NumPy reference): sizes 13, 7, 5, 11 are prime; 1 is an axis of size one
PROGRAMS = {
  "matmul_prime": (lambda T: T(A) @ T(B), lambda: A @ B),
  "matmul_square": (lambda T: T(S) @ T(S).T, lambda: S @ S.T),
  "elementwise_1xN": (lambda T: (T(C) * 2 + 1).exp(), lambda: np.exp(C * 2 + 1)),
  "max_over_negative": (lambda T: (T(A) - 10).max(axis=1), lambda: (A - 10).max(axis=1)),
  "softmax_sum": (lambda T: T(V).exp().sum(axis=0), lambda: np.exp(V).sum(axis=0)),
  "int_sum": (lambda T: T(np.arange(30, dtype=np.int32).reshape(6, 5)).sum(axis=0), lambda: np.arange(30).reshape(6, 5).sum(axis=0)),
  "matmul_long_reduce": (lambda T: T(L) @ T(R), lambda: L @ R),
  "max_of_24": (lambda T: (T(L[:, :24]) - 10).max(axis=1), lambda: (L[:, :24] - 10).max(axis=1)),
  "int_sum_of_16": (lambda T: T(np.arange(48, dtype=np.int32).reshape(3, 16)).sum(axis=1), lambda: np.arange(48).reshape(3, 16).sum(axis=1)),
  "conv3x3": (lambda T: T(X).conv2d(T(W), padding=1), lambda: conv_ref(X, W)),
  "bias_add": (lambda T: T(A) + T(A[0]), lambda: A + A[0]),  # a broadcast input: row 0 read by every row
  # a gather (docs/design/0014): an address that holds a loaded index, inside a reduce (PADTO must guard that load too)
  "gather_sum": (lambda T: T(A)[T(GI)].sum(axis=1), lambda: A[GI].sum(axis=1)),
}

def item_for(name: str, device: str):
  prog, ref = PROGRAMS[name]
  return last_kernel(prog(lambda x: Tensor(x, device=device))), ref()

@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_every_valid_action_keeps_the_result(name, device):
  item, ref = item_for(name, device)
  k = Kernel(item.ast, Device[device].renderer)
  actions = k.valid_opts()
  kinds = {o.op for o in actions}
  assert (OptOps.LOCAL in kinds) == (device == "PYTHON") and (OptOps.THREAD in kinds) == (device == "CPU" and max(k.sizes()) > 1)
  has_reduce = any(r.arg[1].name == "REDUCE" for r in k.axes)
  assert (OptOps.GROUP in kinds and OptOps.GROUPTOP in kinds) == (device == "PYTHON" and has_reduce)
  assert (OptOps.TILE in kinds) == (name in ("matmul_long_reduce", "max_of_24", "int_sum_of_16", "conv3x3"))
  # staging: into the CPU's stack at any loop; on a GPU-style target into a block's local memory, at a reduce loop
  # inside which a load moves (a conv's channel loop around its window)
  stages = [o for o in actions if o.op is OptOps.STAGE]
  if device == "CPU": assert bool(stages) == (len(k.axes) > 1)  # an input read inside an outer loop
  else: assert all(k.kinds()[o.axis] is AxisType.REDUCE for o in stages) and bool(stages) == (name == "conv3x3"), stages
  for o in actions + [Opt(OptOps.PADTO, i, 4) for i, n in enumerate(k.sizes()) if n % 4]:  # padding with much waste too
    out = run_with_opts(item, device, [o])
    np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5, err_msg=f"{o}")

@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
def test_random_sequences_of_actions_keep_the_result(device):
  """Opts stacked on one axis (a split of a split, padding then splitting) are what a search builds."""
  r = random.Random(1)
  for name in PROGRAMS:
    item, ref = item_for(name, device)
    for _ in range(6 if device == "CPU" else 3):
      k, seq = Kernel(item.ast, Device[device].renderer), []
      for _ in range(3):
        if not (acts := k.valid_opts()): break
        seq.append(o := r.choice(acts))
        k.apply_opt(o)
      np.testing.assert_allclose(run_with_opts(item, device, seq).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5, err_msg=f"{name} {seq}")

def test_group_reduce_in_a_loop_with_upcast_lanes():
  """A group reduce whose kernel also has thread blocks along the output (LOCAL) and upcast lanes: each thread and lane
  has its own slot of local memory; a max over negative values checks the identity of the padded part."""
  item, ref = item_for("max_over_negative", "PYTHON")
  seq = [Opt(OptOps.PADTO, 1, 8), Opt(OptOps.GROUPTOP, 1, 4), Opt(OptOps.PADTO, 0, 4), Opt(OptOps.LOCAL, 0, 2), Opt(OptOps.UPCAST, 0, 2)]
  np.testing.assert_allclose(run_with_opts(item, "PYTHON", seq).reshape(ref.shape), ref, rtol=1e-6)
  item, ref = item_for("softmax_sum", "PYTHON")
  seq = [Opt(OptOps.GROUP, 1, 3), Opt(OptOps.UNROLL, 1, 2), Opt(OptOps.LOCAL, 0, 4), Opt(OptOps.UPCAST, 0, 2)]
  np.testing.assert_allclose(run_with_opts(item, "PYTHON", seq).reshape(ref.shape), ref, rtol=1e-5)

def test_two_opts_on_one_axis():
  item, ref = item_for("matmul_prime", "PYTHON")
  seq = [Opt(OptOps.PADTO, 0, 8), Opt(OptOps.LOCAL, 0, 4), Opt(OptOps.UPCAST, 0, 2)]
  k = Kernel(item.ast, Device["PYTHON"].renderer).apply_opts(seq)
  # 13 rows padded to 16 = 2 loops x 2 upcast lanes x 4 threads; the new part of each split comes right after its outer part
  assert [(r.arg[1].name, r.src[0].arg) for r in k.axes] == [("LOOP", 2), ("UPCAST", 2), ("LOCAL", 4), ("LOOP", 5), ("REDUCE", 7)]
  np.testing.assert_allclose(run_with_opts(item, "PYTHON", seq).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize("opt, why", [
  (Opt(OptOps.UPCAST, 0, 2), "not divisible"),       # 13 rows
  (Opt(OptOps.UPCAST, 2, 7), "REDUCE, not LOOP"),
  (Opt(OptOps.UNROLL, 0, 13), "LOOP, not REDUCE"),
  (Opt(OptOps.LOCAL, 1, 5), "no thread blocks"),     # the CPU renderer
  (Opt(OptOps.PADTO, 2, 7), "already a multiple"),
  (Opt(OptOps.THREAD, 1, 8), "8 threads for an axis of 5"),
  (Opt(OptOps.SWAP, 0, 2), "or two UPCAST axes swap"),
  (Opt(OptOps.TILE, 0, 8), "LOOP, not REDUCE"),
  (Opt(OptOps.TILE, 2, 7), "does not split"),      # a block of the whole reduce is no tiling
  (Opt(OptOps.UPCAST, 3, 2), "has 3 axes"),
])
def test_invalid_actions_raise_before_building(opt, why):
  item, _ = item_for("matmul_prime", "CPU")
  k = Kernel(item.ast, Device["CPU"].renderer)
  before = k.sink
  with pytest.raises(KernelOptError, match=why): k.apply_opt(opt)
  assert k.sink is before and k.applied == []
  with pytest.raises(KernelOptError): get_program(item.ast, Device["CPU"].renderer, [opt])

def test_swap_of_two_axes_of_one_size():
  """Found by BEAM: swapping two loops of equal size made each range the other's twin, and one substitution turned both
  into the same loop (a 16^3 matmul gave 1e37)."""
  item, ref = item_for("matmul_square", "CPU")
  seq = [Opt(OptOps.UPCAST, 0, 4), Opt(OptOps.UPCAST, 2, 4), Opt(OptOps.SWAP, 0, 2)]
  np.testing.assert_allclose(run_with_opts(item, "CPU", seq).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)

def test_thread_is_refused_without_cpu_threads():
  item, _ = item_for("matmul_prime", "PYTHON")
  with pytest.raises(KernelOptError, match="no CPU threads"): Kernel(item.ast, Device["PYTHON"].renderer).apply_opt(Opt(OptOps.THREAD, 0, 2))

def test_upcast_budget_bounds_the_expansion():
  from lucidgrad.codegen.opt.kernel import max_lanes
  a = Tensor(arr(64, 64)); b = Tensor(arr(64, 64))
  budget = max_lanes(Device["CPU"].renderer)  # 256 on AVX2, 512 on AVX-512
  k = Kernel(last_kernel(a @ b).ast, Device["CPU"].renderer).apply_opts([Opt(OptOps.UPCAST, 0, 16), Opt(OptOps.UPCAST, 2, 16)])
  if budget > 256: k.apply_opt(Opt(OptOps.UNROLL, 4, budget // 256))
  assert k.lanes() == budget
  with pytest.raises(KernelOptError, match="budget"): k.apply_opt(Opt(OptOps.UNROLL, 4, 2))
  assert all(o.op not in (OptOps.UPCAST, OptOps.UNROLL) for o in k.valid_opts())

def test_thread_split_of_a_long_loop_does_not_overflow():
  """Thread `core` of `ncores` starts at end*core/ncores: with 64 threads end*ncores passes 2**31 at 2**25 iterations."""
  n = 2**25 + 8
  x = Tensor.full((n,), 3, dtype=dtypes.uint8).contiguous().realize()
  out = run_with_opts(last_kernel(x + 1), "CPU", [Opt(OptOps.THREAD, 0, 64)])
  assert out[-16:].tolist() == [4] * 16 and out[:4].tolist() == [4] * 4

@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
@pytest.mark.parametrize("name, seq", [
  # blocks of 16 of a reduce of 48, with a register tile, an unroll of the block and the block loop moved inward
  ("matmul_long_reduce", [Opt(OptOps.TILE, 2, 16), Opt(OptOps.UPCAST, 2, 3), Opt(OptOps.UNROLL, 4, 4), Opt(OptOps.SWAP, 0, 1)]),
  # a padded reduce (48 -> 64) tiled into blocks of 32: the padded part adds the identity in the last block
  ("matmul_long_reduce", [Opt(OptOps.PADTO, 2, 32), Opt(OptOps.TILE, 2, 32), Opt(OptOps.PADTO, 1, 4), Opt(OptOps.UPCAST, 1, 4)]),
  # a max carried through the output: block 0 starts from -inf, not from 0, so all-negative rows stay right
  ("max_of_24", [Opt(OptOps.TILE, 1, 8), Opt(OptOps.UNROLL, 2, 2)]),
  ("int_sum_of_16", [Opt(OptOps.TILE, 1, 8), Opt(OptOps.UNROLL, 2, 4)]),
  # the channels in blocks of 8, a row of the image upcast, the block loop moved inside the batch loop
  ("conv3x3", [Opt(OptOps.TILE, 4, 8), Opt(OptOps.UPCAST, 4, 5), Opt(OptOps.SWAP, 0, 2)]),
])
def test_tiled_reduce_keeps_the_result(name, seq, device):
  item, ref = item_for(name, device)
  k = Kernel(item.ast, Device[device].renderer).apply_opts(seq)
  assert "TILE" in [t.name for t in k.kinds()]
  if device == "CPU":  # and on two CPU threads, each carrying its own outputs through the blocks
    seq = seq + [Opt(OptOps.THREAD, next(i for i, (t, n) in enumerate(zip(k.kinds(), k.sizes())) if t.name == "LOOP" and n > 1), 2)]
  np.testing.assert_allclose(run_with_opts(item, device, seq).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5, err_msg=f"{seq}")

def test_tile_needs_the_stored_value_to_be_the_reduce():
  """With work after the reduce (a relu) the output cannot hold a running sum; a tiled axis takes no split, thread or
  group, and a group's kernel takes no tile (its threads would all carry the same output)."""
  item, _ = item_for("matmul_long_reduce", "CPU")
  relu = last_kernel((Tensor(L) @ Tensor(R)).relu())
  with pytest.raises(KernelOptError, match="not the reduce"): Kernel(relu.ast, Device["CPU"].renderer).apply_opt(Opt(OptOps.TILE, 2, 8))
  k = Kernel(item.ast, Device["CPU"].renderer).apply_opt(Opt(OptOps.TILE, 2, 8))
  assert k.kinds()[0].name == "TILE" and k.sizes()[0] == 6
  for o in (Opt(OptOps.UPCAST, 0, 2), Opt(OptOps.THREAD, 0, 2), Opt(OptOps.PADTO, 0, 4), Opt(OptOps.TILE, 0, 2)):
    with pytest.raises(KernelOptError): k.copy().apply_opt(o)
  item, _ = item_for("matmul_long_reduce", "PYTHON")
  with pytest.raises(KernelOptError, match="carry the output"):
    Kernel(item.ast, Device["PYTHON"].renderer).apply_opt(Opt(OptOps.TILE, 2, 8)).apply_opt(Opt(OptOps.GROUP, 3, 2))
  with pytest.raises(KernelOptError, match="carry the output"):
    Kernel(item.ast, Device["PYTHON"].renderer).apply_opt(Opt(OptOps.GROUP, 2, 2)).apply_opt(Opt(OptOps.TILE, 2, 8))

U, SW, TH, PAD, UN, TL, ST = OptOps.UPCAST, OptOps.SWAP, OptOps.THREAD, OptOps.PADTO, OptOps.UNROLL, OptOps.TILE, OptOps.STAGE
# (program, opts before STAGE): register blocks, a padded axis (gated loads copied with their gate), a loop order
# with the column block outermost (a matmul's staged B panel), threads, an unrolled and a tiled reduce
STAGE_CASES = [
  ("matmul_prime", []), ("matmul_prime", [Opt(U, 1, 5)]), ("matmul_prime", [Opt(UN, 2, 7)]), ("matmul_prime", [Opt(TH, 0, 2)]),
  ("matmul_prime", [Opt(PAD, 0, 4), Opt(U, 0, 4), Opt(SW, 0, 2)]), ("matmul_prime", [Opt(PAD, 1, 4), Opt(U, 1, 4), Opt(SW, 0, 1)]),
  ("matmul_square", [Opt(U, 1, 4), Opt(U, 0, 2), Opt(SW, 0, 2)]), ("matmul_long_reduce", [Opt(TL, 2, 16), Opt(U, 2, 3)]),
  ("matmul_long_reduce", [Opt(U, 1, 3), Opt(UN, 3, 4)]), ("conv3x3", []), ("conv3x3", [Opt(U, 3, 5), Opt(SW, 0, 1)]),
  ("conv3x3", [Opt(PAD, 2, 4), Opt(TH, 2, 2)]), ("bias_add", []), ("bias_add", [Opt(U, 1, 7)])]

@pytest.mark.parametrize("name, before", STAGE_CASES)
def test_stage_keeps_the_result(name, before):
  """Every valid STAGE after `before`, followed by nothing or by random valid opts (splits, padding, swaps, threads):
  the same numbers, bit for bit, as the kernel without it (the same sums in the same order), and NumPy's."""
  item, ref = item_for(name, "CPU")
  r = random.Random(len(before))
  stages = [o for o in Kernel(item.ast, Device["CPU"].renderer).apply_opts(before).valid_opts() if o.op is ST]
  assert stages, f"{name} {before}: nothing to stage"
  for st in stages:
    for n_after in (0, 2):
      k, after = Kernel(item.ast, Device["CPU"].renderer).apply_opts(before + [st]), []
      for _ in range(n_after):
        if acts := [o for o in k.valid_opts() if o.op is not ST]: after.append(o := r.choice(acts)); k.apply_opt(o)
      staged, plain = run_with_opts(item, "CPU", before + [st] + after), run_with_opts(item, "CPU", before + after)
      np.testing.assert_array_equal(staged, plain, err_msg=f"{before} {st} {after}")
      np.testing.assert_allclose(staged.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5, err_msg=f"{before} {st} {after}")

def test_stage_copies_the_block_with_lanes_innermost():
  """B[k*n + j0*4 + jj] staged at the column block j0 reads scratch[k*4 + jj]: one slot per (k, jj), the lanes of
  the vector load consecutive; the copy runs once per column block, outside the row loop."""
  item, ref = item_for("matmul_square", "CPU")
  k = Kernel(item.ast, Device["CPU"].renderer).apply_opts([Opt(U, 1, 4), Opt(SW, 0, 1), Opt(ST, 0, 2)])
  (local,) = [u for u in k.sink.toposort if u.op.name == "DEFINE_LOCAL"]
  assert local.arg[1] == 8 * 4
  src = get_program(item.ast, Device["CPU"].renderer, k.applied).src
  assert "__attribute__((aligned(64)))" in src and src.index("temp0[") < src.index("data2+") < src.index("(temp0+")
  np.testing.assert_allclose(run_with_opts(item, "CPU", k.applied).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize("name, seq, why", [
  ("matmul_prime", [Opt(ST, 0, 0)], "written by the kernel"),
  ("matmul_prime", [Opt(ST, 0, 3)], "no buffer 3"),
  ("matmul_prime", [Opt(ST, 2, 1)], "REDUCE, not a loop"),
  ("matmul_prime", [Opt(U, 1, 5), Opt(ST, 2, 2)], "UPCAST, not a loop"),
  ("bias_add", [Opt(ST, 1, 2)], "change nothing"),       # the innermost loop: nothing inside it
  ("matmul_prime", [Opt(ST, 0, 2), Opt(ST, 0, 2)], "staged already"),
  ("matmul_prime", [Opt(ST, 1, 2), Opt(U, 1, 5)], "lanes would share one scratch"),   # B's copy moves with j
  ("matmul_prime", [Opt(ST, 1, 1), Opt(U, 0, 13)], "lanes would share one scratch"),  # A's row, copied at j, moves with i
])
def test_invalid_stage_raises_before_building(name, seq, why):
  item, _ = item_for(name, "CPU")
  k = Kernel(item.ast, Device["CPU"].renderer).apply_opts(seq[:-1])
  before = k.sink
  with pytest.raises(KernelOptError, match=why): k.apply_opt(seq[-1])
  assert k.sink is before

def test_stage_is_refused_where_it_does_not_fit():
  """The scratch is a stack array per call (per CPU thread): half the L2 on the CPU, 256 KiB to 2 MiB."""
  ren = Device["CPU"].renderer
  assert 256 * 1024 <= ren.scratch_max <= 2 << 20 and (not ren.cache_bytes or ren.scratch_max >= min(ren.cache_bytes // 2, 2 << 20))
  rows = ren.scratch_max // (256 * 4) + 44  # all of B, rows x 256 floats, staged at the row loop: past the scratch
  big = last_kernel(Tensor(arr(8, rows)) @ Tensor(arr(rows, 256)))
  with pytest.raises(KernelOptError, match=f"bytes of scratch pass the renderer's {ren.scratch_max}"): Kernel(big.ast, ren).apply_opt(Opt(ST, 0, 2))
  Kernel(big.ast, Device["CPU"].renderer).apply_opts([Opt(SW, 0, 1), Opt(U, 0, 16), Opt(ST, 0, 2)])  # a 16-column panel fits
  # a GPU-style target stages into a block's local memory once per step of a reduce loop, and only as the last opt
  item, _ = item_for("matmul_prime", "PYTHON")
  with pytest.raises(KernelOptError, match="once per step of a reduce loop"): Kernel(item.ast, Device["PYTHON"].renderer).apply_opt(Opt(ST, 0, 2))
  conv, _ = item_for("conv3x3", "PYTHON")
  k = Kernel(conv.ast, Device["PYTHON"].renderer)
  k.apply_opt(next(o for o in k.valid_opts() if o.op is ST))
  with pytest.raises(KernelOptError, match="staging comes last"): k.apply_opt(Opt(OptOps.LOCAL, 0, 2))

def test_padded_output_rows_read_the_last_row_ungated():
  """13 rows padded to 16 in blocks of 4: A's loads in the 3 extra rows read row 12 (in bounds, never stored) instead
  of a gated load in the reduce loop; the stores of the extra rows stay guarded, and the block's lanes past the end
  share one gate, so they still store as one vector."""
  item, ref = item_for("matmul_prime", "CPU")
  seq = [Opt(PAD, 0, 4), Opt(U, 0, 4), Opt(PAD, 2, 8), Opt(U, 2, 8)]
  k = Kernel(item.ast, Device["CPU"].renderer).apply_opts(seq)
  a_loads = [u for u in k.sink.toposort if u.op.name == "INDEX" and u.src[0].op.name == "DEFINE_GLOBAL" and u.src[0].arg[0] == 1]
  assert a_loads and all(x.src[2].op.name == "CONST" and x.src[2].arg is True for x in a_loads)
  src = get_program(item.ast, Device["CPU"].renderer, seq).src
  assert "?*(data1" not in src and "(data2+" in src  # B's padded columns: consecutive, so gated
  assert re.search(r"if \(\w+\) \*\(\w+_u\*\)\(\(data0", src)  # the padded rows' lanes: one vector store under one gate
  np.testing.assert_allclose(run_with_opts(item, "CPU", seq).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(run_with_opts(item, "PYTHON", [Opt(PAD, 0, 4), Opt(U, 0, 4)]).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize("name, seq", [
  # staged, then the reduce tiled, unrolled, the rows padded and threaded: B's copy is hoisted out of every loop
  ("matmul_long_reduce", [Opt(ST, 0, 2), Opt(TL, 2, 16), Opt(UN, 3, 4), Opt(PAD, 1, 8), Opt(TH, 1, 2)]),
  # A's rows staged at the column loop moved outermost, then the staged rows padded and upcast, the columns threaded
  ("matmul_prime", [Opt(SW, 0, 1), Opt(ST, 0, 1), Opt(PAD, 1, 4), Opt(U, 1, 4), Opt(TH, 0, 2)]),
  # the padded image staged per output channel, then a row upcast and the window unrolled
  ("conv3x3", [Opt(ST, 1, 1), Opt(U, 3, 5), Opt(UN, 6, 3), Opt(SW, 0, 1)]),
])
def test_opts_after_stage_keep_the_result(name, seq):
  item, ref = item_for(name, "CPU")
  staged, plain = run_with_opts(item, "CPU", seq), run_with_opts(item, "CPU", [o for o in seq if o.op is not ST])
  np.testing.assert_array_equal(staged, plain)
  np.testing.assert_allclose(staged.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)

def test_few_row_blocks_split_evenly_over_the_threads():
  """64 rows outermost take blocks of 11, not 13, when the kernel runs on two threads: 5 blocks of 13 run as 3 + 2
  (the second thread idles a sixth of the time), 6 of 11 as 3 + 3. With one thread, or 128 rows (10 blocks of 13 split
  evenly), the block is as large as the registers allow."""
  from lucidgrad.codegen.opt import _second_block
  assert [_second_block(64, 16, 14, t) for t in (1, 2)] == [13, 11]
  assert [_second_block(128, 16, 14, t) for t in (1, 2)] == [13, 13]
  assert _second_block(24, 16, 14, 2) == 12  # two blocks already: the same
  a, b = arr(64, 256), arr(256, 32)
  item = last_kernel(Tensor(a) @ Tensor(b))
  k = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  rows = next(o.amount for o in k.applied if o.op is OptOps.UPCAST and o.axis == 0)
  threads = next((o.amount for o in k.applied if o.op is OptOps.THREAD and o.axis == 0), 1)
  blocks = -(-64 // rows)
  assert blocks >= 4 * threads or blocks % threads == 0, (rows, threads)  # few blocks split evenly (many: at most 1/8 idle)
  np.testing.assert_allclose(run_with_opts(item, "CPU", k.applied).reshape(64, 32), a @ b, rtol=1e-4, atol=1e-4)

def _weight_grad(B: int, ci: int, co: int, h: int):
  """The kernel of a 3x3 conv's weight gradient (no padding), its inputs run, and the float64 reference."""
  x, g = arr(B, ci, h, h), arr(B, co, h - 2, h - 2)
  w = Tensor(arr(co, ci, 3, 3), requires_grad=True)
  Tensor(x).conv2d(w).backward(Tensor(g))
  ref = np.stack([np.einsum("nkyx,ncyx->kc", g.astype(np.float64), x[:, :, i:i + h - 2, j:j + h - 2].astype(np.float64)) for i in range(3) for j in range(3)], -1)
  return last_kernel(w.grad), ref.reshape(co, ci, 3, 3)

def test_a_few_lane_vector_takes_four_reduce_steps():
  """A conv's weight gradient over one input channel blocks its 3x3 window's kx (3 lanes: a vector of 2 and a lane)
  by output channels; four steps of a reduce loop unrolled make its accumulators 4-lane vectors (the MNIST net's conv1
  weight gradient 2.4 -> 1.1 ms). Over 16 input channels the vector is a whole one: no such step."""
  item, ref = _weight_grad(128, 1, 32, 28)
  opts = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer)).applied
  assert any(o.op is OptOps.UNROLL and o.amount == 4 for o in opts), opts
  np.testing.assert_allclose(run_with_opts(item, "CPU", opts).reshape(ref.shape), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
  item, ref = _weight_grad(2, 16, 32, 10)
  opts = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer)).applied
  assert not any(o.op is OptOps.UNROLL and o.amount == 4 for o in opts), opts
  np.testing.assert_allclose(run_with_opts(item, "CPU", opts).reshape(ref.shape), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())

def test_a_few_lane_vector_halves_its_other_block_axis_for_four_steps(avx512_renderer):
  """A 7x7 stride-2 window over 3 channels (ResNet's stem, its weight gradient) blocks kx (7 lanes: 4 + 2 + 1) by 16
  output channels; with four steps of x the body passes the lane budget, and halved to two steps it ran slower than
  none (88 -> 261 ms at full size), so the output channels halve to 8 and the four steps stay (88 -> 52 ms)."""
  B, H, co = 2, 32, 16
  x, g = arr(B, 3, H, H), arr(B, co, H // 2, H // 2)
  w = Tensor(arr(co, 3, 7, 7), requires_grad=True)
  Tensor(x).conv2d(w, stride=2, padding=3).backward(Tensor(g))
  item = last_kernel(w.grad)
  opts = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer)).applied
  assert Opt(OptOps.UPCAST, 0, 8) in opts and any(o.op is OptOps.UNROLL and o.amount == 4 for o in opts), opts
  xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (3, 3), (3, 3)))
  ref = np.stack([np.einsum("nkyx,ncyx->kc", g.astype(np.float64), xp[:, :, i:i + H:2, j:j + H:2]) for i in range(7) for j in range(7)], -1)
  np.testing.assert_allclose(run_with_opts(item, "CPU", opts).reshape(co, 3, 7, 7), ref.reshape(co, 3, 7, 7), rtol=1e-4, atol=1e-4 * np.abs(ref).max())

def test_default_conv_blocks_pixels_by_output_channels():
  """A conv of few input channels (NCHW: its channel sum is too short to vectorise) blocks its pixel row first (a
  vector of 8, along which the weights stay still); the second is the one along which the input stays still -- the
  output channels -- so each loaded input vector serves 8 accumulators. A second pixel axis (rows) would reuse only
  the weights' broadcasts. The image is small, so no block axis is swapped; the reduce loops are, so that the input
  channels' loop is innermost (a step of kx reads the pixel block shifted by one)."""
  x, w = arr(2, 4, 8, 8), arr(16, 4, 3, 3)
  item = last_kernel(Tensor(x).conv2d(Tensor(w), padding=1))
  k = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  lanes = Device["CPU"].renderer.upcast_width  # 8 on AVX2 (the row a whole vector), 16 on AVX-512 (half of one)
  assert [(o.op.name, o.axis, o.amount) for o in k.applied if o.op.name != "THREAD"] == [("UPCAST", 3, 8), ("UPCAST", 1, min(16, lanes)), ("SWAP", 6, 8)]
  np.testing.assert_allclose(run_with_opts(item, "CPU", k.applied).reshape(2, 16, 8, 8), conv_ref(x, w), rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("co,width", [(12, 24), (16, 8)])
def test_default_channels_last_conv_is_a_dot_product(co, width):
  """With 8 or more input channels a conv reads channels-last copies (docs/design/0020). With output channels that
  are not a multiple of CO_VECTOR_MIN, or rows shorter than CO_VECTOR_MIN_WIDTH, its weight is channels-last too: the
  channel sum is contiguous in input and weight, so it is unrolled into vector accumulators (one per output of a
  pixel x output-channel block)."""
  x, w = arr(2, 16, width, width), arr(co, 16, 3, 3)
  item = last_kernel(Tensor(x).conv2d(Tensor(w), padding=1))
  k = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  assert ("UNROLL", 4, dot_lanes(16)) in [(o.op.name, o.axis, o.amount) for o in k.applied]  # the 16 input channels
  assert {o.axis for o in k.applied if o.op.name == "UPCAST"} == {1, 3}  # output channels by pixels
  np.testing.assert_allclose(run_with_opts(item, "CPU", k.applied).reshape(2, co, width, width), conv_ref(x, w), rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("co,width", [(16, 24), (32, 26), (64, 29)])
def test_default_conv_vectors_its_output_channels(co, width):
  """With output channels a multiple of CO_VECTOR_MIN the weight is stored with them innermost, so they are the
  vector: every load that moves along them walks memory (the weight), the input is broadcast. They are upcast, and
  their UPCAST is swapped innermost (the vector's lanes) past the pixels' block; the outputs, a plane apart in NCHW,
  are stored as strided runs. Rows of CO_VECTOR_MIN_WIDTH or more: one that divides into blocks evenly, an even one
  that does not divide by the vector, a prime one."""
  x, w = arr(2, 16, width, width), arr(co, 16, 3, 3)
  item = last_kernel(Tensor(x).conv2d(Tensor(w), padding=1))
  k = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  ups = [r for r in k.axes if r.arg[1].name == "UPCAST"]
  store = next(u for u in k.sink.toposort if u.op is Ops.STORE and u.src[0].src[0].op is Ops.DEFINE_GLOBAL)  # not a staging copy's
  assert ups and stride_of(store.src[0].src[1], ups[-1]) == width * width, k.applied  # the output channels' lanes are innermost
  assert not any(o.op.name == "UNROLL" for o in k.applied)  # no dot product: no lane sum after the reduce
  # with a block of pixels (a prime row has none) the innermost reduce loop is the input channels' (16), not kx's: a
  # step of kx re-reads the pixel block shifted by one
  if len(ups) > 1: assert [s for s, t in zip(k.sizes(), k.kinds()) if t.name == "REDUCE"][-1] == 16, k.applied
  np.testing.assert_allclose(run_with_opts(item, "CPU", k.applied).reshape(2, co, width, width), conv_ref(x, w), rtol=1e-4, atol=1e-4)
  src = get_program(item.ast, Device["CPU"].renderer, k.applied).src
  assert "__fma_float32x" in src  # the block's multiply-adds are vector ops
  # each vector of channels is stored a lane per plane by one strided store (a loop in C, renderer.strided_stores)
  assert re.search(rf"for \(int lane = 0; lane < \d+; lane\+\+\) \(data0\+\w+\)\[lane\*{width * width}\] = acc\d+\[lane\];", src), src

@pytest.mark.parametrize("wide", [False, True])
def test_default_conv_stages_a_weight_panel_its_rows_share(wide, monkeypatch, avx512_renderer):
  """The weight's panel of a block of output channels is staged where the rows of the image share it, even where one
  block spans the whole row (14 wide: its sharers are the image's 14 rows, not the row's one block). With
  WALKER_BLOCKS_WIDE the channels take two vectors (twice the multiply-adds per broadcast input value), else one.
  Values against float64."""
  import lucidgrad.codegen.opt as opt
  monkeypatch.setattr(opt, "WALKER_BLOCKS_WIDE", wide)
  lanes = Device["CPU"].renderer.upcast_width
  x, w = arr(2, 32, 14, 14), arr(64, 32, 3, 3)
  item = last_kernel(Tensor(x).conv2d(Tensor(w), padding=1))
  k = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  ops = [(o.op.name, o.axis, o.amount) for o in k.applied]
  assert ("UPCAST", 1, min((1 + wide) * lanes, 64)) in ops and ("UPCAST", 3, 14) in ops, ops  # channels by the whole row
  assert any(op == "STAGE" and amt == 2 for op, _, amt in ops), ops  # the weight is buffer 2
  np.testing.assert_allclose(run_with_opts(item, "CPU", k.applied).reshape(2, 64, 14, 14), conv_ref(x, w), rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("row", [7, 12, 14, 28, 3])
def test_default_elementwise_row_no_vector_divides_is_upcast_whole(row):
  """An elementwise kernel's contiguous row that no full or half vector divides (ResNet's 7x7 and 14x14 maps, read
  beside a per-channel bias, keep their rows as an axis) takes the whole row, more than 4 and up to two vectors, as
  vectors of the powers of two it sums to; it ran a lane at a time. Values against NumPy."""
  lanes = Device["CPU"].renderer.upcast_width
  x, b = arr(2, 5, 3, row), arr(5)
  item = last_kernel((Tensor(x) + Tensor(b).reshape(1, -1, 1, 1)).relu())
  k = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  ups = [o.amount for o in k.applied if o.op is OptOps.UPCAST]
  want = next((a for a in (lanes, lanes // 2) if row % a == 0), row if 4 < row <= 2 * lanes else None)
  assert ups == ([want] if want else []), k.applied  # a row of 3 stays scalar: a vector of 2 and a lane save nothing
  np.testing.assert_array_equal(run_with_opts(item, "CPU", k.applied).reshape(x.shape), np.maximum(x + b.reshape(1, -1, 1, 1), 0))

@pytest.mark.parametrize("perm", [(0, 2, 3, 1), (0, 2, 1), (1, 0)], ids=str)
def test_default_transpose_walks_its_loads_innermost(perm):
  """A copy into another axis order (NCHW -> NHWC) vectors the stored axis, whose lanes are then gathered from as
  many runs of the input: the loop that those runs walk goes innermost, inside the stored axis's blocks, so the runs
  stream one block's lanes at a time. Values against NumPy."""
  shape = {(0, 2, 3, 1): (2, 32, 6, 10), (0, 2, 1): (3, 40, 32), (1, 0): (24, 64)}[perm]
  x = arr(*shape)
  item = last_kernel(Tensor(x).permute(*perm).contiguous())
  k = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  assert any(o.op is OptOps.SWAP for o in k.applied), k.applied
  loads = [u.src[0] for u in k.sink.toposort if u.op is Ops.LOAD]
  loops = [r for r in k.axes if r.arg[1] in (AxisType.LOOP, AxisType.THREAD) and r.src[0].arg > 1]
  assert all(stride_of(l.src[1], loops[-1]) == 1 for l in loads), k.applied  # the innermost loop walks the input
  np.testing.assert_array_equal(run_with_opts(item, "CPU", k.applied).reshape(x.transpose(perm).shape), x.transpose(perm))

@pytest.mark.parametrize("device", ["CPU", "PYTHON"])
def test_padded_output_rows_clamp_the_padding_gate_too(device):
  """A 2x2 image, a 7x7 window, padding 3, its 2 output rows padded to 4: output row 3 with window row 0 reads image
  row 0 (in bounds, so its padding gate is true), but clamped to output row 1 it would read row -2. The gate is
  clamped with the index, so the load stays off (PYTHON raises on an out-of-bounds read)."""
  x, w = arr(1, 1, 2, 2), arr(1, 1, 7, 7)
  item = last_kernel(Tensor(x, device=device).conv2d(Tensor(w, device=device), padding=3))
  assert [(r.arg[1].name, r.src[0].arg) for r in Kernel(item.ast, Device[device].renderer).axes][0] == ("LOOP", 2)
  xp = np.pad(x[0, 0].astype(np.float64), 3)
  ref = np.array([[(xp[i:i+7, j:j+7] * w[0, 0]).sum() for j in range(2)] for i in range(2)])
  np.testing.assert_allclose(run_with_opts(item, device, [Opt(PAD, 0, 4)]).reshape(2, 2), ref, rtol=1e-5, atol=1e-5)

def dot_lanes(size: int) -> int:
  """The dot-product form's vector along a reduce of `size`: the target's vector, or half of it where that does not
  divide the reduce or would take fewer than DOT_STEPS steps along it (opt/__init__.py)."""
  from lucidgrad.codegen.opt import DOT_STEPS
  w = Device["CPU"].renderer.upcast_width
  fit = [n for n in (w, w // 2) if n >= 4 and size % n == 0]
  return next((n for n in fit if size // n >= DOT_STEPS), fit[-1])

@pytest.mark.parametrize("m,n,k", [(7, 13, 24), (1, 50, 16), (128, 5, 40), (1, 64, 64)])
def test_default_x_at_w_t_vectorises_the_reduce(m, n, k):
  """x @ W.T (every Linear): both operands walk memory contiguously only along the reduce axis. Where W's columns take
  no whole vector, or one row block would pay for a staged panel alone (a matrix-vector product), the vectors go along
  the reduce (an UNROLL by the vector width into one vector accumulator per output) and the outputs are blocked by
  scalar lanes within the vector registers (a * b accumulators, b live operands and one more); no output axis gets a
  vector of strided loads. A vector that does not divide the reduce halves (24 on AVX-512's 16). Sizes with primes and
  1 pad or shrink the block; values against NumPy."""
  r, lanes = Device["CPU"].renderer, dot_lanes(k)
  x, w = arr(m, k), arr(n, k)
  item = last_kernel(Tensor(x) @ Tensor(w).T)
  kern = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  unrolls = [o.amount for o in kern.applied if o.op is OptOps.UNROLL]
  ups = [o.amount for o in kern.applied if o.op is OptOps.UPCAST]
  assert unrolls == [lanes] and (len(ups) < 2 or ups[0] * ups[1] + min(ups) + 1 <= r.vector_registers), kern.applied
  np.testing.assert_allclose(run_with_opts(item, "CPU", kern.applied).reshape(m, n), x @ w.T, rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("m,n,k", [(40, 96, 64), (128, 64, 48), (30, 32, 7)])
def test_default_x_at_w_t_stages_w_with_its_columns_innermost(m, n, k):
  """x @ W.T whose columns take whole vectors and whose rows make two or more blocks: W's panel (the block's columns of
  every k) is staged with the columns innermost (the copy transposes it), so the columns are the vector as in a @ b,
  and no lane sum follows the loop (docs/design/0010, transposed panels). A reduce of 7 (prime); values against NumPy."""
  r = Device["CPU"].renderer
  x, w = arr(m, k), arr(n, k)
  item = last_kernel(Tensor(x) @ Tensor(w).T)
  kern = hand_coded_opts(Kernel(item.ast, r))
  ops = [(o.op.name, o.axis, o.amount) for o in kern.applied]
  assert not any(op == "UNROLL" for op, _, _ in ops), ops
  cols = next(a for op, ax, a in ops if op == "UPCAST" and ax == 1)
  assert cols % r.upcast_width == 0 and ("STAGE", 0, 2) in ops, ops  # W is buffer 2, staged at the column block
  np.testing.assert_allclose(run_with_opts(item, "CPU", kern.applied).reshape(m, n), x @ w.T, rtol=1e-4, atol=1e-4)

def test_default_linear_with_bias_keeps_its_row_block():
  """A Linear's bias is an epilogue on the staged block: the block's lanes are vectors, so the lane budget keeps its
  rows (GPT-2's c_attn had lost them to the scalar budget: 32 columns x 1 row, 0.4x)."""
  x, w, b = arr(128, 96), arr(64, 96), arr(64)
  item = last_kernel(Tensor(x) @ Tensor(w).T + Tensor(b))
  kern = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  ups = [(o.axis, o.amount) for o in kern.applied if o.op is OptOps.UPCAST]
  assert len(ups) == 2 and any(o.op is OptOps.STAGE for o in kern.applied), kern.applied
  np.testing.assert_allclose(run_with_opts(item, "CPU", kern.applied).reshape(128, 64), x @ w.T + b, rtol=1e-4, atol=1e-4)

def test_default_x_at_w_t_streams_the_larger_operand_once():
  """The block loop inside re-reads what moves along it: the smaller operand (x, 8 rows) stays in cache while W's
  600 rows are the outer loop, read once."""
  x, w = arr(8, 64), arr(600, 64)
  item = last_kernel(Tensor(x) @ Tensor(w).T)
  kern = hand_coded_opts(Kernel(item.ast, Device["CPU"].renderer))
  w_lanes = next(o.amount for o in kern.applied if o.op is OptOps.UPCAST and o.axis == 1)  # W's rows: output axis 1
  assert kern.sizes()[0] == 600 // w_lanes and kern.kinds()[0].name in ("LOOP", "THREAD"), kern.applied  # outermost
  np.testing.assert_allclose(run_with_opts(item, "CPU", kern.applied).reshape(8, 600), x @ w.T, rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("m,n,k,cache_kb,form", [(200, 512, 96, 64, "rows tiled"), (70, 512, 256, 64, "rows tiled"),
                                                  (600, 768, 64, 128, "rows tiled"), (1200, 256, 96, 400, "rows"),
                                                  (60, 512, 96, 64, "columns"), (200, 128, 96, 64, "columns")])
def test_default_matmul_stages_the_rows_block_where_many_column_blocks_share_it(m, n, k, cache_kb, form, monkeypatch, avx512_renderer):
  """a @ b whose A is larger than the L2 (shrunk here) and whose 8 column blocks or more share each rows block: A's
  block of rows is staged reduce-major at the rows loop, which is outermost (inside the reduce's tiles), and B's rows
  are read in place; where B's share of the whole reduce passes a quarter of the L2 the reduce is tiled, by the largest
  divisor whose share fits (ROWS_PANEL_CACHE_SHARE), and B's tile is staged at the TILE loop. A within the L2 (60 x 96) or 4 column blocks (n = 128) keep B's
  panel staged, the columns outermost. Values against NumPy."""
  from lucidgrad.codegen.opt import ROWS_PANEL_CACHE_SHARE
  r = Device["CPU"].renderer
  monkeypatch.setattr(r, "cache_bytes", cache_kb << 10)
  a, b = arr(m, k), arr(k, n)
  item = last_kernel(Tensor(a) @ Tensor(b))
  kern = hand_coded_opts(Kernel(item.ast, r))
  ops = [(o.op.name, o.axis, o.amount) for o in kern.applied]
  tiles, outer = [amt for op, _, amt in ops if op == "TILE"], int("tiled" in form)
  if form == "columns": assert ("STAGE", 0, 2) in ops and not tiles, ops  # B is buffer 2
  else:
    share = ROWS_PANEL_CACHE_SHARE * (cache_kb << 10)
    want = [max(d for d in range(8, k) if k % d == 0 and d * n * 4 <= share)] if outer else []
    assert outer == (k * n * 4 > share) and ("STAGE", outer, 1) in ops and tiles == want, ops  # A is buffer 1
    assert (("STAGE", 0, 2) in ops) == bool(outer), ops  # and a tile's B, once per tile (it fits the scratch here)
    assert kern.sizes()[outer] == -(-m // next(amt for op, ax, amt in ops if op == "UPCAST" and ax == 0)), ops  # the rows, outermost
  np.testing.assert_allclose(run_with_opts(item, "CPU", kern.applied).reshape(m, n), a @ b, rtol=1e-4, atol=1e-4)

def test_default_batched_matmul_stages_each_rows_block_inside_its_batch(monkeypatch):
  """A batch of a @ b products takes the rows-outer form inside the batch loop (both operands move along it; an axis
  along which only one moves is a conv's, which keeps its form). Values against NumPy."""
  r = Device["CPU"].renderer
  monkeypatch.setattr(r, "cache_bytes", 400 << 10)  # each A (1200 x 96) past it, each B (96 x 256) within its share
  a, b = arr(3, 1200, 96), arr(3, 96, 256)
  item = last_kernel(Tensor(a) @ Tensor(b))
  kern = hand_coded_opts(Kernel(item.ast, r))
  ops = [(o.op.name, o.axis, o.amount) for o in kern.applied]
  assert ("STAGE", 1, 1) in ops and kern.sizes()[0] == 3, ops  # A's rows block at the rows loop, inside the batch's
  np.testing.assert_allclose(run_with_opts(item, "CPU", kern.applied).reshape(3, 1200, 256), a @ b, rtol=1e-4, atol=1e-4)

def test_default_matmuls_on_random_shapes_and_layouts_keep_their_values(monkeypatch):
  """Random products under the heuristic with the L2 shrunk to 64 KB, so the rows-outer form (tiled or not) and the
  columns-outer one both come up at small sizes: sizes that no block divides (a reduce with no divisor takes no tiles), operands read transposed, batches, an
  epilogue, a bias. Values against NumPy; the forms taken are counted so the test checks what it means to."""
  r = Device["CPU"].renderer
  monkeypatch.setattr(r, "cache_bytes", 64 << 10)
  gen, forms = np.random.default_rng(15), set()
  for case in range(14):
    m, n, batch = int(gen.integers(20, 300)), int(gen.integers(200, 700)), int(gen.integers(1, 3))
    k = int(gen.integers(17, 400)) if case % 2 else 16 * int(gen.integers(2, 25))  # tiles need a divisor
    a, b = arr(batch, m, k), arr(batch, k, n)
    ta = Tensor(np.ascontiguousarray(a.transpose(0, 2, 1))).transpose(1, 2) if case % 3 == 1 else Tensor(a)
    tb = Tensor(np.ascontiguousarray(b.transpose(0, 2, 1))).transpose(1, 2) if case % 4 == 2 else Tensor(b)
    out, ref = ta @ tb, a @ b
    if case % 5 == 3: out, ref = out.relu(), np.maximum(ref, 0)
    if case % 5 == 4: bias = arr(n); out, ref = out + Tensor(bias), ref + bias
    item = last_kernel(out)
    kern = hand_coded_opts(Kernel(item.ast, r))
    staged = {o.amount for o in kern.applied if o.op is OptOps.STAGE}
    forms.add(("rows" if 1 in staged else "columns" if staged else "none") + (" tiled" if any(o.op is OptOps.TILE for o in kern.applied) else ""))
    np.testing.assert_allclose(run_with_opts(item, "CPU", kern.applied).reshape(ref.shape), ref, rtol=1e-4, atol=1e-4,
                               err_msg=f"case {case}: {batch}x{m}x{n}x{k} {kern.applied}")
  assert {"rows", "rows tiled", "columns"} <= forms, forms

def test_default_matmul_with_an_epilogue_keeps_b_staged_where_its_reduce_needs_tiles(monkeypatch):
  """An epilogue after the reduce (a relu) cannot carry a running sum through the output, so a matmul whose B is
  too large for the rows-outer form untiled keeps the columns-outer form: B's panel staged. Values against NumPy."""
  r = Device["CPU"].renderer
  monkeypatch.setattr(r, "cache_bytes", 64 << 10)
  a, b = arr(70, 256), arr(256, 512)
  item = last_kernel((Tensor(a) @ Tensor(b)).relu())
  kern = hand_coded_opts(Kernel(item.ast, r))
  ops = [(o.op.name, o.amount) for o in kern.applied]
  assert ("STAGE", 2) in ops and not any(op == "TILE" for op, _ in ops), ops
  np.testing.assert_allclose(run_with_opts(item, "CPU", kern.applied).reshape(70, 512), np.maximum(a @ b, 0), rtol=1e-4, atol=1e-4)

def test_default_matmul_blocks_within_the_registers_and_stages_b():
  """The heuristic's matmul: 2 vectors of columns (16 on AVX2) by at most (16 registers - 4) / 2 = 6 rows (AVX-512: 32
  columns by up to 14), the rows padded to a multiple; B's panel (its columns of every row, 640 bytes apart) staged at the
  column block, looped outermost."""
  r = Device["CPU"].renderer
  cols, room = 2 * r.upcast_width, (r.vector_registers - 4) // 2
  a, b = arr(100, 40), arr(40, 160)
  item = last_kernel(Tensor(a) @ Tensor(b))
  k = hand_coded_opts(Kernel(item.ast, r))
  (_, c), (_, rows), stage = [(o.op.name, o.amount) for o in k.applied if o.op.name in ("UPCAST", "STAGE")]
  assert c == cols and stage == ("STAGE", 2), k.applied
  assert room // 2 < rows <= room and (-100) % rows <= 100 // 32, k.applied  # as many rows as fit, little padding
  assert k.kinds()[0].name in ("LOOP", "THREAD") and k.sizes()[0] == 160 // cols  # the column blocks, outermost
  np.testing.assert_allclose(run_with_opts(item, "CPU", k.applied).reshape(100, 160), a @ b, rtol=1e-5, atol=1e-5)
  # a conv's weights are contiguous per output channel: nothing to stage
  conv = hand_coded_opts(Kernel(item_for("conv3x3", "CPU")[0].ast, Device["CPU"].renderer))
  assert all(o.op.name != "STAGE" for o in conv.applied)

@pytest.mark.parametrize("name", ["sum", "max", "argmax", "softmax", "layer_norm", "bmm"])
def test_default_opts_pad_an_axis_no_vector_divides(name):
  """An axis of two vectors or more that no vector width divides pads to whole vectors instead of running scalar: a
  reduce's extra lanes add its identity (777, 515, 1001 and 77 columns), a matmul-like block's first axis takes the
  fewest vector ops over its padded length (77 x 77 outputs). Values against NumPy, extremes included (a max that
  padding with 0 instead of -inf would get wrong: every value negative)."""
  r = Device["CPU"].renderer
  gen = np.random.default_rng(3)
  x = gen.standard_normal((30, 777)).astype(np.float32)
  if name == "sum": t, ref = Tensor(x).sum(1), x.sum(1)
  if name == "max": x = -np.abs(x[:, :515]) - 1; t, ref = Tensor(x).amax(1), x.max(1)
  if name == "argmax": x = -np.abs(gen.standard_normal((20, 1001)).astype(np.float32)) - 1; t, ref = Tensor(x).argmax(1), x.argmax(1)
  if name == "softmax":
    x = gen.standard_normal((8, 1003)).astype(np.float32); e = np.exp(x - x.max(1, keepdims=True))
    t, ref = Tensor(x).softmax(-1), e / e.sum(1, keepdims=True)
  if name == "layer_norm":
    x = gen.standard_normal((40, 77)).astype(np.float32)
    t, ref = Tensor(x).layer_norm((77,)), (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
  if name == "bmm":
    a, b = gen.standard_normal((3, 77, 64)).astype(np.float32), gen.standard_normal((3, 64, 77)).astype(np.float32)
    t, ref = Tensor(a) @ Tensor(b), a @ b
  # the reduce's kernel (the last one with a reduce: argmax's max comes first)
  items, _, _ = create_schedule([t.uop])
  at = max(i for i, it in enumerate(items) if it.kind == "kernel" and any(u.op in (Ops.REDUCE, Ops.REDUCE_AXIS) for u in it.ast.toposort))
  run_schedule(items[:at])
  item = items[at]
  kern = hand_coded_opts(Kernel(item.ast, r))
  def padded(applied) -> bool:
    return any(o.op is OptOps.PADTO and o.amount >= 4 for o in applied) and any(o.op in (OptOps.UPCAST, OptOps.UNROLL) and o.amount >= 8 for o in applied)
  assert padded(kern.applied), (kern.name, kern.applied)
  got = run_with_opts(item, "CPU", kern.applied)
  if at < len(items) - 1: got = t.numpy()  # a kernel after the reduce finishes the value: the whole chain's, then
  got = got.reshape(ref.shape)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4) if ref.dtype != np.int64 else np.testing.assert_array_equal(got, ref)

def test_default_dot_product_pads_a_reduce_no_vector_divides():
  """A reduce whose operands are contiguous only along it (x @ W.T; argmax's second reduce once the arange it reads is
  a buffer, as when another realize computed it first) pads to whole vectors where no vector divides it, instead of
  running rows side by side with each lane a scalar product (a full-suite order showed argmax over 1001 columns taking
  [UPCAST 4]). Values against NumPy."""
  r = Device["CPU"].renderer
  gen = np.random.default_rng(5)
  kept = Tensor.arange(1001, dtype=dtypes.int32).realize()  # noqa: F841 -- alive, so argmax's arange is read from it
  x = -np.abs(gen.standard_normal((20, 1001)).astype(np.float32)) - 1
  a, w = gen.standard_normal((3, 1001)).astype(np.float32), gen.standard_normal((40, 1001)).astype(np.float32)
  for t, ref in ((Tensor(x).argmax(1), x.argmax(1)), (Tensor(a) @ Tensor(w).T, a @ w.T)):
    items, _, _ = create_schedule([t.uop])
    at = max(i for i, it in enumerate(items) if it.kind == "kernel" and any(u.op is Ops.REDUCE_AXIS for u in it.ast.toposort))
    kern = hand_coded_opts(Kernel(items[at].ast, r))
    if ref.dtype == np.int64:  # (x @ W.T at this size stages W's panel instead: its values are checked)
      assert any(o.op is OptOps.PADTO for o in kern.applied) and any(o.op is OptOps.UNROLL and o.amount >= 8 for o in kern.applied), kern.applied
    got = t.numpy()
    np.testing.assert_array_equal(got, ref) if ref.dtype == np.int64 else np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
