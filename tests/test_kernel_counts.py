"""Kernel-count caps of the Tensor API, each on realized inputs, with the values checked against torch."""
import numpy as np, pytest, torch
import torch.nn.functional as F
from lucidgrad import Tensor, GlobalCounters

rng = np.random.default_rng(0)
def arr(*shape): return rng.standard_normal(shape).astype(np.float32)

def count(fn, *inputs):
  ts = [Tensor(x).realize() for x in inputs]
  GlobalCounters.reset()
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
