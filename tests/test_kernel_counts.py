"""Kernel-count caps of the Tensor API, each on realized inputs, with the values checked against torch."""
import numpy as np, pytest, torch
import torch.nn.functional as F
from lucidgrad import Tensor, GlobalCounters, Context

rng = np.random.default_rng(0)
def arr(*shape): return rng.standard_normal(shape).astype(np.float32)

def count(fn, *inputs):
  """The op's own kernels: the index-range check (one extra kernel per realize, tests/test_never_silently_wrong.py) is off."""
  ts = [Tensor(x).realize() for x in inputs]
  GlobalCounters.reset()
  with Context(CHECK_INDEX=0):
    out = fn(*ts)
    vals = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
  return GlobalCounters.kernel_count, vals

CASES = [  # name, cap, lucidgrad, torch, inputs
  ("softmax", 3, lambda x: x.softmax(-1), lambda x: x.softmax(-1), (arr(8, 50),)),
  ("log_softmax", 3, lambda x: x.log_softmax(-1), lambda x: x.log_softmax(-1), (arr(8, 50),)),
  ("layer_norm", 3, lambda x, w, b: x.layer_norm((32,), w, b), lambda x, w, b: F.layer_norm(x, (32,), w, b), (arr(4, 6, 32), arr(32), arr(32))),
  ("cross_entropy", 4, lambda x, t: x.cross_entropy(t.cast("int64")), lambda x, t: F.cross_entropy(x, t.long()),
   (arr(16, 10), rng.integers(0, 10, 16).astype(np.float32))),
  ("scaled_dot_product_attention", 5, lambda q, k, v: q.scaled_dot_product_attention(k, v), lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
   (arr(2, 3, 8, 16), arr(2, 3, 8, 16), arr(2, 3, 8, 16))),
  ("topk(8) of 64", 6, lambda x: x.topk(8)[0], lambda x: x.topk(8)[0], (arr(4, 64),)),
  ("cumsum over 4096", 3, lambda x: x.cumsum(-1), lambda x: x.cumsum(-1), (arr(4096),)),
  ("conv2d", 1, lambda x, w: x.conv2d(w, padding=1), lambda x, w: F.conv2d(x, w, padding=1), (arr(2, 3, 12, 12), arr(4, 3, 3, 3))),
]

@pytest.mark.parametrize("name,cap,fn,ref,inputs", CASES, ids=[c[0] for c in CASES])
def test_kernel_count_cap(name, cap, fn, ref, inputs):
  n, (val,) = count(fn, *inputs)
  assert n <= cap, f"{name}: {n} kernels, cap {cap}"
  np.testing.assert_allclose(val, ref(*[torch.from_numpy(x) for x in inputs]).numpy(), rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("rows,kernels", [(8, 1), (64, 2)])
def test_a_big_reduce_nested_in_another_gets_its_own_kernel(rows, kernels):
  # rows x 512 partial sums: 4096 stay fused into the outer sum, 32768 are a kernel of their own
  x = arr(rows, 512, 4)
  n, (out,) = count(lambda t: (t.sum(2) * 2).sum(1), x)
  assert n == kernels
  np.testing.assert_allclose(out, (x.astype(np.float64).sum(2) * 2).sum(1), rtol=1e-4)

def test_conv2d_training_step_kernels_and_values_against_torch():
  x, w, g = arr(8, 4, 14, 14), arr(6, 4, 3, 3), arr(8, 6, 14, 14)
  tx, tw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
  GlobalCounters.reset()
  gx, gw = tx.conv2d(tw, padding=1).gradient(tx, tw, gradient=Tensor(g))
  Tensor.realize(gx, gw)
  assert GlobalCounters.kernel_count <= 4
  rx, rw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
  F.conv2d(rx, rw, padding=1).backward(torch.tensor(g))
  np.testing.assert_allclose(gx.numpy(), rx.grad.numpy(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(gw.numpy(), rw.grad.numpy(), rtol=1e-4, atol=1e-4)

def test_conv_weight_gradient_index_has_no_division():
  # a kernel param reached through a chain of reshapes (as the scheduler cuts one) is indexed by one linear index:
  # the padded window of a conv's input then needs no // or %, which made this kernel 20x slower
  from lucidgrad import Device
  from lucidgrad.codegen import get_program
  from lucidgrad.schedule import create_schedule
  from lucidgrad.uop.ops import Ops
  x = Tensor(arr(4, 8, 28, 28)).max_pool2d(2)   # a reduce of shape (4, 8, 14, 14, 1, 1), read back reshaped
  w = Tensor(arr(16, 8, 3, 3), requires_grad=True)
  (gw,) = x.conv2d(w, padding=1).relu().gradient(w, gradient=Tensor(arr(4, 16, 14, 14)))
  items, _, _ = create_schedule([gw.uop])
  uops = get_program(items[-1].ast, Device["CPU"].renderer).uops
  assert not [u for u in uops if u.op in (Ops.IDIV, Ops.MOD)]

def test_conv_relu_pool_weight_gradient_against_torch():
  # the pool's windows tile its input (a reshape, no window copies to sum in the backward), and the ReLU/pool backward
  # feeding the weight gradient is computed once into a buffer, not once per weight
  x, w, g = arr(4, 3, 12, 12), arr(8, 3, 3, 3), arr(4, 8, 6, 6)
  tw = Tensor(w, requires_grad=True)
  GlobalCounters.reset()
  (gw,) = Tensor(x).conv2d(tw, padding=1).relu().max_pool2d(2).gradient(tw, gradient=Tensor(g))
  gw.realize()
  # the weight's copy with its output channels innermost (the conv's vector, docs/design/0040), conv, pool, the pool's max
  # realized, the ReLU/pool backward, the weight gradient
  assert GlobalCounters.kernel_count <= 6
  rw = torch.tensor(w, requires_grad=True)
  F.max_pool2d(F.conv2d(torch.tensor(x), rw, padding=1).relu(), 2).backward(torch.tensor(g))
  np.testing.assert_allclose(gw.numpy(), rw.grad.numpy(), rtol=1e-4, atol=1e-4)
