"""Process replay (lucidgrad/tools/replay.py): small programs recorded in fresh processes, the recordings diffed."""
import json, os, pathlib, shutil, subprocess, sys
from types import SimpleNamespace
import pytest
from lucidgrad.tools import replay
from lucidgrad.tools.replay import Program, record, load, diff, label

# five kernels, one per realize: the matmul twice, the second under a flag the program sets itself
PROGRAM = """
import numpy as np
from lucidgrad import Tensor, Context
x = Tensor(np.arange(64, dtype=np.float32).reshape(8, 8))
(x * 2 + 1).realize()
x.sum(1).realize()
(x.T @ x).realize()
Tensor(np.arange(3, dtype=np.float32)).exp().realize()
with Context(NOOPT=1): (x.T @ x).realize()
"""
EXTRA = "\n(Tensor(np.ones((5, 7), np.float32)) * 3).sum(0).realize()\n"

def program(folder: pathlib.Path, name: str, source: str, **env) -> Program:
  path = folder / f"{name}.py"
  path.write_text(source)
  return Program(str(path), (str(path),), tuple(env.items()))

def rec(folder: pathlib.Path, *progs: Program) -> dict:
  return record(folder, list(progs), echo=lambda *a: None)

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
  """Recordings of PROGRAM: plain (twice), with NOOPT=1 for the whole recording, and with one kernel more."""
  d = tmp_path_factory.mktemp("replay")
  out = {"a": d / "a", "again": d / "again", "noopt": d / "noopt", "extra": d / "extra"}
  rec(out["a"], program(d, "p", PROGRAM))
  rec(out["again"], program(d, "p", PROGRAM))
  rec(out["noopt"], program(d, "p_noopt", PROGRAM, NOOPT="1"))
  rec(out["extra"], program(d, "p_extra", PROGRAM + EXTRA), program(d, "fails", PROGRAM + EXTRA + "raise SystemExit(3)\n"),
      Program(str(d / "missing.py"), (str(d / "missing.py"),)))
  return out

def test_two_recordings_of_one_program_are_equal(recorded):
  a, again = load(recorded["a"]), load(recorded["again"])
  d = diff(a, again)
  assert len(a) == 5 and len(d.unchanged) == 5 and not d.any_change
  assert sorted(label(t).split()[0] for t in a.values()) == ["E_3", "E_8_8", "r_8_8", "r_8_8_8", "r_8_8_8"]

def test_a_flag_the_program_sets_around_a_kernel_is_part_of_its_identity(recorded):
  matmuls = [t for t in load(recorded["a"]).values() if t.startswith("// r_8_8_8 ")]
  assert sorted(label(t) for t in matmuls) == ["r_8_8_8 on CPU", "r_8_8_8 on CPU (NOOPT=1)"]
  plain, noopt = sorted(matmuls, key=lambda t: "// flags" in t)
  assert "// opts []" not in plain and "// flags NOOPT=1\n// opts []\n" in noopt
  assert json.loads((recorded["a"] / "meta.json").read_text())["conflicts"] == []

def test_noopt_changes_exactly_the_kernels_that_had_opts(recorded):
  a, noopt = load(recorded["a"]), load(recorded["noopt"])
  d = diff(a, noopt)
  def opts(t): return next(ln for ln in t.splitlines() if ln.startswith("// opts "))
  had_opts = {k for k, t in a.items() if opts(t) != "// opts []" and "// flags" not in t}
  assert had_opts and len(had_opts) < len(a) - 1   # the program has kernels with opts and without
  assert set(d.changed) == had_opts and all(opts(noopt[k]) == "// opts []" for k in d.changed)
  # under NOOPT=1 for the whole recording, Context(NOOPT=1) changes nothing: that matmul is the plain one there
  assert [label(a[k]) for k in d.only_a] == ["r_8_8_8 on CPU (NOOPT=1)"] and d.only_b == []
  lines: list[str] = []
  replay.report(d, {}, {}, show=5, echo=lines.append)
  assert f"{len(d.unchanged)} unchanged, {len(had_opts)} changed, 1 only in A, 0 only in B" in lines[0]
  for k in had_opts: assert f"=== changed: {label(a[k])}  [{k}]" in "\n".join(lines)

def test_kernels_on_one_side_only_are_reported(recorded):
  a, extra = load(recorded["a"]), load(recorded["extra"])
  d = diff(a, extra)
  assert [label(extra[k]) for k in d.only_b] == ["r_7_5 on CPU"] and d.only_a == [] and len(d.unchanged) == 5
  # both programs of that recording build it (they run at once, so either may be named as its builder)
  built = {pathlib.Path(p).name for p, ks in replay.programs_kernels(recorded["extra"]).items() if d.only_b[0] in ks}
  assert built == {"p_extra.py", "fails.py"} and pathlib.Path(replay.built_by(recorded["extra"])[d.only_b[0]]).name in built
  back = diff(extra, a)
  assert back.only_a == d.only_b and back.only_b == []

