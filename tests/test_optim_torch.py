"""lucidgrad.nn.optim against torch.optim on the CPU: every optimiser and its main options step for step (the same
initial parameters; each step's gradient computed in each framework from its own parameters, a quadratic with a sine
and a fixed noise), param groups and their options changed between steps, state_dict round trips (lucidgrad's and
torch's), each scheduler's lr (and momentum) sequence, bad arguments, and a jitted step following a scheduler."""
import subprocess, sys, warnings
import numpy as np, pytest, torch
from lucidgrad import Tensor, jit
from lucidgrad.engine import realize as engine_realize
import lucidgrad.nn.optim as lgo
from lucidgrad.nn.optim import lr_scheduler as lgs

SHAPES = [(3, 4), (5,), (2, 3)]
rng = np.random.default_rng(12)
INIT = [rng.standard_normal(s) * 0.5 for s in SHAPES]
TARGET = [rng.standard_normal(s) for s in SHAPES]
SCALE = [rng.uniform(0.5, 2.0, s) for s in SHAPES]
STEPS = 8  # RAdam's rectified branch starts at step 6 with beta2 = 0.999
NOISE = [[rng.standard_normal(s) * 0.3 for s in SHAPES] for _ in range(2 * STEPS)]

def grad_of(w: np.ndarray, i: int, k: int) -> np.ndarray:
  """Parameter i's gradient at step k, in float64 from the parameter's current values."""
  return SCALE[i] * (w - TARGET[i]) + 0.5 * np.sin(3 * w) + NOISE[k][i]

def params(lib: str, dtype=np.float32, n: int = 2, init=None) -> list:
  ws = init if init is not None else INIT[:n]
  if lib == "lg": return [Tensor(w.astype(dtype), requires_grad=True) for w in ws]
  return [torch.tensor(w.astype(dtype), requires_grad=True) for w in ws]

def values(ps) -> list[np.ndarray]: return [p.numpy().copy() if isinstance(p, Tensor) else p.detach().numpy().copy() for p in ps]

def give_grads(ps, k: int, skip=lambda i, k: False):
  for i, (p, w) in enumerate(zip(ps, values(ps))):
    if skip(i, k): p.grad = None; continue
    g = grad_of(w.astype(np.float64), i, k).astype(w.dtype)
    p.grad = Tensor(g) if isinstance(p, Tensor) else torch.tensor(g)

def train(ps, opt, steps: int = STEPS, start: int = 0, skip=lambda i, k: False, between=None) -> list[list[np.ndarray]]:
  """The parameters after each of `steps` steps (gradients of steps start, start + 1, ...); between(k) runs after step k."""
  out = []
  for k in range(start, start + steps):
    give_grads(ps, k, skip)
    opt.step()
    out.append(values(ps))
    if between: between(k)
  return out

def assert_close(ours, theirs, rtol=1e-5):
  for k, (a, b) in enumerate(zip(ours, theirs)):
    for i, (x, y) in enumerate(zip(a, b)):
      np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(np.abs(y).max(), 1e-3), err_msg=f"step {k + 1}, parameter {i}")

def two_groups(cls, ps, kw: dict):
  """The layout most tests use: parameter 0 with the options given, the rest in a second group with half the lr."""
  return cls([{"params": [ps[0]]}, {"params": ps[1:], "lr": kw.get("lr", 1.0) / 2}], **kw)

def both(name: str, make, **kw):
  """Trajectories of the same training in lucidgrad and torch; make(cls, params) builds the optimiser."""
  lp, tp = params("lg", **kw), params("torch", **kw)
  return train(lp, make(getattr(lgo, name), lp)), train(tp, make(getattr(torch.optim, name), tp))

