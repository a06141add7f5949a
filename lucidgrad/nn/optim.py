"""Optimisers (SGD, Adam, AdamW, LAMB), learning-rate schedulers and clip_grad_norm_, on the public Tensor API.
Each kind of state is one flat tensor per group of parameters, and lr and step counts live in device buffers updated in
place, so a step is about one kernel per parameter and a jitted step replays with whatever lr a scheduler set since."""
from __future__ import annotations
import functools, math
from typing import Iterable
import numpy as np
from lucidgrad import Tensor, dtypes, GlobalCounters
from lucidgrad.helpers import DEBUG

GROUP = 8  # parameters per flat state tensor: a flat update reads each of its parameters' gradients once per element

class Optimizer:
  """Base class: the parameters, the learning rate as a 0-d device tensor, and `step()` realizing every update at once.
  State of one kind (momentum, exp_avg, ...) is one flat tensor per group of up to GROUP parameters, parameter i owning
  [offsets[i], offsets[i] + numel) of its group's. Groups keep the flat update's cost linear: joining N gradients
  reads all N per element (measured 30-55 ms for one flat tensor over 200 parameters, 2 ms per parameter).
  Parameters with no .grad are skipped, as torch does: their state stays as it is."""
  def __init__(self, params: Iterable[Tensor], lr: float):
    name = type(self).__name__
    self.params: list[Tensor] = [params] if isinstance(params, Tensor) else list(params)
    if not self.params: raise ValueError(f"{name}: got an empty parameter list")
    for i, p in enumerate(self.params):
      if not isinstance(p, Tensor): raise TypeError(f"{name}: parameter {i} is a {type(p).__name__}, not a Tensor")
      if not p.requires_grad:
        raise ValueError(f"{name}: parameter {i} (shape {p.shape}) does not require grad; call requires_grad_() on it or leave it out")
      if p.device != self.params[0].device: raise RuntimeError(f"{name}: parameters are on different devices: {self.params[0].device} and {p.device}")
    if len({id(p) for p in self.params}) != len(self.params): raise ValueError(f"{name}: a parameter appears more than once in the list")
    _check_nonneg(name, "learning rate", lr)
    self.device = self.params[0].device
    # the state and the arithmetic are float32, or float64 if any parameter is: half-precision parameters keep float32 state
    self.dtype = dtypes.float64 if any(p.dtype == dtypes.float64 for p in self.params) else dtypes.float32
    self.groups = [list(range(s, min(s + GROUP, len(self.params)))) for s in range(0, len(self.params), GROUP)]
    self.group_of = [g for g, members in enumerate(self.groups) for _ in members]
    self.offsets: list[int] = []  # each parameter's start in its group's flat tensor
    for members in self.groups:
      at = 0
      for i in members: self.offsets.append(at); at += self.params[i].numel()
    self.initial_lr = float(lr)
    self.lr = self._scalar(lr)

  def zero_grad(self):
    """Forget every parameter's gradient (sets .grad to None)."""
    for p in self.params: p.grad = None

  def step(self):
    """Update every parameter that has a .grad, and the state, in place: one realize for all of it."""
    if not (ts := self.schedule_step()): return
    before = GlobalCounters.kernel_count
    Tensor.realize(*ts)
    if DEBUG >= 2: print(f"{type(self).__name__} step: {len(self.params)} parameters in {GlobalCounters.kernel_count - before} kernels")

  def schedule_step(self) -> list[Tensor]:
    """Assign the new values (lazily) and return the tensors to realize; a step with no gradients at all does nothing."""
    idx = [i for i, p in enumerate(self.params) if p.grad is not None]
    for i in idx:
      if (gs := self.params[i].grad.shape) != (ps := self.params[i].shape):
        raise ValueError(f"{type(self).__name__}: parameter {i} has shape {ps} but its .grad has shape {gs}")
    return self._update(idx) if idx else []

  def _update(self, idx: list[int]) -> list[Tensor]: raise NotImplementedError

  def set_lr(self, lr: float):
    """Write a new learning rate into the lr buffer (no kernel is recompiled, a jitted step sees it)."""
    _check_nonneg(type(self).__name__, "learning rate", lr)
    self.lr.assign(self._scalar(lr)).realize()

  # ---- helpers ----
  def _scalar(self, v: float) -> Tensor:
    """A 0-d device buffer holding v: a buffer, not a constant, so kernels read it instead of compiling it in."""
    return Tensor(np.array(v, dtype=self.dtype.np), device=self.device)
  def _zeros(self, n: int, dtype=None) -> Tensor: return Tensor.zeros(n, dtype=dtype or self.dtype, device=self.device).contiguous().realize()
  def _state(self) -> list[Tensor]:
    """One zero flat tensor per group."""
    return [self._zeros(sum(self.params[i].numel() for i in members)) for members in self.groups]
  def _touched(self, has) -> list[int]:
    """The groups with at least one parameter in `has` (a group with none keeps its state: no kernel)."""
    return [g for g, members in enumerate(self.groups) if any(i in has for i in members)]
  def _grad(self, i: int, maximize: bool = False) -> Tensor:
    g = self.params[i].grad.detach().cast(self.dtype)
    return -g if maximize else g
  def _param(self, i: int) -> Tensor: return self.params[i].detach().cast(self.dtype)
  def _slice(self, state: list[Tensor], i: int) -> Tensor:
    """Parameter i's part of a state (its group's flat tensor), in the parameter's shape."""
    o = self.offsets[i]
    return state[self.group_of[i]].shrink(((o, o + self.params[i].numel()),)).reshape(self.params[i].shape)
  def _flat(self, pieces: dict[int, Tensor], g: int) -> Tensor:
    """Group g's pieces (by parameter index) flattened and joined into one flat tensor; a missing piece is zeros."""
    return Tensor.cat(*[pieces[i].flatten() if i in pieces else Tensor.zeros(self.params[i].numel(), dtype=self.dtype, device=self.device)
                        for i in self.groups[g]])
  def _per_param(self, values: list[float], g: int) -> Tensor | float:
    """values[i] spread over the parts of group g's flat tensor; a plain number when all are equal (the usual case)."""
    vs = [values[i] for i in self.groups[g]]
    if all(v == vs[0] for v in vs): return vs[0]
    return Tensor.cat(*[Tensor.full((self.params[i].numel(),), v, dtype=self.dtype, device=self.device) for i, v in zip(self.groups[g], vs)])
  def _set(self, i: int, value: Tensor) -> Tensor:
    p = self.params[i]
    return p.assign(value.cast(p.dtype))