def test_a_program_that_fails_still_records_and_a_missing_one_is_noted(recorded):
  meta = json.loads((recorded["extra"] / "meta.json").read_text())
  res = {pathlib.Path(k).name: v for k, v in meta["results"].items()}
  assert (res["p_extra.py"]["status"], res["p_extra.py"]["kernels"]) == ("ok", 6)
  assert (res["fails.py"]["status"], res["fails.py"]["kernels"]) == ("exit 3", 6)
  assert res["missing.py"] == {"status": "missing", "kernels": 0}
  assert meta["kernels"] == 6 and meta["programs"] == "custom" and meta["commit"]

def test_a_tree_without_the_recording_hook_records_the_same_kernels(recorded, tmp_path):
  # a copy of the package whose own hook never fires (as in commits before it), so only the injected one records
  tree = tmp_path / "tree"
  shutil.copytree(replay.ROOT / "lucidgrad", tree / "lucidgrad", ignore=shutil.ignore_patterns("__pycache__"))
  shutil.rmtree(tree / "lucidgrad" / "tools")
  hooks = 0
  for f in (tree / "lucidgrad").rglob("*.py"):
    if '"REPLAY_RECORD"' in (src := f.read_text()): f.write_text(src.replace('"REPLAY_RECORD"', '"NO_SUCH_VARIABLE"')); hooks += 1
  assert hooks >= 1
  old = tmp_path / "old"
  record(old, [program(tmp_path, "p", PROGRAM)], tree=tree, echo=lambda *a: None)
  d = diff(load(recorded["a"]), load(old))
  assert len(d.unchanged) == 5 and not d.any_change

def test_a_kernel_keeps_its_identity_when_an_op_is_added_to_the_enum():
  # the same reduce in a commit whose Ops enum numbers ADD differently (an op added before it): UOp.key, which hashes
  # the arg's repr, differs; the recording's identity does not, and a different reduce op still makes a different one
  import enum
  from lucidgrad.uop.ops import Ops
  renumbered = enum.Enum("Ops", {n: i + 1000 for i, n in enumerate(Ops.__members__)})
  def reduce_ast(ops, op):
    node = lambda o, arg, *src: SimpleNamespace(op=ops[o], dtype="dtypes.float32", arg=arg, src=src)
    buf = node("DEFINE_GLOBAL", (1, 12))
    red = node("REDUCE_AXIS", (ops[op], (1,)), buf)
    sink = node("SINK", None, node("STORE", None, node("DEFINE_GLOBAL", (0, 3)), red))
    sink.toposort = [buf, red, *sink.src[0].src, sink.src[0], sink]
    return sink
  assert repr(Ops.ADD) != repr(renumbered.ADD)
  assert replay.ast_key(reduce_ast(Ops, "ADD")) == replay.ast_key(reduce_ast(renumbered, "ADD")) != replay.ast_key(reduce_ast(Ops, "MAX"))

def test_save_writes_once_and_keeps_a_second_program_under_one_identity_as_a_conflict(tmp_path):
  ast = SimpleNamespace(op=SimpleNamespace(name="SINK"), dtype=None, arg=tmp_path.name, src=())
  ast.toposort = [ast]
  spec = SimpleNamespace(name="E_4", src="void E_4() {}", opts=(), uops=[])
  for _ in range(3): replay.save("CPU", ast, spec, str(tmp_path))
  kernel, = tmp_path.glob("*.txt")
  assert kernel.read_text() == "// E_4 on CPU\n// opts []\nvoid E_4() {}\n"
  replay.save("CPU", ast, SimpleNamespace(**{**vars(spec), "src": "void E_4() { /* other */ }"}), str(tmp_path))
  conflict, = tmp_path.glob("*.conflict-*")
  assert conflict.name == f"{kernel.stem}.conflict-{os.getpid()}" and "other" in conflict.read_text() and "other" not in kernel.read_text()
  # each kernel a process builds is noted once, with the program and the test that built it
  program, test = os.environ.get("REPLAY_PROGRAM", sys.argv[0]), os.environ["PYTEST_CURRENT_TEST"].rsplit(" (", 1)[0]
  assert (tmp_path / f"built-by.{os.getpid()}.tsv").read_text() == f"{kernel.stem}\t{program}\t{test}\n"

def test_command_line_diff_and_its_exit_status(recorded, tmp_path):
  # TMPDIR: the recording `diff` makes of the tree now is kept (it prints where), so it goes where pytest cleans up
  env = {k: v for k, v in os.environ.items() if k != "REPLAY_RECORD"} | {"PYTHONPATH": str(replay.ROOT), "TMPDIR": str(tmp_path)}
  def cli(*args):
    r = subprocess.run([sys.executable, "-m", "lucidgrad.tools.replay", "diff", *map(str, args), "--fail-on-change"], env=env, capture_output=True, text=True)
    return r.returncode, r.stdout
  rc, out = cli(recorded["a"])   # no OTHER: records the same programs again, now
  assert rc == 0 and "5 unchanged, 0 changed, 0 only in A, 0 only in B" in out, out
  rc, out = cli(recorded["a"], recorded["noopt"])
  assert rc == 1 and "=== changed: r_8_8_8 on CPU" in out and "=== only in A (1):\nr_8_8_8 on CPU (NOOPT=1)" in out, out
