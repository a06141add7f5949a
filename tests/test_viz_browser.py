"""The web view (lucidgrad/viz: server.py and the page in static/) in a real browser: headless Chromium driven by
Playwright opens the view of a recording and of PROFILE traces of one MNIST training step and of a jitted replay, and
checks what the page shows against the data (the DOM and the data-* attributes the page sets, never pixels). The server
is checked without a browser: loopback only, clear errors for bad files, the command line.
Needs Debian's chromium and playwright from pip: these tests fail (never skip) without them, naming the install line.
VIZ_SCREENSHOTS=docs/viz saves screenshots of the view there (docs/viz.md shows them)."""
import fcntl, json, os, pathlib, re, socket, subprocess, sys, tempfile, urllib.error, urllib.request
import numpy as np
import pytest
import lucidgrad
from lucidgrad import Tensor
from lucidgrad.viz.server import load, serve, view_data

ROOT = pathlib.Path(__file__).parent.parent
CHROMIUM = "/usr/bin/chromium"
INSTALL = "apt-get update && apt-get install -y chromium && pip install playwright"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("VIZ_SCREENSHOTS")

# ---- the recordings shown ----
class Graphs:
  """Hash-consed nodes stored as the recorder stores them (VIZFORMAT.md): one uid per distinct (op, dtype, arg, src)."""
  def __init__(self): self.nodes, self.ids = {}, {}
  def node(self, op: str, dtype: str = "void", arg: str = "None", *src: int) -> int:
    if (key := (op, dtype, arg, src)) not in self.ids:
      self.ids[key] = uid = len(self.ids) + 1
      self.nodes[str(uid)] = {"op": op, "dtype": dtype, "arg": arg, "src": list(src)}
    return self.ids[key]
  def substitute(self, sink: int, old: int, new: int) -> int:
    """The graph under `sink` with node `old` replaced by `new`: every node on a path to it is rebuilt."""
    memo: dict[int, int] = {}
    def go(u: int) -> int:
      if u == old: return new
      if u not in memo:
        n = self.nodes[str(u)]
        src = tuple(go(s) for s in n["src"])
        memo[u] = u if list(src) == n["src"] else self.node(n["op"], n["dtype"], n["arg"], *src)
      return memo[u]
    return go(sink)

