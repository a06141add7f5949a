"""Process replay: record the source of every kernel a fixed set of programs builds, and diff two recordings, so a
refactor shows that it changed no kernel and an optimisation shows exactly which kernels it changed.
  python -m lucidgrad.tools.replay record DIR [--programs quick|full]   # the programs' kernels -> DIR/kernels/*.txt
  python -m lucidgrad.tools.replay diff DIR [OTHER]                     # OTHER: another recording, else the tree now
  python -m lucidgrad.tools.replay compare BASE_COMMIT                  # record BASE_COMMIT and the tree now, diff
A kernel's identity is its device kind, its AST (ast_key) and the codegen flags the program changed around it
(a test's `Context(NOOPT=1)`); a flag set for a whole recording (NOOPT=1 in the environment) is part of what is
compared, not of the identity. This file also runs inside every recorded process, loaded by path from a generated
sitecustomize, so one version of the recorder writes both sides of a comparison whatever commit each side runs."""
from __future__ import annotations
import argparse, concurrent.futures, difflib, enum, functools, hashlib, json, os, pathlib, shutil, subprocess, sys, tempfile, time
import importlib.abc, importlib.machinery, importlib.util
from dataclasses import dataclass, field, asdict

# ---- inside a recorded process: write each kernel once, under its identity ----

# flags that only print, show or pick the thread count at run time; the engine's own list wins where the tree has one
_NOT_CODEGEN = frozenset({"DEBUG", "VIZ", "THREADS", "DISABLE_COMPILER_CACHE"})
_startup: dict[str, object] = {}     # each flag's value when this process created it (from the environment)
_written: dict[str, set[str]] = {}   # file name -> the texts this process has seen under it
_recorded: dict[int, object] = {}    # runners already saved (held, so their ids stay theirs)

def _hash(*parts: str) -> str:
  h = hashlib.sha256()
  for p in parts: h.update(p.encode()); h.update(b"\0")
  return h.hexdigest()[:24]

def arg_text(arg) -> str:
  """An arg as text, naming enum members: their repr carries a number, which moves when a member is added."""
  if isinstance(arg, enum.Enum): return f"{type(arg).__name__}.{arg.name}"
  if isinstance(arg, tuple): return "(" + "".join(f"{arg_text(a)}, " for a in arg) + ")"
  if isinstance(arg, (set, frozenset)): return "{" + ", ".join(sorted(map(arg_text, arg))) + "}"
  return repr(arg)

def ast_key(ast) -> str:
  """A hash of the kernel's AST that every commit building the same graph agrees on: like UOp.key, except that enum
  members in args count by name (with UOp.key, adding an Op renumbers Ops.ADD and moves every reduce's key)."""
  keys: dict[int, str] = {}
  for n in ast.toposort: keys[id(n)] = _hash(n.op.name, repr(n.dtype), arg_text(n.arg), *(keys[id(s)] for s in n.src))
  return keys[id(ast)]

def changed_flags() -> dict[str, object]:
  """The codegen flags whose value now differs from this process's start: what a `Context(...)` around a kernel set."""
  from lucidgrad.helpers import ContextVar
  skip = getattr(sys.modules.get("lucidgrad.engine.realize"), "_NOT_CODEGEN_FLAGS", _NOT_CODEGEN)
  if not _startup: _watch_flags(sys.modules["lucidgrad.helpers"])  # REPLAY_RECORD set by hand: a Context open now is missed
  return {k: v.value for k, v in sorted(ContextVar.registry.items()) if k not in skip and k in _startup and v.value != _startup[k]}

def kernel_text(device: str, spec, flags: dict | None = None) -> str:
  """What is compared: the name, the flags a program changed, the opts and the source (for the PYTHON device, whose
  source is a pickle, its linear program as text)."""
  kind = device.split(":")[0]
  body = spec.src if kind != "PYTHON" else "\n".join(f"{i:4d} {u.op.name} {u.dtype} {arg_text(u.arg)}" for i, u in enumerate(spec.uops))
  head = f"// {spec.name} on {kind}\n" + (f"// flags {' '.join(f'{k}={v}' for k, v in flags.items())}\n" if flags else "")
  return f"{head}// opts {list(spec.opts)}\n{body}\n"

