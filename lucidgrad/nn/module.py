"""nn.Module, torch's base class of layers and models: parameters, buffers and submodules registered by assignment,
their torch-named walks and state dicts, train/eval mode, and torch's containers (Sequential, ModuleList, ModuleDict,
ParameterList, ParameterDict) and nn.Parameter. Built on the public Tensor API only.

Train and eval mode. A Module starts in training mode, as torch's do; `model.train()` / `model.eval()` set the flag of
every module in the tree, and a layer reads `self.training` when it is called (so a jitted function keeps the mode it
was captured in). `with nn.train(mode):` overrides every module's flag inside the block (each reads `mode` there, its
own flag is kept for after): a block of training or of evaluation for any model, plain objects holding layers too."""
from __future__ import annotations
import contextlib, itertools
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterable, Iterator, Mapping
from lucidgrad import Tensor, DType, Device, dtypes

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "train", "IncompatibleKeys"]

# ---------------------------------------------------------------- Parameter

class _ParameterMeta(type(Tensor)):  # type: ignore[misc]
  def __instancecheck__(cls, obj) -> bool:
    # layers make their parameters as plain leaf tensors (no copy into a Parameter): those are Parameters too
    return type.__instancecheck__(cls, obj) or (cls is Parameter and isinstance(obj, Tensor) and obj.requires_grad and obj.is_leaf)

class Parameter(Tensor, metaclass=_ParameterMeta):
  """torch.nn.Parameter: a tensor that a Module registers as a parameter when it is assigned as an attribute.
  Parameter(t) is a leaf holding t's values in a storage of its own (torch's shares t's storage); requires_grad=False
  makes a frozen parameter. isinstance(x, Parameter) is also True for any leaf tensor that requires grad, which is how
  the layers make theirs."""
  __slots__ = ()
  def __init__(self, data: Any = None, requires_grad: bool = True):
    src = Tensor.empty(0) if data is None else data if isinstance(data, Tensor) else Tensor(data)
    if src.dtype.is_float():
      super().__init__(src.detach(), requires_grad=True)  # an alias that requires grad becomes a leaf owning a copy
      if not requires_grad: self.requires_grad_(False)
    else:
      if requires_grad: raise TypeError(f"Parameter: only float tensors can require gradients, got {src.dtype}; pass requires_grad=False")
      super().__init__(src.detach().clone().realize())
  def __repr__(self) -> str: return "Parameter containing:\n" + super().__repr__()

# ---------------------------------------------------------------- load_state_dict's checks and writes

class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
  """What load_state_dict returns: the model's keys the state dict lacked, and the state dict's keys the model lacks."""
  __slots__ = ()
  def __repr__(self) -> str:
    return "<All keys matched successfully>" if not self.missing_keys and not self.unexpected_keys else super().__repr__()

def _as_tensor(v, key: str) -> Tensor:
  """A state dict's value as a Tensor: a Tensor as it is, a torch tensor through NumPy (bfloat16 widened to float32,
  exactly), anything else through Tensor()."""
  if isinstance(v, Tensor): return v
  if type(v).__module__.split(".")[0] == "torch" and hasattr(v, "detach"):
    v = v.detach().cpu()
    return Tensor(v.float().numpy() if str(v.dtype) == "torch.bfloat16" else v.numpy())
  try: return Tensor(v)
  except (TypeError, ValueError) as e: raise TypeError(f"state dict entry {key!r}: expected a Tensor, NumPy array or torch tensor, got a {type(v).__name__} ({e})") from None

