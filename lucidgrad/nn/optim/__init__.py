"""Optimisers as in torch.optim (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, NAdam, RAdam, and LAMB) with
parameter groups and state_dict, and clip_grad_norm_; the lr schedulers live in `lucidgrad.nn.optim.lr_scheduler`
and are re-exported here. A kind of state is one flat tensor per chunk of up to GROUP parameters, and every numeric
option and step count is a device buffer written in place, so a step is about one kernel per parameter and a jitted
step replays with whatever lr, momentum or betas were set since, compiling nothing."""
from __future__ import annotations
import functools, math
from typing import Any, Callable, Iterable
import numpy as np
from lucidgrad import Tensor, dtypes, GlobalCounters
from lucidgrad.dtype import DType
from lucidgrad.helpers import DEBUG

GROUP = 8  # parameters per flat state tensor: a flat update reads each of its parameters' gradients once per element
# torch's switches between implementations of one update rule (the update here is always fused): accepted, ignored
_IMPL_OPTIONS = ("foreach", "fused", "capturable", "differentiable")
# what the lr schedulers write into a param group, besides the options
_SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")

def _scalar_items(key: str, value) -> list[tuple[str, Any]]:
  """The device scalars an option is kept in: betas is two (beta1, beta2), any other numeric option one."""
  if key == "betas": return [("beta1", value[0]), ("beta2", value[1])]
  return [(key, value)]

class ParamGroup(dict):
  """An entry of `optimizer.param_groups`: torch's dict of 'params' and options. Setting a numeric option
  (`g['lr'] = 0.01`, `g['betas'] = (0.9, 0.99)`) also writes the device buffer the step's kernels read, so the next
  step, a jitted replay too, uses the new value with no kernel compiled. Switches (amsgrad, nesterov, ...) and a
  numeric option moving to or from 0 change the step's graph instead: eager steps follow, a jit capture does not."""
  def __init__(self, items: dict, scalars: dict[str, Tensor]):
    super().__init__(items)
    self.scalars = scalars  # an option's name (betas: beta1 and beta2) -> its 0-d float64 device buffer
    self._held = {name: float(v) for k in items for name, v in _scalar_items(k, items[k]) if name in scalars}  # what they hold

  def __setitem__(self, key, value):
    super().__setitem__(key, value)
    for name, v in _scalar_items(key, value):
      if (t := self.scalars.get(name)) is None or self._held[name] == (v := float(v.item() if isinstance(v, Tensor) else v)): continue
      # copied from a host buffer (a constant would compile a kernel per value), and now, not left pending: a jit capture
      # that realized the pending write would replay this value over later ones
      t.assign(Tensor(np.array(v, dtype=np.float64), device=t.device)).realize()
      self._held[name] = v

  def update(self, *args, **kwargs):
    """dict.update, through __setitem__ so device scalars follow."""
    for k, v in dict(*args, **kwargs).items(): self[k] = v

  def setdefault(self, key, default=None):
    """dict.setdefault, through __setitem__ so device scalars follow."""
    if key not in self: self[key] = default
    return self[key]

  def __reduce__(self): return (dict, (dict(self),))  # pickled or deep-copied: a plain dict, as torch's groups are

