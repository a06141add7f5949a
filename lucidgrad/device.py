"""Devices: the registry (`Device["CPU"]`, `Device.DEFAULT`), `Buffer`, `Allocator` with a reuse cache, `Compiler` with a
disk cache, and the `Compiled` bundle a runtime provides. Knows nothing of the graph."""
from __future__ import annotations
import importlib, itertools, os, threading, weakref, functools, time
from collections import defaultdict
from typing import Any, Callable
import numpy as np
from lucidgrad.dtype import DType
from lucidgrad.helpers import DEBUG, PROFILE, COMPILE_JOBS, DISABLE_COMPILER_CACHE, GlobalCounters, cache_dir, content_hash

class _DeviceRegistry:
  """`Device["CPU"]` is the CPU's Compiled device; `Device.DEFAULT` is $DEV (or CPU). Names are case-insensitive;
  `CUDA:1` is the second CUDA device."""
  KNOWN = ("CPU", "PYTHON", "NULL", "CUDA")
  def canonicalize(self, name: str | None) -> str | None:
    if name is None: return None
    if not isinstance(name, str): raise TypeError(f"a device is named by a string like 'CPU', got {name!r}")
    base, _, idx = name.upper().partition(":")
    if base not in self.KNOWN: raise RuntimeError(f"unknown device {name!r}; known devices are {', '.join(self.KNOWN)}")
    return base if idx in ("", "0") else f"{base}:{idx}"
  _by_spelling: dict[str, Compiled] = {}  # every name asked for so far: a buffer's allocator is looked up per allocation
  def __getitem__(self, name: str) -> Compiled:
    if (dev := self._by_spelling.get(name) if type(name) is str else None) is None:
      dev = self._open(self.canonicalize(name))  # one object for every spelling
      self._by_spelling[name] = dev
    return dev
  @functools.cache
  def _open(self, name: str) -> Compiled:
    base = name.split(":")[0]
    try: mod = importlib.import_module(f"lucidgrad.runtime.{base.lower()}")
    except ImportError as e: raise RuntimeError(f"device {name} cannot be opened: {e}") from e
    return mod.make_device(name)
  @property
  def DEFAULT(self) -> str: return self.canonicalize(os.environ.get("DEV", "CPU"))
Device = _DeviceRegistry()

class Allocator:
  """Hands out raw memory; freed memory is kept by size and handed out again before anything new is asked for."""
  def __init__(self): self.cache: dict[int, list] = defaultdict(list)
  def alloc(self, nbytes: int):
    if kept := self.cache.get(nbytes): return kept.pop()
    try: return self._alloc(nbytes)
    except MemoryError:
      self.free_cache()
      return self._alloc(nbytes)
  def free(self, raw, nbytes: int): self.cache[nbytes].append(raw)
  def free_cache(self): self.cache.clear()
  def wrap(self, mem: memoryview):
    """Raw memory that is `mem` itself, without a copy, or None where this device cannot (the caller copies)."""
    return None
  def host_view(self, raw) -> memoryview | None:
    """The bytes of `raw` as host memory the caller may read and write, or None where the host cannot see them."""
    return None
  def transfer(self, dest_raw, src_raw, nbytes: int, src: Allocator):
    """Copy `nbytes` from `src_raw` (memory of the allocator `src`, maybe another device's) into our `dest_raw`. This
    one goes through the host: one copy where either side is host memory, two otherwise. A runtime with a direct path
    (one device, peer GPUs) overrides it."""
    if (sv := src.host_view(src_raw)) is not None: self.copyin(dest_raw, sv[:nbytes])
    elif (dv := self.host_view(dest_raw)) is not None: src.copyout(dv[:nbytes], src_raw)
    else:
      tmp = memoryview(bytearray(nbytes))
      src.copyout(tmp, src_raw)
      self.copyin(dest_raw, tmp)
  # a runtime provides these
  def _alloc(self, nbytes: int): raise NotImplementedError
  def copyin(self, raw, src: memoryview): raise NotImplementedError
  def copyout(self, dest: memoryview, raw): raise NotImplementedError

def _profile():
  from lucidgrad.engine import profile  # the engine imports this module: its profiler is found when first needed
  return profile

# one counter for Buffers and Tensors: what was made before a moment (a JIT capture's start) has a smaller number
serials = itertools.count()