# ---- every optimiser and its main options ----
CASES = {
  "sgd_momentum_dampening_wd": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.1)),
  "sgd_nesterov_maximize": ("SGD", dict(lr=0.02, momentum=0.8, nesterov=True, maximize=True)),
  "adam_amsgrad": ("Adam", dict(lr=0.05, amsgrad=True)),
  "adam_amsgrad_wd_maximize": ("Adam", dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True, maximize=True)),
  "adam_decoupled": ("Adam", dict(lr=0.05, weight_decay=0.3, decoupled_weight_decay=True)),
  "adamw_amsgrad": ("AdamW", dict(lr=0.05, weight_decay=0.2, amsgrad=True)),
  "rmsprop": ("RMSprop", dict(lr=0.01)),
  "rmsprop_centered": ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True)),
  "rmsprop_momentum": ("RMSprop", dict(lr=0.01, momentum=0.9)),
  "rmsprop_all": ("RMSprop", dict(lr=0.005, alpha=0.95, eps=1e-6, weight_decay=0.1, momentum=0.5, centered=True, maximize=True)),
  "adagrad": ("Adagrad", dict(lr=0.1)),
  "adagrad_all": ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.3, eps=1e-8, maximize=True)),
  "adadelta": ("Adadelta", dict()),
  "adadelta_all": ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1, maximize=True)),
  "adamax": ("Adamax", dict(lr=0.05)),
  "adamax_all": ("Adamax", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, maximize=True)),
  "nadam": ("NAdam", dict(lr=0.05)),
  "nadam_wd": ("NAdam", dict(lr=0.05, weight_decay=0.1, momentum_decay=0.01)),
  "nadam_decoupled_maximize": ("NAdam", dict(lr=0.02, weight_decay=0.2, decoupled_weight_decay=True, maximize=True)),
  "radam": ("RAdam", dict(lr=0.05)),
  "radam_wd": ("RAdam", dict(lr=0.05, betas=(0.9, 0.9), weight_decay=0.1)),
  "radam_decoupled_maximize": ("RAdam", dict(lr=0.02, weight_decay=0.2, decoupled_weight_decay=True, maximize=True)),
}
@pytest.mark.parametrize("case", CASES)
def test_optimizer_matches_torch_step_by_step(case):
  name, kw = CASES[case]
  assert_close(*both(name, lambda cls, ps: two_groups(cls, ps, kw)))

F64_CASES = ["adam_amsgrad_wd_maximize", "nadam_wd", "radam_wd"]
@pytest.mark.parametrize("case", F64_CASES)
def test_float64_parameters_match_torch_to_1e_10(case):
  # the state and the per-step scalars are float64 for float64 parameters; torch's scalar state (NAdam's mu_product)
  # follows its default dtype, so that is float64 here too
  name, kw = CASES[case]
  before = torch.get_default_dtype()
  torch.set_default_dtype(torch.float64)
  try: ours, theirs = both(name, lambda cls, ps: two_groups(cls, ps, kw), dtype=np.float64)
  finally: torch.set_default_dtype(before)
  assert all(w.dtype == np.float64 for w in ours[-1])
  assert_close(ours, theirs, rtol=1e-10)

@pytest.mark.parametrize("name,kw", [("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)), ("Adadelta", dict()), ("NAdam", dict(lr=0.05)),
                                     ("SGD", dict(lr=0.05, momentum=0.9))])
def test_parameters_without_a_grad_keep_their_state_like_torch(name, kw):
  # parameter 1 has a gradient on steps 2, 5, 8 only (its step count, moments and NAdam's mu_product wait), and
  # parameter 2 never has one; a chunk holding both kinds updates under a mask
  skip = lambda i, k: (i == 1 and k % 3 != 1) or i == 2
  lp, tp = params("lg", n=3), params("torch", n=3)
  ours = train(lp, getattr(lgo, name)(lp, **kw), skip=skip)
  theirs = train(tp, getattr(torch.optim, name)(tp, **kw), skip=skip)
  assert_close(ours, theirs)
  np.testing.assert_array_equal(ours[-1][2], INIT[2].astype(np.float32))

# ---- param groups ----
# each group its own switches (amsgrad, nesterov, centered, decoupled_weight_decay) and numbers, two parameters in one
GROUPED = {
  "SGD": (dict(lr=0.01, momentum=0.9), [dict(lr=0.1), dict(momentum=0.5, nesterov=True, weight_decay=0.1)]),
  "Adam": (dict(lr=0.01), [dict(lr=0.05, amsgrad=True), dict(betas=(0.8, 0.9), weight_decay=0.1)]),
  "RMSprop": (dict(lr=0.01), [dict(centered=True, momentum=0.3), dict(lr=0.003, alpha=0.9)]),
  "NAdam": (dict(lr=0.01), [dict(lr=0.05, momentum_decay=0.01), dict(weight_decay=0.1, decoupled_weight_decay=True)]),
}
@pytest.mark.parametrize("name", GROUPED)
def test_param_groups_with_their_own_options_match_torch(name):
  kw, opts = GROUPED[name]
  make = lambda cls, ps: cls([{"params": [ps[0], ps[2]], **opts[0]}, {"params": [ps[1]], **opts[1]}], **kw)
  ours, theirs = both(name, make, n=3)
  assert_close(ours, theirs)

def test_options_changed_between_steps_take_effect_like_torch_without_new_kernels():
  # a user (or scheduler) writes group options as torch's dicts: lr, betas, weight_decay, eps change the next step
  changes = {1: dict(lr=0.02), 2: dict(betas=(0.5, 0.9)), 3: dict(weight_decay=0.3), 4: dict(eps=1e-3, lr=0.05)}
  def run(cls, ps, compiled):
    opt = cls([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.03}], lr=0.1, weight_decay=0.1)
    def between(k):
      for key, v in changes.get(k, {}).items(): opt.param_groups[k % 2][key] = v
      compiled.append(len(engine_realize._runners))
    return train(ps, opt, between=between)
  runners: list[int] = []
  ours = run(lgo.Adam, params("lg"), runners)
  assert_close(ours, run(torch.optim.Adam, params("torch"), []))
  assert len(set(runners[1:])) == 1, f"kernels compiled after the first step: {runners}"