class Optimizer:
  """torch.optim.Optimizer: `param_groups` (ParamGroup dicts), `defaults`, `add_param_group()`, `state_dict()` and
  `load_state_dict()` in torch's layout, `zero_grad()`, and `step()` realizing every update at once.
  `params` are the parameters in state_dict order. State of one kind (exp_avg, ...) is one flat tensor per chunk of up
  to GROUP parameters of one group, parameter i owning [offsets[i], offsets[i] + numel) of its chunk's. Chunks keep the
  flat update's cost linear: joining N gradients reads all N per element (measured 30-55 ms for one flat tensor over
  200 parameters, 2 ms per parameter). Per-parameter counters (step, NAdam's mu_product) are one vector over all
  parameters. State is float32, or float64 for a chunk holding a float64 parameter. Parameters with no .grad are
  skipped, as torch does: their state stays as it is. Each optimiser takes torch's switches between implementations
  (foreach, fused, capturable; differentiable=False) and ignores them: its step is one fused update already."""
  _scalars: tuple[str, ...] = ("lr",)   # the numeric options kept in device buffers (betas: two)
  _counters: dict[str, float] = {}      # per-parameter scalar state in torch's order -> its initial value
  _state_at_init = False                # torch creates the state in the constructor (Adagrad), not at the first step

  def __init__(self, params, defaults: dict[str, Any]):
    self.defaults = defaults
    self.param_groups: list[ParamGroup] = []
    self.params: list[Tensor] = []
    self.group_of: list[int] = []   # parameter -> its param group
    self.chunks: list[list[int]] = []
    self.chunk_of: list[int] = []
    self.offsets: list[int] = []     # parameter -> its start in its chunk's flat tensors
    self.chunk_dtype: list[DType] = []
    self.flat: dict[str, dict[int, Tensor]] = {}   # kind -> chunk -> flat state
    self.counters: dict[str, Tensor] = {}           # kind -> one value per parameter
    self.present: list[set[str]] = []               # parameter -> the state torch would hold for it now (state_dict's)
    self.device: str | None = None
    groups = [params] if isinstance(params, Tensor) else list(params)
    if not groups: raise ValueError(f"{type(self).__name__}: got an empty parameter list")
    for g in (groups if isinstance(groups[0], dict) else [{"params": groups}]): self.add_param_group(g)

  # ---- torch's API ----
  def add_param_group(self, param_group: dict):
    """Add a group of parameters with its own options (torch.optim.Optimizer.add_param_group); options it leaves out
    take the constructor's. Raises on an unknown option or a parameter already in a group."""
    name, gi = type(self).__name__, len(self.param_groups)
    if not isinstance(param_group, dict): raise TypeError(f"{name}: a param group must be a dict, got {type(param_group).__name__}")
    if "params" not in param_group: raise ValueError(f"{name}: param group {gi} has no 'params' entry")
    ps = param_group["params"]
    if isinstance(ps, set): raise TypeError(f"{name}: param group {gi}'s params are a set; give a list (its order is state_dict's order)")
    ps = [ps] if isinstance(ps, Tensor) else list(ps)
    names = None
    if ps and all(isinstance(p, tuple) and len(p) == 2 for p in ps): names, ps = [n for n, _ in ps], [p for _, p in ps]  # named_parameters()
    seen = {id(p) for p in self.params}
    for j, p in enumerate(ps):
      where = f"parameter {j}" + (f" of param group {gi}" if gi else "")
      if not isinstance(p, Tensor): raise TypeError(f"{name}: {where} is a {type(p).__name__}, not a Tensor")
      if not p.requires_grad:
        raise ValueError(f"{name}: {where} (shape {p.shape}) does not require grad; call requires_grad_() on it or leave it out")
      if self.device is None: self.device = p.device
      if p.device != self.device: raise RuntimeError(f"{name}: parameters are on different devices: {self.device} and {p.device}")
      if id(p) in seen:
        raise ValueError(f"{name}: {where} (shape {p.shape}) " + ("appears more than once in the list" if any(q is p for q in ps[:j])
                         else "is already in another param group (a parameter can be in one group only)"))
      seen.add(id(p))
    for k in param_group:
      if k not in self.defaults and k not in ("params", "param_names") + _SCHEDULER_KEYS + _IMPL_OPTIONS:
        raise ValueError(f"{name}: param group {gi} has an unknown option {k!r}; {name}'s options are {', '.join(self.defaults)}")
    opts = {k: param_group.get(k, v) for k, v in self.defaults.items()}
    self._check(opts, f" (param group {gi})" if gi else "")
    extra = {k: v for k, v in param_group.items() if k in _SCHEDULER_KEYS}
    if names is not None: extra["param_names"] = names
    elif "param_names" in param_group: extra["param_names"] = list(param_group["param_names"])
    dev = self.device
    scalars = {n: Tensor(np.array(float(v), np.float64), device=dev) for k in self._scalars for n, v in _scalar_items(k, opts[k])}
    group = ParamGroup({"params": ps, **opts, **extra}, scalars)
    first = len(self.params)
    self.params += ps
    self.group_of += [gi] * len(ps)
    self.present += [set() for _ in ps]
    for s in range(first, first + len(ps), GROUP):
      k, at = len(self.chunks), 0
      self.chunks.append(list(range(s, min(s + GROUP, first + len(ps)))))
      for i in self.chunks[k]: self.chunk_of.append(k); self.offsets.append(at); at += self.params[i].numel()
      self.chunk_dtype.append(dtypes.float64 if any(self.params[i].dtype == dtypes.float64 for i in self.chunks[k]) else dtypes.float32)
    for kind, init in self._counters.items():
      new = Tensor.full((len(ps),), init, dtype=dtypes.int32 if kind == "step" else dtypes.float64, device=dev)
      self.counters[kind] = (self.counters[kind].cat(new) if kind in self.counters else new).contiguous().realize()
    self.param_groups.append(group)
    for k in range(len(self.chunks)):
      if self.group_of[self.chunks[k][0]] == gi:
        for kind in self._kinds(group): self._buf(kind, k)
    if self._state_at_init:
      for i in range(first, len(self.params)): self.present[i] |= self._created(group)

  def zero_grad(self, set_to_none: bool = True):
    """Forget every parameter's gradient (set_to_none=False: zeros instead of None)."""
    for p in self.params:
      if set_to_none or p.grad is None: p.grad = None
      else: p.grad = p.grad.zeros_like()

  def step(self, closure: Callable[[], Any] | None = None):
    """Update every parameter that has a .grad, and the state, in place: one realize for all of it. `closure`, if
    given, is called first (it recomputes the loss and its gradients) and its result returned, as in torch."""
    loss = closure() if closure is not None else None
    if not (ts := self.schedule_step()): return loss
    before = GlobalCounters.kernel_count
    Tensor.realize(*ts)
    if DEBUG >= 2: print(f"{type(self).__name__} step: {len(self.params)} parameters in {GlobalCounters.kernel_count - before} kernels")
    return loss

  def schedule_step(self) -> list[Tensor]:
    """Assign the new values (lazily) and return the tensors to realize; a step with no gradients at all does nothing."""
    idx = [i for i, p in enumerate(self.params) if p.grad is not None]
    for i in idx:
      if (gs := self.params[i].grad.shape) != (ps := self.params[i].shape):
        raise ValueError(f"{type(self).__name__}: parameter {i} has shape {ps} but its .grad has shape {gs}")
    if not idx: return []
    has = set(idx)
    out = self._advance(has)
    for gi, g in enumerate(self.param_groups):
      if (mine := [i for i in idx if self.group_of[i] == gi]): out += self._update(g, mine, has)
    for i in idx: self.present[i] |= self._created(self.param_groups[self.group_of[i]])
    return out

  def state_dict(self) -> dict:
    """torch's layout: {'state': {index: {'step': ..., 'exp_avg': ..., ...}}, 'param_groups': [{options...,
    'params': [indices]}]}, indices counting the parameters over the groups in order. The values are Tensors holding
    a copy of the state now ('step' a 0-d float32, as torch's); a parameter that never took a step has no entry."""
    chunks = {(kind, k): t.numpy() for kind, per in self.flat.items() for k, t in per.items()}
    counters = {kind: t.numpy() for kind, t in self.counters.items()}
    state = {}
    for i, names in enumerate(self.present):
      if not names: continue
      entry = {}
      for kind in self._state_order():
        if kind not in names: continue
        if kind in counters: v = np.array(counters[kind][i], np.float32 if kind == "step" else np.float64)
        else:
          o, p = self.offsets[i], self.params[i]
          v = chunks[(kind, self.chunk_of[i])][o:o + p.numel()].reshape(p.shape)
        entry[kind] = Tensor(v.copy(), device=self.device)
      state[i] = entry
    groups, at = [], 0
    for g in self.param_groups:
      groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": list(range(at, at + len(g["params"])))})
      at += len(g["params"])
    return {"state": state, "param_groups": groups}

  def load_state_dict(self, state_dict: dict):
    """Take the state and the groups' options from a state_dict() of this kind of optimiser, lucidgrad's or torch's
    (values may be Tensors, torch tensors, NumPy arrays or numbers). The groups must hold as many parameters as
    here; the state is written into the existing buffers, so a jitted step keeps working."""
    name = type(self).__name__
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if len(saved_groups) != len(self.param_groups):
      raise ValueError(f"{name}: the loaded state dict has {len(saved_groups)} parameter groups, this optimiser {len(self.param_groups)}")
    for gi, (g, s) in enumerate(zip(self.param_groups, saved_groups)):
      if len(s["params"]) != len(g["params"]):
        raise ValueError(f"{name}: param group {gi} of the loaded state dict has {len(s['params'])} parameters, this optimiser's {len(g['params'])}")
      for k in s:
        if k not in self.defaults and k not in ("params", "param_names") + _SCHEDULER_KEYS + _IMPL_OPTIONS:
          raise ValueError(f"{name}: param group {gi} of the loaded state dict has an option {k!r} {name} does not have")
    index = {sid: i for i, sid in enumerate(sid for s in saved_groups for sid in s["params"])}
    known = self._state_order()
    loaded: dict[int, dict[str, np.ndarray]] = {}
    for sid, entry in saved_state.items():
      if sid not in index: raise ValueError(f"{name}: the loaded state dict has state for parameter {sid!r}, which no param group lists")
      i, p = index[sid], self.params[index[sid]]
      loaded[i] = {}
      for kind, v in entry.items():
        if kind not in known: raise ValueError(f"{name}: parameter {sid}'s loaded state has {kind!r}; {name} keeps {', '.join(known)}")
        if v is None: continue
        a = _to_numpy(v)
        want = () if kind in self._counters else p.shape
        if a.size != (p.numel() if want else 1) or (want and a.shape != tuple(want)):
          raise ValueError(f"{name}: parameter {sid}'s loaded {kind!r} has shape {a.shape}, expected {tuple(want)}")
        loaded[i][kind] = a.reshape(want)
    for gi, (g, s) in enumerate(zip(self.param_groups, saved_groups)):
      for k in [k for k in g if k not in s and k not in self.defaults and k not in ("params", "param_names")]: del g[k]
      for k, v in s.items():
        if k not in ("params",) + _IMPL_OPTIONS: g[k] = v
    # torch replaces the whole state: a parameter the dict has no state for starts afresh
    self.present = [set(loaded.get(i, {})) for i in range(len(self.params))]
    for kind, init in self._counters.items():
      t = self.counters[kind]
      a = np.array([loaded[i][kind] if kind in loaded.get(i, {}) else init for i in range(len(self.params))], dtype=np.float64)
      t.assign(Tensor(np.round(a).astype(np.int32) if kind == "step" else a, device=self.device)).realize()
    for kind in known:
      if kind in self._counters: continue
      for k, members in enumerate(self.chunks):
        if not any(kind in loaded.get(i, {}) for i in members) and k not in self.flat.get(kind, {}): continue
        parts = [loaded[i][kind].reshape(-1) if kind in loaded.get(i, {}) else np.full(self.params[i].numel(), self._init(kind, k)) for i in members]
        self._buf(kind, k).assign(Tensor(np.concatenate(parts).astype(self.chunk_dtype[k].np), device=self.device)).realize()

  @property
  def state(self) -> dict[Tensor, dict[str, Tensor]]:
    """torch's `optimizer.state`, read-only: parameter -> its state by name, as lazy views of the live buffers."""
    out = {}
    for i, names in enumerate(self.present):
      if names: out[self.params[i]] = {k: self._value(k, i) for k in self._state_order() if k in names}
    return out

  # ---- lucidgrad's extras ----
  @property
  def lr(self) -> Tensor:
    """The first param group's lr as the 0-d device buffer the step reads."""
    return self.param_groups[0].scalars["lr"]

  def set_lr(self, lr: float):
    """Set every param group's lr (no kernel is recompiled, a jitted step sees it)."""
    _check_nonneg(type(self).__name__, "learning rate", lr)
    for g in self.param_groups: g["lr"] = lr

  # ---- what each optimiser defines ----
  def _check(self, opts: dict, where: str):
    """Raise on a bad option value (as torch's constructors do), naming the option and the group."""
    name = type(self).__name__
    _check_nonneg(name, "learning rate", opts["lr"], where)
    for k in ("eps", "weight_decay", "momentum", "alpha", "lr_decay", "initial_accumulator_value", "momentum_decay"):
      if k in opts: _check_nonneg(name, k, opts[k], where)
    if "betas" in opts:
      b = opts["betas"]
      if not isinstance(b, (tuple, list)) or len(b) != 2 or not all(isinstance(x, (int, float)) and 0 <= x < 1 for x in b):
        raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {b!r}{where}")
  def _kinds(self, g: ParamGroup | dict) -> dict[str, float]:
    """The flat state the group's options need: kind -> initial value."""
    return {}
  def _state_order(self) -> tuple[str, ...]:
    """Every state name this optimiser may keep, in torch's order (state_dict's keys)."""
    return tuple(self._counters)
  def _created(self, g: ParamGroup) -> set[str]:
    """The state torch creates for a parameter of group g at its first step."""
    return set(self._counters) | set(self._kinds(g))
  def _update(self, g: ParamGroup, idx: list[int], has: set[int]) -> list[Tensor]: raise NotImplementedError

  # ---- helpers ----
  def _advance(self, has: set[int]) -> list[Tensor]:
    """One more step for each parameter in `has` (the step count vector, one kernel)."""
    if "step" not in self.counters: return []
    steps = self.counters["step"]
    return [steps.assign(steps + self._per_param(has, 1, 0, dtypes.int32))]
  def _per_param(self, has: set[int], yes, no, dtype: DType) -> Tensor | Any:
    """`yes` for the parameters in `has` and `no` for the others, as a vector over all parameters (or `yes` alone)."""
    if len(has) == len(self.params): return yes
    return Tensor(np.array([yes if i in has else no for i in range(len(self.params))], dtype=dtype.np), device=self.device)
  def _spread(self, name: str) -> Tensor:
    """A group option's device scalar as a vector over all parameters (the group's value for each)."""
    gs = [g for g in self.param_groups if g["params"]]
    if len(gs) == 1: return gs[0].scalars[name]
    return Tensor.cat(*[g.scalars[name].reshape(1).expand(len(g["params"])) for g in gs])
  def _h(self, g: ParamGroup, name: str, dt: DType) -> Tensor:
    """Group g's option `name` (beta1, beta2 for betas) as a 0-d tensor of dt, read from its device buffer."""
    return g.scalars[name].cast(dt)
  def _dt(self, i: int) -> DType: return self.chunk_dtype[self.chunk_of[i]]
  def _grad(self, i: int, g: ParamGroup, l2: bool = True) -> Tensor:
    """Parameter i's gradient in its state dtype, negated under maximize, plus weight_decay * parameter (L2) if asked."""
    d = self.params[i].grad.detach().cast(self._dt(i))
    if g.get("maximize"): d = -d
    return d + self._h(g, "weight_decay", self._dt(i)) * self._param(i) if l2 and g["weight_decay"] != 0 else d
  def _param(self, i: int) -> Tensor: return self.params[i].detach().cast(self._dt(i))
  def _decayed(self, i: int, g: ParamGroup) -> Tensor:
    """The parameter shrunk by lr * weight_decay (decoupled weight decay), or as it is."""
    if g["weight_decay"] == 0: return self._param(i)
    dt = self._dt(i)
    return self._param(i) * (1 - self._h(g, "lr", dt) * self._h(g, "weight_decay", dt))
  def _count(self, i: int, dt: DType) -> Tensor:
    """Parameter i's step count (this step included) as a 0-d tensor of dt."""
    return self.counters["step"].shrink(((i, i + 1),)).reshape(()).cast(dt)
  def _chunks(self, idx: list[int]) -> list[int]: return sorted({self.chunk_of[i] for i in idx})
  def _buf(self, kind: str, k: int) -> Tensor:
    """Chunk k's flat state of `kind`, made (filled with its initial value) the first time it is asked for: an option
    set since construction (momentum by a scheduler, amsgrad by load_state_dict) may need a kind not made then."""
    per = self.flat.setdefault(kind, {})
    if k not in per:
      n = sum(self.params[i].numel() for i in self.chunks[k])
      per[k] = Tensor.full((n,), self._init(kind, k), dtype=self.chunk_dtype[k], device=self.device).contiguous().realize()
    return per[k]
  def _init(self, kind: str, k: int) -> float: return self._kinds(self.param_groups[self.group_of[self.chunks[k][0]]]).get(kind, 0.0)
  def _flat(self, pieces: dict[int, Tensor], k: int) -> Tensor:
    """Chunk k's pieces (by parameter index) flattened and joined into one flat tensor; a missing piece is zeros."""
    dt = self.chunk_dtype[k]
    return Tensor.cat(*[pieces[i].flatten() if i in pieces else Tensor.zeros(self.params[i].numel(), dtype=dt, device=self.device)
                        for i in self.chunks[k]])
  def _mask(self, k: int, on: list[bool]) -> Tensor:
    """A flat bool tensor over chunk k: on[j] over the j-th member's elements."""
    return Tensor.cat(*[Tensor.full((self.params[i].numel(),), v, dtype=dtypes.bool, device=self.device) for i, v in zip(self.chunks[k], on)])
  def _write(self, kind: str, k: int, new: Tensor, has: set[int]) -> Tensor:
    """Assign chunk k's `kind` state: `new` for the parameters in `has`, the old values for the others."""
    buf = self._buf(kind, k)
    if not all(i in has for i in self.chunks[k]): new = self._mask(k, [i in has for i in self.chunks[k]]).where(new, buf)
    return buf.assign(new)
  def _slice(self, kind: str, i: int) -> Tensor:
    """Parameter i's part of a flat state, in the parameter's shape (a view: it sees the state's writes)."""
    o = self.offsets[i]
    return self.flat[kind][self.chunk_of[i]].shrink(((o, o + self.params[i].numel()),)).reshape(self.params[i].shape)
  def _value(self, kind: str, i: int) -> Tensor:
    if kind in self.counters: return self.counters[kind].shrink(((i, i + 1),)).reshape(())
    return self._slice(kind, i)
  def _set(self, i: int, value: Tensor) -> Tensor:
    p = self.params[i]
    return p.assign(value.cast(p.dtype))