class Buffer:
  """`size` elements of `dtype` on `device`; memory is taken on first use and returned to the allocator's cache when
  the Buffer dies. A Buffer is one storage: `version` counts the in-place writes it has taken, and the tensor layer
  keeps weak bookkeeping here (its owning Tensor, the nodes that read it, the nodes cached in it; docs/design/0005)."""
  # its fields in slots (a realize makes and frees a Buffer for every output: no dict made and freed with each);
  # other facts kept on a storage (the host index check's memo) go in a __dict__ made when first set
  __slots__ = ("device", "size", "dtype", "_raw", "_owned", "version", "wrote", "serial", "owner", "reads", "cached", "__dict__", "__weakref__")
  def __init__(self, device: str, size: int, dtype: DType, raw: Any = None):
    self.device, self.size, self.dtype = device, size, dtype
    # memory handed in from outside (a memory-mapped file) is used as it is and never returned to the allocator
    self._raw, self._owned = raw, raw is None
    self.version, self.wrote = 0, ""           # writes taken so far; where the last one was built
    self.serial = next(serials)
    self.owner: weakref.ref | None = None      # the Tensor whose value this storage is
    self.reads: list[weakref.ref] = []         # BUFFER nodes naming this storage
    self.cached: list[weakref.ref] = []        # nodes whose value lives in the current version
  @property
  def nbytes(self) -> int: return self.size * self.dtype.itemsize
  @property
  def allocator(self) -> Allocator:
    # the registry's table read directly: a realize allocates its output and frees the last one, each asking this
    return dev.allocator if (dev := Device._by_spelling.get(self.device)) is not None else Device[self.device].allocator
  def ensure_allocated(self) -> Buffer:
    if self._raw is None:
      dev = Device._by_spelling.get(self.device) or Device[self.device]  # the allocator property, inline: every realize's output
      self._raw = dev.allocator.alloc(max(self.size * self.dtype.itemsize, 1))
      if PROFILE.value: _profile().memory(self.device, max(self.nbytes, 1), self.serial)
      if DEBUG.value >= 7: print(f"alloc {self.nbytes} bytes on {self.device}")
    return self
  @property
  def raw(self): return r if (r := self._raw) is not None else self.ensure_allocated()._raw
  def deallocate(self):
    if self._raw is not None and self._owned:
      self.allocator.free(self._raw, max(self.size * self.dtype.itemsize, 1))
      if PROFILE.value: _profile().memory(self.device, -max(self.nbytes, 1), self.serial)
    self._raw = None
  def __del__(self):
    # deallocate() and the allocator look-up spelled out: a realize's output dies on the next call, every call
    try:
      if (raw := self._raw) is not None and self._owned:
        dev = Device._by_spelling.get(self.device) or Device[self.device]
        dev.allocator.free(raw, max(self.size * self.dtype.itemsize, 1))
        if PROFILE.value: _profile().memory(self.device, -max(self.nbytes, 1), self.serial)
      self._raw = None
    except Exception: pass
  def copyin(self, data: np.ndarray | memoryview) -> Buffer:
    # as bytes before the memoryview: the buffer protocol has no format for some dtypes (ml_dtypes' bfloat16, 'E')
    mv = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8)) if isinstance(data, np.ndarray) else memoryview(data).cast("B")
    if mv.nbytes != self.nbytes: raise ValueError(f"copyin: {mv.nbytes} bytes given for a buffer of {self.nbytes}")
    self.allocator.copyin(self.raw, mv)
    return self
  def numpy(self) -> np.ndarray:
    out = np.empty(self.size, dtype=self.dtype.np)
    if self.size: self.allocator.copyout(memoryview(out.view(np.uint8)).cast("B"), self.raw)
    return out
  def __repr__(self): return f"<Buffer {self.device} {self.size} x {self.dtype.name}>"

