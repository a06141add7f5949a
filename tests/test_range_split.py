"""Range splitting (docs/design/0016): a kernel is cut into boxes of its output where every load gate is decided.
Values of cat, stack and pad (every dim, uneven pieces, negative and zero-width pads, nested, with a reduce or a conv
after) and their gradients, held to NumPy and torch on CPU and PYTHON; results bit-identical to the kernels without
the split (SPLIT_RANGES=0); and the work of a cat kernel -- loads it executes -- independent of how many pieces."""
import numpy as np
import pytest
import torch
from lucidgrad import Tensor
from lucidgrad.device import Device
from lucidgrad.helpers import Context
from lucidgrad.uop.ops import Ops
from lucidgrad.schedule import create_schedule
from lucidgrad.codegen import get_program, OptOps

RNG = np.random.default_rng(16)
def r(*shape): return RNG.standard_normal(shape).astype(np.float32)

def both_ways(fn):
  """fn() realized with the split and without: the split only moves which loop computes an element, so the bits agree."""
  with Context(SPLIT_RANGES=1): a = fn().numpy()
  with Context(SPLIT_RANGES=0): b = fn().numpy()
  np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
  return a

# ---------------------------------------------------------------- values against NumPy

@pytest.mark.parametrize("n", [1, 2, 3, 17, 300])
def test_cat_of_n_pieces(n):
  xs = [r(int(RNG.integers(0, 5)), 3) for _ in range(n)]
  np.testing.assert_array_equal(both_ways(lambda: Tensor.cat(*[Tensor(x) for x in xs], dim=0)), np.concatenate(xs, 0))

@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_cat_uneven_every_dim(dim):
  sizes = [3, 1, 4, 2]
  xs = [r(*[s if d == dim % 3 else 3 + d for d in range(3)]) for s in sizes]
  np.testing.assert_array_equal(both_ways(lambda: Tensor.cat(*[Tensor(x) for x in xs], dim=dim)), np.concatenate(xs, dim))

def test_cat_of_cats_and_stack_keeps_negative_zero():
  a, b, c = r(2, 3), np.array([[-0.0, 1.0, -0.0]], np.float32), r(4, 3)
  out = both_ways(lambda: Tensor.cat(Tensor.cat(Tensor(a), Tensor(b)), Tensor(c)).cat(Tensor(b), dim=0))
  want = np.concatenate([a, b, c, b])
  np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))  # -0.0 as torch.cat keeps it
  np.testing.assert_array_equal(both_ways(lambda: Tensor.stack(Tensor(a), Tensor(a * 2), dim=1)), np.stack([a, a * 2], 1))

@pytest.mark.parametrize("pads", [((1, 2), (3, 0)), ((0, 0), (0, 5)), ((-1, 2), (1, -3)), ((2, 2), (-2, -2)), ((0, 0), (0, 0))])
def test_pad(pads):
  x = r(6, 7)
  np.testing.assert_array_equal(both_ways(lambda: Tensor(x).pad(pads)), np.pad(x[max(0, -pads[0][0]):6 - max(0, -pads[0][1]), max(0, -pads[1][0]):7 - max(0, -pads[1][1])],
                                                                           [(max(0, b), max(0, a)) for b, a in pads]))

def test_nested_pads_with_a_reduce_after():
  x = r(5, 6)
  want = np.pad(np.pad(x, ((1, 0), (2, 1))) * 2 + 1, ((0, 3), (1, 1))).sum(1)
  np.testing.assert_allclose(both_ways(lambda: (Tensor(x).pad(((1, 0), (2, 1))) * 2 + 1).pad(((0, 3), (1, 1))).sum(1)), want, rtol=1e-6)

def test_conv_with_padding():
  x, w = r(2, 3, 9, 8), r(4, 3, 3, 3)
  want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=(1, 2)).numpy()
  np.testing.assert_allclose(both_ways(lambda: Tensor(x).conv2d(Tensor(w), padding=(1, 2))), want, rtol=1e-5, atol=1e-5)

# ---------------------------------------------------------------- gradients against torch