def load_tensors(own: Mapping[str, Tensor], state_dict: Mapping[str, Any], strict: bool, what: str) -> IncompatibleKeys:
  """Copy state_dict's values into the tensors `own` names (cast to their dtype, moved to their device), in place and
  realized together in one schedule, so whoever holds those tensors (an optimiser) sees the new values. Everything
  wrong is reported in one RuntimeError before anything is written: missing and unexpected keys when strict, and
  always a shape that differs or a float value for an integer or bool tensor (other dtypes are cast, as torch does)."""
  if not isinstance(state_dict, Mapping): raise TypeError(f"load_state_dict: expected a dict-like state dict, got a {type(state_dict).__name__}")
  missing = [k for k in own if k not in state_dict]
  unexpected = [k for k in state_dict if k not in own]
  values = {k: _as_tensor(v, k) for k, v in state_dict.items() if k in own}
  misshaped = [f"{k}: the model's tensor has shape {own[k].shape}, the state dict's {v.shape}" for k, v in values.items() if own[k].shape != v.shape]
  mistyped = [f"{k}: the model's tensor is {own[k].dtype}, the state dict's {v.dtype}" for k, v in values.items()
              if (v.dtype.is_float() or v.dtype == dtypes.bfloat16) and not (own[k].dtype.is_float() or own[k].dtype == dtypes.bfloat16)]
  problems = ([f"missing keys: {missing}"] if strict and missing else []) + ([f"unexpected keys: {unexpected}"] if strict and unexpected else []) + \
             (["shapes that differ:\n    " + "\n    ".join(misshaped)] if misshaped else []) + \
             (["dtypes that cannot be copied (a float value into an integer tensor):\n    " + "\n    ".join(mistyped)] if mistyped else [])
  if problems: raise RuntimeError(f"error(s) loading the state dict into {what}:\n  " + "\n  ".join(problems))
  written: dict[int, Tensor] = {}
  for k, v in values.items():
    t = own[k]
    if id(t) in written: continue  # tied weights: one tensor under two names is written once
    # a realized t is written in place; an unrealized one gets a copy (assign never shares the state dict's buffer)
    written[id(t)] = t.assign(v.to(t.device).cast(t.dtype))
  if written: Tensor.realize(*written.values())
  return IncompatibleKeys(missing, unexpected)

# ---------------------------------------------------------------- Module

@contextlib.contextmanager
def train(mode: bool = True) -> Iterator[None]:
  """Inside the with block every Module's `training` reads `mode`, whatever its own flag (which is kept, and read again
  after the block); `with nn.train(False):` is a block of evaluation."""
  prev, Module._forced_mode = Module._forced_mode, bool(mode)
  try: yield
  finally: Module._forced_mode = prev

def _check_name(m: Module, name, kind: str, store: dict) -> None:
  if not isinstance(name, str): raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
  if not name or "." in name: raise KeyError(f"{kind} name can't be empty or contain \".\", got {name!r}")
  if name not in store and (name in m.__dict__ or any(name in s for s in (m._parameters, m._buffers, m._modules)) or hasattr(type(m), name)):
    raise KeyError(f"attribute {name!r} already exists")

