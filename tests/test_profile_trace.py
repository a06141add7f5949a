"""The profiler's Chrome trace (engine/profile.py): checked against the trace-event format rules Perfetto's JSON importer
relies on, and for what a training step and a jitted step's replays show (docs/profile.md)."""
import json, math, os, subprocess, sys
import numpy as np, pytest
import lucidgrad
from lucidgrad import Tensor, Context, GlobalCounters, jit
from lucidgrad.engine import profile
from lucidgrad.helpers import PROFILE
from lucidgrad.device import Device

rng = np.random.default_rng(14)

# ---- the format: what Perfetto's JSON importer needs ----
def _num(x) -> bool: return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

def validate_trace(data) -> list[dict]:
  """Raise AssertionError at the first event that breaks the trace-event format; returns the events. Rules: the top level
  is {"traceEvents": [...], "displayTimeUnit": "ms"|"ns"}; every event has a known phase, a string name and integer
  pid (and tid, but on counters); X has numeric ts and dur >= 0; B/E pair up per thread; C has numeric ts and a
  non-empty args of numbers; M names processes and threads; every pid and (pid, tid) used is named by an M event; slices
  of one (pid, tid) nest (in integer nanoseconds, as the importer rounds them): none overlaps another partially."""
  assert isinstance(data, dict) and isinstance(evs := data.get("traceEvents"), list), "the top level is {'traceEvents': [...]}"
  assert data.get("displayTimeUnit", "ms") in ("ms", "ns"), data.get("displayTimeUnit")
  procs, threads, used_p, used_t = set(), set(), set(), set()
  spans: dict[tuple, list[tuple[int, int, str]]] = {}
  open_b: dict[tuple, list[tuple[int, str]]] = {}
  for e in evs:
    assert isinstance(e, dict) and e.get("ph") in ("X", "B", "E", "C", "M", "i", "I"), f"unknown phase in {e}"
    ph = e["ph"]
    assert isinstance(e.get("name"), str) and (e["name"] or ph == "E"), f"no name: {e}"
    assert type(e.get("pid")) is int, f"pid is not an int: {e}"
    if ph != "C": assert type(e.get("tid")) is int, f"tid is not an int: {e}"
    if "args" in e: assert isinstance(e["args"], dict), f"args is not an object: {e}"
    if ph == "M":
      assert e["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index"), e
      if e["name"] in ("process_name", "thread_name"): assert isinstance(e.get("args", {}).get("name"), str), f"metadata without a name: {e}"
      (procs if e["name"] == "process_name" else threads).add(e["pid"] if e["name"] == "process_name" else (e["pid"], e["tid"]))
      continue
    assert _num(e.get("ts")) and e["ts"] >= 0, f"ts is not a non-negative number: {e}"
    used_p.add(e["pid"])
    if ph == "C":
      assert e.get("args") and all(_num(v) for v in e["args"].values()), f"a counter's args are not numbers: {e}"
      continue
    used_t.add(key := (e["pid"], e["tid"]))
    ts = round(e["ts"] * 1000)
    if ph == "X":
      assert _num(e.get("dur")) and e["dur"] >= 0, f"dur is not a non-negative number: {e}"
      spans.setdefault(key, []).append((ts, ts + round(e["dur"] * 1000), e["name"]))
    elif ph == "B": open_b.setdefault(key, []).append((ts, e["name"]))
    elif ph == "E":
      assert open_b.get(key), f"E without a B on its thread: {e}"
      st, name = open_b[key].pop()
      assert ts >= st, f"E before its B: {e}"
      spans.setdefault(key, []).append((st, ts, name))
  assert not any(open_b.values()), f"B events never ended: {open_b}"
  assert used_p <= procs, f"processes without a process_name: {used_p - procs}"
  assert used_t <= threads, f"threads without a thread_name: {used_t - threads}"
  for key, ss in spans.items():
    stack: list[tuple[int, int, str]] = []
    for s in sorted(ss, key=lambda s: (s[0], -s[1])):
      while stack and s[0] >= stack[-1][1]: stack.pop()
      assert not stack or s[1] <= stack[-1][1], f"on {key}, {s} overlaps {stack[-1]} partially"
      stack.append(s)
  return evs