def sample_recording(truncated: str | None = None) -> dict:
  """A recording in the viz format made by hand: a schedule pass, three elementwise kernels whose `symbolic` pass folds
  `x*1` and `+0` step by step (real rules' shapes, made-up locations), a linearize pass with no steps, and a copy."""
  g, groups, passes = Graphs(), [], []
  def group(parent, kind, name, info):
    groups.append({"id": len(groups), "parent": parent, "kind": kind, "name": name, "info": info})
    return len(groups) - 1
  def kernel_graph(n: int, scale: str, out_dtype: str) -> int:
    out, inp = g.node("DEFINE_GLOBAL", f"{out_dtype}*", "0"), g.node("DEFINE_GLOBAL", "float*", "1")
    r = g.node("RANGE", "int", f"({n}, 0)", g.node("CONST", "int", str(n)))
    x = g.node("LOAD", "float", "None", g.node("INDEX", "float*", "None", inp, r))
    y = g.node("ADD", "float", "None", g.node("MUL", "float", "None", x, g.node("CONST", "float", scale)), g.node("CONST", "float", "0.0"))
    if out_dtype != "float": y = g.node("CAST", out_dtype, "None", y)
    st = g.node("STORE", "void", "None", g.node("INDEX", f"{out_dtype}*", "None", out, r), y)
    return g.node("SINK", "void", "None", g.node("END", "void", "None", st, r))
  rules = {"MUL": ("UPat(Ops.MUL, src=(UPat.var('x'), UPat.cvar('c', 1.0)))", "mul_one", "lucidgrad/uop/symbolic.py:41"),
           "ADD": ("UPat(Ops.ADD, src=(UPat.var('x'), UPat.cvar('c', 0.0)))", "add_zero", "lucidgrad/uop/symbolic.py:42")}
  prog = group(None, "program", "program test_viz_browser.py", {})
  real = group(prog, "realize", "realize 1: 3 targets", {"targets": ["(16,) float32", "(32,) half", "(8,) float32"]})
  sched = group(real, "schedule", "schedule", {})
  first = kernel_graph(16, "1.0", "float")
  passes.append({"group": group(sched, "pass", "tensor simplify", {}), "name": "tensor simplify", "top_down": False,
                 "before": first, "after": first, "steps": [], "steps_dropped": 0})
  for n, scale, dtype, reason in ((16, "1.0", "float", "user target"), (32, "2.0", "half", "contiguous()"), (8, "1.0", "float", "a reduce read through an expand")):
    name = f"E_{n}_{dtype}"
    kid = group(real, "kernel", name, {"reason": reason, "device": "CPU", "kind": "kernel",
                                       "source": f"void {name}({dtype}* restrict data0, const float* restrict data1) {{\n  for (int i = 0; i < {n}; i++)"
                                                 f" data0[i] = ({dtype})(data1[i] * {scale}f);\n}}\n",
                                       "opts": [f"UPCAST axis=0 amount={4 if n % 4 == 0 else 2}"] + (["LOCAL axis=0 amount=2"] if n == 32 else []),
                                       "global": [n // 4, 1, 1], "local": None, "flops": n * 2, "bytes": n * 8})
    cur = before = kernel_graph(n, scale, dtype)
    steps = []
    for op in ("MUL", "ADD") if scale == "1.0" else ("ADD",):   # x*1 -> x, then x+0 -> x: each matches the graph as it is then
      node = next(int(u) for u, v in sorted(g.nodes.items(), key=lambda kv: int(kv[0])) if v["op"] == op and int(u) in reach(g.nodes, cur))
      result = g.nodes[str(node)]["src"][0]
      cur = g.substitute(cur, node, result)
      rule, fn, loc = rules[op]
      steps.append({"rule": rule, "loc": loc, "fn": fn, "node": node, "result": result, "graph": cur})
    passes.append({"group": group(kid, "pass", "symbolic", {}), "name": "symbolic", "top_down": False, "before": before, "after": cur, "steps": steps, "steps_dropped": 0})
    lin = g.node("LINEAR", "void", "None", *sorted(reach(g.nodes, cur))[-4:])
    passes.append({"group": group(kid, "pass", "linearize", {}), "name": "linearize", "top_down": False, "before": cur, "after": lin, "steps": [], "steps_dropped": 0})
  group(real, "kernel", "copy CPU -> PYTHON", {"reason": "a copy to another device", "device": "PYTHON", "kind": "copy", "bytes": 64})
  return {"format": "lucidgrad-viz", "version": 1, "truncated": truncated, "nodes": g.nodes, "groups": groups, "passes": passes, "profile": None}

def reach(nodes: dict, sink: int | None) -> set[int]:
  """The uids of the graph under `sink` (everything reachable through src)."""
  out, stack = set(), [] if sink is None else [sink]
  while stack:
    if (u := stack.pop()) not in out:
      out.add(u)
      stack += nodes[str(u)]["src"] if str(u) in nodes else []
  return out

def load_mnist_example():
  """examples/mnist.py as a module (its Net and make_train_step)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("example_mnist_viz", ROOT / "examples" / "mnist.py")
  mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
  return mod

def recorder():
  """The rewrite recorder (lucidgrad.viz: data(), reset(); written on branch h18-vizrec), or None in a tree without it."""
  from lucidgrad import viz
  return viz if callable(getattr(viz, "data", None)) and callable(getattr(viz, "reset", None)) else None

NO_RECORDER = "the rewrite recorder (lucidgrad.viz.data, branch h18-vizrec) is not in this tree yet: the sample recording's tests stand in"

def record_mnist() -> dict[str, dict]:
  """examples/mnist.py's CNN on a batch of 2 random 28x28 images (the MNIST files are not needed: the shapes, kernels and
  work are those of a real step): one plain training step recorded by the profiler and, where the recorder exists, by
  VIZ ("viz", whose "profile" is the step's trace, "step"); then its jitted step run three times (warm-up, capture,
  replay) under the profiler alone ("replay"). Each step reads the loss back through the PYTHON device: a copy."""
  from lucidgrad.helpers import Context
  from lucidgrad.nn.optim import Adam
  from lucidgrad.nn.state import get_parameters
  ex, viz = load_mnist_example(), recorder()
  rng = np.random.default_rng(14)
  lucidgrad.manual_seed(0)
  model = ex.Net()
  opt = Adam(get_parameters(model), lr=1e-3)
  x, y = rng.standard_normal((2, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 2).astype(np.int32)
  out = {}
  if viz: viz.reset()
  with Context(VIZ=1 if viz else 0), lucidgrad.profile(None) as step:
    with lucidgrad.marker("train step"):
      opt.zero_grad()
      loss = model(Tensor(x)).cross_entropy(Tensor(y))
      loss.backward()
      opt.step()
      loss.to("PYTHON").numpy()
    if viz: out["viz"] = viz.data()
  if viz: viz.reset()
  out["step"] = step.trace
  train_step = ex.make_train_step(model, opt)
  with lucidgrad.profile(None) as replay:
    for _ in range(3): train_step(Tensor(x), Tensor(y)).to("PYTHON").numpy()
  out["replay"] = replay.trace
  return out

@pytest.fixture(scope="session")
def mnist_files(tmp_path_factory) -> dict[str, pathlib.Path]:
  """record_mnist's recordings as files, made once for the whole run: the xdist workers share one directory, and the
  first to get the lock records while the other waits (a recorded step builds some 60 kernels: not twice)."""
  base = tmp_path_factory.getbasetemp()
  shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  done = shared / "viz_mnist.done"
  with open(shared / "viz_mnist.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      for key, d in record_mnist().items(): (shared / f"viz_mnist_{key}.json").write_text(json.dumps(d))
      done.write_text("")
  return {f.stem.removeprefix("viz_mnist_"): f for f in shared.glob("viz_mnist_*.json")}

# ---- the browser ----
@pytest.fixture(scope="module")
def browser():
  try: from playwright.sync_api import sync_playwright
  except ImportError: pytest.fail(f"the browser tests need playwright and Debian's chromium; install them with: {INSTALL}", pytrace=False)
  if not os.access(CHROMIUM, os.X_OK): pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM}; install it with: {INSTALL}", pytrace=False)
  with tempfile.TemporaryDirectory(prefix="viz-chromium-") as profile_dir, sync_playwright() as pw:
    ctx = pw.chromium.launch_persistent_context(profile_dir, executable_path=CHROMIUM, headless=True, args=ARGS, viewport={"width": 1400, "height": 860})
    yield ctx
    ctx.close()

class View:
  """The page of one recording, served on a free port and open in a browser tab; page errors fail the test."""
  def __init__(self, browser, data, url: str | None = None):
    self.srv = serve(data, block=False) if url is None else None
    self.page = browser.new_page()
    self.page.set_default_timeout(10000)
    self.errors: list[str] = []
    self.page.on("pageerror", lambda e: self.errors.append(str(e)))
    self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
    self.page.goto(url or self.srv.url)
    self.page.wait_for_selector("body[data-ready='1']", timeout=15000)
  def js(self, code: str, arg=None): return self.page.evaluate(code, arg)
  def text(self, sel: str) -> str: return self.page.inner_text(sel)
  def attr(self, sel: str, name: str) -> str | None: return self.page.get_attribute(sel, name)
  def shot(self, name: str):
    if SHOTS: pathlib.Path(SHOTS).mkdir(parents=True, exist_ok=True); self.page.screenshot(path=str(pathlib.Path(SHOTS) / name))
  def close(self):
    self.page.close()
    if self.srv: self.srv.close()
    assert not self.errors, f"the page reported errors: {self.errors}"

@pytest.fixture
def view(browser):
  opened: list[View] = []
  def open_view(data) -> View:
    opened.append(v := View(browser, data))
    return v
  yield open_view
  for v in opened: v.close()

# ---- the rewrite view ----
def kernel_groups(data): return [g for g in data["groups"] if g["kind"] == "kernel"]

def expected_changed(data, p, pos: int) -> set[int]:
  """The nodes the view must highlight at position `pos` of pass `p` (0: its input; k: after step k): those of the
  step's graph that are not in the graph before it."""
  if pos == 0: return set()
  graphs = [p["before"]] + [s["graph"] for s in p["steps"]]
  prev, cur = graphs[pos - 1], graphs[pos] if pos < len(graphs) else p["after"]
  return reach(data["nodes"], cur) - reach(data["nodes"], prev)

def open_pass(v: View, data, p):
  """Click down the list to pass `p`: its enclosing groups first where they are folded, then the pass."""
  by_id = {g["id"]: g for g in data["groups"]}
  chain, gid = [], by_id[p["group"]]["parent"]
  while gid is not None: chain.append(gid); gid = by_id[gid]["parent"]
  for gid in reversed(chain):
    if v.js(f"document.querySelector('.kids[data-gid=\"{gid}\"]').hidden"): v.page.click(f".item[data-gid='{gid}']")
  v.page.click(f".item[data-gid='{p['group']}']")
  assert v.attr("#detail", "data-gid") == str(p["group"])

def check_position(v: View, data, p, pos: int):
  """What the pass view shows at position `pos`: the label, the rule of the step (pattern, fn, file:line), the matched
  and returned nodes, and exactly the new nodes highlighted."""
  assert v.attr("#step-label", "data-pos") == str(pos)
  if 1 <= pos <= len(p["steps"]):
    s = p["steps"][pos - 1]
    assert v.text("#step-label") == f"step {pos} of {len(p['steps'])}"
    assert v.text("#detail [data-field=loc]") == s["loc"] and re.fullmatch(r"[\w/.]+\.py:\d+", s["loc"])
    assert v.text("#detail [data-field=fn]") == s["fn"] and v.text("#detail [data-field=rule]") == s["rule"]
    assert [int(a) for a in v.js("Array.from(document.querySelectorAll('#rule a[data-uid]')).map(a => a.dataset.uid)")] == [s["node"], s["result"]]
  else: assert not v.page.query_selector("#detail [data-field=loc]")
  want = expected_changed(data, p, pos)
  graph = [p["before"]] + [s["graph"] for s in p["steps"]] + [p["after"]]
  assert v.attr("#graph", "data-changed") == ",".join(map(str, sorted(want)))
  assert int(v.attr("#graph", "data-nodes")) == len(reach(data["nodes"], graph[pos]))
  drawn = {int(u) for u in v.js("Array.from(document.querySelectorAll('#graph .node')).map(n => n.dataset.uid)")}
  hot = {int(u) for u in v.js("Array.from(document.querySelectorAll('#graph .node.changed')).map(n => n.dataset.uid)")}
  assert drawn <= reach(data["nodes"], graph[pos]) and hot == want & drawn
  if len(want) <= 100: assert want <= drawn   # a big graph is drawn around its change: all of a small change is there

def test_rewrite_view_lists_every_kernel_with_its_reason_and_steps_through_passes(view):
  data = sample_recording()
  v = view(data)
  assert v.attr("#tabs button[data-tab=rewrites]", "class") == "active" and v.attr("#banner", "hidden") is not None
  check_kernel_list(v, data)
  kernels = kernel_groups(data)
  assert v.attr("#tree", "data-kernels") == str(len(kernels))
  # a kernel: its reason, opts, launch dims, FLOPs, bytes and source
  k = kernels[1]
  v.page.click(f".item[data-gid='{k['id']}']")
  info = k["info"]
  assert v.text("#detail h2") == k["name"] and v.text("#detail [data-field=reason]") == info["reason"]
  assert v.js("Array.from(document.querySelectorAll('#detail [data-field=opts] li')).map(l => l.textContent)") == info["opts"]
  assert v.text("#detail [data-field=global]") == "[" + ", ".join(map(str, info["global"])) + "]" and v.text("#detail [data-field=local]") == "—"
  assert v.text("#detail [data-field=flops]").startswith(f"{info['flops']:,}") and v.text("#detail [data-field=bytes]").startswith(f"{info['bytes']:,}")
  assert v.page.text_content("#detail [data-field=source]") == info["source"]
  # every pass: opened from the list, stepped through with the keyboard to its end and back with the buttons
  for p in data["passes"]:
    open_pass(v, data, p)
    n = len(p["steps"]) + (1 if p["steps"] and p["steps"][-1]["graph"] != p["after"] or not p["steps"] and p["after"] != p["before"] else 0)
    assert v.attr("#step-label", "data-count") == str(n + 1)
    start = 1 if n else 0
    check_position(v, data, p, start)
    for pos in range(start + 1, n + 1):
      v.page.keyboard.press("ArrowRight")
      check_position(v, data, p, pos)
    v.page.keyboard.press("ArrowRight")          # past the end: stays
    assert v.attr("#step-label", "data-pos") == str(n) and v.page.is_disabled("#next")
    if n:
      v.page.click("#prev")
      check_position(v, data, p, n - 1)
      if n > 1: v.page.click("#first"); check_position(v, data, p, 0)
      v.page.keyboard.press("End")
      assert v.attr("#step-label", "data-pos") == str(n)
  # a step's picture: the first kernel's symbolic pass after its first rule
  p = next(p for p in data["passes"] if len(p["steps"]) == 2)
  open_pass(v, data, p)
  v.page.click(f"#graph .node[data-uid='{p['steps'][0]['result']}']")
  assert v.attr("#node-info dl", "data-uid") == str(p["steps"][0]["result"]) and p["steps"][0]["result"] in {int(u) for u in v.js("Array.from(document.querySelectorAll('#graph .node.picked')).map(n => n.dataset.uid)")}
  v.shot("rewrite-step.png")
  # ↓ and ↑ move between the passes in the list's order
  order = [int(e) for e in v.js("Array.from(document.querySelectorAll('.item.kind-pass')).map(e => e.dataset.gid)")]
  v.page.keyboard.press("ArrowDown")
  assert v.attr("#detail", "data-gid") == str(order[order.index(p["group"]) + 1])
  v.page.keyboard.press("ArrowUp")
  assert v.attr("#detail", "data-gid") == str(p["group"])

def search(v: View, q: str) -> list[int]:
  v.page.fill("#search", q)
  return [int(x) for x in v.js("Array.from(document.querySelectorAll('.item.kind-kernel')).filter(e => e.style.display !== 'none').map(e => e.dataset.gid)")]

def expected_search(data, q: str) -> list[int]:
  """The kernels a search lists: by name, or by an op in the graphs of their passes (input, output, each step's result)."""
  q, nodes = q.lower(), data["nodes"]
  parent = {g["id"]: g["parent"] for g in data["groups"]}
  ops: dict[int, set[str]] = {}
  for p in data["passes"]:
    found = ops.setdefault(parent[p["group"]], set())
    for sink in [p["before"], p["after"]] + [s["result"] for s in p["steps"]]: found |= {nodes[str(u)]["op"].lower() for u in reach(nodes, sink)}
  return [g["id"] for g in kernel_groups(data) if q in g["name"].lower() or any(q in o for o in ops.get(g["id"], ()))]

def test_search_filters_kernels_by_name_and_op(view):
  data = sample_recording()
  v = view(data)
  kernels = [g["id"] for g in kernel_groups(data)]
  for q in ("E_32", "copy", "CAST", "cast", "LINEAR", "no such thing"):
    want = expected_search(data, q)
    assert search(v, q) == want, q
    assert v.attr("#tree", "data-kernels") == str(len(want))
  assert 0 < len(expected_search(data, "CAST")) < len(kernels)   # the op search separates kernels
  assert search(v, "") == kernels

def check_kernel_list(v: View, data):
  """Every kernel group (copies too) is listed, visible, with its realize reason, in the recording's order."""
  listed = v.js("Array.from(document.querySelectorAll('.item.kind-kernel')).map(e => [Number(e.dataset.gid), e.querySelector('.reason')?.textContent, e.offsetParent !== null])")
  kernels = kernel_groups(data)
  assert kernels and all(g["info"].get("reason") for g in kernels), [g for g in kernels if not g["info"].get("reason")][:3]
  assert [tuple(x) for x in listed] == [(g["id"], g["info"]["reason"], True) for g in kernels]

@pytest.mark.slow
def test_rewrite_view_of_an_mnist_training_step(view, mnist_files):
  if "viz" not in mnist_files: pytest.skip(NO_RECORDER)
  data = json.loads(mnist_files["viz"].read_text())
  v = view(data)
  check_kernel_list(v, data)
  # every step of every pass opens on its rule, at a file:line of this tree that exists
  lines: dict[str, int] = {}
  for p in data["passes"]:
    for s in p["steps"]:
      path, line = s["loc"].rsplit(":", 1)
      if path not in lines: lines[path] = len((ROOT / path).read_text().splitlines())
      assert 1 <= int(line) <= lines[path], s["loc"]
  shown = v.js("""() => Array.from(viz.PASS.values()).map(p => [p.group,
    p.steps.map((s, i) => { const box = viz.ruleBox(p, i + 1); return [box.querySelector('[data-field=loc]').textContent, box.querySelector('[data-field=fn]').textContent]; })])""")
  assert shown == [[p["group"], [[s["loc"], s["fn"] or "(anonymous)"] for s in p["steps"]]] for p in data["passes"]]
  # several passes of different kinds, stepped through with the keyboard; the longest one to its end and back
  picked: dict[str, dict] = {}
  for p in data["passes"]:
    if 2 <= len(p["steps"]) <= 8 and p["name"] not in picked and len(picked) < 4: picked[p["name"]] = p
  assert len(picked) == 4
  for p in picked.values():
    open_pass(v, data, p)
    check_position(v, data, p, 1)
    for pos in range(2, len(p["steps"]) + 1):
      v.page.keyboard.press("ArrowRight")
      check_position(v, data, p, pos)
  if SHOTS:   # the picked pass with the smallest graph, at its first step: a readable picture
    small = min(picked.values(), key=lambda p: len(reach(data["nodes"], p["steps"][0]["graph"])))
    open_pass(v, data, small)
    v.shot("mnist-pass.png")
  longest = max(data["passes"], key=lambda p: len(p["steps"]))
  open_pass(v, data, longest)
  v.page.keyboard.press("End")
  n = int(v.attr("#step-label", "data-count")) - 1
  check_position(v, data, longest, n)
  v.page.keyboard.press("ArrowLeft")
  check_position(v, data, longest, n - 1)
  v.page.keyboard.press("Home")
  check_position(v, data, longest, 0)
  v.page.keyboard.press("ArrowRight")
  check_position(v, data, longest, 1)
  # the search, on a kernel name and on ops
  name = next(g["name"] for g in kernel_groups(data) if g["info"].get("kind", "kernel") == "kernel" and g["name"].startswith("r_"))
  for q in (name, "where", "REDUCE"):
    assert search(v, q) == expected_search(data, q), q
  # a reduce kernel found by the search: what the view says of it
  k = next(g for g in kernel_groups(data) if g["id"] == search(v, "REDUCE")[-1])
  v.page.click(f".item[data-gid='{k['id']}']")
  assert v.text("#detail [data-field=reason]") == k["info"]["reason"] and v.page.text_content("#detail [data-field=source]") == k["info"]["source"]
  assert v.js("Array.from(document.querySelectorAll('#detail [data-field=opts] li')).map(l => l.textContent)") == k["info"].get("opts", [])
  v.shot("mnist-kernel.png")
  assert 0 < len(expected_search(data, "REDUCE")) < len(kernel_groups(data))

def test_viz_env_saves_and_serves_the_readme_demo(browser, tmp_path):
  """VIZ=1 python examples/demo.py: the recording is saved at exit and served; the page lists every kernel with its reason."""
  if recorder() is None: pytest.skip(NO_RECORDER)
  env = {**os.environ, "PYTHONPATH": str(ROOT), "VIZ": "1", "VIZ_FILE": str(tmp_path / "viz.json"), "DEBUG": "0"}
  proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "demo.py")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
  try:
    lines = []
    while not (url := re.search(r"viz: serving the recording at (http://127\.0\.0\.1:\d+/)", lines[-1] if lines else "")):
      assert (line := proc.stdout.readline()), "".join(lines)
      lines.append(line)
    data = json.loads((tmp_path / "viz.json").read_text())
    v = View(browser, view_data(data), url=url.group(1))
    check_kernel_list(v, data)
    v.close()
  finally:
    proc.terminate(); proc.wait(timeout=30)

def test_truncated_recording_shows_a_banner(view):
  note = "the recording stopped at 100000 steps (VIZ_MAX_STEPS): 5 passes of realize 7 have no steps"
  v = view(sample_recording(truncated=note))
  assert v.attr("#banner", "hidden") is None and note in v.text("#banner")

# ---- the timeline and the memory view ----
def trace_tracks(evs) -> dict[tuple[int, int], list[dict]]:
  out: dict[tuple[int, int], list[dict]] = {}
  for e in evs:
    if e["ph"] == "X": out.setdefault((e["pid"], e["tid"]), []).append(e)
  return out

def pid_of(evs, name: str) -> int: return next(e["pid"] for e in evs if e["ph"] == "M" and e["name"] == "process_name" and e["args"]["name"] == name)

def fmt_time(us: float) -> str:
  """The page's fmtTime, for the checks."""
  a = abs(us)
  return f"{us / 1e6:.3f} s" if a >= 1e6 else f"{us / 1e3:.3f} ms" if a >= 1e3 else f"{us:.{1 if a >= 100 else 3}f} µs" if a >= 1 else f"{us * 1e3:.0f} ns"

def same_time(shown: str, us: float) -> bool:
  """The page shows `us` as fmt_time does, up to the rounding of a last digit: JavaScript's toFixed rounds a tie
  (174.25) up where Python's format rounds it to even."""
  want = fmt_time(us)
  if shown == want: return True
  (a, unit), (b, unit2) = shown.split(), want.split()
  digits = len(b.partition(".")[2])
  return unit == unit2 and abs(float(a) - float(b)) <= 10 ** -digits * 1.001

def check_timeline(v: View, trace: dict, shot: str | None = None) -> dict:
  """Every thread's slices and every counter are tracks holding exactly the trace's events, all drawn when the whole
  trace is shown; a click on a slice shows its name, duration and args. Returns the tracks as the page lists them."""
  evs = trace["traceEvents"]
  tracks = v.js("Array.from(document.querySelectorAll('#tracks .track[data-kind]')).map(t => ({...t.dataset}))")
  want = trace_tracks(evs)
  slices = [t for t in tracks if t["kind"] == "slices"]
  assert {(int(t["pid"]), int(t["tid"])) for t in slices} == set(want)
  for t in slices:
    ss = want[(int(t["pid"]), int(t["tid"]))]
    cats: dict[str, int] = {}
    for e in ss: cats[e["cat"]] = cats.get(e["cat"], 0) + 1
    assert int(t["slices"]) == len(ss) and json.loads(t["cats"]) == cats
    assert int(t["drawn"]) == len(ss) and json.loads(t["drawnCats"]) == cats   # the whole trace is in view: all are drawn
  for pid in {e["pid"] for e in evs if e["ph"] == "C"}:
    (c,) = [t for t in tracks if t["kind"] == "counter" and int(t["pid"]) == pid]
    pts = [e["args"]["bytes"] for e in evs if e["ph"] == "C" and e["pid"] == pid]
    assert c["name"] == "memory in use (bytes)" and int(c["points"]) == len(pts) and int(c["max"]) == max(pts) and int(c["drawn"]) == len(pts)
  # click the longest kernel slice of the CPU queue: its details, its device time
  cpu = pid_of(evs, "device CPU")
  i = next(i for i, t in enumerate(slices) if int(t["pid"]) == cpu and "kernel" in json.loads(t["cats"]))
  order = v.js("viz.TL.tracks.map((t, i) => [i, t.kind, t.pid, t.tid ?? null])")
  ti = next(j for j, kind, pid, tid in order if kind == "slices" and pid == int(slices[i]["pid"]) and tid == int(slices[i]["tid"]))
  durs = v.js(f"viz.TL.tracks[{ti}].slices.map(s => s.dur)")
  k = durs.index(max(durs))
  s = v.js(f"(({{name, cat, ts, dur, args}}) => ({{name, cat, ts, dur, args}}))(viz.TL.tracks[{ti}].slices[{k}])")
  v.js(f"viz.zoomTo({s['ts']} - {s['dur']}, {s['ts']} + 2 * {s['dur']})")   # zoomed in on it: it is a third of the width
  box = v.js(f"viz.sliceBox({ti}, {k})")
  assert box["w"] > 100
  v.page.mouse.click(box["x"], box["y"])
  assert v.attr("#slice-info", "data-name") == s["name"] and v.attr("#slice-info", "data-cat") == "kernel"
  assert same_time(v.text("#slice-info [data-field=duration]"), s["dur"]) and s["dur"] > 0
  assert float(v.text("#slice-info [data-field=arg-device_us]")) == pytest.approx(s["args"]["device_us"]) == pytest.approx(s["dur"], abs=2e-3)
  v.page.click("#tl-fit")
  if shot: v.shot(shot)
  # zoom in with the keyboard: fewer slices in view; fit shows them all again
  span = lambda: float(v.attr("#tracks", "data-t1")) - float(v.attr("#tracks", "data-t0"))  # noqa: E731
  full = span()
  for _ in range(6): v.page.keyboard.press("w")
  assert span() == pytest.approx(full * 0.7 ** 6, rel=1e-6)
  assert sum(int(t) for t in v.js("Array.from(document.querySelectorAll('.track[data-kind=slices]')).map(t => t.dataset.drawn)")) < sum(len(x) for x in want.values())
  v.page.click("#tl-fit")
  assert span() == pytest.approx(full)
  return {"tracks": tracks, "cpu": cpu}

def check_memory(v: View, trace: dict):
  """Each device's buffers: the table of those alive at the peak (largest first) adds up to the memory counter there."""
  v.page.click("#tabs button[data-tab=memory]")
  evs = trace["traceEvents"]
  for pid in {e["pid"] for e in evs if e["ph"] == "i" and e["cat"] == "memory"}:
    sec = f".memdev[data-pid='{pid}']"
    counter = [(e["ts"], e["args"]["bytes"]) for e in evs if e["ph"] == "C" and e["pid"] == pid]
    at = float(v.attr(sec, "data-at"))
    assert int(v.attr(sec, "data-peak")) == max(b for _, b in counter)
    assert int(v.attr(sec, "data-alive-bytes")) == [b for ts, b in counter if ts <= at][-1] == max(b for _, b in counter)
    rows = v.js(f"Array.from(document.querySelectorAll(\"{sec} tr[data-buffer]\")).map(r => [Number(r.dataset.buffer), Number(r.dataset.bytes)])")
    assert rows and [b for _, b in rows] == sorted((b for _, b in rows), reverse=True) and len({b for b, _ in rows}) == len(rows)
    if len(rows) < 200: assert sum(b for _, b in rows) == int(v.attr(sec, "data-alive-bytes"))
    sizes = {}
    for e in evs:
      if e["ph"] == "i" and e["pid"] == pid and e["name"] == "alloc": sizes[e["args"]["buffer"]] = e["args"]["bytes"]
    assert all(sizes[b] == n for b, n in rows)

@pytest.mark.slow
def test_timeline_and_memory_of_an_mnist_training_step(view, mnist_files):
  trace = json.loads(mnist_files["step"].read_text())
  v = view(trace)
  # a trace alone: the timeline and memory view, no rewrite tab
  assert v.attr("#tabs button[data-tab=rewrites]", "hidden") is not None and v.attr("#tabs button[data-tab=timeline]", "class") == "active"
  got = check_timeline(v, trace, shot="timeline.png")
  cats = {}
  for t in got["tracks"]:
    for c, n in json.loads(t.get("drawnCats", "{}")).items(): cats[c] = cats.get(c, 0) + n
  assert cats.get("kernel", 0) >= 2 * 20 and cats.get("compile") and cats.get("codegen") and cats.get("copy") == 2 and cats.get("marker") == 1
  check_memory(v, trace)
  v.shot("memory.png")

@pytest.mark.slow
def test_timeline_of_a_jitted_replay(view, mnist_files):
  trace = json.loads(mnist_files["replay"].read_text())
  v = view(trace)
  got = check_timeline(v, trace)
  host = next(t for t in got["tracks"] if t["kind"] == "slices" and int(t["pid"]) == 1 and "jit" in json.loads(t["cats"]))
  jits = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "jit"]
  assert [e["name"] for e in jits] == ["jit warm-up train_step", "jit capture train_step", "jit replay train_step"]
  assert json.loads(host["drawnCats"])["jit"] == 3
  # zoomed to the replay: its kernel launches fill the view, and nothing was compiled in it
  r = jits[2]
  v.js(f"viz.TL.t0 = {r['ts']}; viz.TL.t1 = {r['ts'] + r['dur']}")
  v.page.click("#tl-in"); v.page.click("#tl-out")   # redraw at that range
  cats = json.loads(v.attr(f".track[data-kind=slices][data-pid='1'][data-tid='{host['tid']}']", "data-drawn-cats"))
  launches = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] == "kernel" and e["pid"] == 1 and r["ts"] <= e["ts"] <= r["ts"] + r["dur"]]
  assert cats["kernel"] == len(launches) > 20 and "compile" not in cats and "codegen" not in cats
  check_memory(v, trace)

