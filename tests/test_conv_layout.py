"""Convolutions of 8 or more input channels (docs/design/0020): channels-last copies of input and weight, a gradient
rule of their own (VJP: the input's gradient one transposed convolution), weight-gradient lanes stored from vector
accumulators, and long reduces tiled to the cache. Values against torch in float64."""
import re
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor
from lucidgrad.device import Device
from lucidgrad.uop.ops import Ops
from lucidgrad.schedule import create_schedule
from lucidgrad.codegen import get_program
from lucidgrad.codegen.opt.kernel import Kernel, OptOps
from lucidgrad.codegen.opt import hand_coded_opts
from conftest import rnd


def grads_match(lg_fn, th_fn, xn, wn, rtol=2e-4, atol=2e-4):
  x, w = Tensor(xn, requires_grad=True), Tensor(wn, requires_grad=True)
  tx, tw = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (xn, wn))
  out, tout = lg_fn(x, w), th_fn(tx, tw)
  g = rnd(7, *tout.shape)
  (out * Tensor(g)).sum().backward()
  (tout * torch.tensor(g, dtype=torch.float64)).sum().backward()
  np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=rtol, atol=atol, err_msg="forward")
  np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=atol, err_msg="input gradient")
  np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=rtol, atol=atol, err_msg="weight gradient")

# (input shape, out channels, kernel, stride, padding, dilation, groups): strides that leave inputs no window reaches,
# padding larger than the kernel's reach, 'same' with an even kernel (one more on the right), groups of 8 channels
CASES = [((2, 8, 9, 9), 16, 3, 1, 1, 1, 1), ((2, 16, 10, 11), 8, 3, 2, 1, 1, 1), ((2, 16, 9, 9), 16, 3, 2, 0, 2, 2),
         ((1, 8, 8, 8), 8, 1, 2, 0, 1, 1), ((2, 16, 11, 11), 8, 5, 3, 2, 1, 2), ((2, 8, 6, 6), 8, 3, 1, 4, 1, 1),
         ((2, 16, 7, 7), 8, 2, 2, 0, 1, 1), ((2, 8, 7, 6), 8, 4, 1, "same", 1, 1), ((1, 32, 4, 4), 24, 3, 1, 1, 1, 4)]

@pytest.mark.parametrize("xs, co, k, s, p, d, g", CASES)
def test_conv2d_and_both_gradients_match_torch(xs, co, k, s, p, d, g):
  xn, wn = rnd(0, *xs), rnd(1, co, xs[1] // g, k, k)
  grads_match(lambda x, w: x.conv2d(w, stride=s, padding=p, dilation=d, groups=g),
              lambda x, w: F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g), xn, wn)

def test_conv1d_conv3d_and_transposed_gradients_match_torch():
  grads_match(lambda x, w: x.conv1d(w, stride=2, padding=2, dilation=2), lambda x, w: F.conv1d(x, w, stride=2, padding=2, dilation=2),
              rnd(2, 2, 8, 17), rnd(3, 8, 8, 3))
  grads_match(lambda x, w: x.conv3d(w, stride=(1, 2, 1), padding=1), lambda x, w: F.conv3d(x, w, stride=(1, 2, 1), padding=1),
              rnd(4, 1, 8, 5, 6, 5), rnd(5, 8, 8, 3, 3, 3))
  grads_match(lambda x, w: x.conv_transpose2d(w, stride=2, padding=1, output_padding=1),
              lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1), rnd(6, 2, 8, 5, 5), rnd(7, 8, 8, 3, 3))

