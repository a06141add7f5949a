"""Weights kept as 32-column panels for x @ W.T (docs/design/0039): made the second time a product reads the same
version of W, read by later products with the same values and gradients, dropped when W is written; and the C
kernels' prefetch of the next panel."""
import io, contextlib
import numpy as np, pytest
from lucidgrad import Tensor, jit
from lucidgrad.helpers import Context
from lucidgrad.tensor import no_grad
import lucidgrad.nn as nn

rng = np.random.default_rng(0)

def panels_of(w: Tensor) -> dict:
  return w._storage.__dict__.get("panels", {})

def made(w: Tensor) -> list[Tensor]:
  return [p for p in panels_of(w).values() if p is not None]

def linear(n_in: int, n_out: int) -> nn.Linear:
  l = nn.Linear(n_in, n_out)
  l.weight.assign(Tensor(rng.standard_normal((n_out, n_in)).astype(np.float32) * 0.2)).realize()
  return l

def reference(l: nn.Linear, x: np.ndarray) -> np.ndarray:
  return x.astype(np.float64) @ l.weight.numpy().T.astype(np.float64) + l.bias.numpy()

@pytest.mark.parametrize("n_out", [64, 100, 7])  # whole panels, a padded last panel, one padded panel
def test_panels_are_made_on_the_second_read_and_hold_the_weight(n_out):
  l, x = linear(48, n_out), rng.standard_normal((2, 20, 48)).astype(np.float32)
  outs = []
  for call in range(3):
    outs.append(l(Tensor(x)).numpy())
    assert len(made(l.weight)) == (0 if call == 0 else 1)
  for o in outs: np.testing.assert_allclose(o, reference(l, x), rtol=1e-5, atol=1e-5)
  (p,) = made(l.weight)
  P, K, cols = p.shape  # the columns: two of the target's vectors
  assert K == 48 and cols in (8, 16, 32) and P == -(-n_out // cols)
  w = np.zeros((P * cols, 48), np.float32)
  w[:n_out] = l.weight.numpy()
  np.testing.assert_array_equal(p.numpy(), w.reshape(P, cols, 48).transpose(0, 2, 1))

def test_a_product_over_panels_has_the_plain_products_gradients():
  l, x = linear(40, 72), rng.standard_normal((24, 40)).astype(np.float32)
  dy = rng.standard_normal((24, 72)).astype(np.float32)
  for call in range(3):
    xt = Tensor(x, requires_grad=True)
    l.weight.grad = l.bias.grad = None
    (l(xt) * Tensor(dy)).sum().backward()
    np.testing.assert_allclose(l.weight.grad.numpy(), dy.T.astype(np.float64) @ x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(xt.grad.numpy(), dy.astype(np.float64) @ l.weight.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(l.bias.grad.numpy(), dy.sum(0), rtol=1e-4, atol=1e-4)
  assert len(made(l.weight)) == 1

def test_a_write_to_the_weight_drops_its_panels():
  l, x = linear(32, 64), rng.standard_normal((16, 32)).astype(np.float32)
  for _ in range(2): l(Tensor(x)).numpy()
  assert len(made(l.weight)) == 1
  l.weight.assign(l.weight * 0.5 + 1.0).realize()  # a new version: the panels hold the old values
  for call in range(3):
    np.testing.assert_allclose(l(Tensor(x)).numpy(), reference(l, x), rtol=1e-5, atol=1e-5)
    assert len(made(l.weight)) == (0 if call == 0 else 1)
  # a training loop: every step writes the weight, so no step reads one version twice and none is copied
  opt = nn.optim.SGD([l.weight, l.bias], lr=0.1)
  for _ in range(3):
    opt.zero_grad()
    l(Tensor(x)).square().mean().backward()
    opt.step()
    assert made(l.weight) == []

def test_panels_made_without_history_are_not_read_where_a_gradient_is_needed():
  l, x = linear(32, 64), rng.standard_normal((16, 32)).astype(np.float32)
  with no_grad():
    for _ in range(3): l(Tensor(x)).numpy()
  assert len(made(l.weight)) == 1
  l.weight.grad = None
  l(Tensor(x)).sum().backward()  # the first read with history at this version: the plain product
  l.weight.grad = None
  l(Tensor(x)).sum().backward()  # the second: panels of its own, with history
  np.testing.assert_allclose(l.weight.grad.numpy(), np.broadcast_to(x.sum(0), (64, 32)), rtol=1e-4, atol=1e-4)
  assert len(made(l.weight)) == 2

def test_no_panels_for_few_rows_a_jit_capture_or_when_turned_off():
  l, few = linear(32, 64), rng.standard_normal((4, 32)).astype(np.float32)
  for _ in range(3): np.testing.assert_allclose(l(Tensor(few)).numpy(), reference(l, few), rtol=1e-5, atol=1e-5)
  assert made(l.weight) == []
  x = rng.standard_normal((16, 32)).astype(np.float32)
  with Context(PACK_WEIGHTS=0):
    for _ in range(3): l(Tensor(x)).numpy()
  assert made(l.weight) == []
  f = jit(lambda t: l(t))
  for _ in range(4): np.testing.assert_allclose(f(Tensor(x)).numpy(), reference(l, x), rtol=1e-5, atol=1e-5)
  assert made(l.weight) == []  # the eager warm-up read it once; the capture copies nothing a replay would repeat

def program_source(fn) -> str:
  buf = io.StringIO()
  with Context(DEBUG=4), contextlib.redirect_stdout(buf): fn()
  return buf.getvalue()

def test_a_product_over_panels_fetches_the_next_panel_and_a_plain_one_does_not(tmp_path, monkeypatch):
  monkeypatch.setenv("CACHEDIR", str(tmp_path))  # compiled afresh: DEBUG=4 prints the source it compiles
  # an 8 MB weight, past any core's L2: its panels go outermost, each read from memory once and by every row block
  K, N, M = 1024, 2048, 32
  w = Tensor(rng.standard_normal((N, K)).astype(np.float32)).realize()
  x = Tensor(rng.standard_normal((M, K)).astype(np.float32)).realize()
  ref = x.numpy().astype(np.float64) @ w.numpy().T
  def product(): np.testing.assert_allclose((x @ w.T).numpy(), ref, rtol=1e-4, atol=1e-4)
  plain = program_source(product)
  assert "__builtin_prefetch" not in plain  # its panel is copied (STAGE): the compute reads the copy
  panels = program_source(product)  # the second read: the panels are made and read
  assert len(made(w)) == 1 and "__builtin_prefetch" in panels
  with Context(PREFETCH_NEXT=0): assert "__builtin_prefetch" not in program_source(product)