class SGD(Optimizer):
  """torch.optim.SGD: momentum (the buffer starts as the first gradient), dampening, nesterov, weight_decay, maximize."""
  def __init__(self, params: Iterable[Tensor], lr: float = 0.001, momentum: float = 0, dampening: float = 0, weight_decay: float = 0,
               nesterov: bool = False, maximize: bool = False):
    super().__init__(params, lr)
    for what, v in (("momentum", momentum), ("weight_decay", weight_decay)): _check_nonneg("SGD", what, v)
    if nesterov and (momentum <= 0 or dampening != 0): raise ValueError("SGD: nesterov momentum needs a momentum > 0 and dampening = 0")
    self.momentum, self.dampening, self.weight_decay, self.nesterov, self.maximize = momentum, dampening, weight_decay, nesterov, maximize
    self.momentum_buffer = self._state() if momentum else None
    # which buffers torch would have created (a parameter's first step with a gradient): decides the graph, not values
    self.started = [False] * len(self.params)

  def _update(self, idx: list[int]) -> list[Tensor]:
    d = {i: self._grad(i, self.maximize) + self.weight_decay * self._param(i) if self.weight_decay else self._grad(i, self.maximize) for i in idx}
    out: list[Tensor] = []
    if (buf := self.momentum_buffer) is not None:
      # new buf = a * buf + b * d per parameter: a fresh buffer takes d itself, a parameter with no gradient keeps its buffer
      a = [(self.momentum if self.started[i] else 0.0) if i in d else 1.0 for i in range(len(self.params))]
      b = [(1 - self.dampening if self.started[i] else 1.0) if i in d else 0.0 for i in range(len(self.params))]
      for g in self._touched(d): out.append(buf[g].assign(buf[g] * self._per_param(a, g) + self._flat(d, g) * self._per_param(b, g)))
      for i in idx: self.started[i] = True
    for i in idx:
      if buf is None: upd = d[i]
      else: upd = d[i] + self.momentum * self._slice(buf, i) if self.nesterov else self._slice(buf, i)
      out.append(self._set(i, self._param(i) - self.lr * upd))
    return out