def grads(fn, arrays, lib):
  ts = [Tensor(a, requires_grad=True) if lib == "lg" else torch.tensor(a, requires_grad=True) for a in arrays]
  w = np.random.default_rng(1).standard_normal(tuple(fn(*ts).shape)).astype(np.float32)
  out = fn(*ts)
  (out * (Tensor(w) if lib == "lg" else torch.tensor(w))).sum().backward()
  return [t.grad.numpy() for t in ts]

@pytest.mark.parametrize("case", ["cat", "stack", "pad", "pad_negative", "conv"])
def test_gradients(case):
  fns = {"cat": (lambda *t: t[0].cat(t[1], t[2], dim=1), lambda *t: torch.cat(t, 1), [r(3, 2), r(3, 5), r(3, 1)]),
         "stack": (lambda *t: Tensor.stack(*t, dim=0), lambda *t: torch.stack(t, 0), [r(2, 3), r(2, 3)]),
         "pad": (lambda t: t.pad(((1, 2), (0, 3))), lambda t: torch.nn.functional.pad(t, (0, 3, 1, 2)), [r(4, 5)]),
         "pad_negative": (lambda t: t.pad(((-1, 2), (2, -2))), lambda t: torch.nn.functional.pad(t, (2, -2, -1, 2)), [r(4, 5)]),
         "conv": (lambda x, w: x.conv2d(w, padding=1), lambda x, w: torch.nn.functional.conv2d(x, w, padding=1), [r(2, 3, 6, 5), r(4, 3, 3, 3)])}
  f_lg, f_t, arrays = fns[case]
  with Context(SPLIT_RANGES=1): got = grads(f_lg, arrays, "lg")
  with Context(SPLIT_RANGES=0): unsplit = grads(f_lg, arrays, "lg")
  for g, u, t in zip(got, unsplit, grads(f_t, arrays, "torch")):
    np.testing.assert_array_equal(g, u)
    np.testing.assert_allclose(g, t, rtol=1e-5, atol=1e-5)

# ---------------------------------------------------------------- the PYTHON device (the reference)

def test_on_python_device():
  xs = [r(2, s) for s in (1, 3, 2)]
  out = Tensor.cat(*[Tensor(x, device="PYTHON") for x in xs], dim=1).pad(((1, 0), (-1, 2)))
  np.testing.assert_array_equal(out.numpy(), np.pad(np.concatenate(xs, 1)[:, 1:], ((1, 0), (0, 2))))
  ts = [Tensor(x, device="PYTHON", requires_grad=True) for x in xs]
  (Tensor.cat(*ts, dim=1) * Tensor(np.arange(12, dtype=np.float32).reshape(2, 6), device="PYTHON")).sum().backward()
  np.testing.assert_array_equal(np.concatenate([t.grad.numpy() for t in ts], 1), np.arange(12, dtype=np.float32).reshape(2, 6))

# ---------------------------------------------------------------- the work a kernel does

def executed_loads(t: Tensor) -> tuple[int, int]:
  """(elements loaded from buffers, of which under a gate that is not a constant) by t's one kernel, per run: each
  LOAD weighted by the iterations of the loops around it and its lanes."""
  items, _, _ = create_schedule([t.uop])
  assert len(items) == 1
  spec = get_program(items[0].ast, Device["CPU"].renderer)
  loads = gated = 0
  open_: list = []
  for u in spec.uops:
    if u.op is Ops.RANGE: open_.append(u.src[0].arg)
    elif u.op is Ops.END: open_.pop()
    elif u.op is Ops.LOAD and u.src[0].op is Ops.INDEX and u.src[0].src[0].op is Ops.DEFINE_GLOBAL:
      n = int(np.prod(open_)) * u.dtype.count
      loads += n
      gated += n if len(u.src[0].src) > 2 and u.src[0].src[2].op is not Ops.CONST else 0
  return loads, gated