def _write(path: pathlib.Path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
  tmp.write_text(text)
  os.replace(tmp, path)  # atomic: parallel test workers may write the same kernel

def save(device: str, ast, spec, folder: str | None = None) -> None:
  """Writes one kernel to $REPLAY_RECORD (or `folder`) as IDENTITY.txt. A second, different program under an identity
  already written goes beside it as IDENTITY.conflict-PID: the identity missed something that changes the program."""
  out = pathlib.Path(folder or os.environ["REPLAY_RECORD"])
  out.mkdir(parents=True, exist_ok=True)
  flags = changed_flags()
  name = _hash(device.split(":")[0], ast_key(ast), *(f"{k}={v}" for k, v in flags.items()))
  text, path = kernel_text(device, spec, flags), out / f"{name}.txt"
  if (known := _written.get(name)) is None:
    known = _written[name] = set()
    if path.exists(): known.add(path.read_text())   # another process of this recording built it first
    # which program and test built it, kept apart from the text so that it never counts as a change
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    with open(out / f"built-by.{os.getpid()}.tsv", "a") as f: f.write(f"{name}\t{os.environ.get('REPLAY_PROGRAM', sys.argv[0])}\t{test}\n")
  if text in known: return
  _write(path if not known else out / f"{name}.conflict-{os.getpid()}", text)
  known.add(text)

def _watch_flags(helpers) -> None:
  """Notes each flag's starting value, including flags other modules define after this runs."""
  cls = helpers.ContextVar
  for k, v in cls.registry.items(): _startup.setdefault(k, v.value)
  init = cls.__init__
  @functools.wraps(init)
  def __init__(self, key, *args, **kwargs):
    init(self, key, *args, **kwargs)
    _startup.setdefault(key, self.value)
  cls.__init__ = __init__

def _wrap_get_runner(realize) -> None:
  """Saves every kernel get_runner and lower_schedule hand out: the recording hook for trees older than the one in
  engine/realize.py (in a tree that has it, every path reaches save, which writes once). A schedule's kernels are
  lowered together without get_runner since the compiles run side by side, so both are wrapped."""
  def keep(device, ast, runner):
    if id(runner) not in _recorded and getattr(runner, "spec", None) is not None:
      _recorded[id(runner)] = runner
      save(device, ast, runner.spec)
  if (get_runner := getattr(realize, "get_runner", None)) is not None:
    @functools.wraps(get_runner)
    def recorded_get_runner(device, ast, *args, **kwargs):
      keep(device, ast, runner := get_runner(device, ast, *args, **kwargs))
      return runner
    realize.get_runner = recorded_get_runner
  if (lower_schedule := getattr(realize, "lower_schedule", None)) is not None:
    @functools.wraps(lower_schedule)
    def recorded_lower_schedule(items, *args, **kwargs):
      lowered = lower_schedule(items, *args, **kwargs)
      for it, ei in zip(items, lowered):
        if it.kind == "kernel": keep(ei.runner.device, it.ast, ei.runner)
      return lowered
    realize.lower_schedule = recorded_lower_schedule

class _AfterImport(importlib.abc.MetaPathFinder):
  """Runs hooks[name](module) right after module `name` has executed, before any importer gets it."""
  def __init__(self, hooks: dict): self.hooks = hooks
  def find_spec(self, name, path, target=None):
    if name not in self.hooks or (spec := importlib.machinery.PathFinder.find_spec(name, path)) is None or spec.loader is None: return None
    exec_module, hook = spec.loader.exec_module, self.hooks[name]
    def exec_then_hook(module): exec_module(module); hook(module)
    spec.loader.exec_module = exec_then_hook
    return spec

def install() -> None:
  """Called at the start of every recorded process (by the generated sitecustomize)."""
  hooks = {"lucidgrad.helpers": _watch_flags, "lucidgrad.engine.realize": _wrap_get_runner}
  for name, hook in hooks.items():
    if name in sys.modules: hook(sys.modules[name])
  sys.meta_path.insert(0, _AfterImport({k: v for k, v in hooks.items() if k not in sys.modules}))

# Every Python process of a recording starts with this (PYTHONPATH puts it first): the recorder's own replay.py serves
# as lucidgrad.tools.replay whatever the tree holds, so a tree's older hook writes in today's format too
SITECUSTOMIZE = """# generated by lucidgrad.tools.replay for one recording
import importlib.util, sys
spec = importlib.util.spec_from_file_location("lucidgrad.tools.replay", {path!r})
replay = importlib.util.module_from_spec(spec)
sys.modules["lucidgrad.tools.replay"] = sys.modules["lucidgrad_replay"] = replay
spec.loader.exec_module(replay)
replay.install()
"""

# ---- the program set ----

@dataclass(frozen=True)
class Program:
  name: str                       # the file it runs, relative to the tree's root
  argv: tuple[str, ...]           # after the Python executable, run in the tree's root
  env: tuple[tuple[str, str], ...] = ()

QUICK_TESTS = ("tests/test_ops.py", "tests/test_nn.py", "tests/test_kernel_counts.py", "tests/test_schedule.py",
               "tests/test_nn_functional.py", "tests/test_gradient.py")
# how each example and bench runs briefly: (the arguments after the file, or a `-c` command that runs it; environment;
# in the quick set). A file not named here is left out of both sets.
SHORT_RUNS: dict[str, tuple[tuple[str, ...], dict[str, str], bool]] = {
  "examples/demo.py": ((), {}, True),
  "examples/char_transformer.py": ((), {"STEPS": "3", "BS": "8", "CTX": "16", "SAMPLE": "3"}, True),
  "examples/mnist.py": (("-c", "import lucidgrad_replay; lucidgrad_replay.short_mnist('examples/mnist.py')"), {"EPOCHS": "1"}, True),
  "bench/bench_core.py": (("--quick",), {}, True),
  "bench/bench_train.py": (("--steps", "2"), {}, False),
  "bench/bench_jit.py": ((), {}, False),
  "bench/bench_realize.py": ((), {}, False),
}

def short_mnist(path: str) -> None:
  """examples/mnist.py's own main() on random images (384 to train, 1000 to test) in place of MNIST: with EPOCHS=1 that
  is 3 training steps at batch 128 and one test batch, the kernels of a real run in seconds and with no data set."""
  import numpy as np
  from lucidgrad import Tensor
  spec = importlib.util.spec_from_file_location("example_mnist", path)
  ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
  rng = np.random.default_rng(0)
  def images(n: int): return Tensor(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)), Tensor(rng.integers(0, 10, n))
  ex.mnist = lambda fashion=False: (*images(384), *images(1000))
  ex.main()