def test_add_param_group_mid_run_matches_torch():
  def run(cls, ps):
    opt = cls([ps[0]], lr=0.05, amsgrad=True)
    out = train(ps[:1], opt, steps=3)
    opt.add_param_group({"params": ps[1:], "lr": 0.01, "amsgrad": False})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    return out + train(ps, opt, steps=4, start=3)
  assert_close(run(lgo.Adam, params("lg", n=3)), run(torch.optim.Adam, params("torch", n=3)))

def test_param_groups_and_defaults_look_like_torchs():
  p, tp = params("lg", n=1)[0], params("torch", n=1)[0]
  for name, kw in [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", {}), ("AdamW", {}), ("RMSprop", {}), ("Adagrad", {}), ("Adadelta", {}),
                   ("Adamax", {}), ("NAdam", {}), ("RAdam", {})]:
    ours, theirs = getattr(lgo, name)([p], **kw), getattr(torch.optim, name)([tp], **kw)
    impl = ("foreach", "fused", "capturable", "differentiable")
    assert ours.defaults == {k: v for k, v in theirs.defaults.items() if k not in impl}, name
    g, tg = ours.param_groups[0], theirs.param_groups[0]
    assert isinstance(g, dict) and g["params"][0] is p
    assert {k: v for k, v in g.items() if k != "params"} == {k: v for k, v in tg.items() if k not in impl + ("params",)}, name

# ---- state_dict ----
# the step-by-step cases' options and layout: their kernels, compiled once
SD_CASES = ["sgd_momentum_dampening_wd", "adam_amsgrad", "adamw_amsgrad", "rmsprop_all", "adagrad_all", "adadelta", "adamax", "nadam", "radam"]

@pytest.mark.parametrize("case", SD_CASES)
def test_state_dict_round_trip_continues_identically(case):
  name, kw = CASES[case]
  skip = lambda i, k: i == 1 and k < 2   # parameter 1 starts late: it has no state in the first saved dict
  ps = params("lg")
  opt = two_groups(getattr(lgo, name), ps, kw)
  train(ps, opt, steps=1, skip=skip)
  sd = opt.state_dict()
  assert sorted(sd["state"]) == ([0, 1] if name == "Adagrad" else [0])   # Adagrad's state exists from the constructor on
  train(ps, opt, steps=3, start=1, skip=skip)
  sd = opt.state_dict()
  assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
  assert all(isinstance(v, Tensor) for entry in sd["state"].values() for v in entry.values())
  ps2 = [Tensor(w, requires_grad=True) for w in values(ps)]
  opt2 = two_groups(getattr(lgo, name), ps2, dict(kw, lr=123.0))  # the options come from the dict
  opt2.load_state_dict(sd)
  assert opt2.param_groups[1]["lr"] == opt.param_groups[1]["lr"] and opt2.param_groups[1]["params"][0] is ps2[1]
  a, b = train(ps, opt, steps=4, start=4), train(ps2, opt2, steps=4, start=4)
  for x, y in zip(a, b):
    for u, v in zip(x, y): np.testing.assert_array_equal(u, v)

