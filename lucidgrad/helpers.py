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
  changes = 0  # how many times a flag was set or added: what all_values() checks before it reads every flag again
  _all: tuple[tuple, int] = ((), -1)
  def __init__(self, key: str, default: Any):
    self.key, self.value = key, getenv(key, default)
    ContextVar.registry[key] = self
  def __setattr__(self, name: str, v: Any):
    object.__setattr__(self, name, v)
    ContextVar.changes += 1
  @staticmethod
  def all_values() -> tuple:
    """Every flag's value in registration order (the registry only grows, so a position names a flag). Every schedule
    cache lookup asks (~1 us to read them all); they are read again only after a flag changed."""
    if (memo := ContextVar._all)[1] != ContextVar.changes:
      memo = ContextVar._all = (tuple([v.value for v in ContextVar.registry.values()]), ContextVar.changes)
    return memo[0]
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
IGNORE_BEAM_CACHE = ContextVar("IGNORE_BEAM_CACHE", 0)  # BEAM searches again instead of using the opts it found before
BEAM_TIME_LIMIT = ContextVar("BEAM_TIME_LIMIT", 120.0)  # seconds one kernel's BEAM search may take
COMPILE_JOBS = ContextVar("COMPILE_JOBS", len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)  # compiler runs at once
CHECK_INDEX = ContextVar("CHECK_INDEX", 1)   # out-of-range tensor indices raise IndexError at the next host read
SPLIT_RANGES = ContextVar("SPLIT_RANGES", 1)  # cut a kernel into boxes where its load gates are decided (codegen/split.py)
PROFILE = ContextVar("PROFILE", 0)           # record a profiler event for every kernel and copy run (engine/profile.py)
# a tensor core's fragments read a staged tile as 8x8 matrices (ldmatrix; docs/design/0026): 1 a fragment a read, 2 (the
# default) two of B's a read where they pair; 0 element by element
MATRIX_LOADS = ContextVar("MATRIX_LOADS", 2)
# a reduce loop that streams an outer loop's block fetches the next block ahead (codegen/linearize.prefetch_next_block; C only)
PREFETCH_NEXT = ContextVar("PREFETCH_NEXT", 1)

# the package's version (pyproject.toml says the same; a test checks): part of every codegen cache key
VERSION = "0.1.0"

class _Counters:
  """Run counters, zeroed by reset(): kernels run, floating point ops, bytes moved, kernel time in seconds.
  Build counters, for the whole process (reset() leaves them, so take differences): C compiler runs (`compiles`),
  programs built by codegen (`codegen_passes`) or read from the disk cache (`program_cache_hits`), schedules built
  (`schedules_built`), seconds of BEAM search (`search_seconds`: its candidates' builds and timings), and the slowest
  kernel build (`slowest_compile`: name, seconds of codegen plus C compiler for the program kept, search left out)."""
  kernel_count: int = 0
  global_ops: int = 0
  global_mem: int = 0
  time_sum_s: float = 0.0
  compiles: int = 0
  codegen_passes: int = 0
  program_cache_hits: int = 0
  schedules_built: int = 0
  search_seconds: float = 0.0
  slowest_compile: tuple[str, float] = ("", 0.0)
  def reset(self): self.kernel_count, self.global_ops, self.global_mem, self.time_sum_s = 0, 0, 0, 0.0
# one object, not the class itself: every realize adds to four counters, and setting a class attribute costs ~0.3 us (it
# invalidates the class's attribute caches), an instance attribute a tenth of that
GlobalCounters = _Counters()

def slowest_compile_line() -> str:
  """One line for a log's end: this process's slowest kernel build (codegen + C compiler, wall clock). A kernel read
  from the disk caches costs nothing: an empty $CACHEDIR gives a cold start's figure."""
  name, secs = GlobalCounters.slowest_compile
  if not name: return "slowest kernel compile: none (every kernel came from the caches)"
  return f"slowest kernel compile: {name} {secs:.2f} s (of {GlobalCounters.codegen_passes} codegen passes and {GlobalCounters.compiles} compiles)"