def _to_numpy(v) -> np.ndarray:
  """A state value of a loaded state_dict as an array: a Tensor, a torch tensor, an array or a number."""
  if isinstance(v, Tensor): return v.numpy()
  if hasattr(v, "detach") and hasattr(v, "cpu"): return v.detach().cpu().numpy()  # a torch tensor
  return np.asarray(v)

def _check_nonneg(who: str, what: str, v, where: str = ""):
  if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0: raise ValueError(f"{who}: {what} must be a number >= 0, got {v!r}{where}")

def _impl_options(who: str, kwargs: dict):
  """torch's implementation switches (foreach, fused, capturable) are accepted and ignored; anything else is a typo."""
  for k, v in kwargs.items():
    if k not in _IMPL_OPTIONS: raise TypeError(f"{who}: got an unexpected keyword argument {k!r}")
    if k == "differentiable" and v: raise NotImplementedError(f"{who}: differentiable=True (a step that autograd can see through) is not supported")

class SGD(Optimizer):
  """torch.optim.SGD: momentum (the buffer starts as the first gradient), dampening, nesterov, weight_decay, maximize."""
  _scalars = ("lr", "momentum", "dampening", "weight_decay")
  def __init__(self, params, lr: float = 0.001, momentum: float = 0, dampening: float = 0, weight_decay: float = 0,
               nesterov: bool = False, *, maximize: bool = False, **torch_switches):
    _impl_options("SGD", torch_switches)
    super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

  def _check(self, opts, where):
    super()._check(opts, where)
    if not isinstance(opts["dampening"], (int, float)): raise ValueError(f"SGD: dampening must be a number, got {opts['dampening']!r}{where}")
    if opts["nesterov"] and (opts["momentum"] <= 0 or opts["dampening"] != 0):
      raise ValueError(f"SGD: nesterov momentum needs a momentum > 0 and dampening = 0{where}")
  def _kinds(self, g): return {"momentum_buffer": 0.0} if g["momentum"] != 0 else {}
  def _state_order(self): return ("momentum_buffer",)

  def _update(self, g, idx, has):
    d = {i: self._grad(i, g) for i in idx}
    out: list[Tensor] = []
    if g["momentum"] != 0:
      for k in self._chunks(idx):
        dt, buf, flat = self.chunk_dtype[k], self._buf("momentum_buffer", k), self._flat(d, k)
        # a parameter's first step with momentum takes the gradient itself as its buffer
        fresh = ["momentum_buffer" not in self.present[i] for i in self.chunks[k]]
        moved = buf * self._h(g, "momentum", dt) + flat * (1 - self._h(g, "dampening", dt))
        stepping = [f for i, f in zip(self.chunks[k], fresh) if i in has]
        new = flat if all(stepping) else moved if not any(stepping) else self._mask(k, fresh).where(flat, moved)
        out.append(self._write("momentum_buffer", k, new, has))
    for i in idx:
      dt = self._dt(i)
      if g["momentum"] == 0: upd = d[i]
      elif g["nesterov"]: upd = d[i] + self._h(g, "momentum", dt) * self._slice("momentum_buffer", i)
      else: upd = self._slice("momentum_buffer", i)
      out.append(self._set(i, self._param(i) - self._h(g, "lr", dt) * upd))
    return out