# which Buffer holds each BUFFER UOp: kept on the node itself (every version of a storage maps to one Buffer, found by the
# uid in its arg), so the node keeps its Buffer alive and the link dies with the node -- and finding it is one dict get
# on the node, not a weak-keyed lookup that builds a weak reference (realize asks a few times per buffer)
# uid -> weak reference to its Buffer: a plain dict of weak references is a WeakValueDictionary without its per-call
# Python overhead (every realize registers its output's storage). A dead Buffer's entry is not taken out when it dies (a
# callback per Buffer, and a realize frees one): a dead reference answers None, as a missing entry would, and the dead
# ones are dropped whenever the table has doubled since the last sweep
_by_uid: dict[int, weakref.ref] = {}
_by_uid_sweep = [1024]  # the table's size that triggers the next sweep
def register_buffer(uop, buf: Buffer):
  uop.__dict__["buffer"] = buf
  if (ref := _by_uid.get(uid := uop.arg[0])) is None or ref() is not buf:
    _by_uid[uid] = weakref.ref(buf)
    if len(_by_uid) >= _by_uid_sweep[0]:
      for dead in [u for u, r in _by_uid.items() if r() is None]: del _by_uid[dead]
      _by_uid_sweep[0] = max(1024, 2 * len(_by_uid))
  (reads := buf.reads).append(weakref.ref(uop))  # helpers.add_weak, inlined
  if (n := len(reads)) >= 16 and n & (n - 1) == 0: reads[:] = [r for r in reads if r() is not None]
def buffer_of(uop) -> Buffer:
  if (b := uop.__dict__.get("buffer")) is None:
    register_buffer(uop, b := (ref() if (ref := _by_uid.get(uop.arg[0])) is not None else None) or Buffer(uop.device, uop.arg[1], uop.dtype))
  return b

class Compiler:
  """Source text -> binary. `compile_cached` keeps binaries on disk by a hash of the source and the compiler's key.
  `disk_cached` says whether it does: the engine keeps whole programs on disk (engine/realize.py) only for those.
  `runs_apart` says that `compile` spends its time in another process (a C compiler), so up to COMPILE_JOBS of them
  run at once on threads (`start_compile`) while Python goes on with the next kernel's codegen."""
  key = "base"
  disk_cached = True
  runs_apart = False
  batches = False  # `compile_batch` builds several kernels of distinct names into one binary (docs/design/0027)
  def compile(self, src: str) -> bytes: raise NotImplementedError
  def compile_batch(self, srcs: list[str]) -> bytes: raise NotImplementedError
  def cache_path(self, src: str):
    """Where the binary of `src` is kept: the key must name everything the binary depends on besides the source."""
    return cache_dir() / "kernels" / f"{content_hash(self.key, src)}.bin"
  def compile_cached(self, src: str) -> bytes: return self.compile_timed(src)[0]
  def compile_timed(self, src: str) -> tuple[bytes, float | None]:
    """The binary of `src` and the seconds its compile took (None: it was read from the disk)."""
    path = self.cache_path(src)
    if not DISABLE_COMPILER_CACHE and path.exists(): return path.read_bytes(), None
    st = time.perf_counter()
    lib = self.compile(src)
    secs = time.perf_counter() - st
    with _count_lock: GlobalCounters.compiles += 1  # compiles may end on several threads at once
    if DEBUG >= 3: print(f"compiled in {secs*1e3:.1f} ms")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(lib)
    os.replace(tmp, path)  # atomic, so parallel test workers (and compile threads) never read half a file
    return lib, secs
  def start_compile(self, src: str, alone: bool = False, name: str = "") -> Callable[[], tuple[bytes, float | None]]:
    """`compile_timed(src)` as a call that waits for its answer. A binary on disk is read now; otherwise, for a compiler
    that runs apart and COMPILE_JOBS > 1, the compile is queued for a worker thread and this returns at once; a worker
    that finds several queued compiles them as one batch where the compiler `batches` (`name`: the kernel's, which
    must differ within a batch). A source asked for again while its compile runs waits for that compile (a schedule
    often holds one kernel twice). `alone`: nothing is built beside it (a schedule of one kernel), so it compiles
    here: making the pool and handing the job over cost a first eager call ~6 ms of its ~25."""
    if alone or not self.runs_apart or COMPILE_JOBS.value <= 1 or (not DISABLE_COMPILER_CACHE and self.cache_path(src).exists()):
      answer = self.compile_timed(src)
      return lambda: answer
    from concurrent.futures import Future
    with _jobs_lock:
      if (job := _compiling.get(ident := (self.key, src))) is None:
        job = _compiling[ident] = Future()
        job.add_done_callback(lambda _: _forget_job(ident))
        _waiting.append((self, src, name, job))
        _compile_pool(COMPILE_JOBS.value).submit(_compile_waiting)
    return job.result
  def compile_batch_timed(self, srcs: list[str]) -> list[tuple[bytes, float | None]]:
    """compile_timed of each source, in one compile: their binary is kept under each one's hash (linked, so stored
    once). Raises where the batch does not compile."""
    st = time.perf_counter()
    lib = self.compile_batch(srcs)
    secs = time.perf_counter() - st
    with _count_lock: GlobalCounters.compiles += len(srcs)
    if DEBUG >= 3: print(f"compiled {len(srcs)} kernels in one batch in {secs*1e3:.1f} ms")
    first = None
    for src in srcs:
      path = self.cache_path(src)
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
      try:
        if first is None: raise OSError
        os.link(first, tmp)
      except OSError: tmp.write_bytes(lib)
      os.replace(tmp, path)  # atomic, so parallel test workers (and compile threads) never read half a file
      first = first or path
    return [(lib, secs / len(srcs))] * len(srcs)

