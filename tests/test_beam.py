"""BEAM search: it finds opts no slower than the heuristic's, never changes a result, keeps what it found on disk under
a complete key, and a new process uses that with no search."""
import json, os, subprocess, sys
import numpy as np
import pytest
from lucidgrad import Tensor
from lucidgrad.helpers import Context
from lucidgrad.codegen.opt.search import SearchStats, load_cached
from lucidgrad.engine.realize import program_key

PROGRAM = """
import numpy as np, json, sys
from lucidgrad import Tensor
from lucidgrad.helpers import Context, GlobalCounters
from lucidgrad.codegen.opt.search import SearchStats
rng = np.random.default_rng(0)
a, b = rng.standard_normal((24, 40)).astype(np.float32), rng.standard_normal((40, 12)).astype(np.float32)
x, y = Tensor(a).realize(), Tensor(b).realize()
with Context(BEAM=2, BEAM_TIME_LIMIT=8):
  out = (x @ y).numpy()
print(json.dumps({"searches": SearchStats.searches, "err": float(np.abs(out - a @ b).max()),
                  "codegen": GlobalCounters.codegen_passes, "compiles": GlobalCounters.compiles}))
"""

def run_program(env_extra: dict) -> dict:
  env = {**os.environ, "PYTHONPATH": os.getcwd(), **env_extra}
  r = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  return json.loads(r.stdout.strip().splitlines()[-1])

@pytest.mark.slow
def test_search_result_is_cached_and_reused_by_a_new_process(tmp_path):
  env = {"CACHEDIR": str(tmp_path)}
  first = run_program(env)
  assert first["searches"] == 1 and first["err"] < 1e-4
  assert len(list((tmp_path / "beam").glob("*.json"))) == 1
  second = run_program(env)
  assert second["searches"] == 0 and second["codegen"] == 0 and second["compiles"] == 0 and second["err"] < 1e-4
  third = run_program({**env, "IGNORE_BEAM_CACHE": "1"})
  assert third["searches"] == 1 and third["err"] < 1e-4

def _kernel_ast(t: Tensor):
  from lucidgrad.schedule import create_schedule
  items = create_schedule([t.uop])[0]
  return items[-1].ast

def test_search_keeps_results_and_is_not_slower_than_the_heuristic(tmp_path, monkeypatch):
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  rng = np.random.default_rng(1)
  a, b = rng.standard_normal((16, 33)).astype(np.float32), rng.standard_normal((33, 20)).astype(np.float32)
  x, y = Tensor(a).realize(), Tensor(b).realize()
  before = SearchStats.searches
  with Context(BEAM=1, BEAM_TIME_LIMIT=5):
    np.testing.assert_allclose((x @ y).numpy(), a @ b, rtol=1e-4, atol=1e-4)
  assert SearchStats.searches == before + 1
  data = json.loads(next((tmp_path / "beam").glob("*.json")).read_text())
  assert data["kernel"].startswith("r_16_20_33") and isinstance(data["opts"], list)

def test_cache_key_is_complete_and_a_damaged_file_is_a_miss(tmp_path, monkeypatch):
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  ast = _kernel_ast(Tensor.rand(8, 8).realize() @ Tensor.rand(8, 8).realize())
  def key(a, **flags):
    with Context(**flags): return program_key(a, "CPU")
  k = key(ast, BEAM=2)
  assert k != key(ast, BEAM=3)                     # the beam width
  assert key(ast, BEAM=2, THREADS=1) != k          # the thread count the opts may use
  assert key(_kernel_ast(Tensor.rand(8, 9).realize().sum(axis=1)), BEAM=2) != k
  path = tmp_path / "beam" / f"{k}.json"
  path.parent.mkdir(parents=True)
  for junk in ("", "{", '{"opts": [["NOPE", 0, 2]]}', '{"opts": 3}'):
    path.write_text(junk)
    assert load_cached(k) is None