def _bias_correction(t: Tensor, b: Tensor) -> Tensor:
  """1 - b^t as -expm1(t log b): no cancellation when b is near 1 (b = 0 gives 1)."""
  return -(t * b.log()).expm1()

class _Moments(Optimizer):
  """Adam-like optimisers: betas, eps, weight_decay, exp_avg and exp_avg_sq, and a step count per parameter."""
  _scalars = ("lr", "betas", "eps", "weight_decay")
  _counters = {"step": 0}
  def _kinds(self, g): return {"exp_avg": 0.0, "exp_avg_sq": 0.0}
  def _state_order(self): return ("step", "exp_avg", "exp_avg_sq")
  @property
  def exp_avg(self) -> list[Tensor]:
    """The first moments, one flat tensor per chunk."""
    return [self.flat["exp_avg"][k] for k in range(len(self.chunks))]
  @property
  def exp_avg_sq(self) -> list[Tensor]:
    """The second moments, one flat tensor per chunk."""
    return [self.flat["exp_avg_sq"][k] for k in range(len(self.chunks))]
  @property
  def steps(self) -> Tensor:
    """Each parameter's step count (int32, on the device)."""
    return self.counters["step"]

  def _moments(self, g: ParamGroup, d: dict[int, Tensor], has: set[int]) -> list[Tensor]:
    """exp_avg = lerp(exp_avg, d, 1 - beta1), exp_avg_sq = beta2 exp_avg_sq + (1 - beta2) d^2, per chunk."""
    out = []
    for k in self._chunks(list(d)):
      dt, flat = self.chunk_dtype[k], self._flat(d, k)
      b1, b2 = self._h(g, "beta1", dt), self._h(g, "beta2", dt)
      out.append(self._write("exp_avg", k, self._buf("exp_avg", k).lerp(flat, 1 - b1), has))
      out.append(self._write("exp_avg_sq", k, self._buf("exp_avg_sq", k) * b2 + flat * flat * (1 - b2), has))
    return out