class _AdamBase(Optimizer):
  """The moments of Adam-like optimisers as flat tensors, and a per-parameter step count on the device."""
  def __init__(self, params, lr: float, betas: tuple[float, float], eps: float, weight_decay: float):
    super().__init__(params, lr)
    name = type(self).__name__
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas): raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
    _check_nonneg(name, "eps", eps)
    _check_nonneg(name, "weight_decay", weight_decay)
    self.b1, self.b2, self.eps, self.weight_decay = float(betas[0]), float(betas[1]), eps, weight_decay
    self.exp_avg, self.exp_avg_sq = self._state(), self._state()
    self.steps = self._zeros(len(self.params), dtypes.int32)  # steps taken by each parameter (torch counts per parameter)

  def _moments(self, g: dict[int, Tensor]) -> list[Tensor]:
    """Assign the new exp_avg, exp_avg_sq and step counts from the gradients `g` (by parameter index)."""
    has = [i in g for i in range(len(self.params))]
    out = []
    for k in self._touched(g):
      flat, m, v = self._flat(g, k), self.exp_avg[k], self.exp_avg_sq[k]
      out.append(m.assign(m * self._per_param([self.b1 if h else 1.0 for h in has], k) + flat * self._per_param([1 - self.b1 if h else 0.0 for h in has], k)))
      out.append(v.assign(v * self._per_param([self.b2 if h else 1.0 for h in has], k) + flat * flat * self._per_param([1 - self.b2 if h else 0.0 for h in has], k)))
    inc = 1 if all(has) else Tensor.cat(*[Tensor.full((1,), int(h), dtype=dtypes.int32, device=self.device) for h in has])
    self.steps.assign(self.steps + inc)
    return out + [self.steps]

  def _bias_corrections(self, i: int) -> tuple[Tensor, Tensor]:
    """1 - b1^t and 1 - b2^t for parameter i's step count t, as -expm1(t log b): no cancellation when b is near 1."""
    t = self.steps.shrink(((i, i + 1),)).reshape(()).cast(self.dtype)
    return tuple(-(t * math.log(b)).expm1() if b > 0 else t.ones_like() for b in (self.b1, self.b2))

class Adam(_AdamBase):
  """torch.optim.Adam (L2 weight_decay added to the gradient; no amsgrad)."""
  decoupled = False
  def __init__(self, params: Iterable[Tensor], lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0, maximize: bool = False):
    super().__init__(params, lr, betas, eps, weight_decay)
    self.maximize = maximize

  def _update(self, idx: list[int]) -> list[Tensor]:
    wd = self.weight_decay
    g = {i: self._grad(i, self.maximize) + wd * self._param(i) if wd and not self.decoupled else self._grad(i, self.maximize) for i in idx}
    out = self._moments(g)
    for i in idx:
      bc1, bc2 = self._bias_corrections(i)
      denom = self._slice(self.exp_avg_sq, i).sqrt() / bc2.sqrt() + self.eps
      p = self._param(i) * (1 - self.lr * wd) if wd and self.decoupled else self._param(i)
      out.append(self._set(i, p - (self.lr / bc1) * self._slice(self.exp_avg, i) / denom))
    return out

class AdamW(Adam):
  """torch.optim.AdamW: Adam with decoupled weight decay (the parameter shrinks by lr * weight_decay each step)."""
  decoupled = True
  def __init__(self, params: Iterable[Tensor], lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0.01, maximize: bool = False):
    super().__init__(params, lr, betas, eps, weight_decay, maximize)

