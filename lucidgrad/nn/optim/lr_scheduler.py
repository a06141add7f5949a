"""Learning-rate schedulers as in torch.optim.lr_scheduler: each sets its optimizer's `param_groups[i]['lr']` (OneCycleLR
also 'momentum' or beta1) on creation and on each `step()`, with torch's update rules (the chainable, recursive ones
where torch uses them). A group's lr is a device buffer written in place, so a jitted step sees each new value.
Call `step()` after `optimizer.step()`, outside a jitted function."""
from __future__ import annotations
import math, types
from bisect import bisect_right
from collections import Counter
from typing import Any, Callable, Iterable
from lucidgrad import Tensor
from lucidgrad.nn.optim import Optimizer

class LRScheduler:
  """torch.optim.lr_scheduler.LRScheduler: `base_lrs` (each group's 'initial_lr'), `last_epoch` (steps taken; the
  constructor takes step 0), `step()`, `get_last_lr()`, `state_dict()`/`load_state_dict()`. A subclass defines
  `get_lr()`, the groups' lrs at `last_epoch`, and may define `_closed_form()` for `step(epoch)`."""
  def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
    if not isinstance(optimizer, Optimizer): raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
    self.optimizer = optimizer
    if last_epoch == -1:
      for g in optimizer.param_groups: g.setdefault("initial_lr", g["lr"])
    else:
      for i, g in enumerate(optimizer.param_groups):
        if "initial_lr" not in g:
          raise KeyError(f"{type(self).__name__}: resuming at last_epoch={last_epoch} needs 'initial_lr' in param_groups[{i}] "
                         "(load the optimizer's state_dict first, or start with last_epoch=-1)")
    self.base_lrs: list[float] = [g["initial_lr"] for g in optimizer.param_groups]
    self.last_epoch = last_epoch
    self._initial_step()

  def _initial_step(self):
    self._step_count, self._is_initial = 0, True
    try: self.step()
    finally: self._is_initial = False

  def get_lr(self) -> list[float]:
    """The lr of each param group at `last_epoch` (torch's chainable form: it may read the groups' current lr)."""
    raise NotImplementedError

  def step(self, epoch: int | None = None):
    """Advance the schedule by one and write each group's lr. step(epoch) (deprecated in torch) jumps to `epoch`
    with the closed form where there is one."""
    self._step_count += 1
    self._update_lr(epoch)

  def _update_lr(self, epoch: int | None):
    if epoch is None:
      self.last_epoch += 1
      values = self.get_lr()
    else:
      self.last_epoch = epoch
      values = self._closed_form() if hasattr(self, "_closed_form") else self.get_lr()
    for g, lr in zip(self.optimizer.param_groups, values): g["lr"] = lr
    self._last_lr = self._current()

  def get_last_lr(self) -> list[float]:
    """The lr of each param group, as last set by this scheduler."""
    return self._last_lr

  def state_dict(self) -> dict[str, Any]:
    """Everything but the optimizer (torch's layout: the scheduler's attributes)."""
    return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

  def load_state_dict(self, state_dict: dict[str, Any]):
    """Restore a state_dict(); the groups' lrs come with the optimizer's own load_state_dict, as in torch."""
    self.__dict__.update(state_dict)

  def _current(self) -> list[float]: return [g["lr"] for g in self.optimizer.param_groups]

def _per_group(who: str, name: str, optimizer: Optimizer, value) -> list:
  """One value per param group: a list or tuple must have one for each, a single value is used for all."""
  if isinstance(value, (list, tuple)):
    if len(value) != len(optimizer.param_groups):
      raise ValueError(f"{who}: {name} has {len(value)} values, but the optimizer has {len(optimizer.param_groups)} param groups")
    return list(value)
  return [value] * len(optimizer.param_groups)

def _positive_int(who: str, name: str, v):
  if not isinstance(v, int) or isinstance(v, bool) or v <= 0: raise ValueError(f"{who}: {name} must be a positive int, got {v!r}")

