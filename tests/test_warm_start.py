"""Warm starts: a new process runs no codegen and no compiler for kernels a process before it built (the disk cache of
whole programs in engine/realize.py::build_program), gets the same programs, and never trusts a cache file it cannot
read whole; every part of the key changes it."""
import json, os, pathlib, re, subprocess, sys
import numpy as np, pytest
from lucidgrad import Tensor, Device, Context, GlobalCounters, dtypes
from lucidgrad.helpers import VERSION
from lucidgrad.schedule import create_schedule
from lucidgrad.codegen import ProgramSpec, get_program
from lucidgrad.codegen.opt import Opt, OptOps
from lucidgrad.engine import realize
from lucidgrad.engine.realize import build_program, program_key, spec_to_data, spec_from_data, get_runner

ROOT = pathlib.Path(__file__).parent.parent
rng = np.random.default_rng(0)

def run(code: str, cachedir, **env) -> dict:
  """`code` in a new process (cwd: the repository) with its own cache folder; the JSON it prints last, plus stderr."""
  r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900,
                     env={**os.environ, "PYTHONPATH": str(ROOT), "CACHEDIR": str(cachedir), **env})
  assert r.returncode == 0, r.stderr
  return {**json.loads(r.stdout.strip().splitlines()[-1]), "stderr": r.stderr}

COUNTERS = "from lucidgrad import GlobalCounters as G; import json; " \
           "print(json.dumps(dict(out=out, passes=G.codegen_passes, compiles=G.compiles, hits=G.program_cache_hits, schedules=G.schedules_built)))"

LINEAR = """
import numpy as np
from lucidgrad import Tensor
from lucidgrad.nn import Linear
Tensor.manual_seed(3)
lin = Linear(128, 128)
x = np.random.default_rng(1).standard_normal((4, 128)).astype(np.float32)
w, b, y = lin.weight.numpy(), lin.bias.numpy(), lin(Tensor(x)).numpy()
out = dict(err=float(np.abs(y - (x @ w.T + b)).max()), w=w.ravel()[:8].tolist(), y=y.ravel()[:8].tolist())
""" + COUNTERS

def test_a_second_process_builds_linear_with_no_codegen_and_no_compiles(tmp_path):
  cold, warm = run(LINEAR, tmp_path), run(LINEAR, tmp_path)
  assert cold["passes"] > 0 and cold["compiles"] > 0 and cold["hits"] == 0
  assert warm["passes"] == 0 and warm["compiles"] == 0 and warm["hits"] == cold["passes"]
  assert warm["schedules"] == cold["schedules"] > 0   # the schedule still runs; only the kernels' building is skipped
  assert cold["out"]["err"] < 1e-4 and warm["out"] == cold["out"]   # right, and the same programs

MNIST_STEP = """
import importlib.util, numpy as np
from lucidgrad import Tensor
from lucidgrad.nn.optim import Adam
from lucidgrad.nn.state import get_parameters
spec = importlib.util.spec_from_file_location("example_mnist", "examples/mnist.py")
ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
Tensor.manual_seed(0)
rng = np.random.default_rng(0)
model = ex.Net()
step = ex.make_train_step(model, Adam(get_parameters(model), lr=3e-3))
x, y = rng.random((32, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 32).astype(np.int32)
loss = float(step(Tensor(x), Tensor(y)).numpy())
out = dict(loss=loss, fc=model.fc.weight.numpy().ravel()[:16].tolist(), c1=model.c1.weight.numpy().ravel()[:16].tolist())
""" + COUNTERS

@pytest.mark.slow
def test_a_second_process_runs_the_mnist_training_step_with_no_codegen(tmp_path):
  cold, warm = run(MNIST_STEP, tmp_path), run(MNIST_STEP, tmp_path)
  assert cold["passes"] > 20 and cold["compiles"] > 0
  assert warm["passes"] == 0 and warm["compiles"] == 0 and warm["hits"] == cold["passes"]
  assert 1.5 < cold["out"]["loss"] < 3.5   # cross entropy of 10 classes at initialisation: about ln(10)
  assert warm["out"] == cold["out"]        # the same loss and the same updated parameters, bit for bit

TINY = "from lucidgrad import Tensor; import numpy as np; out = float(((Tensor(np.arange(64, dtype=np.float32)) * 2 + 1).exp2().sum()).numpy())\n" + COUNTERS

