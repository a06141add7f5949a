"""The profiler: with PROFILE=1 (or inside `lucidgrad.profile(path)`) the run loop records a ProfileEvent per kernel and
copy (`events`, read by take_events), and every hook -- run loop, lowering, schedule, JIT, Buffer alloc/free, markers --
adds Chrome trace events to `trace`, written as JSON that Perfetto and chrome://tracing open (docs/profile.md).
Each hook is one check of PROFILE.value when the profiler is off: no allocation, no clock read."""
from __future__ import annotations
import atexit, functools, gc, json, os, threading, time
from dataclasses import dataclass
from lucidgrad.helpers import PROFILE

@dataclass(frozen=True)
class ProfileEvent:
  kind: str         # "kernel" | "copy"
  name: str         # the kernel's name, or "copy CPU -> NULL"
  device: str       # where it ran (a copy: its destination)
  start: float      # host clock (time.perf_counter) when it was launched
  duration: float   # seconds of device time, as the device's timing events measured it
  flops: int
  mem_bytes: int

events: list[ProfileEvent] = []

def take_events() -> list[ProfileEvent]:
  """The events recorded so far, oldest first; the list starts over empty."""
  out = events[:]
  events.clear()
  return out

# ---- the trace: host slices per thread, device slices per device, a memory counter per device ----
# times are integer nanoseconds of time.perf_counter_ns (the clock ProfileEvent.start reads, in seconds) until written
HOST_PID = 1
MAX_TRACE = 2_000_000   # trace entries kept at most (PROFILE=1 in a long process): later ones are counted as dropped
trace: list[tuple] = []  # ("X", name, cat, tid, start_ns, dur_ns, args) host; ("D", ...) device; ("C", device, t_ns, bytes);
                         # ("A", device, t_ns, buffer serial, +bytes allocated | -bytes freed)
dropped = [0]
_threads: dict[int, str] = {}                     # native thread id -> its name
_device_end: dict[str, int] = {}                   # each device track's last slice end: device slices never overlap
_mem: dict[str, int] = {}                          # bytes in use per device, as the counter shows them
keep_graphs = [False]                              # a JIT replay under the profiler still runs as one device graph

def _add(entry: tuple):
  if len(trace) < MAX_TRACE: trace.append(entry)
  else: dropped[0] += 1

def _tid() -> int:
  tid = threading.get_native_id()
  if tid not in _threads: _threads[tid] = threading.current_thread().name
  return tid

class host_slice:
  """`with host_slice(name, cat):` records the block as one slice on this thread's track (nothing when PROFILE is off).
  Also a decorator: `@host_slice("schedule", "schedule")`."""
  __slots__ = ("name", "cat", "args", "st")
  def __init__(self, name: str, cat: str = "host", args: dict | None = None): self.name, self.cat, self.args, self.st = name, cat, args, 0
  def __enter__(self):
    if PROFILE.value: self.st = time.perf_counter_ns()
    return self
  def __exit__(self, *exc):
    if PROFILE.value and self.st: _add(("X", self.name, self.cat, _tid(), self.st, time.perf_counter_ns() - self.st, self.args))
  def __call__(self, fn):
    name, cat = self.name, self.cat
    @functools.wraps(fn)
    def traced(*args, **kwargs):
      if not PROFILE.value: return fn(*args, **kwargs)
      st = time.perf_counter_ns()
      try: return fn(*args, **kwargs)
      finally: _add(("X", name, cat, _tid(), st, time.perf_counter_ns() - st, None))
    return traced

def add_host(name: str, cat: str, start_ns: int, end_ns: int, args: dict | None = None):
  """A slice on this thread's track that ran from start_ns to end_ns (perf_counter_ns)."""
  _add(("X", name, cat, _tid(), start_ns, end_ns - start_ns, args))

def add_device(device: str, name: str, cat: str, end_ns: int, device_s: float, args: dict | None = None):
  """A slice of `device_s` seconds of device time on `device`'s track, ending when the host saw it end (`end_ns`), moved
  later where it would overlap the track's previous slice (a device runs its queue in order)."""
  dur = max(0, round(device_s * 1e9))
  start = max(end_ns - dur, _device_end.get(device, 0))
  _device_end[device] = start + dur
  _add(("D", name, cat, device, start, dur, args))

def memory(device: str, nbytes: int, buffer: int | None = None):
  """A buffer of `nbytes` allocated (>0) or freed (<0) on `device`: the device's memory counter moves by it. Given the
  buffer's id (Buffer.serial), an alloc/free instant on the device's memory track also names the buffer and its size, so
  a reader (the web view's memory view) can tell which buffers are alive when."""
  now = _mem[device] = _mem.get(device, 0) + nbytes
  t = time.perf_counter_ns()
  _add(("C", device, t, now))
  if buffer is not None: _add(("A", device, t, buffer, nbytes))

class marker(host_slice):
  """`with lucidgrad.marker("epoch 3"):` shows the block as a slice named "epoch 3" on this thread's track, enclosing
  the work done inside it. Nothing is recorded when the profiler is off."""
  __slots__ = ()
  def __init__(self, name: str): super().__init__(str(name), "marker")