@pytest.mark.parametrize("case", SD_CASES)
def test_state_dict_has_torchs_layout_and_loads_torchs(case):
  name, kw = CASES[case]
  lp, tp = params("lg"), params("torch")
  opt, topt = two_groups(getattr(lgo, name), lp, kw), two_groups(getattr(torch.optim, name), tp, kw)
  train(lp, opt, steps=3), train(tp, topt, steps=3)
  sd, tsd = opt.state_dict(), topt.state_dict()
  impl = ("foreach", "fused", "capturable", "differentiable")
  assert [{k: v for k, v in g.items()} for g in sd["param_groups"]] == [{k: v for k, v in g.items() if k not in impl} for g in tsd["param_groups"]]
  assert list(sd["state"]) == list(tsd["state"])
  for i, entry in tsd["state"].items():
    assert list(sd["state"][i]) == list(entry), (i, list(sd["state"][i]), list(entry))
    for k, v in entry.items():
      mine = sd["state"][i][k].numpy()
      assert mine.shape == tuple(v.shape), (i, k)
      np.testing.assert_allclose(mine, v.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{i} {k}")
  # torch's dict (torch tensors) into a fresh lucidgrad optimiser over torch's current parameters: both carry on alike
  lp2 = [Tensor(w, requires_grad=True) for w in values(tp)]
  opt2 = two_groups(getattr(lgo, name), lp2, kw)
  opt2.load_state_dict(tsd)
  assert_close(train(lp2, opt2, steps=4, start=3), train(tp, topt, steps=4, start=3))

def test_torch_loads_lucidgrads_state_dict():
  lp, tp = params("lg"), params("torch")
  opt = two_groups(lgo.NAdam, lp, dict(lr=0.05))
  train(lp, opt, steps=3)
  sd = opt.state_dict()
  sd["state"] = {i: {k: torch.tensor(v.numpy()) for k, v in e.items()} for i, e in sd["state"].items()}
  with torch.no_grad():
    for t, w in zip(tp, values(lp)): t.copy_(torch.tensor(w))
  topt = two_groups(torch.optim.NAdam, tp, dict(lr=0.05))
  topt.load_state_dict(sd)
  assert_close(train(lp, opt, steps=3, start=3), train(tp, topt, steps=3, start=3))

def test_load_state_dict_rejects_a_mismatch():
  sd = two_groups(lgo.Adam, params("lg", n=3), {}).state_dict()
  with pytest.raises(ValueError, match="2 parameter groups, this optimiser 1"): lgo.Adam(params("lg", n=3)).load_state_dict(sd)
  with pytest.raises(ValueError, match="param group 1 of the loaded state dict has 2 parameters, this optimiser's 1"):
    two_groups(lgo.Adam, params("lg"), {}).load_state_dict(sd)
  fresh = lambda: two_groups(lgo.Adam, params("lg", n=3), {})
  with pytest.raises(ValueError, match="'momentum_buffer'; Adam keeps step, exp_avg"):
    fresh().load_state_dict({**sd, "state": {0: {"momentum_buffer": np.zeros((3, 4))}}})
  with pytest.raises(ValueError, match=r"loaded 'exp_avg' has shape \(4, 3\), expected \(3, 4\)"):
    fresh().load_state_dict({**sd, "state": {0: {"step": 1, "exp_avg": np.zeros((4, 3))}}})
  with pytest.raises(ValueError, match="state for parameter 7, which no param group lists"): fresh().load_state_dict({**sd, "state": {7: {}}})
  with pytest.raises(ValueError, match="option 'momentum' Adam does not have"):
    fresh().load_state_dict(two_groups(lgo.SGD, params("lg", n=3), dict(lr=0.1)).state_dict())

# ---- schedulers: lr sequences against torch ----
def _sched_run(lib, make, n=40, opt="SGD", opt_kw=None, metrics=None):
  """Each group's lr (and momentum or beta1) on creation and after each of n steps."""
  mod = lgo if lib == "lg" else torch.optim
  ps = params(lib, n=2)
  o = getattr(mod, opt)([{"params": [ps[0]], "lr": 0.1}, {"params": [ps[1]], "lr": 0.02}], **(opt_kw or {}))
  s = make(lgs if lib == "lg" else torch.optim.lr_scheduler, o)
  mom = lambda: [g["betas"][0] if "betas" in g else g.get("momentum") for g in o.param_groups]
  lrs, moms, dev = [list(s.get_last_lr())], [mom()], []
  for k in range(n):
    o.step()
    s.step(metrics[k]) if metrics is not None else s.step()
    lrs.append(list(s.get_last_lr())); moms.append(mom())
    if lib == "lg": dev.append([g.scalars["lr"].item() for g in o.param_groups])
  return lrs, moms, dev, [g["lr"] for g in o.param_groups]

class Warmup:
  """A callable object: LambdaLR's state_dict keeps its attributes."""
  def __init__(self, n): self.n = n
  def __call__(self, e): return min(1.0, (e + 1) / self.n)

PLATEAU = [1.0, 0.9, 0.9, 0.95, 0.9, 0.91, 0.92, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49999, 0.5, 0.3] * 3
SCHEDS = {
  "step": (lambda m, o: m.StepLR(o, step_size=7, gamma=0.5), {}),
  "multistep": (lambda m, o: m.MultiStepLR(o, milestones=[5, 12, 12, 30], gamma=0.3), {}),
  "exponential": (lambda m, o: m.ExponentialLR(o, gamma=0.9), {}),
  "lambda": (lambda m, o: m.LambdaLR(o, lr_lambda=lambda e: 0.95 ** e), {}),
  "lambda_per_group": (lambda m, o: m.LambdaLR(o, lr_lambda=[Warmup(5), lambda e: 1 / (1 + e)]), {}),
  "linear": (lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=8), {}),
  "cosine": (lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001), {}),
  "warm_restarts": (lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5), {}),
  "warm_restarts_mult": (lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.005), {}),
  "plateau": (lambda m, o: m.ReduceLROnPlateau(o, patience=2), {"metrics": PLATEAU}),
  "plateau_max_abs_cooldown": (lambda m, o: m.ReduceLROnPlateau(o, mode="max", factor=0.5, patience=1, threshold=0.05, threshold_mode="abs",
                                                                cooldown=2, min_lr=[0.01, 0.004]), {"metrics": [-x for x in PLATEAU]}),
  "multiplicative": (lambda m, o: m.MultiplicativeLR(o, lr_lambda=lambda e: 0.97), {}),
  "constant": (lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=6), {}),
  "polynomial": (lambda m, o: m.PolynomialLR(o, total_iters=20, power=2.0), {}),
  "sequential": (lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=5), m.CosineAnnealingLR(o, T_max=20),
                                                 m.ExponentialLR(o, gamma=0.9)], milestones=[5, 25]), {}),
  "chained": (lambda m, o: m.ChainedScheduler([m.ConstantLR(o, factor=0.3, total_iters=4), m.ExponentialLR(o, gamma=0.95)]), {}),
  "onecycle_sgd": (lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=40), {"opt_kw": dict(lr=0.1, momentum=0.9)}),
  "onecycle_rmsprop_linear_3phase": (lambda m, o: m.OneCycleLR(o, max_lr=0.3, epochs=4, steps_per_epoch=10, pct_start=0.25, anneal_strategy="linear",
                                                               three_phase=True, base_momentum=0.7, max_momentum=0.9, div_factor=10,
                                                               final_div_factor=100), {"opt": "RMSprop"}),
  "onecycle_adam": (lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=40, pct_start=0.4), {"opt": "Adam"}),
  "onecycle_no_momentum": (lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=45, cycle_momentum=False), {"opt": "Adagrad"}),
}
@pytest.mark.parametrize("name", SCHEDS)
def test_scheduler_lr_sequence_matches_torch(name):
  make, kw = SCHEDS[name]
  lrs, moms, dev, now = _sched_run("lg", make, **kw)
  tlrs, tmoms, _, tnow = _sched_run("torch", make, **kw)
  np.testing.assert_allclose(lrs, tlrs, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(np.array(moms, dtype=float), np.array(tmoms, dtype=float), rtol=1e-12)
  np.testing.assert_allclose(dev, tlrs[1:], rtol=1e-15, atol=1e-18)   # the device buffers the kernels read hold it too
  assert now == tnow
  assert len(set(map(tuple, lrs))) >= 2   # the schedule did something

def test_two_schedulers_on_one_optimizer_compose_like_torchs():
  make = lambda m, o: (m.ExponentialLR(o, gamma=0.9), m.MultiStepLR(o, milestones=[3, 6], gamma=0.1))
  seqs = []
  for lib, m in (("lg", lgs), ("torch", torch.optim.lr_scheduler)):
    o = (lgo if lib == "lg" else torch.optim).SGD(params(lib), lr=0.1)
    a, b = make(m, o)
    seq = []
    for _ in range(10): o.step(); a.step(); b.step(); seq.append(b.get_last_lr()[0])
    seqs.append(seq)
  np.testing.assert_allclose(*seqs, rtol=1e-12)

def test_step_with_an_epoch_uses_the_closed_form_like_torch():
  seqs = []
  for lib, m in (("lg", lgs), ("torch", torch.optim.lr_scheduler)):
    seq = []
    for make in (lambda o: m.StepLR(o, step_size=3, gamma=0.5), lambda o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
                 lambda o: m.MultiStepLR(o, milestones=[2, 9]), lambda o: m.ExponentialLR(o, gamma=0.8)):
      o = (lgo if lib == "lg" else torch.optim).SGD(params(lib), lr=0.1)
      s = make(o)
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates step(epoch)
        for epoch in (4, 9, 2, 11): o.step(); s.step(epoch); seq.append(s.get_last_lr()[0])
    seqs.append(seq)
  np.testing.assert_allclose(*seqs, rtol=1e-12)

def test_warm_restarts_with_fractional_epochs_match_torch():
  seqs = []
  for lib, m in (("lg", lgs), ("torch", torch.optim.lr_scheduler)):
    o = (lgo if lib == "lg" else torch.optim).SGD(params(lib), lr=0.1)
    s = m.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=0.01)
    seq = []
    for epoch in range(8):
      for b in range(4): o.step(); s.step(epoch + b / 4); seq.append(s.get_last_lr()[0])
    seqs.append(seq)
  np.testing.assert_allclose(*seqs, rtol=1e-12)

