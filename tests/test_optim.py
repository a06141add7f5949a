"""Optimisers, schedulers and gradient clipping: trajectories against torch.optim (LAMB against a float64 NumPy
reference), in-place updates, lr changes that need no new kernels, and kernel counts of a step."""
import math
import numpy as np, pytest, torch
from lucidgrad import Tensor, GlobalCounters, jit
from lucidgrad.engine import realize as engine_realize
from lucidgrad.nn.optim import SGD, Adam, AdamW, LAMB, StepLR, CosineAnnealingLR, LinearLR, OneCycleLR, clip_grad_norm_

rng = np.random.default_rng(0)
SHAPES = [(4, 6), (6,), (6, 3), (3,)]
INIT = [rng.standard_normal(s).astype(np.float32) * 0.5 for s in SHAPES]
X, Y = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32)

def mlp_loss(ps, lib):
  """A 2-layer MLP's squared error on (X, Y), in lucidgrad or torch."""
  x, y = (Tensor(X), Tensor(Y)) if lib == "lg" else (torch.tensor(X), torch.tensor(Y))
  h = (x @ ps[0] + ps[1]).relu()
  return ((h @ ps[2] + ps[3] - y) ** 2).mean()

EXTRA = [rng.standard_normal((2, 5)).astype(np.float32), rng.standard_normal((3,)).astype(np.float32)]

def train(lib, make_opt, steps=20, make_sched=None, sometimes=False):
  """Parameters after `steps` optimizer steps on the MLP. With `sometimes`, two more parameters: one in the loss only
  on steps 1, 4, 7, ... and one never, so they get no gradient on the other steps."""
  init = INIT + EXTRA if sometimes else INIT
  ps = [Tensor(w.copy(), requires_grad=True) for w in init] if lib == "lg" else [torch.tensor(w.copy(), requires_grad=True) for w in init]
  opt = make_opt(ps)
  sched = make_sched(opt) if make_sched else None
  for k in range(steps):
    opt.zero_grad()
    loss = mlp_loss(ps, lib)
    if sometimes and k % 3 == 1: loss = loss + ((ps[4] - 1) ** 2).sum() * 0.1
    loss.backward()
    opt.step()
    if sched: sched.step()
  return [p.numpy() if lib == "lg" else p.detach().numpy() for p in ps]

def assert_same_trajectory(ours, theirs, rtol=1e-5):
  for a, b in zip(ours, theirs): np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())

SGD_CASES = {
  "plain": dict(lr=0.1),
  "momentum": dict(lr=0.05, momentum=0.9),
  "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
  "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
  "weight_decay": dict(lr=0.05, momentum=0.9, weight_decay=0.1),
  "maximize": dict(lr=0.01, momentum=0.5, maximize=True),
}
@pytest.mark.parametrize("case", SGD_CASES)
def test_sgd_matches_torch(case):
  kw = SGD_CASES[case]
  assert_same_trajectory(train("lg", lambda p: SGD(p, **kw)), train("torch", lambda p: torch.optim.SGD(p, **kw)))

ADAM_CASES = {
  "adam": (Adam, torch.optim.Adam, dict(lr=0.01)),
  "adam_weight_decay": (Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
  "adam_maximize": (Adam, torch.optim.Adam, dict(lr=0.01, maximize=True)),
  "adamw": (AdamW, torch.optim.AdamW, dict(lr=0.01)),
  "adamw_strong_decay": (AdamW, torch.optim.AdamW, dict(lr=0.02, eps=1e-6, weight_decay=0.5)),
}
@pytest.mark.parametrize("case", ADAM_CASES)
def test_adam_matches_torch(case):
  ours, theirs, kw = ADAM_CASES[case]
  assert_same_trajectory(train("lg", lambda p: ours(p, **kw)), train("torch", lambda p: theirs(p, **kw)))

def test_parameters_without_grad_are_skipped_like_torch():
  # one parameter gets a gradient on steps 1, 4, 7 only: its state and its step count (bias correction) wait meanwhile,
  # and its momentum buffer starts at its first gradient; one never gets a gradient and never moves
  for ours, theirs, kw in [(Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1)), (AdamW, torch.optim.AdamW, dict(lr=0.01)),
                           (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.1))]:
    a = train("lg", lambda p: ours(p, **kw), steps=9, sometimes=True)
    b = train("torch", lambda p: theirs(p, **kw), steps=9, sometimes=True)
    assert_same_trajectory(a, b)
    np.testing.assert_array_equal(a[-1], EXTRA[-1])