class LAMB(_AdamBase):
  """LAMB (You et al. 2019): the bias-corrected Adam direction r = m^ / (sqrt(v^) + eps) + weight_decay * w, scaled per
  parameter by the trust ratio ||w|| / ||r|| (1 where either norm is 0); adam=True keeps the ratio at 1."""
  def __init__(self, params: Iterable[Tensor], lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
               weight_decay: float = 0, adam: bool = False):
    super().__init__(params, lr, betas, eps, weight_decay)
    self.adam = adam

  def _update(self, idx: list[int]) -> list[Tensor]:
    out = self._moments({i: self._grad(i) for i in idx})
    w, r = {}, {}
    for i in idx:
      bc1, bc2 = self._bias_corrections(i)
      w[i] = self._param(i)
      r[i] = (self._slice(self.exp_avg, i) / bc1) / ((self._slice(self.exp_avg_sq, i) / bc2).sqrt() + self.eps)
      if self.weight_decay: r[i] = r[i] + self.weight_decay * w[i]
    for i in idx:
      ratio: Tensor | float = 1.0
      if not self.adam:  # ||w|| and ||r|| in one kernel per parameter (one kernel for all would loop over every tensor per output)
        norms = Tensor.stack(w[i].flatten(), r[i].flatten()).square().sum(axis=1).sqrt()
        wn, rn = norms[0], norms[1]
        ratio = ((wn > 0) & (rn > 0)).where(wn / rn, 1.0)
      out.append(self._set(i, w[i] - self.lr * ratio * r[i]))
    return out

def _check_nonneg(who: str, what: str, v: float):
  if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0: raise ValueError(f"{who}: {what} must be a number >= 0, got {v!r}")

# ---- learning-rate schedulers (torch.optim.lr_scheduler): call step() after opt.step(), outside a jitted function ----
class LRScheduler:
  """Sets the optimizer's lr to `lr_at(step count)` on creation (count 0) and on each `step()`; the lr is written into
  the optimizer's lr buffer, so a captured step sees it. Schedules start from the optimizer's initial lr."""
  def __init__(self, optimizer: Optimizer):
    if not isinstance(optimizer, Optimizer): raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
    self.optimizer, self.base_lr, self.last_epoch = optimizer, optimizer.initial_lr, 0
    self._set(self.lr_at(0))

  def lr_at(self, epoch: int) -> float:
    """The learning rate after `epoch` scheduler steps."""
    raise NotImplementedError

  def step(self):
    """Advance the schedule by one and write the new lr."""
    self.last_epoch += 1
    self._set(self.lr_at(self.last_epoch))

  def get_last_lr(self) -> list[float]:
    """The lr last set, as a one-element list (torch returns one per parameter group)."""
    return [self._last_lr]

  def _set(self, lr: float):
    self._last_lr = lr
    self.optimizer.set_lr(lr)

class StepLR(LRScheduler):
  """lr = base_lr * gamma ** (epoch // step_size)."""
  def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
    if not isinstance(step_size, int) or step_size <= 0: raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
    self.step_size, self.gamma = step_size, gamma
    super().__init__(optimizer)
  def lr_at(self, epoch: int) -> float:
    """base_lr * gamma ** (epoch // step_size)."""
    return self.base_lr * self.gamma ** (epoch // self.step_size)

class CosineAnnealingLR(LRScheduler):
  """lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2; past T_max it climbs back, as torch's does."""
  def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
    if not isinstance(T_max, int) or T_max <= 0: raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
    self.T_max, self.eta_min = T_max, eta_min
    super().__init__(optimizer)
  def lr_at(self, epoch: int) -> float:
    """The cosine curve from base_lr (epoch 0) to eta_min (epoch T_max)."""
    return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2

class LinearLR(LRScheduler):
  """lr = base_lr * factor, the factor going linearly from start_factor to end_factor over total_iters steps."""
  def __init__(self, optimizer: Optimizer, start_factor: float = 1 / 3, end_factor: float = 1.0, total_iters: int = 5):
    if not 0 < start_factor <= 1: raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
    if not 0 <= end_factor <= 1: raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor}")
    if not isinstance(total_iters, int) or total_iters <= 0: raise ValueError(f"LinearLR: total_iters must be a positive int, got {total_iters!r}")
    self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
    super().__init__(optimizer)
  def lr_at(self, epoch: int) -> float:
    """base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters)."""
    return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * min(epoch, self.total_iters) / self.total_iters)

