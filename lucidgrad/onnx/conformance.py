"""ONNX's own backend test suite (onnx.backend.test, from the `onnx` test extra) run through lucidgrad's runner with the
suite's own comparison and tolerances: passed/failed per op, the failures with their reasons, and totals per kind
(node / simple / pytorch-converted / pytorch-operator / light).

  python -m lucidgrad.onnx.conformance [-j 2] [-k REGEX] [--json out.json] [--timeout 120]

A development tool run from a checkout (it uses tests/onnx_backend.py's Backend); the runner itself never imports onnx."""
from __future__ import annotations
import argparse, collections, functools, json, multiprocessing, os, re, signal, sys, time, traceback, unittest, warnings
from pathlib import Path

KINDS = {"NodeModel": "node", "SimpleModel": "simple", "PyTorchConvertedModel": "pytorch-converted", "PyTorchOperatorModel": "pytorch-operator",
         "RealModel": "light"}

def cached_case_loader():
  """Make onnx's case loader load each kind once per process (generating the node cases takes seconds); returns the
  cached loader."""
  import onnx.backend.test.runner as r
  if not hasattr(r.load_model_tests, "cache_info"):
    load = r.load_model_tests
    def quiet(*a, **k):  # the case generators' NumPy warnings (overflow in casts they test on purpose) are not ours
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(*a, **k)
    r.load_model_tests = functools.lru_cache(maxsize=None)(quiet)
  return r.load_model_tests

def _ops_of(graph) -> list[str]:
  """Op types of a graph and its subgraphs, in order of appearance."""
  out = []
  for n in graph.node:
    out.append(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}")
    for a in n.attribute:
      for g in ([a.g] if a.HasField("g") else []) + list(a.graphs): out += _ops_of(g)
  return out

def case_models() -> dict[str, object]:
  """Test name (without the device suffix) -> its ModelProto, for the generated node cases."""
  return {tc.name: tc.model for tc in cached_case_loader()(kind="node")}

def op_label(name: str, model) -> str:
  """What a case tests, for the per-op table: its single op, or 'Op (expanded)' / the ops of a multi-node graph."""
  if model is None: return "?"
  ops = list(dict.fromkeys(_ops_of(model.graph)))
  if len(model.graph.node) == 1: return ops[0] if len(ops) == 1 else f"{ops[0]} (+ subgraph)"
  if "_expanded" in name: return "(function expanded)"
  return "+".join(ops[:4]) + ("+..." if len(ops) > 4 else "")

_BT = None
def _backend_test():
  global _BT
  if _BT is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from onnx.backend.test import BackendTest
    from onnx_backend import LucidBackend
    cached_case_loader()
    _BT = BackendTest(LucidBackend, __name__)
  return _BT

def _items() -> dict[str, tuple[str, object]]:
  """name -> (kind, TestItem) for the CPU cases."""
  return {name: (KINDS[cat], item) for cat, items in _backend_test()._test_items.items() for name, item in items.items()
          if name.endswith("_cpu") and cat in KINDS}

class _Timeout(Exception): pass
def _alarm(*_): raise _Timeout()

def run_case(name: str, timeout: int = 120) -> dict:
  """Run one case; returns {name, kind, status: passed/failed/error/skipped, reason, seconds, op}."""
  kind, item = _items()[name]
  t0, status, reason = time.perf_counter(), "passed", ""
  signal.signal(signal.SIGALRM, _alarm); signal.alarm(timeout)
  try: item.func(unittest.TestCase())
  except unittest.SkipTest as e: status, reason = "skipped", str(e)
  except _Timeout: status, reason = "error", f"timed out after {timeout} s"
  except AssertionError as e: status, reason = "failed", "wrong output: " + " ".join(str(e).split())[:200]
  except Exception as e:
    status = "error"
    reason = f"{type(e).__name__}: " + " ".join(str(e).split("\n")[0].split())[:200]
    if os.environ.get("LUCID_ONNX_TRACE"): traceback.print_exc()
  finally: signal.alarm(0)
  model = item.proto[0] if item.proto and item.proto[0] is not None else None
  return {"name": name[:-4], "kind": kind, "status": status, "reason": reason, "seconds": round(time.perf_counter() - t0, 2),
          "op": op_label(name[:-4], model) if kind == "node" else kind}

def _worker(args):
  return run_case(*args)