def test_step_with_no_grads_does_nothing():
  p = Tensor(INIT[0].copy(), requires_grad=True)
  opt = Adam([p], lr=0.1)
  GlobalCounters.reset()
  opt.step()
  assert GlobalCounters.kernel_count == 0
  np.testing.assert_array_equal(p.numpy(), INIT[0])

# ---- LAMB against the paper's algorithm in float64 ----
def lamb_reference(ws, grad_fn, steps, lr, b1, b2, eps, wd, adam):
  ws = [w.astype(np.float64) for w in ws]
  m, v = [np.zeros_like(w) for w in ws], [np.zeros_like(w) for w in ws]
  for t in range(1, steps + 1):
    gs = grad_fn(ws)
    for i, (w, g) in enumerate(zip(ws, gs)):
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      r = (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps) + wd * w
      wn, rn = np.linalg.norm(w), np.linalg.norm(r)
      ratio = 1.0 if adam or wn == 0 or rn == 0 else wn / rn
      ws[i] = w - lr * ratio * r
  return ws

@pytest.mark.parametrize("wd,adam", [(0.0, False), (0.01, False), (0.01, True)])
def test_lamb_matches_float64_reference(wd, adam):
  # a quadratic sum_i c_i (w_i - t_i)^2 / 2 with parameters of several shapes, one of them starting at 0 (trust ratio 1)
  r = np.random.default_rng(1)
  shapes = [(5, 3), (7,), (2, 2, 2)]
  init = [r.standard_normal(s).astype(np.float32) for s in shapes[:2]] + [np.zeros(shapes[2], np.float32)]
  cs, ts = [r.uniform(0.5, 2, s) for s in shapes], [r.standard_normal(s) for s in shapes]
  kw = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-6, weight_decay=wd, adam=adam)
  ps = [Tensor(w.copy(), requires_grad=True) for w in init]
  opt = LAMB(ps, **kw)
  for _ in range(20):
    opt.zero_grad()
    sum((((p - Tensor(t.astype(np.float32))) ** 2 * Tensor(c.astype(np.float32))).sum() * 0.5 for p, c, t in zip(ps, cs, ts))).backward()
    opt.step()
  ref = lamb_reference(init, lambda ws: [c * (w - t) for w, c, t in zip(ws, cs, ts)], 20, kw["lr"], 0.9, 0.99, 1e-6, wd, adam)
  assert_same_trajectory([p.numpy() for p in ps], ref)

# ---- schedulers ----
SCHEDULERS = {
  "step": (lambda o: StepLR(o, step_size=7, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
  "cosine": (lambda o: CosineAnnealingLR(o, T_max=10, eta_min=0.01),
             lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.01)),
  "linear": (lambda o: LinearLR(o, start_factor=0.25, total_iters=8),
             lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=8)),
  "onecycle": (lambda o: OneCycleLR(o, max_lr=0.5, total_steps=30),
               lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=30, cycle_momentum=False)),
  "onecycle_linear_3phase": (
    lambda o: OneCycleLR(o, max_lr=0.5, total_steps=30, pct_start=0.25, anneal_strategy="linear", div_factor=10, three_phase=True),
    lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=30, pct_start=0.25, anneal_strategy="linear",
                                                  div_factor=10, three_phase=True, cycle_momentum=False)),
}
@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_lr_sequence_matches_torch(name):
  ours, theirs = SCHEDULERS[name]
  opt = SGD([Tensor(np.ones(3, np.float32), requires_grad=True)], lr=0.1)
  topt = torch.optim.SGD([torch.ones(3, requires_grad=True)], lr=0.1)
  s, ts = ours(opt), theirs(topt)
  got, want = [s.get_last_lr()[0]], [ts.get_last_lr()[0]]
  dev = [opt.lr.item()]
  for _ in range(29):
    topt.step(); ts.step(); s.step()
    got.append(s.get_last_lr()[0]); want.append(ts.get_last_lr()[0]); dev.append(opt.lr.item())
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(dev, want, rtol=1e-6)   # the lr buffer the kernels read holds it too

