"""Bounded kernels: graphs built from long chains of dependent steps (a recurrent net unrolled in time, an elementwise
chain whose values are read at shifted places) compile into kernels of bounded size, and give the references' numbers.
docs/design/0008-kernel-cost-model.md says how the scheduler and the opts keep them small."""
import numpy as np, pytest, torch
import lucidgrad.codegen as codegen
from lucidgrad import Tensor, nn, Context
from lucidgrad.device import Device
from lucidgrad.codegen.opt import LANE_OPS_BUDGET, expanded_ops
from lucidgrad.codegen.opt.kernel import Kernel
from lucidgrad.nn.optim import Adam
from lucidgrad.codegen.lower import lower_kernel
from lucidgrad.schedule import create_schedule
from lucidgrad.schedule.cost import MAX_KERNEL_NODES
from lucidgrad.uop.ops import Ops, GroupOp

# ~1 s of gcc at -O2 on the 2-core CI machine; the unbounded kernels of these graphs were 330 KB (10 s) and beyond
MAX_SOURCE_BYTES = 128 << 10

@pytest.fixture
def programs(monkeypatch) -> list:
  """The ProgramSpec of every kernel codegen builds during the test."""
  built, real = [], codegen.get_program
  def recording(ast, renderer, opts=None):
    spec = real(ast, renderer, opts)
    built.append(spec)
    return spec
  monkeypatch.setattr(codegen, "get_program", recording)
  return built

def largest_source(programs) -> int: return max(len(p.src) for p in programs)

def value_nodes(ast) -> int:
  """Nodes of a lowered kernel that compute values (index math left out): what the scheduler bounds."""
  return sum(1 for u in lower_kernel(ast).toposort if u.op in GroupOp.ALU | {Ops.LOAD, Ops.REDUCE} and not u.dtype.is_int())

# ---- an Elman RNN unrolled over 32 steps, trained one step ----
T, LAYERS, HIDDEN, BATCH, N_IN, N_OUT = 32, 2, 64, 16, 24, 10

class ElmanRNN:
  """h_t = tanh(x_t Wx + bx + h_{t-1} Wh) per layer, a linear head on the last step."""
  def __init__(self):
    self.wx = [nn.Linear(N_IN if i == 0 else HIDDEN, HIDDEN) for i in range(LAYERS)]
    self.wh = [nn.Linear(HIDDEN, HIDDEN, bias=False) for _ in range(LAYERS)]
    self.head = nn.Linear(HIDDEN, N_OUT)
  def params(self) -> list[Tensor]:
    return [t for i in range(LAYERS) for t in (self.wx[i].weight, self.wx[i].bias, self.wh[i].weight)] + [self.head.weight, self.head.bias]
  def __call__(self, xs: Tensor) -> Tensor:
    hs = [Tensor.zeros(BATCH, HIDDEN) for _ in range(LAYERS)]
    for t in range(T):
      inp = xs[:, t]
      for i in range(LAYERS): inp = hs[i] = (self.wx[i](inp) + self.wh[i](hs[i])).tanh()
    return self.head(inp)

def torch_step(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float):
  """The same step in torch: loss, gradients and the parameters after one Adam step."""
  ps = [torch.tensor(w, requires_grad=True) for w in weights]
  hs = [torch.zeros(BATCH, HIDDEN) for _ in range(LAYERS)]
  xs = torch.tensor(x)
  for t in range(T):
    inp = xs[:, t]
    for i in range(LAYERS):
      wx, bx, wh = ps[3 * i:3 * i + 3]
      inp = hs[i] = torch.tanh(inp @ wx.T + bx + hs[i] @ wh.T)
  loss = torch.nn.functional.cross_entropy(inp @ ps[-2].T + ps[-1], torch.tensor(y))
  loss.backward()
  grads = [p.grad.numpy().copy() for p in ps]
  opt = torch.optim.Adam(ps, lr=lr)
  opt.step()
  return loss.item(), grads, [p.detach().numpy() for p in ps]