def test_concurrent_writers_leave_whole_files(tmp_path):
  procs = [subprocess.Popen([sys.executable, "-c", TINY], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "CACHEDIR": str(tmp_path)}) for _ in range(3)]
  outs = [p.communicate(timeout=600) for p in procs]
  assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
  assert not list((tmp_path / "programs").glob("*.tmp"))
  after = run(TINY, tmp_path)
  assert after["passes"] == 0 and after["compiles"] == 0
  assert after["out"] == pytest.approx(float(np.exp2(np.arange(64) * 2 + 1).sum()), rel=1e-6)

def test_the_slowest_build_is_recorded_and_printed_at_exit_under_debug(tmp_path):
  r = run(TINY, tmp_path, DEBUG="1")
  assert "slowest kernel build: " in r["stderr"] and " s (codegen and C compiler" in r["stderr"], r["stderr"]
  assert "slowest kernel build" not in run(TINY, tmp_path, DEBUG="1")["stderr"]   # nothing was built

# ---- in one process: build_program with its own cache folder ----
@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  monkeypatch.delenv("REPLAY_RECORD", raising=False)
  return tmp_path / "programs"

def kernel_ast(t: Tensor):
  return [it for it in create_schedule([t.uop])[0] if it.kind == "kernel"][-1].ast

def asts():
  a, b = Tensor(rng.standard_normal((16, 24)).astype(np.float32)).realize(), Tensor(rng.standard_normal((24, 8)).astype(np.float32)).realize()
  return [kernel_ast(a @ b), kernel_ast((a * 2).exp().sum(0)), kernel_ast(a.cast(dtypes.int32) + 3)]

def test_a_spec_survives_the_round_trip_through_json_field_by_field():
  for ast in asts():
    spec = get_program(ast, Device["CPU"].renderer)
    back = spec_from_data(ProgramSpec, json.loads(json.dumps(spec_to_data(spec))))
    assert back.uops == [] and "uops" not in spec_to_data(spec)
    for f in ProgramSpec.__dataclass_fields__:
      if f != "uops": assert getattr(back, f) == getattr(spec, f), f
  with_opts = get_program(asts()[0], Device["CPU"].renderer, [Opt(OptOps.UPCAST, 0, 4)])
  assert spec_to_data(with_opts)["opts"] == [["UPCAST", 0, 4]]

def test_build_program_keeps_programs_as_json_and_reads_them_back(cache):
  ast = asts()[1]
  passes, hits = GlobalCounters.codegen_passes, GlobalCounters.program_cache_hits
  first = build_program(ast, "CPU")
  (path,) = cache.iterdir()
  data = json.loads(path.read_text())
  assert path.name == f"{program_key(ast, 'CPU')}.json" and data["key"] == path.stem and data["spec"]["src"] == first.src
  again = build_program(ast, "CPU")
  assert (GlobalCounters.codegen_passes - passes, GlobalCounters.program_cache_hits - hits) == (1, 1)
  assert (again.src, again.name, again.opts, again.global_size, again.slots) == (first.src, first.name, first.opts, first.global_size, first.slots)

