"""The CPU: C source compiled by the system compiler (clang if present, else gcc; $CC overrides) into a shared
library, loaded with ctypes. Buffers are NumPy-owned memory."""
from __future__ import annotations
import _queue, ctypes, functools, operator, os, shlex, shutil, subprocess, tempfile, threading, time
import numpy as np
from lucidgrad.device import Allocator, Compiler, Compiled
from lucidgrad.renderer.c import CRenderer

class HostMemory(np.ndarray):
  """Bytes owned by NumPy, with their address looked up once (numpy's .ctypes.data costs microseconds a call), and
  that address as the ctypes argument a kernel call passes (made once: converting an int per call costs ~0.1 us)."""
  ptr: int
  arg: ctypes.c_void_p

def _set_address(mem: HostMemory, ptr: int) -> HostMemory:
  mem.ptr, mem.arg = ptr, ctypes.c_void_p(ptr)
  return mem

_arg_of = operator.attrgetter("arg")  # a raw's ctypes argument, gathered by map() without a comprehension's frame
_FIRST, _ONE = ctypes.c_int(0), ctypes.c_int(1)  # (core, ncores) of a kernel run whole on one thread, converted once
_now = time.perf_counter

ALIGN = 64  # a cache line: NumPy hands out 16-byte aligned memory, and a 32-byte vector load would then span two lines

def _address(mem: np.ndarray) -> int:
  """The address of a writable array's first byte (ctypes.addressof on a view of it: numpy's .ctypes.data takes ~4 us)."""
  return ctypes.addressof(ctypes.c_char.from_buffer(mem))

class CPUAllocator(Allocator):
  def _alloc(self, nbytes: int):
    mem = np.empty(nbytes + ALIGN, dtype=np.uint8)
    base = _address(mem)
    return _set_address(mem[(start := -base % ALIGN):start + nbytes].view(HostMemory), base + (-base % ALIGN))
  def wrap(self, mem: memoryview):
    if mem.readonly: return None  # a kernel could write into it: read-only memory is copied instead
    raw = np.frombuffer(mem, dtype=np.uint8).view(HostMemory)
    return _set_address(raw, _address(raw) if raw.nbytes else raw.ctypes.data)
  def copyin(self, raw, src: memoryview): raw[:len(src)] = np.frombuffer(src, dtype=np.uint8)
  def copyout(self, dest: memoryview, raw): np.frombuffer(dest, dtype=np.uint8)[:] = raw[:len(dest)]
  def host_view(self, raw) -> memoryview: return memoryview(raw)

def find_cc() -> str:
  cc = os.environ.get("CC") or shutil.which("clang") or shutil.which("gcc") or shutil.which("cc")
  if not cc: raise RuntimeError("no C compiler found: install clang or gcc, or point $CC at one")
  return cc