def test_validator_catches_each_broken_rule():
  ok = {"traceEvents": [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "p"}},
                        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {"name": "t"}},
                        {"ph": "X", "name": "a", "pid": 1, "tid": 2, "ts": 1.0, "dur": 5.0},
                        {"ph": "X", "name": "b", "pid": 1, "tid": 2, "ts": 2.0, "dur": 4.0},
                        {"ph": "C", "name": "m", "pid": 1, "ts": 3.0, "args": {"bytes": 10}}], "displayTimeUnit": "ms"}
  assert len(validate_trace(ok)) == 5
  def broken(i, **change):
    d = json.loads(json.dumps(ok))
    d["traceEvents"][i].update(change)
    return d
  for bad in (broken(3, dur=6.0),                # ends after its parent: partial overlap
              broken(2, dur=-1), broken(2, ts="1"), broken(2, pid="1"), broken(2, tid=3),  # unnamed thread
              broken(4, args={"bytes": "10"}), broken(4, pid=9), broken(0, args={}), broken(2, ph="Q")):
    with pytest.raises(AssertionError): validate_trace(bad)

# ---- what a trace holds ----
def slices(evs, cat=None, pid=None): return [e for e in evs if e["ph"] == "X" and (cat is None or e["cat"] == cat) and (pid is None or e["pid"] == pid)]
def device_pid(evs, dev): return next(e["pid"] for e in evs if e["ph"] == "M" and e["name"] == "process_name" and e["args"]["name"] == f"device {dev}")
def inside(inner, outer): return outer["ts"] <= inner["ts"] and inner["ts"] + inner["dur"] <= outer["ts"] + outer["dur"] + 1e-3

class Net(lucidgrad.nn.Module):
  def __init__(self):
    super().__init__()
    self.conv, self.fc = lucidgrad.nn.Conv2d(1, 3, 3), lucidgrad.nn.Linear(3 * 5 * 5, 7)
  def forward(self, x): return self.fc(self.conv(x).relu().flatten(1))

def train(steps: int, xs, ys, with_profile: str | None):
  """A conv + linear net trained `steps` SGD steps on 7x7 images (10 classes reduced to 7: shapes no other test builds)."""
  lucidgrad.manual_seed(3)
  net = Net()
  opt = lucidgrad.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
  losses = []
  for i in range(steps):
    with lucidgrad.marker(f"step {i}"):
      opt.zero_grad()
      loss = lucidgrad.nn.functional.cross_entropy(net(Tensor(xs[i])), Tensor(ys[i]))
      loss.backward()
      opt.step()
      losses.append(loss.to("PYTHON").numpy().item())  # a copy between devices: a copy slice
  return losses