class Adam(_Moments):
  """torch.optim.Adam: L2 weight_decay added to the gradient (decoupled_weight_decay=True: AdamW's), amsgrad, maximize."""
  def __init__(self, params, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0,
               amsgrad: bool = False, *, maximize: bool = False, decoupled_weight_decay: bool = False, **torch_switches):
    _impl_options(type(self).__name__, torch_switches)
    super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                                  decoupled_weight_decay=decoupled_weight_decay))
  def _kinds(self, g): return {**super()._kinds(g), **({"max_exp_avg_sq": 0.0} if g["amsgrad"] else {})}
  def _state_order(self): return super()._state_order() + ("max_exp_avg_sq",)

  def _update(self, g, idx, has):
    decoupled = g["decoupled_weight_decay"]
    d = {i: self._grad(i, g, l2=not decoupled) for i in idx}
    out = self._moments(g, d, has)
    if g["amsgrad"]:
      for k in self._chunks(idx): out.append(self._write("max_exp_avg_sq", k, self._buf("max_exp_avg_sq", k).maximum(self._buf("exp_avg_sq", k)), has))
    for i in idx:
      dt = self._dt(i)
      t = self._count(i, dt)
      bc1, bc2 = _bias_correction(t, self._h(g, "beta1", dt)), _bias_correction(t, self._h(g, "beta2", dt))
      denom = self._slice("max_exp_avg_sq" if g["amsgrad"] else "exp_avg_sq", i).sqrt() / bc2.sqrt() + self._h(g, "eps", dt)
      p = self._decayed(i, g) if decoupled else self._param(i)
      out.append(self._set(i, p - (self._h(g, "lr", dt) / bc1) * self._slice("exp_avg", i) / denom))
    return out