class Module:
  """torch.nn.Module: the base class of layers and models. Assigning a Module, a Parameter (any leaf tensor that
  requires grad) or, for a name already registered, a tensor or None as an attribute registers it; other values stay
  plain attributes. Subclasses define forward(); calling the module calls it."""
  _forced_mode: bool | None = None  # set by `with nn.train(mode):`

  def __init__(self, *args, **kwargs):
    if args or kwargs: raise TypeError(f"Module.__init__() takes no arguments, got {len(args)} positional and {sorted(kwargs)} keyword")
    d = self.__dict__  # setdefault: a subclass may have assigned attributes before calling this
    d.setdefault("_parameters", {}); d.setdefault("_buffers", {}); d.setdefault("_modules", {})
    d.setdefault("_non_persistent_buffers_set", set()); d.setdefault("_training", True)

  # ---- the mode ----
  @property
  def training(self) -> bool:
    """Whether the module is in training mode: its own flag (True for a new module), unless `nn.train(mode)` overrides it."""
    return self.__dict__.get("_training", True) if Module._forced_mode is None else Module._forced_mode
  @training.setter
  def training(self, mode: bool): self.__dict__["_training"] = bool(mode)

  def train(self, mode: bool = True) -> Module:
    """Set training mode (mode=False: eval) on this module and every submodule; returns self."""
    if not isinstance(mode, bool): raise ValueError(f"train: mode is expected to be a bool, got {type(mode).__name__}")
    for m in self.modules(): m.training = mode
    return self
  def eval(self) -> Module:
    """train(False): eval mode for this module and every submodule (BatchNorm uses its running stats, Dropout is off)."""
    return self.train(False)

  # ---- registration ----
  def __setattr__(self, name: str, value: Any) -> None:
    d = self.__dict__
    if "_parameters" not in d: Module.__init__(self)  # a subclass that never called super().__init__()
    params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
    if isinstance(value, Module):
      self._forget(name)
      modules[name] = value
    elif isinstance(value, Tensor) and name not in buffers and (name in params or isinstance(value, Parameter)):
      self._forget(name)
      params[name] = value
    elif name in params or name in buffers or name in modules:
      kind, store = (("parameter", params), ("buffer", buffers), ("child module", modules))[0 if name in params else 1 if name in buffers else 2]
      if value is not None and not (kind == "buffer" and isinstance(value, Tensor)):
        raise TypeError(f"cannot assign a {type(value).__name__} as {kind} {name!r} of {type(self).__name__} "
                        f"({'a Tensor' if kind != 'child module' else 'a Module'} or None expected)")
      store[name] = value
    else: object.__setattr__(self, name, value)

  def __getattr__(self, name: str) -> Any:
    d = self.__dict__  # only reached when ordinary lookup failed
    if "_parameters" in d:
      for store in (d["_parameters"], d["_buffers"], d["_modules"]):
        if name in store: return store[name]
    raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

  def __delattr__(self, name: str) -> None:
    d = self.__dict__
    for store in (d.get("_parameters", {}), d.get("_buffers", {}), d.get("_modules", {})):
      if name in store:
        del store[name]
        d["_non_persistent_buffers_set"].discard(name)
        return
    object.__delattr__(self, name)

  def __dir__(self) -> list[str]:
    keys = set(dir(type(self))) | set(self.__dict__) | set(self._parameters) | set(self._buffers) | set(self._modules)
    return sorted(k for k in keys if not k[0].isdigit())

  def _forget(self, name: str) -> None:
    """Remove `name` from wherever it is registered or set, before it is registered anew."""
    d = self.__dict__
    d.pop(name, None)
    for store in (d["_parameters"], d["_buffers"], d["_modules"]): store.pop(name, None)
    d["_non_persistent_buffers_set"].discard(name)

  def register_parameter(self, name: str, param: Tensor | None) -> None:
    """Register `param` (a Tensor, or None for an absent one, as a bias=False layer's bias) as parameter `name`."""
    if "_parameters" not in self.__dict__: Module.__init__(self)
    _check_name(self, name, "parameter", self._parameters)
    if param is not None and not isinstance(param, Tensor):
      raise TypeError(f"cannot register a {type(param).__name__} as parameter {name!r} (a Tensor or None expected)")
    self._forget(name)
    self._parameters[name] = param

  def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
    """Register `tensor` as buffer `name`: state that is not a parameter (running statistics); persistent=False keeps
    it out of state_dict()."""
    if "_parameters" not in self.__dict__: Module.__init__(self)
    _check_name(self, name, "buffer", self._buffers)
    if tensor is not None and not isinstance(tensor, Tensor):
      raise TypeError(f"cannot register a {type(tensor).__name__} as buffer {name!r} (a Tensor or None expected)")
    self._forget(name)
    self._buffers[name] = tensor
    if not persistent: self._non_persistent_buffers_set.add(name)

  def add_module(self, name: str, module: Module | None) -> None:
    """Register `module` (or None) as the child `name`."""
    if "_parameters" not in self.__dict__: Module.__init__(self)
    if module is not None and not isinstance(module, Module): raise TypeError(f"{type(module).__name__} is not a Module subclass")
    _check_name(self, name, "module", self._modules)
    self._forget(name)
    self._modules[name] = module
  register_module = add_module

  # ---- walks ----
  def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
    """(dotted name, module) for this module ('') and every submodule, depth first; a module reached twice is given once."""
    memo = set() if memo is None else memo
    if self in memo: return
    if remove_duplicate: memo.add(self)
    yield prefix, self
    for name, m in self._modules.items():
      if m is not None: yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)
  def modules(self) -> Iterator[Module]:
    """This module and every submodule, each once."""
    for _, m in self.named_modules(): yield m
  def named_children(self) -> Iterator[tuple[str, Module]]:
    """(name, module) for each direct child, each once."""
    seen = set()
    for name, m in self._modules.items():
      if m is not None and m not in seen:
        seen.add(m)
        yield name, m
  def children(self) -> Iterator[Module]:
    """Each direct child once."""
    for _, m in self.named_children(): yield m

  def _named_members(self, members: Callable[[Module], Iterable[tuple[str, Any]]], prefix: str, recurse: bool, remove_duplicate: bool):
    seen: set[int] = set()
    for mprefix, m in (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]):
      for k, v in members(m):
        if v is None or (remove_duplicate and id(v) in seen): continue
        seen.add(id(v))
        yield (f"{mprefix}.{k}" if mprefix else k), v
  def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
    """(dotted name, parameter) in torch's order (a module's own, then its children's); a tensor registered under two
    names (tied weights) is given once, under the first."""
    return self._named_members(lambda m: m._parameters.items(), prefix, recurse, remove_duplicate)
  def parameters(self, recurse: bool = True) -> Iterator[Tensor]:
    """Every parameter once, in named_parameters' order: what an optimiser takes."""
    for _, p in self.named_parameters(recurse=recurse): yield p
  def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
    """(dotted name, buffer) in torch's order, non-persistent ones included."""
    return self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)
  def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
    """Every buffer once."""
    for _, b in self.named_buffers(recurse=recurse): yield b

  def get_submodule(self, target: str) -> Module:
    """The submodule at the dotted path `target` ('' is this module)."""
    m: Module = self
    for i, item in enumerate(target.split(".") if target else []):
      child = m._modules.get(item)
      if not isinstance(child, Module):
        raise AttributeError(f"{type(m).__name__} has no submodule {item!r} (looking up {target!r}, at {'.'.join(target.split('.')[:i]) or 'the top'})")
      m = child
    return m
  def get_parameter(self, target: str) -> Tensor:
    """The parameter at the dotted path `target`."""
    path, _, name = target.rpartition(".")
    if (p := self.get_submodule(path)._parameters.get(name)) is None: raise AttributeError(f"{target!r} is not a parameter")
    return p
  def get_buffer(self, target: str) -> Tensor:
    """The buffer at the dotted path `target`."""
    path, _, name = target.rpartition(".")
    if (b := self.get_submodule(path)._buffers.get(name)) is None: raise AttributeError(f"{target!r} is not a buffer")
    return b

  # ---- state ----
  def _state_items(self) -> Iterator[tuple[str, Tensor]]:
    """This module's own entries of its state dict: parameters, then persistent buffers, None left out."""
    yield from ((k, v) for k, v in self._parameters.items() if v is not None)
    yield from ((k, v) for k, v in self._buffers.items() if v is not None and k not in self._non_persistent_buffers_set)

  def state_dict(self, *, destination: dict | None = None, prefix: str = "", keep_vars: bool = False) -> dict[str, Tensor]:
    """An OrderedDict of every parameter and persistent buffer by torch's dotted names, in torch's order; a tensor
    registered under two names appears under both. Values are detached views (keep_vars=True: the tensors themselves),
    so they see later in-place updates, as torch's do."""
    out = OrderedDict() if destination is None else destination
    for k, v in self._state_items(): out[prefix + k] = v if keep_vars else v.detach()
    for name, m in self._modules.items():
      if m is not None: m.state_dict(destination=out, prefix=f"{prefix}{name}.", keep_vars=keep_vars)
    return out

  def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> IncompatibleKeys:
    """Copy a state dict (values: lucidgrad Tensors, NumPy arrays or torch tensors) into this module's parameters and
    buffers in place, so an optimiser holding them sees the new values. Returns (missing_keys, unexpected_keys); strict
    raises on either, and a shape that differs always raises, listing every key at fault before anything is written.
    `assign` is accepted; the values are always copied."""
    return load_tensors(self.state_dict(keep_vars=True), state_dict, strict, type(self).__name__)

  # ---- gradients, dtypes, devices ----
  def zero_grad(self, set_to_none: bool = True) -> None:
    """Forget every parameter's gradient (set_to_none=False: fill the existing ones with zeros instead)."""
    for p in self.parameters():
      if p.grad is None: continue
      if set_to_none: p.grad = None
      else: p.grad = Tensor.zeros(*p.grad.shape, dtype=p.grad.dtype, device=p.grad.device)

  def requires_grad_(self, requires_grad: bool = True) -> Module:
    """Make every parameter require grad (or stop: freeze the module); returns self."""
    for p in self.parameters(): p.requires_grad_(requires_grad)
    return self

  def apply(self, fn: Callable[[Module], Any]) -> Module:
    """fn(m) for every submodule (children first, as torch) and then this module; returns self."""
    for m in self.children(): m.apply(fn)
    fn(self)
    return self

  def _apply(self, convert: Callable[[Tensor], Tensor | None]) -> Module:
    """Replace each parameter and buffer t (and a parameter's .grad) with convert(t) where that is not None: new leaf
    tensors, requires_grad kept; a tensor under several names stays one tensor."""
    done: dict[int, Tensor] = {}
    def new(t: Tensor, param: bool) -> Tensor:
      if id(t) in done: return done[id(t)]
      if (v := convert(t.detach())) is None: out = t
      elif param:
        out = Parameter(v, requires_grad=t.requires_grad)
        if t.grad is not None and (g := convert(t.grad.detach())) is not None: out.grad = g.contiguous().realize()
      else: out = v.contiguous().realize()
      done[id(t)] = out
      return out
    for m in self.modules():
      for store, param in ((m._parameters, True), (m._buffers, False)):
        for k, t in store.items():
          if t is not None: store[k] = new(t, param)
    return self

  def to(self, *args, **kwargs) -> Module:
    """Move (device) and/or cast (a float dtype: floating-point parameters and buffers only) every parameter and buffer,
    as torch's to(device), to(dtype), to(device, dtype), to(tensor); returns self. Unlike torch, moved or cast tensors
    are new Tensor objects: build optimisers after to()."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    if kwargs: raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
      if isinstance(a, Tensor): device, dtype = a.device, a.dtype
      elif isinstance(a, DType): dtype = a
      elif isinstance(a, str) or hasattr(a, "type"): device = str(a)
      elif isinstance(a, bool): continue  # non_blocking given positionally
      else: raise TypeError(f"to() takes a device (str), a DType or a Tensor, got a {type(a).__name__}")
    if dtype is not None and not (dtype.is_float() or dtype == dtypes.bfloat16):
      raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")
    dev = Device.canonicalize(device) if device is not None else None
    def convert(t: Tensor) -> Tensor | None:
      cast = dtype is not None and dtype != t.dtype and (t.dtype.is_float() or t.dtype == dtypes.bfloat16)
      if not cast and (dev is None or dev == t.device): return None
      return (t.cast(dtype) if cast else t).to(dev if dev is not None else t.device)
    return self._apply(convert)
  def cpu(self) -> Module:
    """to('CPU')."""
    return self.to("CPU")
  def cuda(self, device: int | None = None) -> Module:
    """to('CUDA') (or 'CUDA:n')."""
    return self.to("CUDA" if device is None else f"CUDA:{device}")
  def type(self, dst_type: DType) -> Module:
    """Cast every parameter and buffer to dst_type (integer ones too, as torch's type())."""
    return self._apply(lambda t: None if t.dtype == dst_type else t.cast(dst_type))
  def float(self) -> Module:
    """Floating-point parameters and buffers to float32."""
    return self.to(dtypes.float32)
  def double(self) -> Module:
    """Floating-point parameters and buffers to float64."""
    return self.to(dtypes.float64)
  def half(self) -> Module:
    """Floating-point parameters and buffers to float16."""
    return self.to(dtypes.float16)
  def bfloat16(self) -> Module:
    """Floating-point parameters and buffers to bfloat16."""
    return self.to(dtypes.bfloat16)

  # ---- calling and printing ----
  def forward(self, *args, **kwargs):
    """What calling the module computes: subclasses define it."""
    raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')
  def __call__(self, *args, **kwargs): return self.forward(*args, **kwargs)

  def extra_repr(self) -> str:
    """The arguments shown in this module's repr line, as torch's: subclasses give their own."""
    return ""
  def _get_name(self) -> str: return type(self).__name__
  def _child_lines(self) -> list[str]:
    return [f"({name}): {_indent(repr(m), 2)}" for name, m in self._modules.items()]
  def __repr__(self) -> str:
    # torch's layout: one line when there is only an extra_repr of one line, else the extra lines then
    # "(name): child" lines, each indented two spaces, the closing paren on its own line
    extra = self.extra_repr().split("\n") if self.extra_repr() else []
    lines = extra + self._child_lines()
    if not lines: return f"{self._get_name()}()"
    if len(extra) == 1 and len(lines) == 1: return f"{self._get_name()}({extra[0]})"
    return f"{self._get_name()}(\n  " + "\n  ".join(lines) + "\n)"

def _indent(text: str, n: int) -> str:
  """Every line but the first indented n spaces."""
  first, *rest = text.split("\n")
  return "\n".join([first] + [" " * n + line for line in rest])

# ---------------------------------------------------------------- containers

def _index(i, n: int, what: str) -> int:
  i = i.__index__()
  if not -n <= i < n: raise IndexError(f"index {i} is out of range for a {what} of length {n}")
  return i % n

class Sequential(Module):
  """torch.nn.Sequential: modules called in order, each on the output of the one before. Built from modules
  (named '0', '1', ...) or from one OrderedDict of name -> module; indexing, slicing (a Sequential with the same
  names), len, iteration, append/insert/extend/pop and del (which renumbers, as torch)."""
  def __init__(self, *args):
    super().__init__()
    if len(args) == 1 and isinstance(args[0], OrderedDict):
      for name, m in args[0].items(): self.add_module(name, m)
    else:
      for i, m in enumerate(args): self.add_module(str(i), m)
  def forward(self, x):
    """Each module on the output of the one before."""
    for m in self._modules.values(): x = m(x)
    return x
  def __len__(self) -> int: return len(self._modules)
  def __iter__(self) -> Iterator[Module]: return iter(self._modules.values())
  def __getitem__(self, idx):
    if isinstance(idx, slice): return type(self)(OrderedDict(list(self._modules.items())[idx]))
    return list(self._modules.values())[_index(idx, len(self), "Sequential")]
  def __setitem__(self, idx, module: Module) -> None:
    setattr(self, list(self._modules)[_index(idx, len(self), "Sequential")], module)
  def __delitem__(self, idx) -> None:
    keys = list(self._modules)
    for k in (keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(self), "Sequential")]]): del self._modules[k]
    self.__dict__["_modules"] = {str(i): m for i, m in enumerate(self._modules.values())}  # renumbered, as torch
  def append(self, module: Module) -> Sequential:
    """Add module at the end (named by the current length); returns self."""
    self.add_module(str(len(self)), module)
    return self
  def extend(self, modules: Iterable[Module]) -> Sequential:
    """append each of modules; returns self."""
    for m in modules: self.append(m)
    return self
  def insert(self, index: int, module: Module) -> Sequential:
    """Put module at position index (the ones after move up one, renumbered); returns self."""
    if not isinstance(module, Module): raise TypeError(f"Sequential.insert: {type(module).__name__} is not a Module subclass")
    n = len(self)
    if not -n <= index <= n: raise IndexError(f"Sequential.insert: index {index} is out of range for length {n}")
    mods = list(self._modules.values())
    mods.insert(index, module)
    self.__dict__["_modules"] = {str(i): m for i, m in enumerate(mods)}
    return self
  def pop(self, idx: int = -1) -> Module:
    """Remove and return the module at idx."""
    m = self[idx]
    del self[idx]
    return m