# ---- the server ----
def get(url: str, host: str | None = None) -> tuple[int, bytes]:
  req = urllib.request.Request(url, headers={"Host": host} if host else {})
  try:
    with urllib.request.urlopen(req, timeout=10) as r: return r.status, r.read()
  except urllib.error.HTTPError as e: return e.code, e.read()

def outside_address() -> str | None:
  """An address of this machine that is not loopback, if it has one (a UDP connect sends nothing)."""
  try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
      s.connect(("192.0.2.1", 9))
      addr = s.getsockname()[0]
  except OSError: return None
  return None if addr.startswith("127.") else addr

def test_server_listens_on_loopback_only_and_serves_page_and_data():
  data = sample_recording()
  with serve(data, block=False) as srv:
    assert srv.httpd.server_address[0] == "127.0.0.1" and srv.url == f"http://127.0.0.1:{srv.port}/" and srv.port > 0
    status, body = get(srv.url)
    assert status == 200 and b'<script src="viz.js">' in body
    assert get(srv.url + "viz.js")[0] == get(srv.url + "viz.css")[0] == 200
    assert json.loads(get(srv.url + "data.json")[1]) == view_data(data)
    assert get(srv.url + "../server.py")[0] == 404 and get(srv.url + "nothing")[0] == 404
    # a page that resolves its own host name to 127.0.0.1 (DNS rebinding) is refused
    assert get(srv.url + "data.json", host="attacker.example:80")[0] == 403
    addr = outside_address()
    if addr is not None:   # this machine's network address: nothing listens there
      with pytest.raises(OSError): socket.create_connection((addr, srv.port), timeout=5).close()
  with pytest.raises(OSError): socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()   # closed: the port is free
  for host in ("0.0.0.0", "192.0.2.7", "example.com"):
    with pytest.raises(ValueError, match="not a loopback address"): serve(data, block=False, host=host)
  with pytest.raises(ValueError, match="port"): serve(data, port=70000, block=False)