class AdamW(Adam):
  """torch.optim.AdamW: Adam with decoupled weight decay (the parameter shrinks by lr * weight_decay each step)."""
  def __init__(self, params, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
               amsgrad: bool = False, *, maximize: bool = False, **torch_switches):
    super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True, **torch_switches)

class Adamax(_Moments):
  """torch.optim.Adamax: Adam with the infinity norm, exp_inf = max(beta2 exp_inf, |g| + eps)."""
  def __init__(self, params, lr: float = 0.002, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0,
               *, maximize: bool = False, **torch_switches):
    _impl_options("Adamax", torch_switches)
    super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize))
  def _kinds(self, g): return {"exp_avg": 0.0, "exp_inf": 0.0}
  def _state_order(self): return ("step", "exp_avg", "exp_inf")

  def _update(self, g, idx, has):
    d = {i: self._grad(i, g) for i in idx}
    out = []
    for k in self._chunks(idx):
      dt, flat = self.chunk_dtype[k], self._flat(d, k)
      out.append(self._write("exp_avg", k, self._buf("exp_avg", k).lerp(flat, 1 - self._h(g, "beta1", dt)), has))
      out.append(self._write("exp_inf", k, (self._buf("exp_inf", k) * self._h(g, "beta2", dt)).maximum(flat.abs() + self._h(g, "eps", dt)), has))
    for i in idx:
      dt = self._dt(i)
      clr = self._h(g, "lr", dt) / _bias_correction(self._count(i, dt), self._h(g, "beta1", dt))
      out.append(self._set(i, self._param(i) - clr * self._slice("exp_avg", i) / self._slice("exp_inf", i)))
    return out

