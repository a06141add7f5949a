"""torch's top-level names (`import lucidgrad as torch`) and the Tensor methods torch spells differently from lucidgrad,
held to torch on the CPU: the same calls on the same values give the same values, dtypes and shapes."""
import numpy as np, pytest, torch
import lucidgrad
from lucidgrad import Tensor
import lucidgrad.functions as fns
from conftest import rnd


def same(ours, theirs, rtol=1e-6, atol=1e-6):
  assert ours.shape == tuple(theirs.shape), (ours.shape, tuple(theirs.shape))
  np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=rtol, atol=atol)

def test_every_method_named_as_a_function_exists_and_calls_the_method():
  assert [n for n in fns.METHODS if not hasattr(Tensor, n)] == []
  a, b = rnd(0, 3, 4), rnd(1, 3, 4)
  for name in ("exp", "tanh", "atan", "cosh", "abs", "sigmoid", "logcumsumexp"):
    args = (1,) if name == "logcumsumexp" else ()
    same(getattr(lucidgrad, name)(Tensor(a), *args), getattr(torch, name)(torch.tensor(a), *args))
  for name in ("maximum", "atan2", "hypot", "logaddexp", "copysign", "fmod", "remainder"):
    same(getattr(lucidgrad, name)(Tensor(a), Tensor(b)), getattr(torch, name)(torch.tensor(a), torch.tensor(b)), rtol=2e-6)
  v, i = lucidgrad.max(Tensor(a), dim=1)
  tv, ti = torch.max(torch.tensor(a), dim=1)
  same(v, tv); np.testing.assert_array_equal(i.numpy(), ti.numpy())
  with pytest.raises(TypeError, match="expected a Tensor"): lucidgrad.exp([1.0])

def test_joins_constructors_dtypes_and_devices():
  a, b = rnd(2, 2, 3), rnd(3, 2, 3)
  for f in ("cat", "concat", "stack", "hstack", "vstack"):
    kw = {"dim": 1} if f in ("cat", "concat", "stack") else {}
    same(getattr(lucidgrad, f)([Tensor(a), Tensor(b)], **kw), getattr(torch, f)([torch.tensor(a), torch.tensor(b)], **kw))
  same(lucidgrad.where(Tensor(a) > 0, Tensor(a), Tensor(b)), torch.where(torch.tensor(a) > 0, torch.tensor(a), torch.tensor(b)))
  with pytest.raises(ValueError, match="non-empty"): lucidgrad.cat([])
  with pytest.raises(TypeError, match="list or tuple"): lucidgrad.stack(Tensor(a))
  t = lucidgrad.tensor([[1, 2], [3, 4]])
  assert t.dtype == lucidgrad.int64 == lucidgrad.long and t.tolist() == [[1, 2], [3, 4]]
  f = lucidgrad.tensor([1.5, 2.5], dtype=lucidgrad.float64, requires_grad=True)
  assert f.dtype == lucidgrad.double and f.requires_grad
  for like in ("zeros_like", "ones_like"):
    got, ref = getattr(lucidgrad, like)(t), getattr(torch, like)(torch.tensor([[1, 2], [3, 4]]))
    assert got.dtype == lucidgrad.int64 and got.tolist() == ref.tolist()
  assert lucidgrad.full_like(f, 7).tolist() == [7.0, 7.0] and lucidgrad.full_like(f, 7).dtype == lucidgrad.float64
  assert (lucidgrad.float, lucidgrad.half, lucidgrad.int, lucidgrad.bool) == (lucidgrad.dtypes.float32, lucidgrad.dtypes.float16, lucidgrad.dtypes.int32, lucidgrad.dtypes.bool)
  assert lucidgrad.device("cpu") == "CPU" and lucidgrad.device("cuda", 1) == "CUDA:1"
  with pytest.raises(RuntimeError, match="unknown device"): lucidgrad.device("tpu")
  import lucidgrad.tensor as module   # the module is still the module, and callable as torch.tensor
  assert module.Tensor is Tensor and lucidgrad.is_tensor(t) and not lucidgrad.is_tensor(np.ones(2))
  assert lucidgrad.cuda.is_available() in (True, False) and lucidgrad.utils.data.DataLoader is not None
  lucidgrad.manual_seed(3); x = lucidgrad.randn(4).numpy()
  lucidgrad.manual_seed(3); np.testing.assert_array_equal(lucidgrad.randn(4).numpy(), x)
  assert lucidgrad.tril_indices(3, 3).tolist() == torch.tril_indices(3, 3).tolist()