@pytest.mark.parametrize("name", ["cosine", "lambda_per_group", "onecycle_adam", "plateau", "warm_restarts_mult", "sequential"])
def test_scheduler_state_dict_resumes_the_sequence(name):
  make, kw = SCHEDS[name]
  metrics = kw.get("metrics")
  def fresh():
    ps = params("lg")
    o = getattr(lgo, kw.get("opt", "SGD"))([{"params": [ps[0]], "lr": 0.1}, {"params": [ps[1]], "lr": 0.02}], **kw.get("opt_kw", {}))
    return o, make(lgs, o)
  step = lambda s, k: s.step(metrics[k]) if metrics else s.step()
  o, s = fresh()
  for k in range(12): step(s, k)
  ssd, osd = s.state_dict(), o.state_dict()
  assert "optimizer" not in ssd
  want = []
  for k in range(12, 30): step(s, k); want.append(s.get_last_lr() + [g.get("betas", (g.get("momentum"),))[0] for g in o.param_groups])
  o2, s2 = fresh()
  s2.load_state_dict(ssd)
  o2.load_state_dict(osd)  # after the scheduler's creation, which sets the lr, as torch's docs say
  got = []
  for k in range(12, 30): step(s2, k); got.append(s2.get_last_lr() + [g.get("betas", (g.get("momentum"),))[0] for g in o2.param_groups])
  assert got == want