def programs(which: str, tree: pathlib.Path) -> list[Program]:
  """The programs of set `which` ('quick' or 'full') as they are in `tree`. A test file runs in one process, never split
  over pytest-xdist workers: a kernel can depend on what ran before it in its process (a value an earlier test realized
  is read from its buffer, not folded as a constant), so only a fixed order gives the same kernels every time."""
  tests = QUICK_TESTS if which == "quick" else sorted(str(p.relative_to(tree)) for p in tree.glob("tests/test_*.py"))
  out = [Program(t, ("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", t)) for t in tests]
  for f in sorted(str(p.relative_to(tree)) for p in [*tree.glob("examples/*.py"), *tree.glob("bench/*.py")]):
    if f not in SHORT_RUNS: print(f"replay: no short run of {f} is known (add one to SHORT_RUNS): left out", file=sys.stderr)
  for f, (args, env, quick) in SHORT_RUNS.items():
    if quick or which == "full": out.append(Program(f, args if args[:1] == ("-c",) else (f, *args), tuple(sorted(env.items()))))
  return out

# ---- recording ----

# "the current tree": the one these tools belong to, or in a recorded process (where this file comes from the
# recorder's tree) the tree being recorded, so a recorded test of these tools works on its own tree
ROOT = pathlib.Path(os.environ.get("REPLAY_TREE") or pathlib.Path(__file__).resolve().parents[2])

def _git(tree: pathlib.Path, *args: str) -> str:
  r = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
  return r.stdout.strip() if r.returncode == 0 else ""