@pytest.mark.slow
def test_rnn_unrolled_over_32_steps_trains_one_step_with_bounded_kernels(programs):
  Tensor.manual_seed(0)
  rng = np.random.default_rng(0)
  model = ElmanRNN()
  params = model.params()
  weights = [p.numpy().copy() for p in params]
  x, y = rng.standard_normal((BATCH, T, N_IN)).astype(np.float32), rng.integers(0, N_OUT, BATCH)
  opt = Adam(params, lr=1e-2)
  loss = model(Tensor(x)).cross_entropy(Tensor(y.astype(np.int32)))
  loss.backward()
  Tensor.realize(loss, *[p.grad for p in params])  # the forward and the backward in one realize, before the step writes
  grads = [p.grad.numpy() for p in params]
  opt.step()
  ref_loss, ref_grads, ref_params = torch_step(weights, x, y, lr=1e-2)
  np.testing.assert_allclose(loss.item(), ref_loss, rtol=1e-5)
  for g, rg in zip(grads, ref_grads): np.testing.assert_allclose(g, rg, rtol=1e-3, atol=1e-6)
  # an Adam step moves a weight by about lr whatever its gradient, so the check is to a part in 1000 of lr
  for p, rp in zip(params, ref_params): np.testing.assert_allclose(p.numpy(), rp, rtol=0, atol=1e-5)
  assert programs and largest_source(programs) < MAX_SOURCE_BYTES, f"largest kernel: {largest_source(programs)} bytes of source"

# ---- elementwise chains whose shared values are read at several places ----
def test_chain_of_shared_subexpressions_stays_one_small_kernel(programs):
  # x is read three times a step at the same index: one copy per step, however long the chain
  a = np.random.default_rng(0).uniform(-0.01, 0.01, (16, 64)).astype(np.float32)
  x, ref = Tensor(a), a.astype(np.float64)
  for _ in range(40): x, ref = x * x + x, ref * ref + ref
  np.testing.assert_allclose(x.numpy(), ref, rtol=1e-5, atol=1e-8)
  assert len(programs) == 1 and len(programs[0].src) < 16 << 10

def shift_chain(x, steps: int, pad, left, right):
  """x <- (x[i+1] * x[i] + x[i-1]) / 2 along the last axis (zero past the ends): each step reads x at three places,
  two of them shifted, so the value `steps` back is reached along 3**steps paths."""
  for _ in range(steps): x = (pad(left(x), (0, 1)) * x + pad(right(x), (1, 0))) * 0.5
  return x

def test_shifted_chain_is_cut_into_kernels_of_bounded_size_and_matches_numpy(programs):
  a = np.random.default_rng(1).uniform(-0.5, 0.5, (4, 64)).astype(np.float32)
  out = shift_chain(Tensor(a), 40, lambda t, p: t.pad(((0, 0), p)), lambda t: t[:, 1:], lambda t: t[:, :-1])
  items, _, _ = create_schedule([out.uop])
  kernels = [it.ast for it in items if it.kind == "kernel"]
  # the paths double every step: unbounded, 12 steps lowered to 112,586 nodes and 40 never finished
  assert max(value_nodes(k) for k in kernels) <= MAX_KERNEL_NODES
  ref = shift_chain(a.astype(np.float64), 40, lambda t, p: np.pad(t, ((0, 0), p)), lambda t: t[:, 1:], lambda t: t[:, :-1])
  np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-6)
  assert largest_source(programs) < MAX_SOURCE_BYTES

