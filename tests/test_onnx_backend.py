"""ONNX's own backend test suite (onnx.backend.test.BackendTest) through lucidgrad's runner, with the suite's own
comparison and tolerances.

Which cases run:
- CI (default): the fast subset, about 3 minutes at -n 2 -- of the node cases all of whose ops (subgraphs included)
  the registry implements at the case's opsets, leaving out the `_expanded` ones (the same op again, as its function
  body) and those in SLOW, the first PER_OP by name of each op; and the `simple` model cases whose ops are implemented.
  The pytorch-converted, pytorch-operator and light (model-zoo) cases run in the full run only.
- LUCID_ONNX_FULL=1: every case of every kind (node, simple, pytorch-converted, pytorch-operator, light), about 10
  minutes on 2 cores. `python -m lucidgrad.onnx.conformance` runs the same cases and prints passed/failed per op.
Cases expected to fail are listed once, with the reason, in tests/onnx_backend.py (XFAIL): a listed case that passes
shows as an unexpected success, an unlisted one that fails as a failure."""
import os, re, tempfile
import onnx
from onnx.backend.test import BackendTest
from onnx_backend import XFAIL, LucidBackend
from lucidgrad.onnx.conformance import _ops_of, cached_case_loader, op_label
from lucidgrad.onnx.ops import lookup
import lucidgrad.onnx.runner  # noqa: F401  (registers the control ops)

FULL = os.environ.get("LUCID_ONNX_FULL") == "1"
os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "lucid-onnx-home"))  # where the light cases write their inputs

PER_OP = 3
# node cases that take more than a few seconds each: full run only
SLOW = {"test_dynamicquantizelinear", "test_dynamicquantizelinear_min_adjusted", "test_sce_NCd1_mean_weight_negative_ii",
        "test_nllloss_NCd1d2_with_weight_reduction_sum_ii", "test_nllloss_NCd1d2d3d4d5_mean_weight", "test_training_dropout_default_mask"}

def _implemented(model) -> bool:
  """Whether the registry has every op of the model (and its subgraphs) at the model's opsets."""
  opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
  local = {(f.domain, f.name) for f in model.functions}
  graphs = [model.graph] + [f for f in model.functions]
  for g in graphs:
    for op in _ops_of(g):
      domain, _, name = op.rpartition(".")
      if (domain, name) in local: continue
      try: lookup(name, domain, opsets.get(domain, 0))
      except NotImplementedError: return False
  return True

def fast_subset() -> set[str]:
  """Names (without _cpu) of the cases CI runs (see the module docstring)."""
  per_op: dict[str, list[str]] = {}
  for tc in sorted(cached_case_loader()(kind="node"), key=lambda tc: tc.name):
    if "_expanded" in tc.name or tc.name in SLOW or not _implemented(tc.model): continue
    if len(kept := per_op.setdefault(op_label(tc.name, tc.model), [])) < PER_OP: kept.append(tc.name)
  simple = {tc.name for tc in cached_case_loader()(kind="simple") if _implemented(onnx.load(os.path.join(tc.model_dir, "model.onnx")))}
  return {n for names in per_op.values() for n in names} | simple

cached_case_loader()
backend_test = BackendTest(LucidBackend, __name__)
for pattern in XFAIL: backend_test.xfail(f"^{pattern}_cpu$")
_keep = None if FULL else fast_subset()
for _name, _cls in backend_test.test_cases.items():
  for _attr in [a for a in vars(_cls) if a.startswith("test_")]:
    if not _attr.endswith("_cpu") or (_keep is not None and _attr[:-4] not in _keep): delattr(_cls, _attr)  # CPU only; CUDA cases never apply
  globals()[_name] = _cls

def test_every_xfail_pattern_names_a_case():
  names = {tc.name for kind in ("node", "simple", "pytorch-converted", "pytorch-operator", "real") for tc in cached_case_loader()(kind=kind)}
  stale = [p for p in XFAIL if not any(re.fullmatch(p, n) for n in names)]
  assert not stale, f"XFAIL entries that match no case: {stale}"

def test_the_fast_subset_covers_the_control_ops_and_at_most_per_op_cases_of_each():
  fast = fast_subset()
  models = {tc.name: tc.model for tc in cached_case_loader()(kind="node") if tc.name in fast}
  covered = {op for m in models.values() for op in _ops_of(m.graph)}
  assert {"SequenceInsert", "SplitToSequence", "OptionalHasElement", "OptionalGetElement"} <= covered, sorted(covered)
  per_label: dict[str, int] = {}
  for name, m in models.items(): per_label[op_label(name, m)] = per_label.get(op_label(name, m), 0) + 1
  assert max(per_label.values()) <= PER_OP and not any("_expanded" in n for n in fast)