def test_load_reads_recordings_and_traces_and_names_what_is_wrong(tmp_path):
  rec, trace = sample_recording(), {"traceEvents": [{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 0, "dur": 1}]}
  (tmp_path / "rec.json").write_text(json.dumps(rec)); (tmp_path / "trace.json").write_text(json.dumps(trace))
  assert load(tmp_path / "rec.json") == rec
  got = load(tmp_path / "trace.json")
  assert got["profile"] == trace and got["groups"] == [] and got["format"] == "lucidgrad-viz"
  with pytest.raises(FileNotFoundError, match="no such file: .*missing.json"): load(tmp_path / "missing.json")
  (tmp_path / "cut.json").write_text(json.dumps(rec)[:500])
  with pytest.raises(ValueError, match=r"cut.json is not valid JSON \(.* line 1 column"): load(tmp_path / "cut.json")
  for bad, msg in (([1, 2], "a JSON object, not list"), ({"format": "other"}, "not a lucidgrad viz recording"), ({**rec, "version": 2}, "version 2"),
                   ({**rec, "groups": {}}, "'groups' is dict, not a list"), ({"traceEvents": {}}, "traceEvents is dict"), ({**rec, "profile": [1]}, "'profile' is not a Chrome trace")):
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=re.escape(msg)): load(tmp_path / "bad.json")
  with pytest.raises(ValueError, match="is a directory"): load(tmp_path)

def test_command_line_serves_a_trace_and_explains_a_bad_file(tmp_path, capsys):
  from lucidgrad.viz.__main__ import main
  assert main([str(tmp_path / "none.json")]) == 2 and capsys.readouterr().err == f"error: viz: no such file: {tmp_path / 'none.json'}\n"
  (tmp_path / "t.json").write_text(json.dumps({"traceEvents": []}))
  assert main([str(tmp_path / "t.json"), "--port", "99999"]) == 2 and "port 99999" in capsys.readouterr().err
  (tmp_path / "bad.json").write_text("{")
  assert main([str(tmp_path / "bad.json")]) == 2 and "bad.json is not valid JSON" in capsys.readouterr().err
  proc = subprocess.Popen([sys.executable, "-m", "lucidgrad.viz", str(tmp_path / "t.json"), "--port", "0"], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
  try:
    line = proc.stdout.readline()
    url = re.search(r"http://127\.0\.0\.1:\d+/", line)
    assert url and "serving the trace" in line, line
    assert json.loads(get(url.group(0) + "data.json")[1])["profile"] == {"traceEvents": []}
  finally:
    proc.terminate(); proc.wait(timeout=30)