class OneCycleLR(LRScheduler):
  """The 1cycle policy: from max_lr / div_factor up to max_lr over pct_start of total_steps, then down to
  max_lr / (div_factor * final_div_factor); three_phase comes back to the start before the final descent. The
  optimizer's own lr is ignored; stepping past total_steps raises. Momentum is not cycled."""
  def __init__(self, optimizer: Optimizer, max_lr: float, total_steps: int, pct_start: float = 0.3, anneal_strategy: str = "cos",
               div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False):
    if not isinstance(total_steps, int) or total_steps <= 0: raise ValueError(f"OneCycleLR: total_steps must be a positive int, got {total_steps!r}")
    if not 0 <= pct_start <= 1: raise ValueError(f"OneCycleLR: pct_start must be in [0, 1], got {pct_start}")
    if anneal_strategy not in ("cos", "linear"): raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
    self.total_steps, self.anneal_strategy = total_steps, anneal_strategy
    lo, hi = max_lr / div_factor, max_lr
    end = lo / final_div_factor
    up = pct_start * total_steps - 1
    # (last step of the phase, lr at its start, lr at its end)
    self.phases = [(up, lo, hi), (2 * pct_start * total_steps - 2, hi, lo), (total_steps - 1, lo, end)] if three_phase else \
                  [(up, lo, hi), (total_steps - 1, hi, end)]
    super().__init__(optimizer)

  def lr_at(self, epoch: int) -> float:
    """The lr of the phase `epoch` falls in, annealed by the fraction of that phase done."""
    if epoch > self.total_steps: raise ValueError(f"OneCycleLR: stepped {epoch} times, but total_steps is {self.total_steps}")
    start = 0.0
    for k, (last, a, b) in enumerate(self.phases):
      if epoch <= last or k == len(self.phases) - 1:
        pct = (epoch - start) / (last - start)
        return b + (a - b) * (1 + math.cos(math.pi * pct)) / 2 if self.anneal_strategy == "cos" else a + (b - a) * pct
      start = last
    raise AssertionError("unreachable")

# ---- gradient clipping ----
def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> Tensor:
  """torch.nn.utils.clip_grad_norm_: scale every .grad by min(1, max_norm / (total_norm + 1e-6)), in place (lazily: the
  scaling runs when the grads are next realized, e.g. by the optimizer step). Returns the total norm, a lazy 0-d tensor:
  the norm_type-norm of all gradients together (inf: the largest |g|). Parameters with no .grad are left out."""
  params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
  norm_type = float(norm_type)
  if not norm_type > 0: raise ValueError(f"clip_grad_norm_: norm_type must be > 0 (or inf), got {norm_type}")
  grads = [p.grad for p in params if p.grad is not None]
  if not grads: return Tensor(0.0)
  # one kernel: a chain of whole-tensor reduces added up (a stack of them would run every reduce for each element)
  if norm_type == math.inf: total = functools.reduce(Tensor.maximum, [g.detach().abs().max() for g in grads])
  elif norm_type == 2.0: total = functools.reduce(Tensor.add, [g.detach().square().sum() for g in grads]).sqrt()
  else: total = functools.reduce(Tensor.add, [(g.detach().abs() ** norm_type).sum() for g in grads]) ** (1 / norm_type)
  coef = (max_norm / (total + 1e-6)).clamp(max_=1.0)
  for g in grads: g.assign(g * coef.cast(g.dtype))
  return total