def _buffers_in_use() -> list[tuple[str, int, int]]:
  """(device, serial, bytes) of the live Buffers holding device memory now (found through the garbage collector: once, at
  the start)."""
  from lucidgrad.device import Buffer
  return [(o.device, o.serial, max(o.nbytes, 1)) for o in gc.get_objects() if type(o) is Buffer and o._raw is not None and o._owned]

def start():
  """Start recording: the trace so far is dropped, and each device's counter starts from what its live Buffers hold."""
  trace.clear()
  dropped[0] = 0
  _device_end.clear()
  _mem.clear()
  live = _buffers_in_use()
  for dev, _, n in live: _mem[dev] = _mem.get(dev, 0) + n
  now = time.perf_counter_ns()
  for dev, n in _mem.items(): trace.append(("C", dev, now, n))
  for dev, serial, n in live: trace.append(("A", dev, now, serial, n))   # what was alive before counts as allocated now

def chrome_trace() -> dict:
  """The trace recorded so far as Chrome trace-event JSON data: {"traceEvents": [...], "displayTimeUnit": "ms"}."""
  devices = sorted({e[3] for e in trace if e[0] == "D"} | {e[1] for e in trace if e[0] in "CA"})
  dev_pid = {d: HOST_PID + 1 + i for i, d in enumerate(devices)}
  us = lambda ns: ns / 1000  # noqa: E731 -- Perfetto rounds back to the same nanosecond
  out: list[dict] = [{"ph": "M", "name": "process_name", "pid": HOST_PID, "tid": 0, "args": {"name": f"lucidgrad host (pid {os.getpid()})"}},
                     {"ph": "M", "name": "thread_name", "pid": HOST_PID, "tid": 0, "args": {"name": "process"}}]
  tids = {e[3] for e in trace if e[0] == "X"}
  out += [{"ph": "M", "name": "thread_name", "pid": HOST_PID, "tid": t, "args": {"name": f"{_threads.get(t, 'thread')} ({t})"}} for t in sorted(tids)]
  for d, pid in dev_pid.items():
    out += [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": f"device {d}"}},
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": 0, "args": {"name": "memory"}},
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": 1, "args": {"name": f"{d} queue (kernels, copies, graphs)"}}]
  for e in trace:
    if e[0] == "X":
      _, name, cat, tid, st, dur, args = e
      out.append({"ph": "X", "name": name, "cat": cat, "pid": HOST_PID, "tid": tid, "ts": us(st), "dur": us(dur), **({"args": args} if args else {})})
    elif e[0] == "D":
      _, name, cat, dev, st, dur, args = e
      out.append({"ph": "X", "name": name, "cat": cat, "pid": dev_pid[dev], "tid": 1, "ts": us(st), "dur": us(dur), **({"args": args} if args else {})})
    elif e[0] == "A":   # an instant on the memory track: which buffer was allocated or freed, and its size
      _, dev, t, buf, n = e
      out.append({"ph": "i", "s": "t", "name": "alloc" if n > 0 else "free", "cat": "memory", "pid": dev_pid[dev], "tid": 0, "ts": us(t),
                  "args": {"buffer": buf, "bytes": abs(n)}})
    else:
      _, dev, t, n = e
      out.append({"ph": "C", "name": "memory in use", "cat": "memory", "pid": dev_pid[dev], "tid": 0, "ts": us(t), "args": {"bytes": n}})
  data: dict = {"traceEvents": out, "displayTimeUnit": "ms"}
  if dropped[0]: data["otherData"] = {"dropped_events": dropped[0], "note": f"the trace stopped at {MAX_TRACE} events"}
  return data

def write(path: str) -> str:
  """Write the trace to `path` (JSON); returns the path."""
  with open(path, "w") as f: json.dump(chrome_trace(), f)
  return path

class profile:
  """`with lucidgrad.profile("trace.json"):` records everything run inside the block and writes it as Chrome trace-event
  JSON at its end (Perfetto, chrome://tracing). `graphs=True` lets JIT replays run as one device graph (one slice)
  instead of launching their kernels one by one to time each. The trace's data is `.trace` after the block."""
  def __init__(self, path: str | None = "profile.json", graphs: bool = False): self.path, self.graphs, self.trace = path, graphs, None
  def __enter__(self):
    if PROFILE.value: raise RuntimeError("profile: the profiler is already recording (PROFILE=1 or another lucidgrad.profile block)")
    start()
    self.old_graphs, keep_graphs[0] = keep_graphs[0], self.graphs
    PROFILE.value = 1
    return self
  def __exit__(self, *exc):
    PROFILE.value, keep_graphs[0] = 0, self.old_graphs
    events.clear()
    self.trace = chrome_trace()
    trace.clear()
    if self.path is not None:
      with open(self.path, "w") as f: json.dump(self.trace, f)

def _write_at_exit():
  if PROFILE.value and trace:
    path = os.environ.get("PROFILE_FILE") or os.path.join(os.getcwd(), "profile.json")
    print(f"profile: trace written to {write(path)} (open it at https://ui.perfetto.dev)")

if PROFILE.value and os.environ.get("PROFILE"):  # PROFILE=1 for the whole process: the trace is written when it exits
  start()
  atexit.register(_write_at_exit)