def test_onecycle_past_total_steps_raises():
  s = OneCycleLR(SGD([Tensor.ones(2).requires_grad_()], lr=0.1), max_lr=1.0, total_steps=3)
  for _ in range(3): s.step()
  with pytest.raises(ValueError, match="total_steps is 3"): s.step()

def test_scheduled_lr_changes_the_update_without_new_kernels():
  kw = dict(lr=0.05, momentum=0.9)
  runners = []
  class Count(SGD):
    def step(self):
      super().step()
      runners.append(len(engine_realize._runners))
  ours = train("lg", lambda p: Count(p, **kw), steps=10, make_sched=lambda o: StepLR(o, step_size=3, gamma=0.3))
  theirs = train("torch", lambda p: torch.optim.SGD(p, **kw), steps=10,
                 make_sched=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.3))
  assert_same_trajectory(ours, theirs)
  assert len(set(runners[2:])) == 1, f"kernels compiled after step 2: {runners}"

def test_jitted_step_follows_the_scheduler():
  # the captured kernels read the lr and step-count buffers, so replays see each new lr and bias correction
  ps = [Tensor(w.copy(), requires_grad=True) for w in INIT]
  opt = Adam(ps, lr=0.02)
  sched = CosineAnnealingLR(opt, T_max=6)
  @jit
  def train_step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    h = (x @ ps[0] + ps[1]).relu()
    loss = ((h @ ps[2] + ps[3] - y) ** 2).mean()
    loss.backward()
    opt.step()
    return loss.realize()
  tps = [torch.tensor(w.copy(), requires_grad=True) for w in INIT]
  topt = torch.optim.Adam(tps, lr=0.02)
  tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=6)
  bufs = [p._buffer_view() for p in ps]
  for k in range(8):
    train_step(Tensor(X), Tensor(Y))
    sched.step()
    topt.zero_grad(); mlp_loss(tps, "torch").backward(); topt.step(); tsched.step()
    if k == 2: compiled = len(engine_realize._runners)
  assert len(engine_realize._runners) == compiled
  assert all(p._buffer_view() is b for p, b in zip(ps, bufs))   # updated in place
  assert_same_trajectory([p.numpy() for p in ps], [p.detach().numpy() for p in tps])

# ---- in place, and kernel counts ----
def test_step_writes_each_parameter_and_state_in_place():
  ps = [Tensor(w.copy(), requires_grad=True) for w in INIT]
  opt = Adam(ps, lr=0.01)
  before = [t._buffer_view() for t in ps + opt.exp_avg + opt.exp_avg_sq + [opt.steps, opt.lr]]
  for _ in range(2):
    opt.zero_grad(); mlp_loss(ps, "lg").backward(); opt.step()
  assert all(t._buffer_view() is b for t, b in zip(ps + opt.exp_avg + opt.exp_avg_sq + [opt.steps, opt.lr], before))

def _step_kernels(opt, ps) -> int:
  opt.zero_grad()
  sum((p * p).sum() * (k + 1) for k, p in enumerate(ps)).backward()
  Tensor.realize(*[p.grad for p in ps])
  GlobalCounters.reset()
  opt.step()
  return GlobalCounters.kernel_count

@pytest.mark.parametrize("make,extra", [(lambda p: SGD(p, lr=0.1), 0), (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True), 1),
                                        (lambda p: Adam(p), 3), (lambda p: AdamW(p), 3)])
def test_step_is_one_kernel_per_parameter_plus_a_few(make, extra):
  # each kind of state is one flat tensor: one kernel updates it for all parameters (3N+1 kernels with per-parameter state)
  ps = [Tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in [(8, 4), (4,), (3, 5, 2), (7,), (2, 9), (1,)]]
  opt = make(ps)
  counts = [_step_kernels(opt, ps) for _ in range(2)]
  assert counts == [len(ps) + extra] * 2 and len(ps) + extra <= len(ps) + 4