class ModuleList(Module):
  """torch.nn.ModuleList: a list of modules, registered as '0', '1', ...: indexing, slicing, len, iteration,
  append/extend/insert/pop, += and del (which renumbers). It has no forward of its own."""
  def __init__(self, modules: Iterable[Module] | None = None):
    super().__init__()
    if modules is not None: self.extend(modules)
  def __len__(self) -> int: return len(self._modules)
  def __iter__(self) -> Iterator[Module]: return iter(self._modules.values())
  def __getitem__(self, idx):
    if isinstance(idx, slice): return type(self)(list(self._modules.values())[idx])
    return self._modules[str(_index(idx, len(self), "ModuleList"))]
  def __setitem__(self, idx: int, module: Module) -> None: setattr(self, str(_index(idx, len(self), "ModuleList")), module)
  def __delitem__(self, idx) -> None:
    mods = list(self._modules.values())
    del mods[idx if isinstance(idx, slice) else _index(idx, len(self), "ModuleList")]
    self.__dict__["_modules"] = {str(i): m for i, m in enumerate(mods)}
  def __iadd__(self, modules: Iterable[Module]) -> ModuleList: return self.extend(modules)
  def __add__(self, other: Iterable[Module]) -> ModuleList: return ModuleList(itertools.chain(self, other))
  def append(self, module: Module) -> ModuleList:
    """Add module at the end; returns self."""
    self.add_module(str(len(self)), module)
    return self
  def extend(self, modules: Iterable[Module]) -> ModuleList:
    """append each of modules; returns self."""
    if isinstance(modules, Module) and not isinstance(modules, (ModuleList, Sequential)):
      raise TypeError(f"ModuleList.extend should be called with an iterable of modules, got a {type(modules).__name__}")
    for m in modules: self.append(m)
    return self
  def insert(self, index: int, module: Module) -> None:
    """Put module at position index (the ones after move up one)."""
    mods = list(self._modules.values())
    mods.insert(index, module)
    self.__dict__["_modules"] = {}
    for i, m in enumerate(mods): self.add_module(str(i), m)
  def pop(self, idx: int = -1) -> Module:
    """Remove and return the module at idx."""
    m = self[idx]
    del self[idx]
    return m
  def __repr__(self) -> str:
    # torch's: runs of children with equal reprs are one line, "(first-last): count x repr"
    if not self._modules: return "ModuleList()"
    reprs, lines, i = [repr(m) for m in self._modules.values()], [], 0
    while i < len(reprs):
      j = i
      while j + 1 < len(reprs) and reprs[j + 1] == reprs[i]: j += 1
      lines.append(f"({i}): {_indent(reprs[i], 2)}" if i == j else f"({i}-{j}): {j - i + 1} x {_indent(reprs[i], 2)}")
      i = j + 1
    return "ModuleList(\n  " + "\n  ".join(lines) + "\n)"