class NAdam(_Moments):
  """torch.optim.NAdam: Adam with Nesterov momentum, beta1 warmed up by momentum_decay (mu_product per parameter);
  decoupled_weight_decay as AdamW's."""
  _scalars = _Moments._scalars + ("momentum_decay",)
  _counters = {"step": 0, "mu_product": 1.0}
  def __init__(self, params, lr: float = 0.002, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0,
               momentum_decay: float = 0.004, decoupled_weight_decay: bool = False, *, maximize: bool = False, **torch_switches):
    _impl_options("NAdam", torch_switches)
    super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                                  decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))
  def _state_order(self): return ("step", "mu_product", "exp_avg", "exp_avg_sq")

  @staticmethod
  def _mu(t: Tensor, b1: Tensor, md: Tensor) -> Tensor:
    """beta1 (1 - 0.96^(t momentum_decay) / 2): the momentum of step t."""
    return b1 * (1 - 0.5 * (t * md * math.log(0.96)).exp())

  def _advance(self, has):
    out = super()._advance(has)
    t = self.counters["step"].cast(dtypes.float64)
    mu = self._mu(t, self._spread("beta1"), self._spread("momentum_decay"))
    mp = self.counters["mu_product"]
    return out + [mp.assign(mp * (mu if len(has) == len(self.params) else self._per_param(has, True, False, dtypes.bool).where(mu, 1.0)))]

  def _update(self, g, idx, has):
    decoupled = g["decoupled_weight_decay"]
    d = {i: self._grad(i, g, l2=not decoupled) for i in idx}
    out = self._moments(g, d, has)
    for i in idx:
      dt = self._dt(i)
      t, lr, b1, md = self._count(i, dt), self._h(g, "lr", dt), self._h(g, "beta1", dt), self._h(g, "momentum_decay", dt)
      mu, mu_next = self._mu(t, b1, md), self._mu(t + 1, b1, md)
      mp = self.counters["mu_product"].shrink(((i, i + 1),)).reshape(()).cast(dt)
      denom = (self._slice("exp_avg_sq", i) / _bias_correction(t, self._h(g, "beta2", dt))).sqrt() + self._h(g, "eps", dt)
      p = self._decayed(i, g) if decoupled else self._param(i)
      p = p - (lr * (1 - mu) / (1 - mp)) * d[i] / denom
      out.append(self._set(i, p - (lr * mu_next / (1 - mp * mu_next)) * self._slice("exp_avg", i) / denom))
    return out

class RAdam(_Moments):
  """torch.optim.RAdam: Adam whose adaptive term is switched on, rectified, once the variance estimate is tractable
  (rho_t > 5); decoupled_weight_decay as AdamW's. rho_t is computed in float64: near 5 float32 could flip the switch."""
  def __init__(self, params, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0,
               decoupled_weight_decay: bool = False, *, maximize: bool = False, **torch_switches):
    _impl_options("RAdam", torch_switches)
    super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize,
                                  decoupled_weight_decay=decoupled_weight_decay))

  def _update(self, g, idx, has):
    decoupled = g["decoupled_weight_decay"]
    d = {i: self._grad(i, g, l2=not decoupled) for i in idx}
    out = self._moments(g, d, has)
    f64 = dtypes.float64
    for i in idx:
      dt = self._dt(i)
      t, b1, b2 = self._count(i, f64), self._h(g, "beta1", f64), self._h(g, "beta2", f64)
      bc2 = _bias_correction(t, b2)
      rho_inf = 2 / (1 - b2) - 1
      rho = rho_inf - 2 * t * (t * b2.log()).exp() / bc2
      rect = ((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)).sqrt()
      step = self._slice("exp_avg", i) / _bias_correction(t, b1).cast(dt) * self._h(g, "lr", dt)
      adaptive = bc2.sqrt().cast(dt) / (self._slice("exp_avg_sq", i).sqrt() + self._h(g, "eps", dt))
      step = (rho > 5).where(step * adaptive * rect.cast(dt), step)
      out.append(self._set(i, (self._decayed(i, g) if decoupled else self._param(i)) - step))
    return out

class RMSprop(Optimizer):
  """torch.optim.RMSprop: square_avg = alpha square_avg + (1 - alpha) g^2; centered subtracts the squared mean
  gradient; momentum keeps a buffer of the scaled steps."""
  _scalars = ("lr", "momentum", "alpha", "eps", "weight_decay")
  _counters = {"step": 0}
  def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
               centered: bool = False, *, maximize: bool = False, **torch_switches):
    _impl_options("RMSprop", torch_switches)
    super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay, maximize=maximize))
  def _kinds(self, g):
    return {"square_avg": 0.0, **({"momentum_buffer": 0.0} if g["momentum"] > 0 else {}), **({"grad_avg": 0.0} if g["centered"] else {})}
  def _state_order(self): return ("step", "square_avg", "momentum_buffer", "grad_avg")

  def _avg(self, g: ParamGroup, sq: Tensor, ga: Tensor | None, dt: DType) -> Tensor:
    return (sq - ga * ga if ga is not None else sq).sqrt() + self._h(g, "eps", dt)

  def _update(self, g, idx, has):
    d = {i: self._grad(i, g) for i in idx}
    out = []
    for k in self._chunks(idx):
      dt, flat = self.chunk_dtype[k], self._flat(d, k)
      alpha = self._h(g, "alpha", dt)
      out.append(self._write("square_avg", k, self._buf("square_avg", k) * alpha + flat * flat * (1 - alpha), has))
      if g["centered"]: out.append(self._write("grad_avg", k, self._buf("grad_avg", k).lerp(flat, 1 - alpha), has))
      if g["momentum"] > 0:
        avg = self._avg(g, self._buf("square_avg", k), self._buf("grad_avg", k) if g["centered"] else None, dt)
        out.append(self._write("momentum_buffer", k, self._buf("momentum_buffer", k) * self._h(g, "momentum", dt) + flat / avg, has))
    for i in idx:
      dt = self._dt(i)
      if g["momentum"] > 0: upd = self._slice("momentum_buffer", i)
      else: upd = d[i] / self._avg(g, self._slice("square_avg", i), self._slice("grad_avg", i) if g["centered"] else None, dt)
      out.append(self._set(i, self._param(i) - self._h(g, "lr", dt) * upd))
    return out