def test_second_derivative_through_the_rule_matches_torch():
  """d/dw of sum((d loss/dx)^2): the input gradient is itself a conv with the same rule, so its own gradient is too."""
  rng = np.random.default_rng(3)
  xn, wn = rng.standard_normal((2, 8, 6, 6)), rng.standard_normal((8, 8, 3, 3))
  x, w = Tensor(xn, requires_grad=True), Tensor(wn, requires_grad=True)
  gx, = x.conv2d(w, stride=2, padding=1).tanh().sum().gradient(x)
  gw, = (gx * gx).sum().gradient(w)
  tx, tw = torch.tensor(xn, requires_grad=True), torch.tensor(wn, requires_grad=True)
  tgx, = torch.autograd.grad(F.conv2d(tx, tw, stride=2, padding=1).tanh().sum(), tx, create_graph=True)
  tgw, = torch.autograd.grad((tgx * tgx).sum(), tw)
  np.testing.assert_allclose(gx.numpy(), tgx.detach().numpy(), rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(gw.numpy(), tgw.numpy(), rtol=1e-8, atol=1e-8)

def test_the_rule_is_in_the_graph_only_where_gradients_are_tracked():
  x, w = Tensor(rnd(0, 2, 8, 6, 6)), Tensor(rnd(1, 8, 8, 3, 3))
  assert not any(u.op is Ops.VJP for u in x.conv2d(w).uop.toposort)
  w.requires_grad_(True)
  assert any(u.op is Ops.VJP for u in x.conv2d(w).uop.toposort)

def names(t: Tensor) -> list[tuple[str, object]]:
  return [(Kernel(it.ast, Device["CPU"].renderer).name, it) for it in create_schedule([t.uop])[0] if it.kind == "kernel"]
def reduce_kernels(t: Tensor) -> list[str]: return [n for n, _ in names(t) if n.startswith("r_")]

def test_input_gradient_is_one_reduce_kernel():
  """Through the window view's movement ops it was a per-window product and then a sum of overlapping windows."""
  x, w = Tensor(rnd(0, 4, 16, 12, 12)).realize().requires_grad_(True), Tensor(rnd(1, 16, 16, 3, 3)).realize()
  gx, = (x.conv2d(w, padding=1) * Tensor(rnd(2, 4, 16, 12, 12)).realize()).sum().gradient(x)
  assert reduce_kernels(gx) == ["r_4_16_12_12_16_3_3"]

def weight_gradient_kernel():
  x, g = Tensor(rnd(0, 16, 16, 14, 14)).realize(), Tensor(rnd(1, 16, 32, 12, 12)).realize()
  w = Tensor(rnd(2, 32, 16, 3, 3)).realize().requires_grad_(True)
  gw, = (x.conv2d(w) * g).sum().gradient(w)
  item = next(it for n, it in names(gw) if n.startswith("r_"))
  return item, gw

def test_weight_gradient_accumulates_in_vectors_and_matches_numpy():
  """Its outputs (Cout, Cin, 3, 3) are 9 apart along the input channels, which the channels-last input is contiguous
  along: the lanes' sums are vector accumulators, each lane stored alone."""
  item, gw = weight_gradient_kernel()
  spec = get_program(item.ast, Device["CPU"].renderer)
  assert re.search(r"float32x(4|8|16) acc", spec.src)
  x, g = rnd(0, 16, 16, 14, 14).astype(np.float64), rnd(1, 16, 32, 12, 12).astype(np.float64)
  ref = np.einsum("nkhw,nchwpq->kcpq", g, np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3)))
  np.testing.assert_allclose(gw.numpy(), ref, rtol=1e-4, atol=1e-3)

def test_long_reduce_is_tiled_to_the_cache_only_where_the_output_is_small(monkeypatch):
  """A weight gradient re-reads its inputs once per output block: tiled when they outgrow the cache. A conv's forward
  has an output as large as its input: each tile would read and write it once more, so it is not tiled."""
  renderer = Device["CPU"].renderer
  # the inputs are ~0.5 MB, ~31 KB an image; a tile of 2 images takes ~65 KB counted with the channels a block pads
  monkeypatch.setattr(renderer, "cache_bytes", 160 * 1024)
  item, _ = weight_gradient_kernel()
  k = hand_coded_opts(Kernel(item.ast, renderer))
  assert any(o.op is OptOps.TILE for o in k.applied), k.applied
  x, w = Tensor(rnd(0, 16, 16, 14, 14)).realize(), Tensor(rnd(2, 32, 16, 3, 3)).realize()
  fwd = next(it for n, it in names(x.conv2d(w)) if n.startswith("r_"))
  assert not any(o.op is OptOps.TILE for o in hand_coded_opts(Kernel(fwd.ast, renderer)).applied)
  monkeypatch.setattr(renderer, "cache_bytes", 0)  # unknown: never tiled
  assert not any(o.op is OptOps.TILE for o in hand_coded_opts(Kernel(item.ast, renderer)).applied)

# ---------------------------------------------------------------- max pooling's own gradient rule

POOLS = [((2, 3, 9, 9), 3, 2, 1, 1, False), ((2, 3, 8, 8), 2, 2, 0, 1, False), ((1, 2, 10, 11), 3, 1, 1, 1, False),
         ((2, 2, 9, 9), 3, 2, 1, 2, True), ((2, 3, 7, 7), 3, 3, 1, 1, True), ((1, 1, 6, 6), (2, 3), (1, 2), (1, 1), 1, False)]

