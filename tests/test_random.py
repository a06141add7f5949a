"""The random functions of tensor_nn.py: reproducible under Tensor.manual_seed, the same on the CPU and on the PYTHON
interpreter, and drawn from the distribution they promise (means, variances and frequencies within a few standard
errors, with fixed seeds), with torch.nn.init's fans and gains."""
import math
import numpy as np
import pytest
import torch
from lucidgrad import Tensor, dtypes

def draw(fn, seed=7, device=None):
  Tensor.manual_seed(seed)
  return fn(device).numpy()

def within(x, mean, sd, n, k=4.0): assert abs(x - mean) <= k * sd / math.sqrt(n), f"{x} is not within {k} standard errors of {mean}"

# sizes are shared on purpose: every rand() of one size runs one compiled kernel (6 and 12 here, 4096 and 8192 below)
RANDOM = {  # name: fn(device) -> Tensor, each tiny so the interpreter runs it quickly
  "randperm": lambda dev: Tensor.randperm(6, device=dev),
  "multinomial": lambda dev: Tensor([[0.2, 0.0, 0.5, 0.3], [1.0, 1.0, 1.0, 1.0]], device=dev).multinomial(3, replacement=True),
  "multinomial_no_replacement": lambda dev: Tensor([0.1, 0.4, 0.0, 0.3, 0.2, 0.6], device=dev).multinomial(3),
  "bernoulli": lambda dev: Tensor([0.1, 0.5, 0.9, 0.3, 0.7, 0.5], device=dev).bernoulli(),
  "dropout": lambda dev: Tensor.ones(2, 3, device=dev).dropout(0.5),
  "kaiming_uniform": lambda dev: Tensor.kaiming_uniform((3, 2), device=dev),
  "kaiming_normal": lambda dev: Tensor.kaiming_normal((3, 2), nonlinearity="relu", device=dev),
  "xavier_uniform": lambda dev: Tensor.xavier_uniform((2, 3), device=dev),
  "xavier_normal": lambda dev: Tensor.xavier_normal((2, 3), device=dev),
  "trunc_normal": lambda dev: Tensor.trunc_normal((2, 3), a=-1.0, b=1.5, device=dev),
}

@pytest.mark.parametrize("name", RANDOM)
def test_reproducible_under_manual_seed_and_the_same_on_the_interpreter(name):
  a, b, other = draw(RANDOM[name]), draw(RANDOM[name]), draw(RANDOM[name], seed=8)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, other) or name == "multinomial_no_replacement", "another seed gave the same values"
  # the generator is integer arithmetic, so both devices draw the same bits; float transforms may differ in the last ulp
  np.testing.assert_allclose(draw(RANDOM[name], device="PYTHON"), a, rtol=1e-6, atol=0 if a.dtype.kind != "f" else 1e-7)

def test_successive_calls_differ():
  Tensor.manual_seed(1)
  assert not np.array_equal(Tensor.randperm(3000).numpy(), Tensor.randperm(3000).numpy())

@pytest.mark.parametrize("n", [0, 1, 2, 6, 3000])
def test_randperm_is_a_permutation(n):
  Tensor.manual_seed(n)
  p = Tensor.randperm(n)
  assert p.dtype == dtypes.int64 and p.shape == (n,)
  np.testing.assert_array_equal(np.sort(p.numpy()), np.arange(n))
  assert Tensor.randperm(n, dtype=dtypes.int32).dtype == dtypes.int32

def test_randperm_is_uniform():
  Tensor.manual_seed(2)
  p = Tensor.randperm(3000).numpy()
  within((p[1:] < p[:-1]).sum(), 2999 / 2, math.sqrt(3001 / 12), 1)  # descents of a uniform permutation
  # the relative order in which each triple of values (3i, 3i+1, 3i+2) lands: each of the 6 orders equally often
  order = np.argsort(np.argsort(p)[np.arange(3000).reshape(1000, 3)], axis=1)
  counts = np.unique(order @ np.array([9, 3, 1]), return_counts=True)[1]
  assert len(counts) == 6 and np.all(np.abs(counts - 1000 / 6) <= 4 * math.sqrt(1000 * (1 / 6) * (5 / 6))), counts

def test_multinomial_with_replacement_frequencies():
  Tensor.manual_seed(3)
  p = np.array([0.1, 0.0, 0.3, 0.6, 0.0])
  s = Tensor(p * 5, dtype=dtypes.float32).multinomial(4096, replacement=True).numpy()  # weights need not sum to 1
  assert s.shape == (4096,) and s.dtype == np.int64
  freq = np.bincount(s, minlength=5) / len(s)
  assert freq[1] == 0 and freq[4] == 0
  for f, q in zip(freq, p): within(f, q, math.sqrt(q * (1 - q)), len(s))

def test_multinomial_batched_rows_use_their_own_weights():
  Tensor.manual_seed(4)
  s = Tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]).multinomial(500, replacement=True).numpy()
  assert s.shape == (2, 500) and (s[0] == 1).all() and set(np.unique(s[1])) == {0, 2}
  within((s[1] == 0).mean(), 0.5, 0.5, 500)