def cache_dir() -> pathlib.Path:
  """Where compiled kernels live: $CACHEDIR, else the user cache dir (XDG_CACHE_HOME or ~/.cache)/lucidgrad."""
  if (d := os.environ.get("CACHEDIR")): return pathlib.Path(d)
  base = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/Library/Caches") if sys.platform == "darwin" else os.path.expanduser("~/.cache"))
  return pathlib.Path(base) / "lucidgrad"

def content_hash(*parts: str | bytes) -> str:
  # each part ends in a NUL byte; hashed in one call (a UOp's key is one of these per node)
  return hashlib.sha256(b"".join([(p.encode() if isinstance(p, str) else p) + b"\0" for p in parts])).hexdigest()[:24]

def add_weak(lst: list, ref) -> None:
  """Append a weak reference to a list of them, dropping the dead ones whenever the list doubles (amortised O(1))."""
  lst.append(ref)
  if len(lst) >= 16 and len(lst) & (len(lst) - 1) == 0: lst[:] = [r for r in lst if r() is not None]
def live(refs) -> list:
  """The objects a list of weak references still points at."""
  return [x for r in refs or () if (x := r()) is not None]
def prod(xs: Iterable[T], start: Any = 1) -> Any: return math.prod(xs, start=start)  # in C: every numel() asks
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

# ---- progress bar ----
# A small tqdm-like bar on stderr. It draws only for a person watching: off when stderr is no terminal or $CI is set,
# PROGRESS=0 turns it off everywhere and PROGRESS=1 on everywhere. Off, it still iterates and counts, and prints nothing.
import time, shutil

def _progress_on(file: Any) -> bool:
  if (forced := os.environ.get("PROGRESS", "")) != "": return forced not in ("0", "false", "False")
  if os.environ.get("CI", "") not in ("", "0", "false", "False"): return False
  try: return bool(file.isatty())
  except (AttributeError, ValueError): return False   # no isatty, or a closed file