@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong types", "bad opt", "other key", "a list"])
def test_a_damaged_cache_file_is_a_miss_never_a_crash(cache, damage):
  ast = asts()[0]
  good = build_program(ast, "CPU")
  (path,) = cache.iterdir()
  text = path.read_text()
  data = json.loads(text)
  if damage == "garbage": path.write_bytes(b"\x80\x04\x95 not json at all \xff")
  elif damage == "truncated": path.write_text(text[:len(text) // 2])
  elif damage == "empty": path.write_text("")
  elif damage == "wrong types": data["spec"]["global_size"] = "1,1"; path.write_text(json.dumps(data))
  elif damage == "bad opt": data["spec"]["opts"] = [["NOT_AN_OPT", 0, 4]]; path.write_text(json.dumps(data))
  elif damage == "other key": data["key"] = "0" * 24; path.write_text(json.dumps(data))
  elif damage == "a list": path.write_text("[1, 2, 3]")
  passes = GlobalCounters.codegen_passes
  rebuilt = build_program(ast, "CPU")
  assert GlobalCounters.codegen_passes == passes + 1 and rebuilt.src == good.src
  assert json.loads(path.read_text()) == json.loads(text)   # and rewritten whole

def test_every_part_of_the_key_changes_it(monkeypatch):
  ast, other = asts()[:2]
  base = program_key(ast, "CPU")
  keys = {"base": base, "ast": program_key(other, "CPU"), "opts": program_key(ast, "CPU", [Opt(OptOps.UPCAST, 0, 4)]),
          "no opts": program_key(ast, "CPU", []), "device": program_key(ast, "NULL")}
  with Context(NOOPT=1): keys["flags"] = program_key(ast, "CPU")
  with Context(THREADS=1): keys["threads"] = program_key(ast, "CPU")  # the THREAD opt's amount
  with Context(DEBUG=2, PROFILE=1): assert program_key(ast, "CPU") == base   # run-time flags are not codegen's
  with monkeypatch.context() as m:
    m.setattr(Device["CPU"].renderer, "vector_bytes", 8)
    keys["renderer capability"] = program_key(ast, "CPU")
  with monkeypatch.context() as m:
    m.setattr(Device["CPU"].compiler, "key", Device["CPU"].compiler.key + " -O3")
    keys["compiler"] = program_key(ast, "CPU")
  with monkeypatch.context() as m:
    m.setattr(realize, "codegen_version", lambda: "edited")
    keys["codegen source"] = program_key(ast, "CPU")
  assert program_key(ast, "CPU") == base
  assert len(set(keys.values())) == len(keys), keys

def test_the_codegen_version_hashes_the_code_that_builds_programs():
  files = {f.relative_to(ROOT / "lucidgrad").as_posix() for name in ("uop", "codegen", "renderer", "schedule") for f in (ROOT / "lucidgrad" / name).rglob("*.py")}
  assert files and realize.codegen_version() == realize.codegen_version.__wrapped__()
  assert {"uop/symbolic.py", "codegen/__init__.py", "renderer/c.py", "schedule/__init__.py"} <= files

def test_the_version_in_every_key_is_the_package_version():
  assert re.search(r'^version = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1) == VERSION

def test_the_runner_cache_keys_on_the_opts_asked_for(cache):
  ast = asts()[0]
  default, upcast = get_runner("CPU", ast), get_runner("CPU", ast, [Opt(OptOps.UPCAST, 0, 4)])
  none = get_runner("CPU", ast, [])
  assert upcast.spec.opts == (Opt(OptOps.UPCAST, 0, 4),) and none.spec.opts == () and default.spec.opts != ()
  assert len({id(default), id(upcast), id(none)}) == 3 and get_runner("CPU", ast, [Opt(OptOps.UPCAST, 0, 4)]) is upcast

def test_replay_record_sees_every_kernel_even_with_a_warm_cache(cache, tmp_path, monkeypatch):
  ast = asts()[2]
  build_program(ast, "CPU")
  passes = GlobalCounters.codegen_passes
  monkeypatch.setenv("REPLAY_RECORD", str(tmp_path / "replay"))
  spec = build_program(ast, "CPU")
  assert GlobalCounters.codegen_passes == passes + 1
  (recorded,) = (tmp_path / "replay").glob("*.txt")
  assert spec.src in recorded.read_text()

def test_devices_without_a_disk_cache_keep_no_programs(cache):
  a = Tensor(rng.standard_normal(16).astype(np.float32), device="PYTHON")
  np.testing.assert_allclose((a * 3 + 1).numpy(), a.numpy() * 3 + 1, rtol=1e-6)   # the PYTHON program is a pickle
  ast = kernel_ast(Tensor.ones(8, device="NULL").contiguous() * 2)
  build_program(ast, "NULL")
  assert not cache.exists() or not list(cache.iterdir())

def test_disable_compiler_cache_skips_the_program_cache(cache):
  ast = asts()[1]
  build_program(ast, "CPU")
  passes = GlobalCounters.codegen_passes
  with Context(DISABLE_COMPILER_CACHE=1): build_program(ast, "CPU")
  assert GlobalCounters.codegen_passes == passes + 1

def test_schedules_built_counts_realizes_and_not_jit_replays():
  from lucidgrad import jit
  a = Tensor(rng.standard_normal(8).astype(np.float32)).realize()
  before = GlobalCounters.schedules_built
  (a + 1).realize(); (a * 2).realize()
  assert GlobalCounters.schedules_built == before + 2
  f = jit(lambda x: (x * 2).realize())
  for _ in range(2): f(Tensor(rng.standard_normal(8).astype(np.float32)))
  x = Tensor(rng.standard_normal(8).astype(np.float32)).realize()
  before = GlobalCounters.schedules_built
  np.testing.assert_allclose(f(x).numpy(), x.numpy() * 2)
  assert GlobalCounters.schedules_built == before