def test_onecycle_past_total_steps_raises():
  s = lgs.OneCycleLR(lgo.SGD(params("lg"), lr=0.1), max_lr=1.0, total_steps=3)
  for _ in range(3): s.step()
  with pytest.raises(ValueError, match="stepped 4 times, but total_steps is 3"): s.step()

# ---- a jitted step and a scheduler ----
def _loss(ps, lib):
  t = [Tensor(x.astype(np.float32)) if lib == "lg" else torch.tensor(x.astype(np.float32)) for x in TARGET[:2]]
  c = [Tensor(x.astype(np.float32)) if lib == "lg" else torch.tensor(x.astype(np.float32)) for x in SCALE[:2]]
  return sum(((p - ti) ** 2 * ci).sum() * 0.5 + p.sin().sum() * 0.2 for p, ti, ci in zip(ps, t, c))

@pytest.mark.parametrize("name,kw", [("NAdam", dict(lr=0.05, weight_decay=0.01)), ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True))])
def test_jitted_step_follows_onecycle_lr_and_momentum_without_recompiling(name, kw):
  # OneCycleLR writes lr and beta1 (NAdam) or momentum (RMSprop) into the groups every step: the captured kernels read
  # them from device buffers, so replays see each new value; nothing compiles after the capture
  ps, tps = params("lg"), params("torch")
  opt = getattr(lgo, name)([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.02}], **kw)
  topt = getattr(torch.optim, name)([{"params": [tps[0]]}, {"params": [tps[1]], "lr": 0.02}], **kw)
  sched, tsched = lgs.OneCycleLR(opt, max_lr=[0.05, 0.1], total_steps=12), torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=[0.05, 0.1], total_steps=12)
  @jit
  def train_step() -> Tensor:
    opt.zero_grad()
    loss = _loss(ps, "lg")
    loss.backward()
    opt.step()
    return loss.realize()
  bufs = [p._buffer_view() for p in ps]
  for k in range(10):
    train_step()
    sched.step()
    topt.zero_grad(); _loss(tps, "torch").backward(); topt.step(); tsched.step()
    if k == 2: compiled = len(engine_realize._runners)
  assert len(engine_realize._runners) == compiled and train_step.items is not None
  assert all(p._buffer_view() is b for p, b in zip(ps, bufs))
  assert_close([values(ps)], [values(tps)])