def _flag_env() -> dict[str, str]:
  """The lucidgrad flags set in this environment: a recording's settings (NOOPT=1 makes a whole recording NOOPT)."""
  import lucidgrad  # noqa: F401  (so every module's flags are registered)
  from lucidgrad.helpers import ContextVar
  return {k: os.environ[k] for k in sorted(ContextVar.registry) if k in os.environ}

def _last_line(text: str) -> str: return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")

def run_program(p: Program, tree: pathlib.Path, env: dict, log: pathlib.Path, timeout: float) -> dict:
  """Runs one program in `tree`; its output goes to `log`. Returns its status ('ok', 'exit N', 'timed out', 'missing')."""
  if not (tree / p.name).exists(): return {"status": "missing"}
  st = time.perf_counter()
  try:
    r = subprocess.run([sys.executable, *p.argv], cwd=tree, env={**env, **dict(p.env), "REPLAY_PROGRAM": p.name}, capture_output=True, text=True, timeout=timeout)
    status, stdout, stderr = ("ok" if r.returncode == 0 else f"exit {r.returncode}"), r.stdout, r.stderr
  except subprocess.TimeoutExpired as e:
    status, stdout, stderr = "timed out", (e.stdout or b"").decode(errors="replace"), (e.stderr or b"").decode(errors="replace")
  log.parent.mkdir(parents=True, exist_ok=True)
  log.write_text(stdout + stderr)
  return {"status": status, "seconds": round(time.perf_counter() - st, 1), "last_line": _last_line(stdout) or _last_line(stderr)}