@functools.cache
def compiler_version(cc: str) -> str:
  """`cc --version`, once per process: a binary cached by another compiler release may differ (or be miscompiled)."""
  return subprocess.run([cc, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout.strip()

@functools.cache
def native_arch(cc: str) -> str:
  """What -march=native resolves to on this machine: the CPU name, ISA extensions and cache sizes the compiler hands
  its back end, read from the command `cc -###` prints (gcc's cc1 and clang's -cc1 both spell them as -m... options,
  --param and -target-cpu/-target-feature values). It is fixed per machine and compiler, unlike `-march=native`
  itself, so a cache directory shared with a machine of another CPU never hands out a binary with instructions
  this CPU lacks. With -S into /dev/null the printed command names no temporary file."""
  r = subprocess.run([cc, "-###", "-march=native", "-x", "c", "-S", "-", "-o", os.devnull], capture_output=True, text=True, stdin=subprocess.DEVNULL)
  for line in r.stderr.splitlines():
    toks = shlex.split(line) if line.startswith(" ") else []
    if toks and (os.path.basename(toks[0]) == "cc1" or "-cc1" in toks):
      return " ".join(t for i, t in enumerate(toks) if t.startswith("-m") or (i and toks[i-1] in ("--param", "-target-cpu", "-target-feature", "-tune-cpu")))
  return r.stderr.strip()  # a compiler that prints something else: its whole answer still names this machine

class CCompiler(Compiler):
  runs_apart = True  # gcc/clang is a process of its own: compiles run side by side on threads (device.Compiler)
  def __init__(self):
    self.cc = find_cc()
    # -fno-tree-slp-vectorize: GCC 12's SLP pass drops the rounding of a float64->float32->float64 round trip in lanes;
    # our own vectorizer already groups the lanes that matter, so it costs nothing measurable.
    # no -fwrapv: it would make signed overflow defined everywhere, and GCC then keeps every int index sign-extension in
    # the inner loops (a conv's backward ran 2.6x slower); the renderer wraps the ops that can overflow instead
    # -fira-region=one (gcc's; clang has no such allocator): register allocation over the whole function at once, not
    # loop by loop. A register block's body (28 live vector accumulators) made gcc's allocator a third of a compile;
    # with it a ResNet-18 training step's 306 kernels take 35 s of gcc instead of 40 (one batch of them 2.0 -> 1.3 s),
    # the kernels as fast as before
    gcc = "clang" not in os.path.basename(os.path.realpath(self.cc))
    self.flags = ["-shared", "-fPIC", "-O2", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-fno-tree-slp-vectorize",
                  *(["-fira-region=one"] if gcc else []), "-std=gnu11", "-w"]
    # asking the compiler what it is runs it twice (~5 ms each): both start now, side by side, beside the Python work
    # before the first kernel is looked up, and `key` waits for them when first read (the functions are bound now, as
    # if called now). A warm start waits here before its first program is found on disk
    cc, answers = self.cc, {}
    def ask(name, question):
      try: answers[name] = question(cc)
      except OSError: pass  # asked again by `key`, which raises if it fails there too
    self._asking = [threading.Thread(target=ask, args=(name, q), name=f"lucidgrad-cc-{name}", daemon=True)
                    for name, q in (("version", compiler_version), ("arch", native_arch))]
    for t in self._asking: t.start()
    self._answers = answers
  @functools.cached_property
  def key(self) -> str:
    """What a binary depends on besides its source: the compiler, its flags, its version and what -march=native means here."""
    for t in self._asking: t.join()
    # a question the thread could not ask is asked again here, once: starting a process can fail for a moment (a CI
    # worker saw `OSError: [Errno 14] Bad address` from exec with other threads at work), and a compiler with no key
    # would fail every kernel this process builds
    for name, question in (("version", compiler_version), ("arch", native_arch)):
      if name not in self._answers:
        try: self._answers[name] = question(self.cc)
        except OSError as e: raise RuntimeError(f"could not ask {self.cc} for its {name}: {e}") from e
    if len(self._answers) != 2: raise RuntimeError(f"could not ask {self.cc} for its version and target (see the error above)")
    return f"{os.path.basename(self.cc)} {' '.join(self.flags)}\n{self._answers['version']}\n{self._answers['arch']}"
  batches = True  # the renderer guards its helpers, so kernels concatenated are one file (docs/design/0027)
  def compile(self, src: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
      out = os.path.join(d, "k.so")
      r = subprocess.run([self.cc, *self.flags, "-x", "c", "-", "-o", out, "-lm"], input=src.encode(), capture_output=True)
      if r.returncode != 0: raise RuntimeError(f"C compile failed ({self.cc}):\n{r.stderr.decode()}\n--- source ---\n{src}")
      with open(out, "rb") as f: return f.read()
  def compile_batch(self, srcs: list[str]) -> bytes: return self.compile("\n".join(srcs))

MAX_POOL_ARGS = 24  # buffers a kernel may take to run on the C pool; one with more runs on _Workers
MAX_POOL_SHARES = 0xffff  # shares one job of the C pool may have (16 bits of its claim word)

def _pool_source() -> str:
  """A thread pool in C (docs/design/0011, fourteenth-session addendum). Waking a sleeping thread through a Python
  queue and the GIL cost 15-40 us a kernel on 2-core VMs (an idle virtual core is woken by an interrupt), more than a
  small kernel's work. Here the workers spin on a generation counter for SPIN_NS after each job before they sleep on a
  condition variable, so eager ops and jitted steps, whose kernels come a few microseconds apart, find them awake.
  The caller and the workers take the job's shares one at a time until none is left, and the caller then waits for
  the ones still running the same way, without the GIL (ctypes lets go of it for the call): a worker whose core is
  busy with another process when the job comes leaves its share to the caller instead of keeping it waiting (the
  eager embedding's two shares took 28 us a call that way under load, its one-thread time 18 and its two-thread 10). Every spin yields the core now and then (sched_yield): on a machine with more runnable threads than cores a
  spinning caller would otherwise hold the core its own worker waits for (p99 of a no-op kernel under two busy
  processes: 9.5 ms spinning, 4.3 ms on the Python pool). SPIN_RELAX: a spinner looks at the counter 64 times between
  one PAUSE and a sched_yield, not a PAUSE between every two looks: under a hypervisor a run of PAUSEs is what
  pause-loop exiting takes for a spin on a lock and may deschedule the virtual core for, so a worker spinning on
  PAUSEs came late to a job (the eager embedding's median call 33-36 us, 25-27 with this; its best call the same)."""
  calls = "\n".join(f"    case {n}: ((void (*)({''.join('void*, ' for _ in range(n))}int, int))fn)({''.join(f'a[{i}], ' for i in range(n))}core, ncores); break;"
                     for n in range(MAX_POOL_ARGS + 1))
  # pool_run<n>(fn, shares, a0, ..): pool_run with the kernel's n buffers as arguments, gathered into an array on this
  # stack frame (it outlives the job: pool_run returns when every share is done). ctypes then passes each buffer's
  # cached c_void_p as it is, where an array of them cost a ctypes array type look-up and instance per launch
  entries = "\n".join(f"void pool_run{n}(void *fn, int shares{''.join(f', void *a{i}' for i in range(n))}) {{ "
                       f"void *a[{max(n, 1)}] = {{{', '.join(f'a{i}' for i in range(n)) or '0'}}}; pool_run(fn, a, {n}, shares); }}"
                       for n in range(MAX_POOL_ARGS + 1))
  return f"""#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#define SPIN_NS 300000L
#define WAIT_SPIN_NS 100000L
#if defined(__x86_64__) || defined(__i386__)
#define relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define relax() __asm__ volatile("yield")
#else
#define relax() ((void)0)
#endif
static void *job_fn; static void **job_args; static int job_nargs;
static atomic_int generation, done, sleepers, caller_sleeps;
// the shares of the job in progress, taken one at a time by whoever gets there first: (generation << 32) | (shares
// << 16) | the next share to take. A share is claimed by a compare-and-swap of the whole word, so one claimed belongs
// to the job it was taken from, and that job's arguments stay as they are until it is done (every share it has ran)
static _Atomic unsigned long long claim;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER, one_job = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static void call(void *fn, void **a, int nargs, int core, int ncores) {{
  switch (nargs) {{
{calls}
  }}
}}
static void take(unsigned gen) {{
  unsigned long long c = atomic_load(&claim);
  while ((unsigned)(c >> 32) == gen && (c & 0xffff) < ((c >> 16) & 0xffff)) {{
    if (!atomic_compare_exchange_weak(&claim, &c, c + 1)) continue;  // c now holds the word as it is: look again
    int n = (int)((c >> 16) & 0xffff);
    call(job_fn, job_args, job_nargs, (int)(c & 0xffff), n);
    // the share that completes the job wakes a caller that went to sleep waiting (it sets caller_sleeps, then checks
    // done, both under mu: this increment is seen by that check, or this load sees the flag)
    if (atomic_fetch_add(&done, 1) == n - 1 && atomic_load(&caller_sleeps)) {{
      pthread_mutex_lock(&mu); pthread_cond_broadcast(&done_cv); pthread_mutex_unlock(&mu);
    }}
    c = atomic_load(&claim);
  }}
}}
static long now_ns(void) {{ struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000L + t.tv_nsec; }}
static void *worker(void *arg) {{
  int seen = 0;
  (void)arg;
  for (;;) {{
    long start = now_ns();
    for (int spins = 0; atomic_load_explicit(&generation, memory_order_acquire) == seen; spins++) {{
      if ((spins & 63) != 63) continue;  // SPIN_RELAX: a pause and a yield every 64 looks, not a pause every look
      relax();
      if (now_ns() - start > SPIN_NS) {{
        pthread_mutex_lock(&mu); atomic_fetch_add(&sleepers, 1);
        while (atomic_load(&generation) == seen) pthread_cond_wait(&cv, &mu);
        atomic_fetch_sub(&sleepers, 1); pthread_mutex_unlock(&mu);
      }} else sched_yield();
    }}
    seen = atomic_load_explicit(&generation, memory_order_acquire);
    take((unsigned)seen);  // nothing, where the caller (or another worker) took every share first
  }}
  return 0;
}}
int pool_start(int workers) {{
  for (long i = 1; i <= workers; i++) {{
    pthread_t t;
    if (pthread_create(&t, 0, worker, (void *)i)) return -1;
    pthread_detach(t);
  }}
  return 0;
}}
void pool_run(void *fn, void **args, int nargs, int n) {{
  // one job at a time: ctypes lets go of the GIL, so two Python threads can be here at once, and the job is global
  pthread_mutex_lock(&one_job);
  job_fn = fn; job_args = args; job_nargs = nargs;
  atomic_store(&done, 0);
  unsigned gen = (unsigned)atomic_load(&generation) + 1u;
  atomic_store(&claim, ((unsigned long long)gen << 32) | ((unsigned long long)n << 16));
  pthread_mutex_lock(&mu);
  atomic_store(&generation, (int)gen);
  if (atomic_load(&sleepers)) pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  // the caller takes shares too, until none is left: a worker that is late (its core busy with another process)
  // then costs nothing, where a share given to it in advance kept the caller waiting for it
  take(gen);
  long start = now_ns();
  for (int spins = 0; atomic_load(&done) < n; spins++) {{
    if ((spins & 63) != 63) continue;  // as the workers spin (SPIN_RELAX)
    relax();
    if (now_ns() - start > WAIT_SPIN_NS) {{
      pthread_mutex_lock(&mu); atomic_store(&caller_sleeps, 1);
      while (atomic_load(&done) < n) pthread_cond_wait(&done_cv, &mu);
      atomic_store(&caller_sleeps, 0); pthread_mutex_unlock(&mu);
      break;
    }}
    sched_yield();
  }}
  pthread_mutex_unlock(&one_job);
}}
{entries}
// a JIT capture's kernels in order, one call (CPUGraph): kernel i is fns[i] on args[offsets[i]..], in ns[i] shares
void graph_run(int count, void **fns, void **args, int *offsets, int *nargs, int *ns) {{
  for (int i = 0; i < count; i++) {{
    if (ns[i] <= 1) call(fns[i], args + offsets[i], nargs[i], 0, 1);
    else pool_run(fns[i], args + offsets[i], nargs[i], ns[i]);
  }}
}}
"""

class _CPool:
  """The C pool, built by the C compiler once (and cached on disk like a kernel), started per process: a forked child
  starts its own, as its parent's threads do not exist there."""
  def __init__(self, compiler: CCompiler, workers: int):
    with _temp_file() as f: f.write(compiler.compile_cached(_pool_source()))
    try: self.lib = ctypes.CDLL(f.name)
    finally: os.unlink(f.name)
    self.lib.pool_run.restype = self.lib.graph_run.restype = None
    # pool_run<n> by n: a kernel of n buffers is launched through entries[n] (CPUProgram.run_raws)
    self.entries = [getattr(self.lib, f"pool_run{n}") for n in range(MAX_POOL_ARGS + 1)]
    for e in self.entries: e.restype = None
    if self.lib.pool_start(ctypes.c_int(workers)) != 0: raise OSError("pthread_create failed")
    self.pid = os.getpid()
  def run(self, address: ctypes.c_void_p, args: list, n: int):
    self.lib.pool_run(address, (ctypes.c_void_p * len(args))(*args), len(args), n)

def _forget_pool():
  """In a forked child: the parent's pool threads do not exist here, so the next threaded kernel starts a pool of its own."""
  global _entries
  _cpool.clear()
  _entries = None

class _Workers:
  """Threads that run a kernel's shares (ctypes lets go of the GIL during the call) while the caller runs the first
  itself: plain threads on C-implemented queues, as concurrent.futures costs ~4 ms to import on a warm start's path.
  Where the C pool cannot run a kernel (more than MAX_POOL_ARGS buffers, or no pthreads), this one does."""
  def __init__(self, n: int):
    self.jobs: _queue.SimpleQueue = _queue.SimpleQueue()
    for i in range(n): threading.Thread(target=self._work, name=f"lucidgrad-cpu-{i}", daemon=True).start()
  def _work(self):
    while True:
      fxn, args, done = self.jobs.get()
      try: fxn(*args); done.put(None)
      except BaseException as e: done.put(e)  # raised by the caller, as a future's result() would
  def run(self, fxn, args: list, n: int):
    done: _queue.SimpleQueue = _queue.SimpleQueue()
    for c in range(1, n): self.jobs.put((fxn, (*args, c, n), done))
    try: fxn(*args, 0, n)
    finally: errors = [e for e in (done.get() for _ in range(1, n)) if e is not None]  # every share ends before the buffers go
    if errors: raise errors[0]

_pool: list[_Workers] = []
_cpool: list = []  # [the C pool] once started in this process; [None] where it could not be built
# the started pool's pool_run<n> entries, read by every threaded launch without _c_pool()'s frame; set only where a
# fork hook exists (it sets this back to None in a child, whose first threaded kernel then starts a pool of its own)
_entries: list | None = None

def _c_pool() -> _CPool | None:
  """This process's C pool, started on first use (and again in a forked child: _forget_pool, and the pid for a fork
  that skipped the hook); None where it cannot be built. Asked at every threaded launch: os.getpid() is a system call
  (~0.3 us), so the pid is checked only where no fork hook exists."""
  global _entries
  if _cpool and (_cpool[0] is None or _AT_FORK or _cpool[0].pid == os.getpid()): return _cpool[0]
  from lucidgrad.device import Device
  _cpool.clear()
  try: _cpool.append(_CPool(Device["CPU"].compiler, max(1, (os.cpu_count() or 1) - 1)))
  except (OSError, RuntimeError): _cpool.append(None)
  _entries = _cpool[0].entries if _cpool[0] is not None and _AT_FORK else None
  return _cpool[0]

_AT_FORK = hasattr(os, "register_at_fork")
if _AT_FORK: os.register_at_fork(after_in_child=_forget_pool)

def _run_shared(fxn, address: ctypes.c_void_p, args: list, n: int) -> None:
  """Run a kernel's n shares on the C pool (`address`: the kernel's, as a ctypes argument), or on _Workers where that
  cannot be built or the kernel takes too many buffers."""
  if len(args) <= MAX_POOL_ARGS and n <= MAX_POOL_SHARES and (pool := _c_pool()) is not None: return pool.run(address, args, n)
  if not _pool: _pool.append(_Workers(max(1, (os.cpu_count() or 1) - 1)))
  _pool[0].run(fxn, args, n)

def _temp_file():
  """A new file for a library to load: in $TMPDIR or /tmp when it can be made there, else where tempfile chooses (its
  first choice probes the candidate folders by writing into them, ~5 ms of a warm start's first kernel)."""
  for d in (os.environ.get("TMPDIR"), "/tmp"):
    if d:
      try: return tempfile.NamedTemporaryFile(suffix=".so", delete=False, dir=d)
      except OSError: pass
  return tempfile.NamedTemporaryFile(suffix=".so", delete=False)

class CPUProgram:
  """A loaded kernel. One with a THREAD axis runs as that many calls on a thread pool (ctypes lets go of the GIL during
  the call), each taking its share of the axis."""
  def __init__(self, name: str, lib: bytes, spec=None, **_):
    self.name, self.spec = name, spec
    # dlopen needs a file; each load gets its own so two programs never share a handle
    with _temp_file() as f: f.write(lib)
    try: self.lib = ctypes.CDLL(f.name)
    finally: os.unlink(f.name)
    self.fxn = getattr(self.lib, name)
    # no argtypes: every argument is passed as a ctypes object already (the buffers' cached c_void_p, the thread
    # numbers as c_int), which skips a conversion per argument per call; the kernels return nothing
    self.fxn.restype = None
    self.address = ctypes.cast(self.fxn, ctypes.c_void_p)  # for the C pool (a cast per call takes ~0.7 us)
    self.threads = spec.threads if spec is not None else 1
    # the share count as the C pool's entries take it, made once (None: one thread, or too many shares for the pool)
    self.shares = ctypes.c_int(self.threads) if 1 < self.threads <= MAX_POOL_SHARES else None
  def run_raws(self, raws) -> float:
    """__call__ on this device's raw buffers (a list, or any iterable: taken once), without launch dims or Variable
    values: the engine's path for every kernel it launches (one frame and no argument parsing; the seconds as
    __call__ gives them). A threaded kernel goes to the started C pool's entry for its buffer count directly (the
    first one, or one in a forked child, through _run_shared, which starts the pool)."""
    args = [*map(_arg_of, raws)]
    if self.threads <= 1:
      st = _now()
      self.fxn(*args, _FIRST, _ONE)
      return _now() - st
    st = _now()
    if (entries := _entries) is not None and (shares := self.shares) is not None and len(args) <= MAX_POOL_ARGS: entries[len(args)](self.address, shares, *args)
    else: _run_shared(self.fxn, self.address, args, self.threads)
    return _now() - st
  def __call__(self, *bufs, global_size=None, local_size=None, wait=True, vals=()) -> float:
    """Runs the kernel to completion and returns the seconds it took: the host clock around the call only. `vals`:
    the values of the Variables it reads, passed after the buffers as 64-bit words."""
    spec = self.spec
    args = [b.arg for b in bufs] if spec is not None else [ctypes.c_void_p(b.ctypes.data) for b in bufs]
    if vals: args += [ctypes.c_void_p(v) for v in vals]
    n = spec.threads if spec is not None else 1
    st = time.perf_counter()
    if n <= 1: self.fxn(*args, 0, 1)
    else: _run_shared(self.fxn, self.address, args, n)
    return time.perf_counter() - st

class CPUGraph:
  """A JIT capture's kernels run by one call into the C pool (`graph_run`): the Python of a launch -- the run loop, the
  runner, ctypes, ~5-8 us a kernel here -- is paid once a replay, not once a kernel (a llama decode step is 550
  kernels). The arguments are fixed at recording, as a GPU graph's; a Variable's slot is filled with its bound value
  before each run."""
  def __init__(self, pool: _CPool, launches: list[tuple]):
    flat: list[int] = []
    offsets, nargs, shares, self.var_slots = [], [], [], []
    for program, raws, _, _, names in launches:
      offsets.append(len(flat))
      flat += [r.ptr for r in raws]
      for name in names: self.var_slots.append((len(flat), name)); flat.append(0)
      nargs.append(len(raws) + len(names))
      shares.append(program.spec.threads if program.spec is not None else 1)
    n = len(launches)
    self.fns = (ctypes.c_void_p * n)(*[program.address.value for program, *_ in launches])
    self.args = (ctypes.c_void_p * max(len(flat), 1))(*flat)
    self.offsets, self.nargs, self.shares = [(ctypes.c_int * n)(*v) for v in (offsets, nargs, shares)]
    self.pool, self.count = pool, ctypes.c_int(n)
  def __call__(self) -> float:
    """Runs the kernels; returns the seconds they took (the host clock around the one call, as for a kernel)."""
    if self.var_slots:
      from lucidgrad.engine.realize import var_value_named
      for slot, name in self.var_slots: self.args[slot] = var_value_named(name)
    st = time.perf_counter()
    self.pool.lib.graph_run(self.count, self.fns, self.args, self.offsets, self.nargs, self.shares)
    return time.perf_counter() - st

class CPUDevice(Compiled):
  graph_vars = True  # a replay fills in the Variables' values (CPUGraph)
  def graph(self, launches: list[tuple]) -> CPUGraph | None:
    """The launches as one call into the C pool, or None where the pool cannot run them (not built here, or a kernel
    with more than MAX_POOL_ARGS arguments or MAX_POOL_SHARES shares)."""
    if (pool := _c_pool()) is None or any(len(raws) + len(names) > MAX_POOL_ARGS or (p.spec is not None and p.spec.threads > MAX_POOL_SHARES)
                                          for p, raws, _, _, names in launches): return None
    return CPUGraph(pool, launches)

def make_device(name: str) -> Compiled: return CPUDevice(name, CPUAllocator(), CRenderer(), CCompiler(), CPUProgram)