# ---- the API around the step ----
def test_step_closure_and_zero_grad_like_torch():
  ps = params("lg")
  opt = lgo.SGD(ps, lr=0.1)
  def closure():
    opt.zero_grad()
    loss = _loss(ps, "lg")
    loss.backward()
    return loss
  tps = params("torch")
  topt = torch.optim.SGD(tps, lr=0.1)
  def tclosure():
    topt.zero_grad()
    loss = _loss(tps, "torch")
    loss.backward()
    return loss
  assert opt.step(closure).item() == pytest.approx(topt.step(tclosure).item(), rel=1e-6)
  assert_close([values(ps)], [values(tps)])
  opt.zero_grad(set_to_none=False)
  assert all(p.grad is not None and not p.grad.numpy().any() for p in ps)
  opt.zero_grad()
  assert all(p.grad is None for p in ps)

def test_state_property_and_named_parameters():
  ps = params("lg")
  opt = lgo.Adam([("w", ps[0]), ("b", ps[1])], lr=0.1)
  assert opt.param_groups[0]["param_names"] == ["w", "b"] and opt.state == {}
  train(ps, opt, steps=2)
  st = opt.state[ps[1]]
  assert list(st) == ["step", "exp_avg", "exp_avg_sq"] and st["step"].item() == 2 and st["exp_avg"].shape == (5,)
  assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]

def test_nn_optim_is_an_attribute_of_nn():
  code = ("import lucidgrad.nn as nn; from lucidgrad.nn.optim.lr_scheduler import OneCycleLR; "
          "assert nn.optim.SGD and nn.optim.lr_scheduler.StepLR is nn.optim.StepLR and OneCycleLR is nn.optim.OneCycleLR")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr

# ---- bad arguments ----
@pytest.mark.parametrize("make,err,match", [
  (lambda p: lgo.RMSprop([p], lr=-0.1), ValueError, "RMSprop: learning rate must be a number >= 0, got -0.1"),
  (lambda p: lgo.RMSprop([p], alpha=-0.5), ValueError, "alpha must be a number >= 0"),
  (lambda p: lgo.RMSprop([p], momentum=-1), ValueError, "momentum must be a number >= 0"),
  (lambda p: lgo.Adagrad([p], lr_decay=-1), ValueError, "lr_decay must be a number >= 0"),
  (lambda p: lgo.Adagrad([p], initial_accumulator_value=-1), ValueError, "initial_accumulator_value must be"),
  (lambda p: lgo.Adadelta([p], rho=1.5), ValueError, r"rho must be in \[0, 1\], got 1.5"),
  (lambda p: lgo.Adadelta([p], eps=-1e-6), ValueError, "eps must be a number >= 0"),
  (lambda p: lgo.Adamax([p], betas=(0.9, 1.0)), ValueError, r"betas must be two numbers in \[0, 1\), got \(0.9, 1.0\)"),
  (lambda p: lgo.NAdam([p], betas=(-0.1, 0.9)), ValueError, "betas must be two numbers"),
  (lambda p: lgo.NAdam([p], momentum_decay=-0.1), ValueError, "momentum_decay must be a number >= 0"),
  (lambda p: lgo.RAdam([p], weight_decay=-1), ValueError, "weight_decay must be a number >= 0"),
  (lambda p: lgo.Adam([p], eps="1e-8"), ValueError, "eps must be a number >= 0, got '1e-8'"),
  (lambda p: lgo.SGD([p], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "nesterov momentum needs a momentum > 0 and dampening = 0"),
  (lambda p: lgo.Adam([p], foreach=True, fused=True, capturable=False) and lgo.Adam([p], fuse=True), TypeError, "unexpected keyword argument 'fuse'"),
  (lambda p: lgo.Adam([p], differentiable=True), NotImplementedError, "differentiable=True"),
  (lambda p: lgo.Adam([{"params": [p], "lr": 0.1, "betas2": 0.9}]), ValueError, "param group 0 has an unknown option 'betas2'; Adam's options are lr, betas"),
  (lambda p: lgo.SGD([{"params": [p]}, {"params": [p]}], lr=0.1), ValueError, "parameter 0 of param group 1 .* is already in another param group"),
  (lambda p: lgo.SGD([{"params": [p]}, {"params": [p], "lr": -1}], lr=0.1), ValueError, r"is already in another param group"),
  (lambda p: lgo.SGD([{"params": Tensor.ones(2).requires_grad_()}, {"params": [p], "lr": -1}], lr=0.1), ValueError,
   r"learning rate must be a number >= 0, got -1 \(param group 1\)"),
  (lambda p: lgo.SGD([{"lr": 0.1}], lr=0.1), ValueError, "param group 0 has no 'params' entry"),
  (lambda p: lgo.SGD([{"params": {p}}], lr=0.1), TypeError, "param group 0's params are a set; give a list"),
  (lambda p: lgo.SGD([], lr=0.1), ValueError, "empty parameter list"),
  (lambda p: lgo.SGD([p], lr=0.1).add_param_group([p]), TypeError, "a param group must be a dict, got list"),
  (lambda p: lgs.StepLR(lgo.SGD([p], lr=0.1), step_size=0), ValueError, "step_size must be a positive int, got 0"),
  (lambda p: lgs.CosineAnnealingWarmRestarts(lgo.SGD([p], lr=0.1), T_0=2, T_mult=0), ValueError, "T_mult must be an int >= 1, got 0"),
  (lambda p: lgs.ReduceLROnPlateau(lgo.SGD([p], lr=0.1), factor=1.0), ValueError, "factor must be < 1.0"),
  (lambda p: lgs.ReduceLROnPlateau(lgo.SGD([p], lr=0.1), mode="mean"), ValueError, "mode must be 'min' or 'max', got 'mean'"),
  (lambda p: lgs.ReduceLROnPlateau(lgo.SGD([p], lr=0.1), min_lr=[0.1, 0.2]), ValueError, "min_lr has 2 values, but the optimizer has 1 param groups"),
  (lambda p: lgs.OneCycleLR(lgo.SGD([p], lr=0.1), max_lr=1.0), ValueError, "give total_steps, or epochs and steps_per_epoch"),
  (lambda p: lgs.OneCycleLR(lgo.SGD([p], lr=0.1), max_lr=1.0, total_steps=10, anneal_strategy="exp"), ValueError, "anneal_strategy must be 'cos' or 'linear'"),
  (lambda p: lgs.OneCycleLR(lgo.Adagrad([p]), max_lr=1.0, total_steps=10), ValueError, "cycle_momentum needs an optimizer with momentum or betas"),
  (lambda p: lgs.LambdaLR(lgo.SGD([p], lr=0.1), lr_lambda=[lambda e: 1, lambda e: 2]), ValueError, "lr_lambda has 2 values, but the optimizer has 1"),
  (lambda p: lgs.StepLR(lgo.SGD([p], lr=0.1), step_size=2, last_epoch=5), KeyError, "needs 'initial_lr' in param_groups"),
  (lambda p: lgs.ConstantLR(lgo.SGD([p], lr=0.1), factor=1.5), ValueError, r"factor must be in \[0, 1\], got 1.5"),
  (lambda p: lgs.SequentialLR(o := lgo.SGD([p], lr=0.1), [lgs.StepLR(o, 2), lgs.StepLR(o, 3)], milestones=[]), ValueError, "2 schedulers need 1 milestones, got 0"),
  (lambda p: lgs.ChainedScheduler([lgs.StepLR(lgo.SGD([p], lr=0.1), 2)], optimizer=lgo.SGD([Tensor.ones(1).requires_grad_()])), ValueError,
   "scheduler 0 \\(StepLR\\) acts on another optimizer"),
  (lambda p: lgs.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), step_size=2), TypeError, "expected an Optimizer, got SGD"),
])
def test_bad_arguments_raise_clear_errors(make, err, match):
  with pytest.raises(err, match=match): make(Tensor.ones(3).requires_grad_())