def test_training_steps_trace_is_valid_and_shows_every_kind_of_work(tmp_path):
  xs, ys = rng.standard_normal((3, 4, 1, 7, 7)).astype(np.float32), rng.integers(0, 7, (3, 4))
  path = tmp_path / "train.json"
  import lucidgrad.tensor as lt
  if lt._pending_checks: lt.realize_nodes([])  # an earlier test's index checks (maybe on another device) run now, not in ours
  with lucidgrad.profile(str(path)) as p:
    # counted once recording runs: starting it walks the garbage collector, whose finalizers may run an earlier
    # test's pending work before the first event is recorded
    k0 = GlobalCounters.kernel_count
    losses = train(3, xs, ys, str(path))
    kernels_run = GlobalCounters.kernel_count - k0
  evs = validate_trace(json.loads(path.read_text()))
  assert p.trace == json.loads(path.read_text())
  # profiling changes no value: the same training unprofiled gives the same losses
  assert losses == train(3, xs, ys, None)
  cpu = device_pid(evs, Device.DEFAULT)  # the default device's (CUDA under DEV=CUDA, bench/gpu.sh)
  # every device's kernels, in the order they ran: manual_seed also re-seeds the generator of each device an earlier
  # test drew random numbers on (in a full-suite worker, PYTHON's: one kernel there)
  device_pids = {e["pid"] for e in evs if e["ph"] == "M" and e["name"] == "process_name" and e["args"]["name"].startswith("device ")}
  kern = [e for e in slices(evs, "kernel") if e["pid"] in device_pids]
  assert len(kern) == kernels_run and all(e["dur"] > 0 and e["dur"] == pytest.approx(e["args"]["device_us"], abs=2e-3) for e in kern)
  host_kern = [e for e in slices(evs, "kernel", 1)]
  assert [e["name"] for e in host_kern] == [f"launch {e['name']}" for e in kern]
  for h, d in zip(host_kern, kern): assert d["dur"] <= h["dur"] + 1e-3   # a CPU kernel's device time is inside its launch
  # the first step built kernels: schedule, lowering, codegen and compile slices, each codegen within a lowering
  lowers, codegens = slices(evs, "lower"), slices(evs, "codegen")
  assert slices(evs, "schedule") and lowers and codegens and slices(evs, "compile")
  assert all(any(inside(c, lw) for lw in lowers) for c in codegens)
  # a copy slice on the destination's track and on the host, once per step
  copies = slices(evs, "copy", device_pid(evs, "PYTHON"))
  assert [e["name"] for e in copies] == [f"copy {Device.DEFAULT} -> PYTHON"] * 3 and all(e["dur"] >= 0 for e in copies)
  # each step's marker encloses its kernels' launches (every launch after the first step began: the ones before
  # initialise the net), and the markers are in order
  marks = slices(evs, "marker")
  assert [m["name"] for m in marks] == ["step 0", "step 1", "step 2"]
  assert all(any(inside(h, m) for m in marks) for h in host_kern if h["ts"] >= marks[0]["ts"])
  assert all(any(inside(h, m) for h in host_kern) for m in marks)
  # the memory counter: its steps are the sizes of the buffers allocated and freed, it rises and falls
  mem = [e["args"]["bytes"] for e in evs if e["ph"] == "C" and e["pid"] == cpu]
  steps = np.diff(mem)
  assert (steps > 0).any() and (steps < 0).any() and min(mem) >= 0
  assert max(mem) >= sum(p.numel() * 4 for p in Net().parameters())  # the parameters and their gradients are live

def test_jitted_replays_are_one_slice_each_with_their_kernels_inside(tmp_path):
  w = Tensor(rng.standard_normal((11, 5)).astype(np.float32)).realize()
  @jit
  def step(x: Tensor) -> Tensor: return (x @ w).relu().sum(1) * 0.25
  xs = [rng.standard_normal((6, 11)).astype(np.float32) for _ in range(5)]
  with lucidgrad.profile(str(tmp_path / "jit.json")) as p:
    outs = [step(Tensor(x)).numpy() for x in xs]
  for x, o in zip(xs, outs): np.testing.assert_allclose(o, np.maximum(x.astype(np.float64) @ w.numpy(), 0).sum(1) * 0.25, rtol=1e-5)
  evs = validate_trace(p.trace)
  jits = slices(evs, "jit")
  assert [e["name"] for e in jits] == ["jit warm-up step", "jit capture step"] + ["jit replay step"] * 3
  names = [ei.runner.name for ei in step.items]
  host_kern = slices(evs, "kernel", 1)
  for r in jits[2:]:   # a replay launches the captured kernels one by one, inside its slice, and builds nothing
    assert [e["name"] for e in host_kern if inside(e, r)] == [f"launch {n}" for n in names]
    assert not any(inside(e, r) for e in slices(evs, "codegen") + slices(evs, "schedule") + slices(evs, "compile"))
  assert any(inside(e, jits[0]) for e in slices(evs, "codegen"))   # the warm-up built its kernels