@pytest.mark.parametrize("n", [4, 64])
def test_cat_work_does_not_grow_with_pieces(n):
  ts = [Tensor(r(256)).realize() for _ in range(n)]
  loads, gated = executed_loads(Tensor.cat(*ts))
  assert (loads, gated) == (256 * n, 0)  # one load per output element, none gated
  with Context(SPLIT_RANGES=0): assert executed_loads(Tensor.cat(*ts))[0] == 256 * n * n  # what it was: every piece per element

def test_pad_has_no_gates_and_a_conv_keeps_its_window_gates():
  assert executed_loads(Tensor(r(64, 64)).realize().pad(((1, 1), (1, 1))))[1] == 0
  assert executed_loads(Tensor(r(8, 9)).realize().pad(((2, -1), (0, 0))).sum(1))[1] == 0
  # a pad of the reduced axis is a gate on a reduce range: reduce ranges are not split (one accumulator, one loop; 36
  # elements, more than a vector of any target, so it is not unrolled whole)
  assert executed_loads(Tensor(r(8, 33)).realize().pad(((2, -1), (0, 3))).sum(1))[1] == 7 * 36
  # a conv's gates read the window (a reduce range) too: decided only in boxes that break its upcast, so not split
  # (4 input channels: an NCHW conv that reads its padding through gates; from 8 the pad is in the channels-last copy)
  x, w = Tensor(r(2, 4, 16, 16)).realize(), Tensor(r(6, 4, 3, 3)).realize()  # (6 channels: the weight read as stored)
  with Context(SPLIT_RANGES=0): unsplit = executed_loads(x.conv2d(w, padding=1))
  assert executed_loads(x.conv2d(w, padding=1)) == unsplit

def test_boxes_with_a_reduce_and_no_loop_are_not_cut():
  """Fuzz seed 49: boxes of one element each holding a reduce were stored at neighbouring constant addresses, codegen
  grouped them into one vector store whose lanes read two different reduce loops, and linearize raised."""
  from lucidgrad.testing import fuzz
  rep = fuzz.run(1, 49, 30, fuzz.DEFAULT_GROUPS, minimise_budget=0, log=lambda s: None)
  assert not rep.failing, rep.summary(fuzz.DEFAULT_GROUPS)

def test_a_scatter_is_cut_along_its_own_loop_not_the_output():
  """index_select's gradient (a scatter of a (3, 4) gradient into (3, 8)) fused with a roll's: the boxes cover the
  scatter's loop over its 4 updates. They were cut over the output's 8 columns, so one box read the 4-element index
  out of bounds and added garbage into the gradient, only sometimes (found by the fuzzer, seed 177)."""
  from lucidgrad.codegen.opt import Kernel
  from lucidgrad.codegen.split import split_boxes
  from lucidgrad.uop.ops import AxisType
  x, idx, w = r(3, 8), np.array([7, 6, 5, 1], np.int32), r(3, 4)
  v = Tensor(x, requires_grad=True)
  (v.index_select(1, Tensor(idx)).roll((-1, -2), (0, 1)) * Tensor(w)).sum().backward()
  items, _, _ = create_schedule([v.grad.uop])
  k = Kernel(items[-1].ast, Device["CPU"].renderer)  # the scatter's adds, after the kernel that fills its zeros
  loops = {rg.arg[0][0]: rg.src[0].arg for rg in k.axes if rg.arg[1] is AxisType.LOOP}
  for box in split_boxes(k):
    for rg in box.axes:
      if rg.arg[1] is AxisType.LOOP: assert rg.src[0].arg <= loops[rg.arg[0][0]], (rg.arg, rg.src[0].arg, loops)
  ref = torch.tensor(x, dtype=torch.float64, requires_grad=True)
  (ref.index_select(1, torch.tensor(idx)).roll((-1, -2), (0, 1)) * torch.tensor(w, dtype=torch.float64)).sum().backward()
  np.testing.assert_allclose(v.grad.numpy(), ref.grad.numpy(), rtol=1e-6, atol=1e-6)