def _fmt_secs(s: float) -> str:
  m, s = divmod(int(s), 60)
  h, m = divmod(m, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"

def _fmt_count(x: float, scale: bool) -> str:
  if not scale: return str(int(x))
  for suffix in ("", "k", "M", "G", "T"):
    if abs(x) < 999.5: return f"{x:.0f}{suffix}" if suffix == "" else f"{x:.3g}{suffix}"
    x /= 1000
  return f"{x:.3g}P"

class progress:
  """A progress bar: `for x in progress(xs, desc="train"): ...`, or `with progress(total=n) as bar: bar.update(k)`.
  Shows desc, a bar, n/total, the rate, elapsed time and ETA (no bar and no ETA when the total is unknown), plus any
  text from set_postfix(); redraws at most every `mininterval` seconds on stderr and ends the line on close().
  Surprise: it draws nothing unless stderr is a terminal and $CI is unset (PROGRESS=1 forces it on, PROGRESS=0 off);
  `disable=True/False` overrides both. `unit_scale=True` prints counts as 1.5k / 20M (for byte counts)."""
  def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it", unit_scale: bool = False,
               disable: bool | None = None, file: Any = None, mininterval: float = 0.1, postfix: str | dict | None = None):
    self.iterable, self.desc, self.unit, self.unit_scale, self.mininterval = iterable, desc, unit, unit_scale, mininterval
    if total is None and iterable is not None and hasattr(iterable, "__len__"): total = len(iterable)  # type: ignore[arg-type]
    self.total: int | None = total
    self.file = file if file is not None else sys.stderr
    self.enabled = _progress_on(self.file) if disable is None else not disable
    self.n, self.postfix, self.closed = 0, "", False
    self.start_t = self.last_t = time.perf_counter()
    self._last_len = 0
    if postfix is not None: self.set_postfix(postfix, refresh=False)
    if self.enabled: self.refresh()

  def __iter__(self):
    if self.iterable is None: raise TypeError("progress(total=...) without an iterable is not iterable: call .update(n) instead")
    try:
      for x in self.iterable:
        yield x
        self.n += 1
        if self.enabled and time.perf_counter() - self.last_t >= self.mininterval: self.refresh()
    finally: self.close()

  def __len__(self) -> int:
    if self.total is None: raise TypeError("this progress bar has no known total")
    return self.total
  def __enter__(self) -> progress: return self
  def __exit__(self, *exc) -> None: self.close()

  def update(self, n: int = 1) -> None:
    """Count `n` more steps done; redraws if the last drawing is older than `mininterval`."""
    self.n += n
    if self.enabled and time.perf_counter() - self.last_t >= self.mininterval: self.refresh()
  def set_description(self, desc: str = "", refresh: bool = True) -> None:
    """Replace the text before the bar."""
    self.desc = desc
    if refresh and self.enabled: self.refresh()
  def set_postfix(self, postfix: str | dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
    """Text after the numbers: a string as is, or a dict / keywords shown as `k=v, ...` (floats to 4 digits)."""
    items = dict(postfix, **kwargs) if isinstance(postfix, dict) else kwargs
    parts = [postfix] if isinstance(postfix, str) and postfix else []
    parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items()]
    self.postfix = ", ".join(parts)
    if refresh and self.enabled: self.refresh()

  def format(self, width: int = 80) -> str:
    """The line as drawn now, fitted to `width` columns where a bar can shrink."""
    elapsed = time.perf_counter() - self.start_t
    rate = self.n / elapsed if elapsed > 0 else 0.0
    rate_s = f"{_fmt_count(rate, self.unit_scale) if self.unit_scale else f'{rate:.2f}'}{self.unit}/s" if rate >= 1 or rate == 0 \
      else f"{1 / rate:.2f}s/{self.unit}"
    post = f", {self.postfix}" if self.postfix else ""
    head = f"{self.desc}: " if self.desc else ""
    n_s = _fmt_count(self.n, self.unit_scale)
    if self.total is None: return f"{head}{n_s}{self.unit} [{_fmt_secs(elapsed)}, {rate_s}{post}]"
    frac = min(max(self.n / self.total, 0.0), 1.0) if self.total else 1.0
    eta = _fmt_secs((self.total - self.n) / rate) if rate > 0 and self.n <= self.total else "?"
    tail = f"| {n_s}/{_fmt_count(self.total, self.unit_scale)} [{_fmt_secs(elapsed)}<{eta}, {rate_s}{post}]"
    head = f"{head}{frac * 100:3.0f}%|"
    bar_w = max(10, min(40, width - len(head) - len(tail) - 1))
    utf8 = "utf" in (getattr(self.file, "encoding", None) or "").lower()
    full, part = divmod(int(frac * bar_w * 8), 8)
    bar = ("█" * full + (" ▏▎▍▌▋▊▉"[part] if full < bar_w else "")) if utf8 else "#" * full
    return head + bar.ljust(bar_w) + tail

  def refresh(self) -> None:
    """Draw the line now (when on)."""
    if not self.enabled or self.closed: return
    line = self.format(shutil.get_terminal_size((80, 20)).columns)
    try:
      self.file.write("\r" + line + " " * max(0, self._last_len - len(line)))
      self.file.flush()
    except (OSError, ValueError): self.enabled = False   # stderr went away: stop drawing, keep counting
    self._last_len, self.last_t = len(line), time.perf_counter()

  def close(self) -> None:
    """Draw the final state and end the line; later calls do nothing."""
    if self.closed: return
    if self.enabled:
      self.refresh()
      try: self.file.write("\n"); self.file.flush()
      except (OSError, ValueError): pass
    self.closed = True