class ModuleDict(Module):
  """torch.nn.ModuleDict: modules by string key, in insertion order: [], len, iteration over keys, `in`, keys(),
  values(), items(), update(), pop(), clear()."""
  def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
    super().__init__()
    if modules is not None: self.update(modules)
  def __getitem__(self, key: str) -> Module: return self._modules[key]
  def __setitem__(self, key: str, module: Module) -> None: self.add_module(key, module)
  def __delitem__(self, key: str) -> None: del self._modules[key]
  def __len__(self) -> int: return len(self._modules)
  def __iter__(self) -> Iterator[str]: return iter(self._modules)
  def __contains__(self, key) -> bool: return key in self._modules
  def keys(self):
    """The keys, in insertion order."""
    return self._modules.keys()
  def values(self):
    """The modules, in insertion order."""
    return self._modules.values()
  def items(self):
    """(key, module) pairs, in insertion order."""
    return self._modules.items()
  def clear(self) -> None:
    """Remove every module."""
    self._modules.clear()
  def pop(self, key: str) -> Module:
    """Remove and return the module at key."""
    return self._modules.pop(key)
  def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
    """Add or replace modules from a mapping or an iterable of (key, module) pairs."""
    for k, m in (modules.items() if isinstance(modules, Mapping) else modules): self[k] = m