def test_an_in_place_update_still_splits_but_a_scatter_does_not():
  """A kernel that stores into a buffer it reads is split only where each element is read where it is stored: an
  optimiser's in-place update of a flat buffer by a cat of gradients (each element its own index: 2 boxes here), not a
  scatter whose stores go where loaded indices say (docs/design/0016, addendum: boxes are not ordered)."""
  from lucidgrad.codegen.opt import Kernel
  from lucidgrad.codegen.split import split_boxes
  a, b = r(5), r(7)
  x = Tensor(np.zeros(12, np.float32)).contiguous().realize()
  x.assign(x * 0.5 + Tensor(a).cat(Tensor(b)))
  items, _, _ = create_schedule([x.uop])
  assert len(split_boxes(Kernel(items[-1].ast, Device["CPU"].renderer))) == 2
  np.testing.assert_array_equal(x.numpy(), np.concatenate([a, b]))
  v = Tensor(np.array([1.5]), requires_grad=True)
  g = v.gather(0, Tensor(np.zeros(4, np.int32)))
  ((g * Tensor(np.array([1., 2., 3., 4.]))).sum() + g[1] * Tensor(np.array(5.))).backward()  # g[1]'s gate cuts at 1 and 2
  items, _, _ = create_schedule([v.grad.uop])
  assert len(split_boxes(Kernel(items[-1].ast, Device["CPU"].renderer))) == 1

@pytest.mark.parametrize("shape", [(24, 64, 141), (40, 96, 130), (3, 32, 200)], ids=str)
@pytest.mark.parametrize("transposed", [False, True], ids=["a_b", "x_wT"])
def test_a_reduce_whose_contiguous_output_axis_has_a_rest_is_peeled(shape, transposed):
  """A matmul whose columns are not a whole number of blocks of two vectors (GPT-2's 50257 logits) is cut after the last
  whole block (split._peels): the body takes the vector layouts, the last few columns are a box of their own. Both
  boxes' values against float64 (the rest's sum may be unrolled in another order, so not bit for bit)."""
  from lucidgrad.codegen.split import split_boxes
  from lucidgrad.codegen.opt import Kernel
  M, K, N = shape
  a, b = r(M, K), r(N, K) if transposed else r(K, N)
  t = Tensor(a) @ (Tensor(b).T if transposed else Tensor(b))
  block = 2 * Device["CPU"].renderer.vector_bytes // 4
  boxes = split_boxes(Kernel(create_schedule([t.uop])[0][-1].ast, Device["CPU"].renderer))
  assert len(boxes) == (2 if N >= 4 * block and N % block else 1)
  want = a.astype(np.float64) @ (b.T if transposed else b).astype(np.float64)
  np.testing.assert_allclose(t.numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())

def test_a_peeled_rest_keeps_its_vector_block_when_the_body_stages(monkeypatch, avx512_renderer):
  """The body of a peeled product taking the rows-outer tiled form stages A's rows block and B's tile; staging sums
  nothing, so the rest's box need not follow it (split._reduce_plan): it keeps a vector block of its own, where following
  the body's whole plan left it one scalar chain a column (3000^2 x 500: 225 -> 86 GFLOP/s). Values against float64."""
  from lucidgrad.codegen.split import split_boxes, split_kernel
  from lucidgrad.codegen.opt import Kernel, hand_coded_opts
  ren = Device["CPU"].renderer
  monkeypatch.setattr(ren, "cache_bytes", 64 << 10)  # A (600 x 256) past the L2, B's whole reduce past its share: tiled
  block = 2 * ren.vector_bytes // 4
  M, K, N = 600, 256, 16 * block + 5
  a, b = r(M, K), r(K, N)
  t = Tensor(a) @ Tensor(b)
  k = Kernel(create_schedule([t.uop])[0][-1].ast, ren)
  boxes = split_boxes(k)
  assert len(boxes) == 2
  split = split_kernel(k, boxes, lambda bx, budget: hand_coded_opts(bx, threads=False, budget=budget))
  ops = [o.op for o in split.applied]
  assert OptOps.TILE in ops and ops.count(OptOps.STAGE) >= 2 and ops.count(OptOps.UPCAST) >= 3, split.applied
  want = a.astype(np.float64) @ b.astype(np.float64)
  np.testing.assert_allclose(t.numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