@pytest.mark.parametrize("shape, k, s, p, d, ceil", POOLS)
def test_max_pool_gradient_matches_torch(shape, k, s, p, d, ceil):
  xn = rnd(3, *shape)  # no ties: torch gives a tie to its first element, lucidgrad splits it (below)
  x, tx = Tensor(xn, requires_grad=True), torch.tensor(xn.astype(np.float64), requires_grad=True)
  out, tout = x.max_pool2d(k, s, p, d, ceil), F.max_pool2d(tx, k, s, p, d, ceil)
  g = rnd(4, *tout.shape)
  (out * Tensor(g)).sum().backward()
  (tout * torch.tensor(g, dtype=torch.float64)).sum().backward()
  np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)

def test_max_pool_1d_3d_gradients_match_torch():
  for n, shape in ((1, (2, 3, 11)), (3, (1, 2, 5, 6, 7))):
    xn = rnd(5, *shape)
    x, tx = Tensor(xn, requires_grad=True), torch.tensor(xn.astype(np.float64), requires_grad=True)
    getattr(x, f"max_pool{n}d")(3, 2, 1).square().sum().backward()
    getattr(F, f"max_pool{n}d")(tx, 3, 2, 1).square().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)

def test_max_pool_gradient_splits_ties_evenly():
  """Integers make ties: each window's gradient goes in equal parts to the elements equal to its maximum (the max
  reduce's rule), counted against a loop over windows in float64."""
  xn = np.round(rnd(6, 2, 2, 9, 9))
  g = rnd(7, 2, 2, 5, 5)
  x = Tensor(xn, requires_grad=True)
  (x.max_pool2d(3, 2, 1) * Tensor(g)).sum().backward()
  xp, ref = np.pad(xn.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf), np.zeros((2, 2, 11, 11))
  for i in range(5):
    for j in range(5):
      win = xp[:, :, 2*i:2*i+3, 2*j:2*j+3]
      hit = win == win.max((2, 3), keepdims=True)
      ref[:, :, 2*i:2*i+3, 2*j:2*j+3] += hit * (g[:, :, i, j] / hit.sum((2, 3)))[:, :, None, None]
  np.testing.assert_allclose(x.grad.numpy(), ref[:, :, 1:-1, 1:-1], rtol=1e-6, atol=1e-6)

def test_max_pool_input_gradient_reads_taps_not_overlapping_windows():
  """One reduce over the 3x3 taps per input element (beside the forward max and the per-window tie count); through
  the window view's movement ops it summed 4x4 padded repeats per element."""
  x = Tensor(rnd(0, 2, 8, 12, 12)).realize().requires_grad_(True)
  gx, = (x.max_pool2d(3, 2, 1) * Tensor(rnd(1, 2, 8, 6, 6)).realize()).sum().gradient(x)
  assert sorted(reduce_kernels(gx)) == ["r_2_8_12_12_3_3", "r_2_8_6_6_3_3", "r_2_8_6_6_3_3"]

# ---------------------------------------------------------------- short rows of many channels: an explicit im2col (docs/design/0040)

@pytest.mark.parametrize("xs, k, s, p, d", [((2, 16, 7, 7), 3, 1, 1, 1), ((2, 8, 14, 13), 3, 2, 1, 1), ((1, 16, 9, 9), 3, 1, 2, 2),
                                            ((2, 16, 5, 5), 1, 1, 0, 1)])
def test_a_short_row_conv_of_many_channels_is_a_matmul_over_its_windows_and_matches_torch(xs, k, s, p, d):
  """128 output channels and rows under 10 pixels: the windows copied as (pixels, K^2 x C) and one product kernel of
  pixels x channels x window (the conv's value, both gradients against float64 torch); 64 channels keep the implicit
  form's one kernel over (batch, channels, rows, pixels, window)."""
  co = 128
  xn, wn = rnd(0, *xs), rnd(1, co, xs[1], k, k)
  grads_match(lambda x, w: x.conv2d(w, stride=s, padding=p, dilation=d), lambda x, w: F.conv2d(x, w, stride=s, padding=p, dilation=d), xn, wn)
  x, w = Tensor(xn).realize(), Tensor(wn).realize()
  out = x.conv2d(w, stride=s, padding=p, dilation=d)
  pixels = xs[0] * out.shape[2] * out.shape[3]
  assert f"r_{pixels}_{co}_{k * k * xs[1]}" in reduce_kernels(out), reduce_kernels(out)
  implicit = reduce_kernels(x.conv2d(Tensor(wn[:64]).realize(), stride=s, padding=p, dilation=d))
  assert len(implicit) == 1 and re.match(rf"r_({xs[0]}_)?64_", implicit[0]), implicit  # (a batch of 1 drops out of the name)