class LambdaLR(LRScheduler):
  """lr = base_lr * lr_lambda(epoch), with one function for all groups or one per group. state_dict keeps the
  attributes of callable objects, not functions (as torch)."""
  def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | list[Callable[[int], float]], last_epoch: int = -1):
    self.lr_lambdas = _per_group("LambdaLR", "lr_lambda", optimizer, lr_lambda)
    for f in self.lr_lambdas:
      if not callable(f): raise TypeError(f"LambdaLR: lr_lambda must be a function, got {type(f).__name__}")
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """base_lr * lr_lambda(last_epoch) for each group."""
    return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]
  def state_dict(self) -> dict[str, Any]:
    """The attributes, with each lr_lambda as its __dict__ (None for a plain function or lambda)."""
    sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
    sd["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else dict(vars(f)) for f in self.lr_lambdas]
    return sd
  def load_state_dict(self, state_dict: dict[str, Any]):
    """Restore a state_dict(), the callable objects' attributes included."""
    sd = dict(state_dict)
    fns = sd.pop("lr_lambdas")
    self.__dict__.update(sd)
    for f, d in zip(self.lr_lambdas, fns):
      if d is not None: vars(f).update(d)

class MultiplicativeLR(LambdaLR):
  """Multiplies each group's lr by lr_lambda(epoch) every step (one function for all groups or one per group)."""
  def get_lr(self) -> list[float]:
    """The current lr times lr_lambda(last_epoch) (unchanged on creation)."""
    if self._is_initial: return self._current()
    return [lr * f(self.last_epoch) for f, lr in zip(self.lr_lambdas, self._current())]

class StepLR(LRScheduler):
  """Multiplies each group's lr by gamma every step_size steps."""
  def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
    _positive_int("StepLR", "step_size", step_size)
    self.step_size, self.gamma = step_size, gamma
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """The current lr, times gamma at each multiple of step_size."""
    if self.last_epoch == 0 or self.last_epoch % self.step_size: return self._current()
    return [lr * self.gamma for lr in self._current()]
  def _closed_form(self): return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]

class MultiStepLR(LRScheduler):
  """Multiplies each group's lr by gamma at each milestone (by gamma^n at a milestone given n times)."""
  def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1):
    self.milestones, self.gamma = Counter(milestones), gamma
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """The current lr, times gamma^n at a milestone listed n times."""
    if self.last_epoch not in self.milestones: return self._current()
    return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._current()]
  def _closed_form(self):
    ms = sorted(self.milestones.elements())
    return [base * self.gamma ** bisect_right(ms, self.last_epoch) for base in self.base_lrs]

class ExponentialLR(LRScheduler):
  """Multiplies each group's lr by gamma every step."""
  def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1):
    self.gamma = gamma
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """The current lr times gamma (unchanged on creation)."""
    return self._current() if self._is_initial else [lr * self.gamma for lr in self._current()]
  def _closed_form(self): return [base * self.gamma ** self.last_epoch for base in self.base_lrs]

class LinearLR(LRScheduler):
  """Scales base_lr by a factor going linearly from start_factor to end_factor over total_iters steps."""
  def __init__(self, optimizer: Optimizer, start_factor: float = 1 / 3, end_factor: float = 1.0, total_iters: int = 5, last_epoch: int = -1):
    if not 0 < start_factor <= 1: raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
    if not 0 <= end_factor <= 1: raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor}")
    _positive_int("LinearLR", "total_iters", total_iters)
    self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """The current lr times the ratio of this step's factor to the last one's."""
    if self.last_epoch == 0: return [lr * self.start_factor for lr in self._current()]
    if self._is_initial or self.last_epoch > self.total_iters: return self._current()
    span = self.end_factor - self.start_factor
    return [lr * (1.0 + span / (self.total_iters * self.start_factor + (self.last_epoch - 1) * span)) for lr in self._current()]
  def _closed_form(self):
    return [base * (self.start_factor + (self.end_factor - self.start_factor) * min(self.total_iters, self.last_epoch) / self.total_iters)
            for base in self.base_lrs]

class ConstantLR(LRScheduler):
  """Scales each group's lr by factor for the first total_iters steps, then gives it back."""
  def __init__(self, optimizer: Optimizer, factor: float = 1 / 3, total_iters: int = 5, last_epoch: int = -1):
    if not 0 <= factor <= 1: raise ValueError(f"ConstantLR: factor must be in [0, 1], got {factor}")
    self.factor, self.total_iters = factor, total_iters
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """The current lr times factor at step 0, divided by it at total_iters."""
    if self.last_epoch == 0: return [lr * self.factor for lr in self._current()]
    if self.last_epoch != self.total_iters: return self._current()
    return [lr * (1.0 / self.factor) for lr in self._current()]
  def _closed_form(self): return [base * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor)) for base in self.base_lrs]

class PolynomialLR(LRScheduler):
  """Decays each group's lr as (1 - epoch / total_iters) ** power times base_lr, to 0 at total_iters."""
  def __init__(self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1):
    self.total_iters, self.power = total_iters, power
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """The current lr times this step's decay over the last one's."""
    e, T = self.last_epoch, self.total_iters
    if self._is_initial or e > T: return self._current()
    return [lr * ((1.0 - e / T) / (1.0 - (e - 1) / T)) ** self.power for lr in self._current()]
  def _closed_form(self): return [base * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power for base in self.base_lrs]