# ---- clip_grad_norm_ ----
@pytest.mark.parametrize("norm_type,max_norm", [(2.0, 0.5), (2.0, 1e3), (1.0, 0.3), (math.inf, 0.1), (3.0, 0.2)])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
  ps = [Tensor(w.copy(), requires_grad=True) for w in INIT]
  tps = [torch.tensor(w.copy(), requires_grad=True) for w in INIT]
  mlp_loss(ps, "lg").backward(); mlp_loss(tps, "torch").backward()
  total = clip_grad_norm_(ps, max_norm, norm_type)
  want = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
  np.testing.assert_allclose(total.numpy(), want.numpy(), rtol=1e-5)
  for p, tp in zip(ps, tps): np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-7)

def test_clip_grad_norm_of_realized_grads_scales_their_buffers():
  p = Tensor(np.ones(4, np.float32), requires_grad=True)
  (p * Tensor([3.0, 0.0, 4.0, 0.0])).sum().backward()
  g = p.grad.realize()
  buf = g._buffer_view()
  assert clip_grad_norm_([p], 1.0).item() == pytest.approx(5.0)
  np.testing.assert_allclose(p.grad.numpy(), np.array([3, 0, 4, 0]) / (5 + 1e-6), rtol=1e-6)
  assert p.grad is g and g._buffer_view() is buf
  assert clip_grad_norm_([Tensor.ones(2).requires_grad_()], 1.0).item() == 0.0   # no grads: norm 0

# ---- zero_grad and bad input ----
def test_zero_grad_sets_grads_to_none():
  ps = [Tensor(w.copy(), requires_grad=True) for w in INIT]
  opt = SGD(ps, lr=0.1)
  mlp_loss(ps, "lg").backward()
  assert all(p.grad is not None for p in ps)
  opt.zero_grad()
  assert all(p.grad is None for p in ps)

def test_bad_input_raises_clear_errors():
  p = Tensor.ones(3).requires_grad_()
  with pytest.raises(ValueError, match="empty parameter list"): SGD([], lr=0.1)
  with pytest.raises(ValueError, match="does not require grad"): Adam([p, Tensor.ones(2)])
  with pytest.raises(TypeError, match="not a Tensor"): Adam([p, np.ones(2)])
  with pytest.raises(ValueError, match="more than once"): Adam([p, p])
  with pytest.raises(ValueError, match="learning rate must be a number >= 0"): SGD([p], lr=-0.1)
  with pytest.raises(ValueError, match="learning rate must be a number >= 0"): Adam([p]).set_lr(-1.0)
  with pytest.raises(ValueError, match="nesterov"): SGD([p], lr=0.1, nesterov=True)
  with pytest.raises(ValueError, match="betas"): Adam([p], betas=(0.9, 1.0))
  with pytest.raises(ValueError, match="weight_decay"): AdamW([p], weight_decay=-0.1)
  with pytest.raises(ValueError, match="total_steps"): OneCycleLR(Adam([p]), max_lr=0.1, total_steps=0)
  with pytest.raises(ValueError, match="norm_type"): clip_grad_norm_([p], 1.0, norm_type=0)
  opt = SGD([p], lr=0.1)
  p.grad = Tensor.ones(4)
  with pytest.raises(ValueError, match=r"shape \(3,\) but its .grad has shape \(4,\)"): opt.step()

def test_many_parameters_are_grouped_and_still_match_torch():
  # 20 parameters: state in groups of GROUP (8), so a step is N + 2 * 3 moment kernels + 1 step-count kernel
  from lucidgrad.nn.optim import GROUP
  shapes = [(3, 2), (5,), (2, 2, 2), (1,)] * 5
  init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
  ps = [Tensor(w.copy(), requires_grad=True) for w in init]
  tps = [torch.tensor(w.copy(), requires_grad=True) for w in init]
  opt, topt = Adam(ps, lr=0.05), torch.optim.Adam(tps, lr=0.05)
  counts = []
  for k in range(5):
    counts.append(_step_kernels(opt, ps))
    topt.zero_grad(); sum((p * p).sum() * (j + 1) for j, p in enumerate(tps)).backward(); topt.step()
  assert counts == [len(ps) + 2 * math.ceil(len(ps) / GROUP) + 1] * 5
  for a, b in zip(ps, tps): np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