@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparison_methods(op):
  a, b = np.array([1.0, 2.0, np.nan, 3.0], np.float32), np.array([1.0, 3.0, np.nan, 2.0], np.float32)
  for other in (Tensor(b), 2.0):
    theirs = getattr(torch.tensor(a), op)(torch.tensor(b) if isinstance(other, Tensor) else other)
    got = getattr(Tensor(a), op)(other)
    assert got.dtype == lucidgrad.bool and got.tolist() == theirs.tolist()

def test_products_and_views_spelled_as_torch():
  a, b, c = rnd(4, 3, 4), rnd(5, 4, 5), rnd(6, 3, 5)
  ta, tb, tc = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (a, b, c))
  la, lb, lc = (Tensor(x, requires_grad=True) for x in (a, b, c))
  ours, theirs = lc.addmm(la, lb, beta=0.5, alpha=2.0), tc.addmm(ta, tb, beta=0.5, alpha=2.0)
  same(ours, theirs, rtol=1e-5, atol=1e-5)
  ours.sum().backward(); theirs.sum().backward()
  for l_, t_ in ((la, ta), (lb, tb), (lc, tc)): np.testing.assert_allclose(l_.grad.numpy(), t_.grad.numpy(), rtol=1e-5, atol=1e-5)
  nan = Tensor(np.full((3, 5), np.nan, np.float32))
  assert np.isfinite(nan.addmm(Tensor(a), Tensor(b), beta=0).numpy()).all()     # beta 0 ignores self, NaNs too (torch)
  x, y = rnd(7, 2, 3, 4), rnd(8, 2, 4, 5)
  same(Tensor(rnd(9, 2, 3, 5)).baddbmm(Tensor(x), Tensor(y), alpha=0.5),
       torch.tensor(rnd(9, 2, 3, 5)).baddbmm(torch.tensor(x), torch.tensor(y), alpha=0.5), rtol=1e-5, atol=1e-5)
  v = rnd(10, 4)
  same(Tensor(a).mv(Tensor(v)), torch.tensor(a).mv(torch.tensor(v)), rtol=1e-5, atol=1e-5)
  same(Tensor(v).outer(Tensor(v[:3])), torch.outer(torch.tensor(v), torch.tensor(v[:3])))
  same(Tensor(a).T.t(), torch.tensor(a).T.t())                                    # a transposed view, transposed back
  same(Tensor(v).t(), torch.tensor(v).t())
  same(Tensor(a[0]).view_as(Tensor(b[:2, :2])), torch.tensor(a[0]).view_as(torch.tensor(b[:2, :2])))
  same(Tensor(v[:1]).expand_as(Tensor(a)), torch.tensor(v[:1]).expand_as(torch.tensor(a)))
  same(Tensor([1, 2]).true_divide(Tensor([2, 4])), torch.tensor([1, 2]).true_divide(torch.tensor([2, 4])))
  same(Tensor(v).negative(), torch.tensor(v).negative())
  with pytest.raises(ValueError, match="at most 2 dimensions"): Tensor(x).t()
  with pytest.raises(ValueError, match="must be 1-D"): Tensor(a).outer(Tensor(v))
  with pytest.raises(ValueError, match="2-D matrix and a 1-D vector"): Tensor(v).mv(Tensor(v))
  with pytest.raises(ValueError, match="must be 3-D"): Tensor(c).baddbmm(Tensor(a), Tensor(b))

def test_flatten_refuses_a_start_after_the_end():
  with pytest.raises(ValueError, match="start_dim 2 comes after end_dim 1"): Tensor.ones(2, 3, 4).flatten(2, 1)
  assert Tensor.ones(2, 3, 4).flatten(1, 1).shape == (2, 3, 4) == tuple(torch.ones(2, 3, 4).flatten(1, 1).shape)
  assert Tensor.ones(2, 3, 4).flatten(-2).shape == (2, 12)

def test_torch_nn_and_optim_as_attributes_and_imports():
  import subprocess, sys
  code = ("import lucidgrad as torch, sys; assert 'lucidgrad.nn' not in sys.modules; "   # not imported until asked for
          "import lucidgrad.optim as optim; from lucidgrad.optim.lr_scheduler import StepLR; import lucidgrad.nn.optim.lr_scheduler as ls; "
          "assert optim is torch.nn.optim and StepLR is ls.StepLR and torch.optim.SGD is optim.SGD and torch.nn.Linear is not None")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  with pytest.raises(AttributeError, match="no attribute 'not_a_name'"): lucidgrad.not_a_name
