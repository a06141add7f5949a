"""BEAM search: it finds opts no slower than the heuristic's, never changes a result, keeps what it found on disk under
a complete key, and a new process uses that with no search."""
import json, os, subprocess, sys, types
import numpy as np
import pytest
from lucidgrad import Tensor
from lucidgrad.helpers import Context
from lucidgrad.codegen.opt.search import SearchStats, load_cached
from lucidgrad.engine.realize import program_key

# a matmul and a 3x3 convolution with padding (the two kinds of reduce bench_beam.py searches), at sizes CI can afford
PROGRAM = """
import numpy as np, json, os
from lucidgrad import Tensor
from lucidgrad.helpers import Context, GlobalCounters
from lucidgrad.codegen.opt.search import SearchStats
rng = np.random.default_rng(0)
a, b = rng.standard_normal((24, 40)).astype(np.float32), rng.standard_normal((40, 12)).astype(np.float32)
x, w = rng.standard_normal((2, 8, 6, 6)).astype(np.float32), rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
ta, tb, tx, tw = [Tensor(v).realize() for v in (a, b, x, w)]
before = GlobalCounters.kernel_count
with Context(BEAM=2, BEAM_TIME_LIMIT=float(os.environ.get("LIMIT", "4"))):
  mm, conv = (ta @ tb).numpy(), tx.conv2d(tw, padding=1).numpy()
xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
ref = np.einsum("ncijpq,kcpq->nkij", np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3)), w)
print(json.dumps({"searches": SearchStats.searches, "kernels": GlobalCounters.kernel_count - before,
                  "err": max(float(np.abs(mm - a @ b).max()), float(np.abs(conv - ref).max())),
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
  # the matmul, and the conv with the channels-last copies of its input and weight (docs/design/0020)
  assert first["kernels"] == 4 and first["searches"] == 4 and first["err"] < 1e-4
  assert len(list((tmp_path / "beam").glob("*.json"))) == 4
  # a new process -- with another time limit, which bounds a search but is no part of what it found -- searches,
  # builds and compiles nothing
  for limit in ("4", "60"):
    again = run_program({**env, "LIMIT": limit})
    assert again["searches"] == 0 and again["codegen"] == 0 and again["compiles"] == 0 and again["err"] < 1e-4
  third = run_program({**env, "IGNORE_BEAM_CACHE": "1"})
  assert third["searches"] == 4 and third["err"] < 1e-4

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

def test_time_limit_is_checked_for_every_candidate(tmp_path, monkeypatch):
  """A step of a search is many candidates (one once took 432 s): past the limit no further candidate is timed, and
  the best found so far is kept. A fake clock moves one second per candidate timed, so the limit of 3.5 s passes
  after the default and at most three more (the heuristic's prefixes, then candidates of the first step)."""
  from lucidgrad.codegen.opt import search
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  clock, real_time = [0.0], search._time
  def timed(*args, **kw):
    clock[0] += 1.0
    return real_time(*args, **kw)
  monkeypatch.setattr(search, "_time", timed)
  monkeypatch.setattr(search, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
  ast = _kernel_ast(Tensor.rand(32, 32).realize() @ Tensor.rand(32, 32).realize())
  before = SearchStats.candidates
  with Context(BEAM=2, BEAM_TIME_LIMIT=3.5): opts = search.beam_search(ast, "CPU", 2, key="limit-test")
  assert 2 <= SearchStats.candidates - before <= 4
  assert load_cached("limit-test") == opts

def test_a_slow_run_ends_a_candidates_timing():
  """A candidate whose run is slower than the give-up time is recorded at that run's time, with no more runs: the
  neighbours of a slow kernel take seconds a run, and a search spent most of its limit on them."""
  from lucidgrad.codegen.opt import search
  ast = _kernel_ast(Tensor.rand(8, 8).realize() @ Tensor.rand(8, 8).realize())
  bufs = search._fresh_buffers(ast, "CPU")
  spec = types.SimpleNamespace(slots=tuple(range(len(bufs))), global_size=[1], local_size=[1])
  def fake_program(times):
    calls = iter(times)
    return lambda *raws, **kw: next(calls)
  out_init = bufs[0].numpy()
  assert search._time(fake_program([5.0, 1.0, 1.0]), spec, bufs, out_init, give_up=2.0) == 5.0
  assert search._time(fake_program([1.5, 1.0, 1.2]), spec, bufs, out_init, give_up=2.0) == 1.0
  assert search._time(fake_program([3.0, 0.5, 9.0]), spec, bufs, out_init) == 0.5

def test_executed_ops_counts_each_op_once_per_loop_trip():
  """The search's cost model: a loop of n trips with k ops in it is n*k ops (plus n for the loop itself), a vector
  built from distinct lanes one op per lane, and the count is shared by the CPU threads."""
  from lucidgrad.codegen.opt.search import executed_ops
  from lucidgrad.uop.ops import UOp, Ops, AxisType
  from lucidgrad.dtype import dtypes
  from lucidgrad.codegen.lower import index_range
  r = index_range(12, AxisType.LOOP, (0,), dtypes.int32)
  a, b = r * 3, r + 1
  vec = UOp(Ops.VECTORIZE, dtypes.int32.vec(4), (a, b, a, b))
  uops = [r.src[0], r, a.src[1], a, b.src[1], b, vec, UOp(Ops.END, dtypes.void, (r,))]
  assert executed_ops(uops, 1) == 12 + 12 * 2 + 12 * 2
  assert executed_ops(uops, 2) == (12 + 12 * 2 + 12 * 2) / 2

@pytest.mark.slow
def test_searched_kernels_of_odd_shapes_give_numpys_results(tmp_path, monkeypatch):
  """On a conv with a border (gated loads at both ends of each row, odd sizes) and a prime-sized matmul, with pruning
  and early stops, the kernels the search picks give NumPy's results."""
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  rng = np.random.default_rng(3)
  x, w = rng.standard_normal((2, 5, 13, 11)).astype(np.float32), rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
  a, b = rng.standard_normal((31, 37)).astype(np.float32), rng.standard_normal((37, 29)).astype(np.float32)
  xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
  ref = np.einsum("ncijpq,kcpq->nkij", np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3)), w)
  with Context(BEAM=2, BEAM_TIME_LIMIT=8):
    conv = Tensor(x).realize().conv2d(Tensor(w).realize(), padding=1).numpy()
    mm = (Tensor(a).realize() @ Tensor(b).realize()).numpy()
  np.testing.assert_allclose(conv, ref, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(mm, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)

def test_the_final_round_keeps_the_default_when_it_wins_side_by_side(tmp_path, monkeypatch):
  """Each candidate is timed once, in its own moment; the fastest few and the default are timed again in turns, and a
  kernel that only looked faster alone (a load that came and went) loses to the default there."""
  from lucidgrad.codegen.opt import search, hand_coded_opts
  from lucidgrad.codegen.opt.kernel import Kernel
  from lucidgrad.device import Device
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  ast = _kernel_ast(Tensor.rand(16, 16).realize() @ Tensor.rand(16, 16).realize())
  default, real_time = tuple(hand_coded_opts(Kernel(ast, Device["CPU"].renderer)).applied), search._time
  def fake(prog, spec, bufs, out_init, give_up=float("inf"), runs=search.BEAM_RUNS):
    real_time(prog, spec, bufs, out_init, runs=1)  # the kernel runs: its output is still checked
    if tuple(spec.opts) == default: return 1.0
    return 2.0 if runs == 1 else 0.5  # faster alone, slower in the final round
  monkeypatch.setattr(search, "_time", fake)
  with Context(BEAM_TIME_LIMIT=30): opts = search.beam_search(ast, "CPU", 2, key="final-round-test")
  assert tuple(opts) == default

def test_a_script_without_a_main_guard_gets_a_clear_error(tmp_path):
  """Search workers re-import the user's script; one without an `if __name__ == '__main__':` guard kills them at
  start-up. The search then says so, rather than failing to unpack an empty list deep inside it."""
  script = tmp_path / "no_guard.py"
  script.write_text("import numpy as np\nfrom lucidgrad import Tensor\nfrom lucidgrad.helpers import Context\n"
                    "x = Tensor(np.arange(4096, dtype=np.float32)).realize()\n"
                    "with Context(BEAM=2, IGNORE_BEAM_CACHE=1, BEAM_TIME_LIMIT=20): (x * 1.5 + 0.25).realize()\n")
  env = {**os.environ, "CACHEDIR": str(tmp_path / "cache"), "PYTHONPATH": os.getcwd()}
  r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
  assert r.returncode != 0 and "__name__ == '__main__'" in r.stderr and "did not build or run in a search worker" in r.stderr, r.stderr[-2000:]

def test_a_reordered_long_sum_is_the_same_result_and_a_lost_term_is_not():
  """The check a candidate's output passes: a 3072-long dot product summed in another order differs by more than 1e-4
  at outputs that cancel to near 0 (seen: BEAM skipped such matmul candidates as wrong), and is still the same result;
  the largest product of one output dropped is not."""
  from lucidgrad.codegen.opt.search import _same
  from lucidgrad.dtype import dtypes
  rng = np.random.default_rng(0)
  a, w = rng.standard_normal((64, 3072)).astype(np.float32), rng.standard_normal((3072, 32)).astype(np.float32)
  in_order = np.zeros((64, 32), np.float32)
  for k in range(3072): in_order += np.outer(a[:, k], w[k])
  # 16 lanes each summed in order, then the lanes summed (a vector accumulator's order), in float32 without BLAS: a
  # BLAS product's own order is the machine's, and on some it came within 1e-4 of the in-order sum
  lanes = np.zeros((16, 64, 32), np.float32)
  for j in range(192): lanes += a[:, j * 16:(j + 1) * 16].T[:, :, None] * w[j * 16:(j + 1) * 16][:, None, :]
  by_lanes = lanes.sum(0, dtype=np.float32)
  assert not np.allclose(in_order, by_lanes, rtol=1e-4, atol=1e-4)  # the old per-element check failed here
  assert _same(by_lanes, in_order, dtypes.float32)
  lost, k = in_order.copy(), int(np.argmax(np.abs(a[3] * w[:, 5])))  # the largest term of one output
  lost[3, 5] -= a[3, k] * w[k, 5]
  assert not _same(lost, in_order, dtypes.float32)

def test_fresh_buffers_of_half_and_bfloat16_inputs_hold_small_real_values():
  """BEAM fills a kernel's inputs with N(0, 1) values: half and bfloat16 buffers too (the bytes went through a
  memoryview that has no format for ml_dtypes' bfloat16, and without ml_dtypes the values were cast to integer bits)."""
  from lucidgrad.codegen.opt import search
  from lucidgrad.dtype import dtypes
  for dt in (dtypes.float16, dtypes.bfloat16):
    a, b = Tensor.rand(16, 32).cast(dt).realize(), Tensor.rand(32, 8).cast(dt).realize()
    bufs = search._fresh_buffers(_kernel_ast(a @ b), "CPU")
    assert [x.dtype for x in bufs] == [dt, dt, dt]
    for x in bufs[1:]:
      raw = x.numpy()  # bfloat16: its bits, or ml_dtypes' values
      vals = (raw.astype(np.uint32) << 16).view(np.float32) if raw.dtype == np.uint16 else raw.astype(np.float32)
      assert np.isfinite(vals).all() and 0.5 < vals.std() < 2 and (vals != np.round(vals)).mean() > 0.9