class CosineAnnealingLR(LRScheduler):
  """lr follows eta_min + (base_lr - eta_min)(1 + cos(pi epoch / T_max)) / 2, stepped recursively from the current lr
  as torch does (so a change made to the lr meanwhile carries on); past T_max it climbs back."""
  def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
    _positive_int("CosineAnnealingLR", "T_max", T_max)
    self.T_max, self.eta_min = T_max, eta_min
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """The next point of the cosine, from the current lr."""
    e, T, lo = self.last_epoch, self.T_max, self.eta_min
    if self._is_initial: return self._current()
    if self._step_count == 1 and e > 0: return [lo + (base - lo) * (1 + math.cos(e * math.pi / T)) / 2 for base in self.base_lrs]
    if (e - 1 - T) % (2 * T) == 0: return [lr + (base - lo) * (1 - math.cos(math.pi / T)) / 2 for lr, base in zip(self._current(), self.base_lrs)]
    return [(1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - lo) + lo for lr in self._current()]
  def _closed_form(self): return [self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2 for base in self.base_lrs]

class CosineAnnealingWarmRestarts(LRScheduler):
  """SGDR: cosine annealing from base_lr to eta_min over T_i steps, then a restart with T_i *= T_mult (T_0 first).
  step(epoch) takes a fractional epoch too (e.g. epoch + batch / batches)."""
  def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1):
    _positive_int("CosineAnnealingWarmRestarts", "T_0", T_0)
    if not isinstance(T_mult, int) or isinstance(T_mult, bool) or T_mult < 1:
      raise ValueError(f"CosineAnnealingWarmRestarts: T_mult must be an int >= 1, got {T_mult!r}")
    if not isinstance(eta_min, (int, float)): raise ValueError(f"CosineAnnealingWarmRestarts: eta_min must be a number, got {eta_min!r}")
    self.T_0, self.T_i, self.T_mult, self.eta_min, self.T_cur = T_0, T_0, T_mult, eta_min, last_epoch
    super().__init__(optimizer, last_epoch)
  def get_lr(self) -> list[float]:
    """eta_min + (base_lr - eta_min)(1 + cos(pi T_cur / T_i)) / 2."""
    return [self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2 for base in self.base_lrs]
  def step(self, epoch: float | None = None):
    """One step on (T_cur + 1, restarting at T_i), or to `epoch` (a float allowed), and write each group's lr."""
    if epoch is None and self.last_epoch < 0: epoch = 0
    if epoch is None:
      epoch = self.last_epoch + 1
      self.T_cur += 1
      if self.T_cur >= self.T_i: self.T_cur, self.T_i = self.T_cur % self.T_i, self.T_i * self.T_mult
    else:
      if epoch < 0: raise ValueError(f"CosineAnnealingWarmRestarts: epoch must be >= 0, got {epoch}")
      if epoch < self.T_0: self.T_i, self.T_cur = self.T_0, epoch
      elif self.T_mult == 1: self.T_cur = epoch % self.T_0
      else:
        n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))  # restarts so far
        self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
        self.T_i = self.T_0 * self.T_mult ** n
    self.last_epoch = math.floor(epoch)
    self._step_count += 1
    for g, lr in zip(self.optimizer.param_groups, self.get_lr()): g["lr"] = lr
    self._last_lr = self._current()