def test_graph_replay_is_one_slice_on_host_and_device(tmp_path):
  w = Tensor(rng.standard_normal((9, 4)).astype(np.float32)).realize()
  @jit
  def step(x: Tensor) -> Tensor: return (x @ w).exp().sum(1)
  xs = [rng.standard_normal((3, 9)).astype(np.float32) for _ in range(4)]
  with lucidgrad.profile(None, graphs=True) as p:
    outs = [step(Tensor(x)).numpy() for x in xs]
  for x, o in zip(xs, outs): np.testing.assert_allclose(o, np.exp(x.astype(np.float64) @ w.numpy()).sum(1), rtol=1e-5)
  evs = validate_trace(p.trace)
  if step.graph is False: pytest.fail(f"{Device.DEFAULT} should replay this capture as one graph")
  graphs = slices(evs, "graph", device_pid(evs, Device.DEFAULT))
  assert [e["name"] for e in graphs] == [f"graph step ({len(step.items)} kernels)"] * 2 and all(e["dur"] > 0 for e in graphs)
  replays = [e for e in slices(evs, "jit") if e["name"] == "jit replay step"]
  assert len(replays) == 2 and all(not any(inside(k, r) for k in slices(evs, "kernel", 1)) for r in replays)
  assert all(any(inside(g, r) for r in replays) for g in slices(evs, "graph", 1))

def test_profile_off_records_nothing_and_nested_profiles_are_refused():
  profile.trace.clear()
  x = Tensor(rng.standard_normal((13, 3)).astype(np.float32))
  with lucidgrad.marker("unseen"): (x * 3 + 1).sum().numpy()
  assert profile.trace == [] and profile.events == [] and not PROFILE.value
  with lucidgrad.profile(None):
    with pytest.raises(RuntimeError, match="already recording"):
      with lucidgrad.profile(None): pass
  assert not PROFILE.value and profile.trace == []
  with Context(PROFILE=1): pass   # the old flag alone still records ProfileEvents (tests/test_engine.py)

def test_profile_env_writes_the_trace_at_exit(tmp_path):
  out = tmp_path / "env.json"
  code = "import numpy as np; from lucidgrad import Tensor; (Tensor(np.arange(6, dtype=np.float32)) * 2).sum().numpy()"
  env = {**os.environ, "PROFILE": "1", "PROFILE_FILE": str(out)}
  r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  assert str(out) in r.stdout
  evs = validate_trace(json.loads(out.read_text()))
  assert len(slices(evs, "kernel")) >= 2   # a kernel launch on the host and its slice on the device

def test_each_thread_has_its_own_named_track():
  import threading
  x = Tensor(rng.standard_normal((5, 17)).astype(np.float32)).realize()
  got = {}
  def work():
    with lucidgrad.marker("in a thread"): got["v"] = (x * 2 - 1).sum(1).numpy()
  with lucidgrad.profile(None) as p:
    with lucidgrad.marker("main"):
      t = threading.Thread(target=work, name="worker-17")
      t.start(); t.join()
  np.testing.assert_allclose(got["v"], (x.numpy().astype(np.float64) * 2 - 1).sum(1), rtol=1e-5)
  evs = validate_trace(p.trace)
  (main,), (other,) = [m for m in slices(evs, "marker") if m["name"] == "main"], [m for m in slices(evs, "marker") if m["name"] == "in a thread"]
  assert main["tid"] != other["tid"] and main["pid"] == other["pid"] == 1
  names = {e["tid"]: e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == 1}
  assert names[other["tid"]].startswith("worker-17") and names[main["tid"]].startswith("MainThread")
  assert [e["name"] for e in slices(evs, "kernel", 1) if e["tid"] == other["tid"]]   # its kernel launched on its track