_count_lock = threading.Lock()
_jobs_lock = threading.RLock()  # re-entered when a job is already done as its callback is added
_compiling: dict[tuple[str, str], Any] = {}  # (compiler key, source) -> the future of a compile still running
_waiting: list[tuple[Compiler, str, str, Any]] = []  # compiles queued for a worker: (compiler, source, name, future)
COMPILE_BATCH = 8  # kernels one compile takes at most: a batch waits for its slowest kernel

def _compile_waiting():
  """On a compile worker: the first queued kernel and, where its compiler batches, more of the queue's kernels for the
  same compiler of other names -- at most COMPILE_BATCH, and no more than this worker's share of the queue, so the
  other workers get theirs -- compiled at once. A worker that finds the queue empty (another took its kernel) returns."""
  with _jobs_lock:
    if not _waiting: return
    compiler = _waiting[0][0]
    share = -(-len(_waiting) // COMPILE_JOBS.value) if compiler.batches else 1
    batch, names = [], set()
    for job in list(_waiting):
      if len(batch) == min(share, COMPILE_BATCH): break
      if job[0] is compiler and job[2] not in names:
        batch.append(job)
        names.add(job[2])
        _waiting.remove(job)
  if len(batch) > 1:
    try: results = compiler.compile_batch_timed([src for _, src, _, _ in batch])
    except RuntimeError: pass  # compiled one by one below, so an error names its own kernel's source
    else:
      for (_, _, _, fut), result in zip(batch, results): fut.set_result(result)
      return
  for _, src, _, fut in batch:
    try: fut.set_result(compiler.compile_timed(src))
    except BaseException as e: fut.set_exception(e)

def _forget_job(ident):
  with _jobs_lock: _compiling.pop(ident, None)

@functools.cache
def _compile_pool(jobs: int):
  """`jobs` threads that each wait on one compiler process, made at the first compile that runs apart (concurrent.futures
  costs ~4 ms to import, which a warm start never pays)."""
  from concurrent.futures import ThreadPoolExecutor
  return ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="lucidgrad-compile")

def _after_fork():
  # a forked child has none of its parent's threads: it makes its own pool, and no compile of the parent's is its to wait on
  _compile_pool.cache_clear()
  _compiling.clear()
  _waiting.clear()
if hasattr(os, "register_at_fork"): os.register_at_fork(after_in_child=_after_fork)

class Compiled:
  """What a runtime provides: an allocator, a renderer (codegen target), a compiler and a program class. A program is
  `program_cls(name, binary, spec=spec)`; `program(*raws, global_size=, local_size=, wait=True)` launches it and, with
  wait, returns once it is done with the seconds it ran, on the device's own clock (CPU: the host clock around the
  call; a GPU: events recorded around the launch in its stream). Other work (copies, a whole JIT capture) is timed
  with the device's events: `event_seconds(record_event(), record_event())` around it. These defaults are for host
  devices, which finish every call before it returns."""
  def __init__(self, name: str, allocator: Allocator, renderer, compiler: Compiler, program_cls):
    self.name, self.allocator, self.renderer, self.compiler, self.program_cls = name, allocator, renderer, compiler, program_cls
  def synchronize(self):
    """Return once all work queued on this device is done."""
  def record_event(self) -> Any:
    """A marker of the current point in this device's queue of work."""
    return time.perf_counter()
  def event_seconds(self, start: Any, end: Any) -> float:
    """Seconds of device time between two events of this device; waits until `end` is reached."""
    return end - start
  def graph(self, launches: list[tuple]) -> Callable[[], None] | None:
    """`launches` -- (program, raws, global_size, local_size, the names of the Variables it reads) each -- recorded once as a graph that one call runs in
    order on the device (docs/design/0025), or None where the device has no such thing (the JIT then launches each)."""
    return None