class ReduceLROnPlateau(LRScheduler):
  """Multiplies each group's lr by factor (not below min_lr; not when the change is under eps) once the metric given to
  step(metric) has not improved (by threshold, 'rel' or 'abs', in mode 'min' or 'max') for more than patience steps;
  then waits cooldown steps before counting again."""
  def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
               threshold_mode: str = "rel", cooldown: int = 0, min_lr: float | list[float] = 0, eps: float = 1e-8):
    if not isinstance(optimizer, Optimizer): raise TypeError(f"ReduceLROnPlateau: expected an Optimizer, got {type(optimizer).__name__}")
    if not factor < 1.0: raise ValueError(f"ReduceLROnPlateau: factor must be < 1.0, got {factor}")
    if mode not in ("min", "max"): raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
    if threshold_mode not in ("rel", "abs"): raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
    self.optimizer, self.factor, self.patience, self.cooldown, self.eps = optimizer, factor, patience, cooldown, eps
    self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
    self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else min_lr
    self.min_lrs = _per_group("ReduceLROnPlateau", "min_lr", optimizer, min_lr)
    self.mode_worse = math.inf if mode == "min" else -math.inf
    self.last_epoch, self._last_lr = 0, self._current()
    self.best, self.cooldown_counter, self.num_bad_epochs = self.mode_worse, 0, 0

  def step(self, metrics, epoch: int | None = None):  # type: ignore[override]
    """Take this epoch's metric (a number or a 0-d Tensor) and reduce the lrs if it has stopped improving."""
    current = metrics.item() if isinstance(metrics, Tensor) else float(metrics)
    self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
    if self._is_better(current): self.best, self.num_bad_epochs = current, 0
    else: self.num_bad_epochs += 1
    if self.in_cooldown:
      self.cooldown_counter -= 1
      self.num_bad_epochs = 0  # bad epochs in the cooldown do not count
    if self.num_bad_epochs > self.patience:
      self._reduce_lr()
      self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
    self._last_lr = self._current()

  @property
  def in_cooldown(self) -> bool: return self.cooldown_counter > 0

  def _is_better(self, a: float) -> bool:
    if self.mode == "min": return a < self.best * (1 - self.threshold) if self.threshold_mode == "rel" else a < self.best - self.threshold
    return a > self.best * (1 + self.threshold) if self.threshold_mode == "rel" else a > self.best + self.threshold

  def _reduce_lr(self):
    groups = self.optimizer.param_groups
    if len(self.min_lrs) != len(groups):
      if self.default_min_lr is None:
        raise RuntimeError(f"ReduceLROnPlateau: the optimizer has {len(groups)} param groups but min_lr lists {len(self.min_lrs)}; "
                           "a group was added since: set min_lrs to one value per group")
      self.min_lrs = [self.default_min_lr] * len(groups)
    for g, lo in zip(groups, self.min_lrs):
      old = float(g["lr"])
      new = max(old * self.factor, lo)
      if old - new > self.eps: g["lr"] = new