def _param_line(p: Tensor) -> str:
  return f"Parameter containing: [{p.dtype} of size {'x'.join(map(str, p.shape))}{'' if p.device == 'CPU' else f' ({p.device})'}]"

class ParameterList(Module):
  """torch.nn.ParameterList: a list of parameters, registered as '0', '1', ...; a tensor put in that is not a leaf
  requiring grad is made a Parameter (a copy)."""
  def __init__(self, values: Iterable[Any] | None = None):
    super().__init__()
    if values is not None: self.extend(values)
  def __len__(self) -> int: return len(self._parameters)
  def __iter__(self) -> Iterator[Tensor]: return iter(self._parameters.values())
  def __getitem__(self, idx):
    if isinstance(idx, slice): return type(self)(list(self._parameters.values())[idx])
    return self._parameters[str(_index(idx, len(self), "ParameterList"))]
  def __setitem__(self, idx: int, value) -> None: self.register_parameter(str(_index(idx, len(self), "ParameterList")), _as_param(value))
  def append(self, value) -> ParameterList:
    """Add a parameter at the end; returns self."""
    self.register_parameter(str(len(self)), _as_param(value))
    return self
  def extend(self, values: Iterable[Any]) -> ParameterList:
    """append each of values; returns self."""
    for v in values: self.append(v)
    return self
  def extra_repr(self) -> str: return "\n".join(f"  ({k}): {_param_line(p)}" for k, p in self._parameters.items())