def test_same_bad_arguments_torch_rejects():
  # each case above that torch also checks raises there too: the same rules
  p = torch.ones(3, requires_grad=True)
  for make in [lambda: torch.optim.RMSprop([p], alpha=-0.5), lambda: torch.optim.Adadelta([p], rho=1.5), lambda: torch.optim.Adamax([p], betas=(0.9, 1.0)),
               lambda: torch.optim.NAdam([p], momentum_decay=-0.1), lambda: torch.optim.Adagrad([p], lr_decay=-1),
               lambda: torch.optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1),
               lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD([p]), factor=1.0),
               lambda: torch.optim.lr_scheduler.OneCycleLR(torch.optim.Adagrad([p]), max_lr=1.0, total_steps=10)]:
    with pytest.raises(ValueError): make()

def test_adagrad_fills_each_groups_sum_from_its_own_initial_accumulator_value():
  # torch 2.13 fills every group's sum from the constructor's value and ignores a group's own (docs/torch/optim.md)
  ps = params("lg")
  state = lgo.Adagrad([{"params": [ps[0]]}, {"params": [ps[1]], "initial_accumulator_value": 0.5}], initial_accumulator_value=0.2).state_dict()["state"]
  np.testing.assert_array_equal(state[0]["sum"].numpy(), np.full((3, 4), 0.2, np.float32))
  np.testing.assert_array_equal(state[1]["sum"].numpy(), np.full(5, 0.5, np.float32))
  assert state[1]["step"].item() == 0