def record(out, progs: list[Program], tree: pathlib.Path = ROOT, set_name: str = "custom", jobs: int = 2, timeout: float = 1800,
           echo=print) -> dict:
  """Runs `progs` in `tree`, `jobs` at a time, with REPLAY_RECORD=out/kernels and one fresh, empty CACHEDIR (so no
  cached kernel goes unrecorded); writes out/meta.json (commit, date, flags, the programs and how each ended)."""
  out, tree = pathlib.Path(out), pathlib.Path(tree).resolve()
  kernels = out / "kernels"
  if kernels.exists() and any(kernels.iterdir()): raise SystemExit(f"replay: {out} already holds a recording; give an empty folder")
  kernels.mkdir(parents=True, exist_ok=True)
  commit = _git(tree, "rev-parse", "--short", "HEAD") or "unknown"
  meta = {"tree": str(tree), "commit": commit, "dirty": bool(_git(tree, "status", "--porcelain")), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
          "programs": set_name, "program_list": [asdict(p) for p in progs], "flags": _flag_env(), "results": {}}
  echo(f"replay: recording {len(progs)} {set_name} programs of {tree} ({_side(meta)}) into {out}, {jobs} at a time")
  st = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix="replay-") as tmp, concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    hook, cache = pathlib.Path(tmp, "hook"), pathlib.Path(tmp, "cache")
    hook.mkdir(); cache.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE.format(path=str(pathlib.Path(__file__).resolve())))
    # PYTEST_CURRENT_TEST names the test that built a kernel: a recorder run from a test must not pass its own on
    env = {**{k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}, "PYTHONPATH": os.pathsep.join([str(hook), str(tree)]), "REPLAY_RECORD": str(kernels), "REPLAY_TREE": str(tree),
           "CACHEDIR": str(cache), "PROGRESS": "0"}
    running = {pool.submit(run_program, p, tree, env, out / "logs" / (p.name.replace("/", "_") + ".log"), timeout): p for p in progs}
    for i, done in enumerate(concurrent.futures.as_completed(running), 1):
      p, res = running[done], done.result()
      meta["results"][p.name] = res
      res["kernels"] = len(programs_kernels(out).get(p.name, ()))
      echo(f"[{i}/{len(progs)}] {p.name}: {res['status']}" + (f", {res['kernels']} kernels, {res['seconds']:.0f} s  ({res['last_line'][:80]})" if "seconds" in res else ""))
      if res["status"] != "missing" and res["kernels"] == 0: echo("  (it built no kernel; in a tree that builds any, that means no hook reached save)")
  meta["results"] = {p.name: meta["results"][p.name] for p in progs}
  conflicts = sorted(p.name for p in kernels.glob("*.conflict-*"))
  meta.update(kernels=len(list(kernels.glob("*.txt"))), conflicts=conflicts, seconds=round(time.perf_counter() - st, 1))
  (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
  echo(f"replay: recorded {meta['kernels']} kernels from {len(progs)} programs in {meta['seconds']:.0f} s -> {out}")
  if conflicts: echo(f"replay: WARNING {len(conflicts)} kernels were built two different ways under one identity (see {kernels}/*.conflict-*)")
  return meta

# ---- diffing ----

def load(folder) -> dict[str, str]:
  """A recording's kernels: identity -> text."""
  return {p.stem: p.read_text() for p in sorted(pathlib.Path(folder, "kernels").glob("*.txt"))}

def _built_by_rows(folder) -> list[list[str]]:
  return [ln.split("\t") for f in sorted(pathlib.Path(folder, "kernels").glob("built-by.*.tsv")) for ln in f.read_text().splitlines()]

def built_by(folder) -> dict[str, str]:
  """identity -> a test (else a program) that built it, in a recording."""
  out: dict[str, str] = {}
  for name, program, test in _built_by_rows(folder): out.setdefault(name, test or program)
  return out

def programs_kernels(folder) -> dict[str, set[str]]:
  """program -> the identities of the kernels it built, in a recording."""
  out: dict[str, set[str]] = {}
  for name, program, _ in _built_by_rows(folder): out.setdefault(program, set()).add(name)
  return out

def label(text: str) -> str:
  """'r_16_4 on CPU' (and its flags) from a kernel's header."""
  lines = text.splitlines()
  return lines[0].removeprefix("// ") + (f" ({lines[1].removeprefix('// flags ')})" if lines[1].startswith("// flags ") else "")

@dataclass
class Diff:
  a: dict[str, str]
  b: dict[str, str]
  unchanged: list[str] = field(default_factory=list)
  changed: list[str] = field(default_factory=list)
  only_a: list[str] = field(default_factory=list)
  only_b: list[str] = field(default_factory=list)
  @property
  def any_change(self) -> bool: return bool(self.changed or self.only_a or self.only_b)

def diff(a: dict[str, str], b: dict[str, str]) -> Diff:
  """Pairs kernels by identity; each list is sorted by kernel label, then identity."""
  d, by_label = Diff(a, b), lambda k: (label(a.get(k) or b[k]), k)
  for k in sorted(a.keys() | b.keys(), key=by_label):
    (d.only_b if k not in a else d.only_a if k not in b else d.unchanged if a[k] == b[k] else d.changed).append(k)
  return d

def _side(meta: dict) -> str: return f"{meta.get('commit', '?')}{' with changes' if meta.get('dirty') else ''}"

def report(d: Diff, meta_a: dict, meta_b: dict, show: int = 40, echo=print, by: tuple[dict, dict] = ({}, {})) -> str:
  """Prints the counts, then each changed kernel with the first `show` lines of its unified diff, then the kernels on
  one side only (at most `show` a side), each with the test or program that built it (`by`, from built_by()).
  Returns the summary line (the one a refactor's commit message quotes)."""
  summary = (f"process replay ({meta_a.get('programs', '?')} programs, A={_side(meta_a)}, B={_side(meta_b)}): {len(d.a)} vs {len(d.b)} kernels, "
             f"{len(d.unchanged)} unchanged, {len(d.changed)} changed, {len(d.only_a)} only in A, {len(d.only_b)} only in B")
  echo(summary)
  if meta_a.get("flags") != meta_b.get("flags"): echo(f"  flags: A {meta_a.get('flags')}  B {meta_b.get('flags')}")
  for name in sorted(set(meta_a.get("results", {})) | set(meta_b.get("results", {}))):
    ra, rb = (m.get("results", {}).get(name, {}).get("status", "not run") for m in (meta_a, meta_b))
    if ra != "ok" or rb != "ok": echo(f"  program {name}: A {ra}, B {rb}")
  for side, meta in (("A", meta_a), ("B", meta_b)):
    if meta.get("conflicts"): echo(f"  WARNING {side} has {len(meta['conflicts'])} kernels built two ways under one identity: not deterministic")
  for k in d.changed:
    echo(f"\n=== changed: {label(d.a[k])}  [{k}]  built by {by[1].get(k) or by[0].get(k, '?')}")
    lines = list(difflib.unified_diff(d.a[k].splitlines(), d.b[k].splitlines(), "A", "B", lineterm="", n=2))
    for ln in lines[2:2 + show]: echo(ln)
    if len(lines) - 2 > show: echo(f"... {len(lines) - 2 - show} more lines (--show N)")
  for side, keys, texts, built in (("A", d.only_a, d.a, by[0]), ("B", d.only_b, d.b, by[1])):
    if keys: echo(f"\n=== only in {side} ({len(keys)}):")
    for k in keys[:show]: echo(f"{label(texts[k])}  [{k}]  built by {built.get(k, '?')}")
    if len(keys) > show: echo(f"... {len(keys) - show} more (--show N)")
  if d.any_change: echo("\n" + summary)
  return summary

def _meta(folder) -> dict:
  p = pathlib.Path(folder, "meta.json")
  return json.loads(p.read_text()) if p.exists() else {}

def _programs_like(meta: dict, tree: pathlib.Path) -> list[Program]:
  """The program set a recording was made with, as it is in `tree` now."""
  if meta.get("programs") in ("quick", "full"): return programs(meta["programs"], tree)
  return [Program(p["name"], tuple(p["argv"]), tuple(map(tuple, p["env"]))) for p in meta.get("program_list", [])]

# ---- command line ----

def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog="python -m lucidgrad.tools.replay", description=__doc__.split("\n")[0])
  sub = ap.add_subparsers(dest="cmd", required=True)
  rec = sub.add_parser("record", help="run the program set, recording every kernel into DIR")
  rec.add_argument("dir")
  dif = sub.add_parser("diff", help="compare recording DIR with OTHER (default: the current tree, recorded now)")
  dif.add_argument("dir"); dif.add_argument("other", nargs="?")
  cmp = sub.add_parser("compare", help="record BASE_COMMIT (in a temporary git worktree) and the current tree, and diff")
  cmp.add_argument("base")
  cmp.add_argument("--out", help="keep both recordings here (default: a new temporary folder)")
  for p in (rec, cmp): p.add_argument("--programs", choices=["quick", "full"], default="quick")
  for p in (rec, dif, cmp):
    p.add_argument("--jobs", type=int, default=2, help="programs run at once (each test file is one process)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one program may run")
  for p in (dif, cmp):
    p.add_argument("--show", type=int, default=40, help="lines of diff per changed kernel")
    p.add_argument("--fail-on-change", action="store_true", help="exit 1 when any kernel changed or is on one side only")
  args = ap.parse_args(argv)

  if args.cmd == "record":
    record(args.dir, programs(args.programs, ROOT), ROOT, args.programs, args.jobs, args.timeout)
    return 0
  if args.cmd == "diff":
    meta_a, other = _meta(args.dir), args.other
    if other is None:
      other = tempfile.mkdtemp(prefix="replay-now-")
      record(other, _programs_like(meta_a, ROOT), ROOT, meta_a.get("programs", "custom"), args.jobs, args.timeout)
    d = diff(load(args.dir), load(other))
    report(d, meta_a, _meta(other), args.show, by=(built_by(args.dir), built_by(other)))
    return int(args.fail_on_change and d.any_change)
  # compare
  base = _git(ROOT, "rev-parse", "--short", args.base)
  if not base: raise SystemExit(f"replay: {args.base!r} is no commit of {ROOT}")
  out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="replay-compare-"))
  worktree = out / "base-tree"
  subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(worktree), base], check=True)
  try: record(out / "A", programs(args.programs, worktree), worktree, args.programs, args.jobs, args.timeout)
  finally:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    shutil.rmtree(worktree, ignore_errors=True)
  record(out / "B", programs(args.programs, ROOT), ROOT, args.programs, args.jobs, args.timeout)
  d = diff(load(out / "A"), load(out / "B"))
  report(d, _meta(out / "A"), _meta(out / "B"), args.show, by=(built_by(out / "A"), built_by(out / "B")))
  print(f"(recordings kept in {out}/A and {out}/B)")
  return int(args.fail_on_change and d.any_change)

if __name__ == "__main__": sys.exit(main())