def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("-j", "--jobs", type=int, default=2, help="worker processes (default 2)")
  ap.add_argument("-k", "--filter", default="", help="only cases whose name matches this regex")
  ap.add_argument("--json", help="write every case's result here")
  ap.add_argument("--timeout", type=int, default=120, help="seconds per case")
  ap.add_argument("--failures", action="store_true", help="list every failing case with its reason")
  ap.add_argument("--load", help="report on the results of an earlier run (its --json) instead of running")
  ap.add_argument("--write-xfail", action="store_true", help="rewrite XFAIL in tests/onnx_backend.py with this run's failures")
  ap.add_argument("--markdown", help="write the per-kind totals and the failures by op and reason as Markdown here")
  args = ap.parse_args(argv)
  os.environ.setdefault("ONNX_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / "lucid-onnx-home"))
  if args.write_xfail and args.filter: ap.error("--write-xfail needs a full run (no -k): it replaces the whole list")
  t0 = time.time()
  if args.load: results = json.loads(Path(args.load).read_text())
  elif args.jobs > 1:
    names = sorted(n for n in _items() if re.search(args.filter, n[:-4]))
    with multiprocessing.get_context("fork").Pool(args.jobs, maxtasksperchild=50) as pool:
      results = list(pool.imap_unordered(_worker, [(n, args.timeout) for n in names], chunksize=4))
  else: results = [run_case(n, args.timeout) for n in sorted(n for n in _items() if re.search(args.filter, n[:-4]))]
  results.sort(key=lambda r: (r["kind"], r["name"]))
  if args.json: Path(args.json).write_text(json.dumps(results, indent=1))
  print_summary(results, args.failures)
  if args.write_xfail: write_xfail(results)
  if args.markdown: Path(args.markdown).write_text(markdown(results))
  print(f"({len(results)} cases in {time.time() - t0:.0f} s with {args.jobs} workers)")
  return 0

def print_summary(results: list[dict], failures: bool = True):
  """The per-op table (node cases), the per-kind totals, and optionally every failure with its reason."""
  by_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for r in results:
    if r["kind"] == "node": by_op[r["op"]][r["status"] == "passed"] += 1
  print(f"{'op':40s} {'passed':>7s} {'failed':>7s}")
  for op in sorted(by_op): print(f"{op:40s} {by_op[op][True]:7d} {by_op[op][False]:7d}")
  if failures:
    print("\nfailures:")
    for r in results:
      if r["status"] != "passed": print(f"  {r['kind']:17s} {r['name']}: {r['reason']}")
  print()
  tot: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for r in results: tot[r["kind"]][r["status"] == "passed"] += 1
  for kind in ("node", "simple", "pytorch-converted", "pytorch-operator", "light"):
    if kind in tot: print(f"{kind:18s} {tot[kind][True]:5d} passed {tot[kind][False]:5d} failed (of {sum(tot[kind].values())})")
  p, f = sum(c[True] for c in tot.values()), sum(c[False] for c in tot.values())
  print(f"{'total':18s} {p:5d} passed {f:5d} failed (of {p + f})")

def short_reason(r: dict) -> str:
  """A failure's reason in a few words: 'not implemented' for an op the registry lacks, else the error's first line."""
  m = re.match(r"NotImplementedError: ONNX op '([^']+)' of domain '([^']+)' at opset (\d+) is not supported", r["reason"])
  if m: return f"{m[1]} ({m[2]}, opset {m[3]}) is not implemented"
  why = r["reason"]
  if (m := re.search(r"Mismatched elements: (\d+) / (\d+)", why)): return f"wrong values ({m[1]} of {m[2]} elements outside the tolerance)"
  if "incorrect shape" in why: return "wrong output shape: " + (re.search(r"\(shapes [^)]*\)[^)]*\)", why) or [""])[0]
  if (m := re.search(r"ACTUAL: dtype\('?([\w]+)'?\) DESIRED: dtype\('?([\w]+)'?\)", why)): return f"wrong dtype ({m[1]} for {m[2]})"
  return why[:160]

def xfail_why(r: dict) -> str:
  """The reason XFAIL gives for a case, else short_reason."""
  sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
  from onnx_backend import xfail_reason
  return xfail_reason(r["name"]) or short_reason(r)

def write_xfail(results: list[dict]):
  """Rewrite the XFAIL block of tests/onnx_backend.py: every failing case of this run, its old reason kept if it had one."""
  path = Path(__file__).resolve().parents[2] / "tests" / "onnx_backend.py"
  text = path.read_text()
  start, end = text.index("# BEGIN XFAIL\n"), text.index("# END XFAIL\n")
  rows = [(xfail_why(r), r["name"]) for r in results if r["status"] != "passed"]
  body = "XFAIL: dict[str, str] = {\n" + "".join(f"  {re.escape(n)!r}: {why!r},\n" for why, n in sorted(rows, key=lambda w: w[1])) + "}\n"
  path.write_text(text[:start] + "# BEGIN XFAIL\n" + body + text[end:])
  print(f"wrote {len(rows)} XFAIL entries to {path}")

def markdown(results: list[dict]) -> str:
  """The totals per kind and the failures grouped by op and reason, for docs/onnx.md."""
  tot: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for r in results: tot[r["kind"]][r["status"] == "passed"] += 1
  out = ["| kind | passed | failed | cases |", "| --- | ---: | ---: | ---: |"]
  for kind in ("node", "simple", "pytorch-converted", "pytorch-operator", "light"):
    if kind in tot: out.append(f"| {kind} | {tot[kind][True]} | {tot[kind][False]} | {sum(tot[kind].values())} |")
  p, f = sum(c[True] for c in tot.values()), sum(c[False] for c in tot.values())
  out += [f"| **total** | **{p}** | **{f}** | **{p + f}** |", "", "Failures by op and reason (node cases by the op they test, model cases by kind):", "",
          "| op | reason | cases |", "| --- | --- | --- |"]
  groups: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
  op_of = {r["name"]: r["op"] for r in results}
  for r in results:
    if r["status"] == "passed": continue
    op = r["op"] if r["op"] != "(function expanded)" else op_of.get(r["name"].split("_expanded")[0], "?") + " (expanded)"
    groups[(op, xfail_why(r))].append(r["name"])
  for (op, why), names in sorted(groups.items()):
    shown = ", ".join(n.removeprefix("test_") for n in names[:6]) + (f", ... ({len(names)})" if len(names) > 6 else "")
    out.append(f"| {op} | {why.replace('|', '/')} | {shown} |")
  return "\n".join(out) + "\n"

if __name__ == "__main__": sys.exit(main())