def test_matmul_with_a_long_elementwise_tail_keeps_its_source_small(programs):
  # a 128-lane matmul block repeats the tail once per lane: tanh's backward behind one was 330 KB of C
  rng = np.random.default_rng(2)
  a, b, g = (rng.standard_normal(s).astype(np.float32) for s in ((16, 64), (64, 64), (16, 64)))
  ta, tb = Tensor(a, requires_grad=True), Tensor(b)
  (ga,) = (ta @ tb).tanh().gradient(ta, gradient=Tensor(g))
  ra = torch.tensor(a, requires_grad=True)
  torch.tanh(ra @ torch.tensor(b)).backward(torch.tensor(g))
  np.testing.assert_allclose(ga.numpy(), ra.grad.numpy(), rtol=1e-4, atol=1e-5)
  assert largest_source(programs) < MAX_SOURCE_BYTES and max(map(rendered_ops, programs)) <= LANE_OPS_BUDGET

# ---- the lanes' budget: each upcast or unrolled lane copies the ops that depend on its axis ----
def rendered_ops(spec) -> int: return sum(1 for u in spec.uops if u.op in GroupOp.Elementwise)

def last_kernel(out: Tensor) -> Kernel:
  items, _, _ = create_schedule([out.uop])
  return Kernel([it for it in items if it.kind == "kernel"][-1].ast, Device["CPU"].renderer)

def test_expanded_ops_counts_each_op_once_per_lane_of_the_axes_it_depends_on():
  x, y, z = Tensor(np.ones((16, 32), np.float32)), Tensor(np.ones(32, np.float32)), Tensor(np.ones((16, 1), np.float32))
  k = last_kernel(x * y + z * 2)
  i, j = k.axes
  # x*y and the sum depend on both axes, z*2 on i only; the affine index math folds into addresses and is not counted
  assert expanded_ops(k.sink, {}, k.idt) == 3
  assert expanded_ops(k.sink, {j: 8}, k.idt) == 8 + 8 + 1
  assert expanded_ops(k.sink, {i: 4, j: 8}, k.idt) == 32 + 32 + 4
  # index math that does not fold (a read at j // 2) is copied per lane like value math
  k = last_kernel(x * Tensor(np.ones(16, np.float32)).reshape(16, 1).expand(16, 2).reshape(32))
  assert expanded_ops(k.sink, {k.axes[1]: 8}, k.idt) == 8 + 8

def test_random_bits_expand_within_the_lane_budget_and_match_the_unoptimised_kernel(programs):
  # Threefry's rounds and its counter's index math, copied per lane: 8 lanes were 2,600 ops of C and up to 2 s of gcc
  Tensor.manual_seed(3)
  bits = Tensor._random_bits(16384, "CPU").numpy()
  assert programs and max(map(rendered_ops, programs)) <= LANE_OPS_BUDGET
  with Context(NOOPT=1):
    Tensor.manual_seed(3)
    np.testing.assert_array_equal(Tensor._random_bits(16384, "CPU").numpy(), bits)

def test_a_padded_block_over_the_budget_halves_with_its_padding():
  """13 rows of 128 (padded to 130) halve to 6 (padded to 132) when the body is over the budget: dropping the row block
  (the old rule, since 6 does not divide 13) left an attention's q @ k.T one row of 32 columns, at half the speed."""
  from lucidgrad.codegen.opt import within_lane_budget, Opt, OptOps
  k = last_kernel(Tensor(np.ones((128, 64), np.float32)) @ Tensor(np.ones((64, 128), np.float32)))
  rows, cols = k.axes[0], k.axes[1]
  opts = [Opt(OptOps.UPCAST, 1, 32), Opt(OptOps.PADTO, 0, 13), Opt(OptOps.UPCAST, 0, 13)]
  six, thirteen = expanded_ops(k.sink, {rows: 6, cols: 32}, k.idt), expanded_ops(k.sink, {rows: 13, cols: 32}, k.idt)
  assert within_lane_budget(k.sink, opts, k.idt, budget=(six + thirteen) // 2) == [Opt(OptOps.UPCAST, 1, 32), Opt(OptOps.PADTO, 0, 6), Opt(OptOps.UPCAST, 0, 6)]