class OneCycleLR(LRScheduler):
  """The 1cycle policy: lr from max_lr / div_factor up to max_lr over pct_start of total_steps (or epochs *
  steps_per_epoch), then down to that / final_div_factor, cos or linear; three_phase comes back to the start before
  the final descent. With cycle_momentum, momentum (SGD, RMSprop) or beta1 (Adam-like) goes the other way between
  max_momentum and base_momentum. The optimizer's own lr is ignored; stepping past total_steps raises."""
  def __init__(self, optimizer: Optimizer, max_lr: float | list[float], total_steps: int | None = None, epochs: int | None = None,
               steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos", cycle_momentum: bool = True,
               base_momentum: float | list[float] = 0.85, max_momentum: float | list[float] = 0.95, div_factor: float = 25.0,
               final_div_factor: float = 1e4, three_phase: bool = False, last_epoch: int = -1):
    if not isinstance(optimizer, Optimizer): raise TypeError(f"OneCycleLR: expected an Optimizer, got {type(optimizer).__name__}")
    if total_steps is not None: _positive_int("OneCycleLR", "total_steps", total_steps)
    elif epochs is not None and steps_per_epoch is not None:
      _positive_int("OneCycleLR", "epochs", epochs)
      _positive_int("OneCycleLR", "steps_per_epoch", steps_per_epoch)
      total_steps = epochs * steps_per_epoch
    else: raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
    if not isinstance(pct_start, (int, float)) or not 0 <= pct_start <= 1: raise ValueError(f"OneCycleLR: pct_start must be in [0, 1], got {pct_start!r}")
    if anneal_strategy not in ("cos", "linear"): raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
    self.optimizer, self.total_steps, self.anneal_strategy, self.cycle_momentum = optimizer, total_steps, anneal_strategy, cycle_momentum
    up = float(pct_start * total_steps) - 1
    # (last step of the phase, the group keys holding the lr at its start and end, and the momentum's)
    self.phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                   (float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                   (total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")] if three_phase else \
                  [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"), (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
    if last_epoch == -1:
      for g, hi in zip(optimizer.param_groups, _per_group("OneCycleLR", "max_lr", optimizer, max_lr)):
        g["initial_lr"], g["max_lr"] = hi / div_factor, hi
        g["min_lr"] = g["initial_lr"] / final_div_factor
    if cycle_momentum:
      if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError(f"OneCycleLR: cycle_momentum needs an optimizer with momentum or betas; {type(optimizer).__name__} has neither "
                         "(pass cycle_momentum=False)")
      self.use_beta1 = "betas" in optimizer.defaults
      if last_epoch == -1:
        for g, hi, lo in zip(optimizer.param_groups, _per_group("OneCycleLR", "max_momentum", optimizer, max_momentum),
                             _per_group("OneCycleLR", "base_momentum", optimizer, base_momentum)):
          self._set_momentum(g, hi)
          g["max_momentum"], g["base_momentum"] = hi, lo
    super().__init__(optimizer, last_epoch)

  def _set_momentum(self, g: dict, m: float):
    if self.use_beta1: g["betas"] = (m, *g["betas"][1:])
    else: g["momentum"] = m

  def _anneal(self, start: float, end: float, pct: float) -> float:
    if self.anneal_strategy == "cos": return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start

  def get_lr(self) -> list[float]:
    """Each group's lr at this step (and, with cycle_momentum, its momentum or beta1 set on the group)."""
    n = self.last_epoch
    if n > self.total_steps: raise ValueError(f"OneCycleLR: stepped {n} times, but total_steps is {self.total_steps}")
    lrs = []
    for g in self.optimizer.param_groups:
      start = 0.0
      for k, (end, lr0, lr1, m0, m1) in enumerate(self.phases):
        if n <= end or k == len(self.phases) - 1:
          pct = (n - start) / (end - start)
          lrs.append(self._anneal(g[lr0], g[lr1], pct))
          if self.cycle_momentum: self._set_momentum(g, self._anneal(g[m0], g[m1], pct))
          break
        start = end
    return lrs

def _same_optimizer(who: str, optimizer: Optimizer, schedulers: list) -> None:
  if not schedulers: raise ValueError(f"{who}: expected at least one scheduler, got none")
  for i, sch in enumerate(schedulers):
    if isinstance(sch, ReduceLROnPlateau): raise ValueError(f"{who}: scheduler {i} is a ReduceLROnPlateau, whose step() needs the metric")
    if getattr(sch, "optimizer", None) is not optimizer: raise ValueError(f"{who}: scheduler {i} ({type(sch).__name__}) acts on another optimizer")

class _Composite(LRScheduler):
  """A scheduler made of others (`_schedulers`): its state_dict holds theirs."""
  _schedulers: list[LRScheduler]
  def state_dict(self) -> dict[str, Any]:
    """The attributes, with each scheduler as its own state_dict()."""
    sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
    sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
    return sd

  def load_state_dict(self, state_dict: dict[str, Any]):
    """Restore a state_dict(), each scheduler's included."""
    sd = dict(state_dict)
    subs = sd.pop("_schedulers")
    self.__dict__.update(sd)
    for sch, d in zip(self._schedulers, subs): sch.load_state_dict(d)

class SequentialLR(_Composite):
  """Runs schedulers one after another: schedulers[i] from milestones[i - 1] on (it restarts at its epoch 0 there)."""
  def __init__(self, optimizer: Optimizer, schedulers: list[LRScheduler], milestones: list[int], last_epoch: int = -1):
    _same_optimizer("SequentialLR", optimizer, schedulers)
    if len(milestones) != len(schedulers) - 1:
      raise ValueError(f"SequentialLR: {len(schedulers)} schedulers need {len(schedulers) - 1} milestones, got {len(milestones)}")
    self._schedulers, self._milestones, self.last_epoch, self.optimizer = list(schedulers), list(milestones), last_epoch + 1, optimizer
    for g in optimizer.param_groups: g["lr"] = g["initial_lr"]
    # each scheduler's constructor took a step: undo it, and start the first one afresh
    for sch in self._schedulers: _undo_step(sch)
    first = self._schedulers[bisect_right(self._milestones, 0)]
    first._initial_step()
    self._last_lr = first.get_last_lr()

  def step(self):  # type: ignore[override]
    """One step of the scheduler whose turn it is (at a milestone, that one from its epoch 0)."""
    self.last_epoch += 1
    i = bisect_right(self._milestones, self.last_epoch)
    sch = self._schedulers[i]
    if i > 0 and self._milestones[i - 1] == self.last_epoch: sch._update_lr(0)
    else: sch.step()
    self._last_lr = sch.get_last_lr()

def _undo_step(sch):
  for s in getattr(sch, "_schedulers", ()): _undo_step(s)
  if not hasattr(sch, "_schedulers"): sch.last_epoch -= 1

class ChainedScheduler(_Composite):
  """Steps every scheduler each step, so their changes to the lr compose (the chainable forms multiply)."""
  def __init__(self, schedulers: list[LRScheduler], optimizer: Optimizer | None = None):
    optimizer = optimizer or (schedulers[0].optimizer if schedulers else None)
    _same_optimizer("ChainedScheduler", optimizer, schedulers)
    self._schedulers, self.optimizer = list(schedulers), optimizer
    self._last_lr = self._current()

  def step(self):  # type: ignore[override]
    """Step each scheduler in order."""
    for sch in self._schedulers: sch.step()
    self._last_lr = self._current()