class ParameterDict(Module):
  """torch.nn.ParameterDict: parameters by string key, in insertion order, with a dict's methods."""
  def __init__(self, parameters: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None):
    super().__init__()
    if parameters is not None: self.update(parameters)
  def __getitem__(self, key: str) -> Tensor: return self._parameters[key]
  def __setitem__(self, key: str, value) -> None: self.register_parameter(key, _as_param(value))
  def __delitem__(self, key: str) -> None: del self._parameters[key]
  def __len__(self) -> int: return len(self._parameters)
  def __iter__(self) -> Iterator[str]: return iter(self._parameters)
  def __contains__(self, key) -> bool: return key in self._parameters
  def keys(self):
    """The keys, in insertion order."""
    return self._parameters.keys()
  def values(self):
    """The parameters, in insertion order."""
    return self._parameters.values()
  def items(self):
    """(key, parameter) pairs, in insertion order."""
    return self._parameters.items()
  def pop(self, key: str) -> Tensor:
    """Remove and return the parameter at key."""
    return self._parameters.pop(key)
  def update(self, parameters: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
    """Add or replace parameters from a mapping or an iterable of (key, value) pairs."""
    for k, v in (parameters.items() if isinstance(parameters, Mapping) else parameters): self[k] = v
  def extra_repr(self) -> str: return "\n".join(f"  ({k}): {_param_line(p)}" for k, p in self._parameters.items())

def _as_param(value) -> Tensor:
  return value if isinstance(value, Parameter) else Parameter(value)