def test_multinomial_without_replacement_draws_distinct_classes_in_weight_order():
  Tensor.manual_seed(5)
  p = np.array([0.1, 0.2, 0.0, 0.3, 0.4, 0.0, 0.0, 0.0], np.float32) * 3
  s = Tensor(np.tile(p, (512, 1))).multinomial(4).numpy()
  assert s.shape == (512, 4)
  assert all(len(set(r)) == 4 and set(r) <= {0, 1, 3, 4} for r in s), "classes repeat, or a zero-weight class was drawn"
  p = p / p.sum()
  first = np.bincount(s[:, 0], minlength=8) / 512
  for f, q in zip(first, p): within(f, q, math.sqrt(q * (1 - q)), 512)
  second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(8) if i != j) for j in range(8)])
  for f, q in zip(np.bincount(s[:, 1], minlength=8) / 512, second): within(f, q, math.sqrt(q * (1 - q)), 512)

def test_multinomial_errors():
  with pytest.raises(ValueError, match="cannot draw 4 samples from 3 classes without replacement"): Tensor([1.0, 1.0, 1.0]).multinomial(4)
  with pytest.raises(ValueError, match="weights must have 1 or 2 dimensions"): Tensor.ones(2, 2, 2).multinomial(1)

def test_bernoulli_means():
  Tensor.manual_seed(6)
  x = Tensor.zeros(64, 64).bernoulli(0.3).numpy()
  assert set(np.unique(x)) <= {0.0, 1.0}
  within(x.mean(), 0.3, math.sqrt(0.21), x.size)
  p = np.repeat(np.array([[0.0], [0.25], [0.8], [1.0]], np.float32), 1024, 1)
  y = Tensor(p).bernoulli()
  assert y.dtype == dtypes.float32
  m = y.numpy().mean(1)
  assert m[0] == 0 and m[3] == 1
  within(m[1], 0.25, math.sqrt(0.25 * 0.75), 1024); within(m[2], 0.8, 0.4, 1024)

@pytest.mark.parametrize("shape,a,mode,nl", [((64, 16, 2, 2), 0.0, "fan_in", "leaky_relu"), ((128, 32), math.sqrt(5), "fan_in", "leaky_relu"),
                                             ((32, 16, 8), 0.0, "fan_out", "relu"), ((64, 64), 0.0, "fan_in", "tanh")], ids=str)
def test_kaiming_matches_torch_init_spread(shape, a, mode, nl):
  fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
  std = torch.nn.init.calculate_gain(nl, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
  Tensor.manual_seed(9)
  u = Tensor.kaiming_uniform(shape, a=a, mode=mode, nonlinearity=nl).numpy()
  n = Tensor.kaiming_normal(shape, a=a, mode=mode, nonlinearity=nl).numpy()
  assert u.shape == n.shape == shape and u.dtype == np.float32
  assert np.abs(u).max() <= std * math.sqrt(3) and np.abs(u).max() > 0.99 * std * math.sqrt(3)
  within(u.mean(), 0, std, u.size); within(n.mean(), 0, std, n.size)
  within(u.var(), std ** 2, std ** 2 * math.sqrt(0.8), u.size)  # the variance of a uniform's square is 4/5 std^4
  within(n.var(), std ** 2, std ** 2 * math.sqrt(2), n.size)

@pytest.mark.parametrize("shape,gain", [((32, 32, 2, 2), 1.0), ((32, 128), 2.0)], ids=str)
def test_xavier_matches_torch_init_spread(shape, gain):
  fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
  std = gain * math.sqrt(2 / (fan_in + fan_out))
  Tensor.manual_seed(10)
  u, n = Tensor.xavier_uniform(shape, gain=gain).numpy(), Tensor.xavier_normal(shape, gain=gain, dtype=dtypes.float64).numpy()
  assert np.abs(u).max() <= std * math.sqrt(3) and n.dtype == np.float64
  within(u.var(), std ** 2, std ** 2 * math.sqrt(0.8), u.size)
  within(n.var(), std ** 2, std ** 2 * math.sqrt(2), n.size)

@pytest.mark.parametrize("mean,std,a,b", [(0.0, 1.0, -2.0, 2.0), (0.5, 1.5, -1.0, 2.0), (0.0, 0.02, -0.04, 0.04), (3.0, 1.0, 4.0, 7.0)], ids=str)
def test_trunc_normal_moments(mean, std, a, b):
  Tensor.manual_seed(11)
  x = Tensor.trunc_normal((64, 64), mean=mean, std=std, a=a, b=b).numpy().astype(np.float64)
  assert x.min() >= a and x.max() <= b
  al, be = (a - mean) / std, (b - mean) / std
  phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
  Z = 0.5 * (math.erf(be / math.sqrt(2)) - math.erf(al / math.sqrt(2)))
  m = mean + std * (phi(al) - phi(be)) / Z
  v = std ** 2 * (1 + (al * phi(al) - be * phi(be)) / Z - ((phi(al) - phi(be)) / Z) ** 2)
  within(x.mean(), m, math.sqrt(v), x.size)
  within(x.var(), v, v * math.sqrt(2), x.size)

def test_initialiser_errors():
  with pytest.raises(ValueError, match="at least 2 dimensions"): Tensor.kaiming_uniform((5,))
  with pytest.raises(ValueError, match="unknown nonlinearity"): Tensor.kaiming_normal((3, 3), nonlinearity="swishy")
  with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"): Tensor.kaiming_uniform((3, 3), mode="fan")
  with pytest.raises(ValueError, match="need a < b"): Tensor.trunc_normal((3,), a=1.0, b=0.0)
