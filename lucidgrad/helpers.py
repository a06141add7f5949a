"""Configuration from the environment (DEBUG, BEAM, CACHEDIR, ...), the Context that overrides it for a block,
the global counters every layer reports into, and small pure utilities. Knows nothing of the rest of lucidgrad."""
from __future__ import annotations
import os, functools, math, contextlib, hashlib, pathlib, sys
from typing import Any, Iterable, TypeVar, Sequence

T = TypeVar("T")

@functools.cache
def getenv(key: str, default: Any = 0) -> Any:
  """The env var `key` converted to the type of `default` (int for flags)."""
  return type(default)(os.environ.get(key, default))

class ContextVar:
  """A named flag read once from the environment; `Context(NAME=value)` changes it for a block."""
  registry: dict[str, ContextVar] = {}
  def __init__(self, key: str, default: Any):
    self.key, self.value = key, getenv(key, default)
    ContextVar.registry[key] = self
  def __bool__(self): return bool(self.value)
  def __int__(self): return int(self.value)
  def __ge__(self, x): return self.value >= x
  def __gt__(self, x): return self.value > x
  def __lt__(self, x): return self.value < x
  def __le__(self, x): return self.value <= x
  def __eq__(self, x): return self.value == x
  def __hash__(self): return hash(self.key)
  def __repr__(self): return f"{self.key}={self.value}"

class Context(contextlib.ContextDecorator):
  """`with Context(DEBUG=2): ...` sets flags for the block and restores them after."""
  def __init__(self, **kwargs): self.kwargs = kwargs
  def __enter__(self):
    unknown = [k for k in self.kwargs if k not in ContextVar.registry]
    if unknown: raise KeyError(f"Context: unknown flag(s) {unknown}; known flags are {sorted(ContextVar.registry)}")
    self.old = {k: ContextVar.registry[k].value for k in self.kwargs}
    for k, v in self.kwargs.items(): ContextVar.registry[k].value = v
  def __exit__(self, *exc):
    for k, v in self.old.items(): ContextVar.registry[k].value = v

DEBUG, BEAM, NOOPT, SPEC = ContextVar("DEBUG", 0), ContextVar("BEAM", 0), ContextVar("NOOPT", 0), ContextVar("SPEC", 0)
DISABLE_COMPILER_CACHE = ContextVar("DISABLE_COMPILER_CACHE", 0)
THREADS = ContextVar("THREADS", os.cpu_count() or 1)   # CPU threads one kernel may use

class GlobalCounters:
  """What ran since the last reset(): kernels, floating point ops, bytes moved, kernel time in seconds."""
  kernel_count: int = 0
  global_ops: int = 0
  global_mem: int = 0
  time_sum_s: float = 0.0
  compiles: int = 0
  @staticmethod
  def reset(): GlobalCounters.kernel_count, GlobalCounters.global_ops, GlobalCounters.global_mem, GlobalCounters.time_sum_s = 0, 0, 0, 0.0

def cache_dir() -> pathlib.Path:
  """Where compiled kernels live: $CACHEDIR, else the user cache dir (XDG_CACHE_HOME or ~/.cache)/lucidgrad."""
  if (d := os.environ.get("CACHEDIR")): return pathlib.Path(d)
  base = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/Library/Caches") if sys.platform == "darwin" else os.path.expanduser("~/.cache"))
  return pathlib.Path(base) / "lucidgrad"

def content_hash(*parts: str | bytes) -> str:
  h = hashlib.sha256()
  for p in parts: h.update(p.encode() if isinstance(p, str) else p); h.update(b"\0")
  return h.hexdigest()[:24]

def prod(xs: Iterable[T], start: Any = 1) -> Any: return functools.reduce(lambda a, b: a * b, xs, start)
def all_same(xs: Sequence) -> bool: return all(x == xs[0] for x in xs)
def flatten(xss: Iterable[Iterable[T]]) -> list[T]: return [x for xs in xss for x in xs]
def argsort(xs: Sequence) -> list[int]: return sorted(range(len(xs)), key=xs.__getitem__)
def round_up(x: int, m: int) -> int: return (x + m - 1) // m * m
def ceildiv(a: int, b: int) -> int: return -(-a // b)
def strides_for_shape(shape: Sequence[int]) -> tuple[int, ...]:
  """C-contiguous strides, in elements."""
  out, acc = [], 1
  for s in reversed(shape): out.append(acc); acc *= s
  return tuple(reversed(out))
def colored(s: str, color: str | None) -> str:
  codes = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36, "white": 37}
  return f"\033[{codes[color]}m{s}\033[0m" if color and sys.stdout.isatty() else s
def fmt_time(s: float) -> str: return f"{s*1e6:9.2f} us" if s < 1e-3 else f"{s*1e3:9.2f} ms"
def is_finite_number(x: Any) -> bool: return isinstance(x, (int, float)) and math.isfinite(x)