class Adagrad(Optimizer):
  """torch.optim.Adagrad: the sum of squared gradients (from initial_accumulator_value) scales each step; the lr
  decays as lr / (1 + (step - 1) lr_decay). Its state exists from the constructor on, as torch's."""
  _scalars = ("lr", "lr_decay", "eps", "weight_decay")
  _counters = {"step": 0}
  _state_at_init = True
  def __init__(self, params, lr: float = 0.01, lr_decay: float = 0, weight_decay: float = 0, initial_accumulator_value: float = 0,
               eps: float = 1e-10, *, maximize: bool = False, **torch_switches):
    _impl_options("Adagrad", torch_switches)
    super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                  initial_accumulator_value=initial_accumulator_value, maximize=maximize))
  def _kinds(self, g): return {"sum": float(g["initial_accumulator_value"])}
  def _state_order(self): return ("step", "sum")

  def _update(self, g, idx, has):
    d = {i: self._grad(i, g) for i in idx}
    out = []
    for k in self._chunks(idx):
      flat = self._flat(d, k)
      out.append(self._write("sum", k, self._buf("sum", k) + flat * flat, has))
    for i in idx:
      dt = self._dt(i)
      clr = self._h(g, "lr", dt) / (1 + (self._count(i, dt) - 1) * self._h(g, "lr_decay", dt))
      out.append(self._set(i, self._param(i) - clr * d[i] / (self._slice("sum", i).sqrt() + self._h(g, "eps", dt))))
    return out

class Adadelta(Optimizer):
  """torch.optim.Adadelta: the step is g sqrt(acc_delta + eps) / sqrt(square_avg + eps), both running averages with
  rho; lr (default 1.0) scales it."""
  _scalars = ("lr", "rho", "eps", "weight_decay")
  _counters = {"step": 0}
  def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0, *, maximize: bool = False, **torch_switches):
    _impl_options("Adadelta", torch_switches)
    super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))
  def _check(self, opts, where):
    super()._check(opts, where)
    if not isinstance(opts["rho"], (int, float)) or not 0 <= opts["rho"] <= 1: raise ValueError(f"Adadelta: rho must be in [0, 1], got {opts['rho']!r}{where}")
  def _kinds(self, g): return {"square_avg": 0.0, "acc_delta": 0.0}
  def _state_order(self): return ("step", "square_avg", "acc_delta")

  def _update(self, g, idx, has):
    d = {i: self._grad(i, g) for i in idx}
    out, delta = [], {}
    for k in self._chunks(idx):
      dt, flat = self.chunk_dtype[k], self._flat(d, k)
      rho, eps = self._h(g, "rho", dt), self._h(g, "eps", dt)
      out.append(self._write("square_avg", k, self._buf("square_avg", k) * rho + flat * flat * (1 - rho), has))
      # the step reads acc_delta before this step's write (built now, it names that version), and a buffer of its own:
      # fused into both the acc_delta and the parameter kernels, with weight decay each would read the other's old buffer
      delta[k] = ((self._buf("acc_delta", k) + eps).sqrt() / (self._buf("square_avg", k) + eps).sqrt() * flat).contiguous()
      out.append(self._write("acc_delta", k, self._buf("acc_delta", k) * rho + delta[k] * delta[k] * (1 - rho), has))
    for i in idx:
      o, p = self.offsets[i], self.params[i]
      step = delta[self.chunk_of[i]].shrink(((o, o + p.numel()),)).reshape(p.shape)
      out.append(self._set(i, self._param(i) - self._h(g, "lr", self._dt(i)) * step))
    return out

class LAMB(_Moments):
  """LAMB (You et al. 2019): the bias-corrected Adam direction r = m^ / (sqrt(v^) + eps) + weight_decay * w, scaled per
  parameter by the trust ratio ||w|| / ||r|| (1 where either norm is 0); adam=True keeps the ratio at 1."""
  def __init__(self, params, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0,
               adam: bool = False):
    super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, adam=adam))

  def _update(self, g, idx, has):
    out = self._moments(g, {i: self._grad(i, g, l2=False) for i in idx}, has)
    w, r = {}, {}
    for i in idx:
      dt = self._dt(i)
      t = self._count(i, dt)
      bc1, bc2 = _bias_correction(t, self._h(g, "beta1", dt)), _bias_correction(t, self._h(g, "beta2", dt))
      w[i] = self._param(i)
      r[i] = (self._slice("exp_avg", i) / bc1) / ((self._slice("exp_avg_sq", i) / bc2).sqrt() + self._h(g, "eps", dt))
      if g["weight_decay"] != 0: r[i] = r[i] + self._h(g, "weight_decay", dt) * w[i]
    for i in idx:
      ratio: Tensor | float = 1.0
      if not g["adam"]:  # ||w|| and ||r|| in one kernel per parameter (one kernel for all would loop over every tensor per output)
        norms = Tensor.stack(w[i].flatten(), r[i].flatten()).square().sum(axis=1).sqrt()
        wn, rn = norms[0], norms[1]
        ratio = ((wn > 0) & (rn > 0)).where(wn / rn, 1.0)
      out.append(self._set(i, w[i] - self._h(g, "lr", self._dt(i)) * ratio * r[i]))
    return out

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

from lucidgrad.nn.optim import lr_scheduler  # noqa: E402, F401  (after Optimizer: it imports it from here)
from lucidgrad.nn.optim.lr_scheduler import (LRScheduler, LambdaLR, MultiplicativeLR, StepLR, MultiStepLR, ExponentialLR,  # noqa: E402, F401
                                             ConstantLR, LinearLR, PolynomialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts,
                                             ReduceLROnPlateau, OneCycleLR, SequentialLR, ChainedScheduler)
