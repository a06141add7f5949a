"""The ONNX operator set (lucidgrad/onnx/ops) held to ONNX's own node test cases: each single-node case of
onnx.backend.test.case.node runs through `lookup` with a minimal ctx and is compared with the case's expected outputs
at the suite's own tolerances. The multi-node cases (expanded functions, control flow) are the runner's.

`python tests/test_onnx_ops.py` prints passed/failed per op over every single-node case."""
from __future__ import annotations
import functools, os, re, sys, warnings
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import lookup

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

class Ctx:
  """What an op function may ask of the runner, without a runner: the opset, the device, host values of Tensors."""
  NONE_OPTIONAL = object()
  def __init__(self, opset: int, num_outputs: int, device: str | None = None):
    self.opset, self.num_outputs, self.device = opset, num_outputs, device
  def const(self, x): return x if isinstance(x, np.ndarray) else to_numpy(x)
  def is_constant(self, x): return False  # no model: no value is one of its constants (nothing is packed)

def to_tensor(a):
  """A case's input as an op gets it: a Tensor, a list of them for a sequence, None, or a string array as it is."""
  if a is None: return None
  if isinstance(a, list): return [to_tensor(v) for v in a]
  if isinstance(a, onnx.TensorProto): a = numpy_helper.to_array(a)
  a = np.asarray(a)
  if a.dtype == object: return a
  if a.dtype.name == "bfloat16": return Tensor(np.ascontiguousarray(a).view(np.uint16)).bitcast(dtypes.bfloat16)
  return Tensor(a)

def to_numpy(t):
  """An op's output as NumPy, bfloat16 as ml_dtypes' bfloat16 (the reference's type)."""
  if isinstance(t, np.ndarray) or t is None: return t
  if isinstance(t, list): return [to_numpy(v) for v in t]
  if t.dtype == dtypes.bfloat16:
    import ml_dtypes
    return t.bitcast(dtypes.uint16).numpy().view(ml_dtypes.bfloat16)
  return t.numpy()

def decode_attr(a: onnx.AttributeProto):
  """An attribute as plain Python, as the runner passes it (ONNXAPI.md)."""
  v = helper.get_attribute_value(a)
  def one(x):
    if isinstance(x, bytes):
      try: return x.decode()
      except UnicodeDecodeError: return x
    if isinstance(x, onnx.TensorProto): return numpy_helper.to_array(x)
    return x
  return [one(x) for x in v] if isinstance(v, list) else one(v)

@functools.cache
def single_node_cases() -> dict[str, object]:
  """name -> TestCase for every node case whose graph is one node. Generating them runs ONNX's reference on every case
  (seconds of CPU), so the result is pickled beside the kernel cache, keyed by the onnx version."""
  import pickle
  from lucidgrad.helpers import cache_dir
  path = cache_dir() / f"onnx-node-cases-{onnx.__version__}.pkl"
  try: return pickle.loads(path.read_bytes())
  except (OSError, pickle.PickleError, EOFError, AttributeError): pass
  from onnx.backend.test.case.node import collect_testcases
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    cases = {c.name: c for c in collect_testcases(None) if len(c.model.graph.node) == 1}
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".{os.getpid()}.tmp")
  tmp.write_bytes(pickle.dumps(cases))
  os.replace(tmp, path)  # atomic: a worker reading at the same time sees the whole file or none
  return cases

def run_case(case) -> None:
  """Run one case through lookup and assert the outputs match, as the backend suite's assert_similar_outputs does."""
  graph, (node,) = case.model.graph, case.model.graph.node
  opset = next((o.version for o in case.model.opset_import if o.domain == node.domain or {o.domain, node.domain} <= {"", "ai.onnx"}), None)
  fn = lookup(node.op_type, node.domain, opset)
  ctx = Ctx(opset, len(node.output))
  init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
  attrs = {a.name: decode_attr(a) for a in node.attribute}
  for inputs, expected in case.data_sets:
    by_name = dict(init) | {vi.name: v for vi, v in zip(graph.input, inputs)}
    args = [to_tensor(by_name[n]) if n else None for n in node.input]
    while args and args[-1] is None: args.pop()
    outs = fn(ctx, args, attrs)
    names = [n for n in node.output]
    got = {n: to_numpy(o) for n, o in zip(names, outs) if n}
    for vi, ref in zip(graph.output, expected):
      out = got[vi.name]
      if isinstance(ref, onnx.TensorProto): ref = numpy_helper.to_array(ref)
      if isinstance(ref, list):
        assert isinstance(out, list) and len(out) == len(ref), f"{vi.name}: sequence of {len(ref)} expected"
        pairs = list(zip(out, ref))
      else: pairs = [(out, np.asarray(ref))]
      for o, r in pairs:
        assert o.shape == r.shape, f"{vi.name}: shape {o.shape}, expected {r.shape}"
        if r.dtype == object: np.testing.assert_array_equal(o, r); continue
        assert o.dtype == r.dtype, f"{vi.name}: dtype {o.dtype}, expected {r.dtype}"
        rtol = case.rtol
        if r.dtype.name == "bfloat16": o, r, rtol = o.astype(np.float32), r.astype(np.float32), max(rtol, 2**-6)
        np.testing.assert_allclose(o, r, rtol=rtol, atol=case.atol, err_msg=f"{case.name} output {vi.name}")

# ---------------------------------------------------------------- cases expected to fail, and why

# ops with GRAPH attributes (If, Loop, Scan, SequenceMap, ...): the runner's (control.py, through ctx.run_graph), not run here
def runner_owned(case) -> bool: return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in case.model.graph.node[0].attribute)

# ops left out on purpose: every case of these is expected to fail (NotImplementedError from lookup)
XFAIL_OPS: dict[str, str] = {
  "ImageDecoder": "decodes JPEG/PNG/... bytes: an image codec, out of scope",
}
# cases named for an element type lucidgrad has no dtype for: float8 (e4m3, e5m2, e8m0), float4, int4/uint4, int2/uint2
LACKING_DTYPE = re.compile(r"(?i)(float8|float4|e4m3|e5m2|e8m0|(?<![a-z])u?int[24](?![0-9]))")
# single cases expected to fail
XFAIL_CASES: dict[str, str] = {
  "test_dft_inverse": "the reference's float32 FFT leaves 1.9e-7 where the exact value is 0, past atol 1e-7; ours computes the exact 0",
  "test_dft_inverse_opset19": "as test_dft_inverse",
  **{f"test_{n}": "random values: only shapes and dtypes can match another generator" for n in
     ("bernoulli", "bernoulli_double", "bernoulli_seed", "training_dropout", "training_dropout_default", "training_dropout_default_mask",
      "training_dropout_mask")},
}

def expected_failure(name: str, case) -> str | None:
  """Why `name` is expected to fail, or None."""
  op = case.model.graph.node[0].op_type
  if op in XFAIL_OPS: return f"{op}: {XFAIL_OPS[op]}"
  if name in XFAIL_CASES: return XFAIL_CASES[name]
  if LACKING_DTYPE.search(name): return "an element type lucidgrad has no dtype for"
  return None

# the ops whose first case (by name) runs in CI: one or more per family; every other case is marked slow
FAST_OPS = {"Add", "Div", "Relu", "Where", "BitShift", "ReduceSum", "ArgMax", "Reshape", "Split", "Slice", "Gather", "GatherND",
            "ScatterND", "Pad", "TopK", "CumSum", "Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization",
            "LayerNormalization", "Gemm", "Softmax", "Cast", "QuantizeLinear", "Resize", "Attention", "LSTM", "NonMaxSuppression"}

def _params():
  """Every single-node case not owned by the runner, the first case of each FAST_OPS op unmarked, the rest marked slow."""
  seen, params = set(), []
  for name, case in sorted(single_node_cases().items()):
    if runner_owned(case): continue
    op = case.model.graph.node[0].op_type
    marks = [] if op in FAST_OPS and op not in seen else [pytest.mark.slow]
    seen.add(op)
    if (why := expected_failure(name, case)) is not None: marks.append(pytest.mark.xfail(reason=why, strict=True))
    params.append(pytest.param(name, marks=marks, id=name))
  return params

@pytest.mark.parametrize("name", _params())
def test_node_case(name):
  run_case(single_node_cases()[name])

def main() -> None:
  """Print passed/failed per op over every single-node case, and the failures' first lines."""
  import collections, traceback
  only = set(sys.argv[1:])
  per_op: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
  fails = []
  for name, case in sorted(single_node_cases().items()):
    op = case.model.graph.node[0].op_type
    if runner_owned(case): continue
    if only and op not in only and name not in only: continue
    try: run_case(case); per_op[op][0] += 1
    except Exception as e:
      per_op[op][1] += 1
      msg = str(e).strip().splitlines()
      fails.append((name, type(e).__name__, (msg[0] if msg else "")[:160]))
      if os.environ.get("TRACE"): traceback.print_exc()
  for name, kind, msg in fails: print(f"FAIL {name}: {kind}: {msg}")
  for op, (p, f) in sorted(per_op.items()): print(f"{op:32s} {p:4d} passed {f:4d} failed")
  print(f"total: {sum(v[0] for v in per_op.values())} passed, {sum(v[1] for v in per_op.values())} failed")


# ---------------------------------------------------------------- the registry and the errors an op gives

def test_lookup_picks_the_newest_version_not_past_the_opset():
  from lucidgrad.onnx.ops import onnx_op
  onnx_op("LgTestOp", 3, "lg.test")(lambda ctx, i, a: ["v3"])
  onnx_op("LgTestOp", 7, "lg.test")(lambda ctx, i, a: ["v7"])
  assert [lookup("LgTestOp", "lg.test", o)(None, [], {})[0] for o in (3, 6, 7, 30)] == ["v3", "v3", "v7", "v7"]
  with pytest.raises(NotImplementedError, match=r"'LgTestOp' of domain 'lg.test' at opset 2"): lookup("LgTestOp", "lg.test", 2)

def test_lookup_unknown_op_names_op_domain_and_opset():
  with pytest.raises(NotImplementedError, match=r"'NoSuchOp' of domain 'ai.onnx' at opset 17"): lookup("NoSuchOp", "", 17)
  # opset-versioned semantics: Softmax before 13 flattens at axis, from 13 it is along one axis
  x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
  old, new = lookup("Softmax", "", 11)(Ctx(11, 1), [Tensor(x)], {"axis": 1})[0], lookup("Softmax", "", 13)(Ctx(13, 1), [Tensor(x)], {"axis": 1})[0]
  e = np.exp(x.reshape(2, 12) - x.reshape(2, 12).max(1, keepdims=True))
  np.testing.assert_allclose(old.numpy(), (e / e.sum(1, keepdims=True)).reshape(x.shape), rtol=1e-5)
  e = np.exp(x - x.max(1, keepdims=True))
  np.testing.assert_allclose(new.numpy(), e / e.sum(1, keepdims=True), rtol=1e-5)

@pytest.mark.parametrize("op,opset,inputs,attrs,err,msg", [
  ("Reshape", 14, [np.zeros((2, 3), np.float32), np.array([4, -1], np.int64)], {}, ValueError, r"Reshape: cannot reshape \(2, 3\) to \[4, 1\]"),
  ("Reshape", 14, [np.zeros((2, 3), np.float32), np.array([-1, -1], np.int64)], {}, ValueError, r"Reshape: more than one -1"),
  ("Squeeze", 13, [np.zeros((2, 3), np.float32), np.array([0], np.int64)], {}, ValueError, r"Squeeze: axes \[0\] of shape \(2, 3\)"),
  ("Concat", 13, [np.zeros((2, 3), np.float32)], {"axis": 2}, ValueError, r"Concat: axis 2 out of range for rank 2"),
  ("Split", 18, [np.zeros((5,), np.float32), np.array([2, 2], np.int64)], {}, ValueError, r"Split: sizes \[2, 2\] do not sum to 5"),
  ("TopK", 11, [np.zeros((3,), np.float32), np.array([4], np.int64)], {}, ValueError, r"TopK: k=4 out of range"),
  ("Cast", 19, [np.zeros((3,), np.float32)], {"to": 17}, NotImplementedError, r"Cast: element type FLOAT8E4M3FN has no lucidgrad dtype"),
  ("Pad", 19, [np.zeros((3,), np.float32), np.array([1, 1], np.int64)], {"mode": "mirror"}, ValueError, r"Pad: unknown mode 'mirror'"),
  ("Resize", 19, [np.zeros((1, 1, 2, 2), np.float32), None, np.array([1, 1, 2, 2], np.float32)], {"mode": "area"}, ValueError,
   r"Resize: unknown mode 'area'"),
  ("BitShift", 11, [np.ones(2, np.uint8), np.ones(2, np.uint8)], {"direction": "UP"}, ValueError, r"BitShift: direction must be 'LEFT' or 'RIGHT'"),
])
def test_bad_input_raises_naming_the_op(op, opset, inputs, attrs, err, msg):
  with pytest.raises(err, match=msg):
    outs = lookup(op, "", opset)(Ctx(opset, 1), [to_tensor(a) for a in inputs], attrs)
    for o in outs: o.realize()

def test_ops_keep_the_graph_lazy_and_differentiable():
  """An op is Tensor ops: its output is unrealized, and gradients flow through it (here Conv with asymmetric pads)."""
  import torch
  rng = np.random.default_rng(1)
  x, w = rng.standard_normal((1, 2, 5, 6)).astype(np.float32), rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
  xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
  y = lookup("Conv", "", 11)(Ctx(11, 1), [xt, wt], {"pads": [0, 1, 2, 0], "strides": [1, 2]})[0]
  y.sum().backward()
  xr, wr = torch.tensor(x, dtype=torch.float64, requires_grad=True), torch.tensor(w, dtype=torch.float64, requires_grad=True)
  yr = torch.nn.functional.conv2d(torch.nn.functional.pad(xr, (1, 0, 0, 2)), wr, stride=(1, 2))
  yr.sum().backward()
  np.testing.assert_allclose(y.numpy(), yr.detach().numpy(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(wt.grad.numpy(), wr.grad.numpy(), rtol=1e-4, atol=1e-5)

if __name__ == "__main__": main()

# ---------------------------------------------------------------- views, empty and 0-d inputs, against ONNX's reference evaluator

def reference(op: str, arrays: list, attrs: dict, opset: int, n_out: int = 1) -> list:
  """op run by onnx.reference.ReferenceEvaluator on NumPy arrays: the same semantics the node cases were made from."""
  from onnx import TensorProto
  from onnx.reference import ReferenceEvaluator
  names = [f"i{k}" if a is not None else "" for k, a in enumerate(arrays)]
  node = helper.make_node(op, names, [f"o{k}" for k in range(n_out)], **attrs)
  ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in zip(names, arrays) if n]
  outs = [helper.make_tensor_value_info(f"o{k}", TensorProto.UNDEFINED, None) for k in range(n_out)]
  model = helper.make_model(helper.make_graph([node], "g", ins, outs), opset_imports=[helper.make_opsetid("", opset)])
  return ReferenceEvaluator(model).run(None, {n: a for n, a in zip(names, arrays) if n})

_rng = np.random.default_rng(7)
_f = lambda *s: _rng.standard_normal(s).astype(np.float32)

VIEW_CASES = [  # (op, opset, arrays, attrs, view applied to input 0: a Tensor -> Tensor of the same values as the array given)
  ("MatMul", 13, [_f(5, 3), _f(3, 4)], {}, "T"),
  ("Softmax", 13, [_f(4, 6)], {"axis": 0}, "T"),
  ("Conv", 11, [_f(1, 2, 6, 5), _f(3, 2, 3, 3)], {"pads": [1, 0, 0, 2], "strides": [2, 1]}, "flip"),
  ("Resize", 19, [_f(1, 1, 5, 4), None, np.array([1, 1, 1.6, 0.5], np.float32)], {"mode": "cubic", "antialias": 1}, "slice"),
  ("Gather", 13, [_f(6, 3), np.array([[0, -1], [2, 5]], np.int64)], {"axis": 0}, "T"),
  ("ReduceLogSumExp", 18, [_f(3, 4, 2), np.array([0, -1], np.int64)], {"keepdims": 0}, "slice"),
  ("CumSum", 14, [_f(4, 5), np.array(1, np.int64)], {"exclusive": 1, "reverse": 1}, "T"),
  ("LayerNormalization", 17, [_f(3, 4), _f(4), _f(4)], {"axis": -1}, "T"),
]

def _view(x: np.ndarray, how: str) -> Tensor:
  """A non-contiguous lucidgrad view holding x's values: built from a differently laid out tensor."""
  if how == "T": return Tensor(np.ascontiguousarray(x.T)).T
  if how == "flip": return Tensor(np.ascontiguousarray(x[..., ::-1])).flip(-1)
  padded = np.zeros(x.shape[:-1] + (x.shape[-1] + 3,), x.dtype); padded[..., 1:-2] = x
  return Tensor(padded)[..., 1:-2]

@pytest.mark.parametrize("op,opset,arrays,attrs,how", VIEW_CASES, ids=[c[0] for c in VIEW_CASES])
def test_ops_on_views_match_the_reference(op, opset, arrays, attrs, how):
  ins = [_view(arrays[0], how)] + [to_tensor(a) for a in arrays[1:]]
  ours = lookup(op, "", opset)(Ctx(opset, 1), ins, attrs)[0].numpy()
  ref = reference(op, arrays, attrs, opset)[0]
  assert ours.shape == ref.shape and ours.dtype == ref.dtype
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)

EDGE_CASES = [  # empty tensors, 0-d tensors and reductions over nothing
  ("ReduceSum", 13, [np.zeros((2, 0, 3), np.float32), np.array([1], np.int64)], {"keepdims": 1}),
  ("ReduceMax", 18, [np.zeros((0, 3), np.float32), np.array([0], np.int64)], {"keepdims": 0}),
  ("ReduceProd", 18, [np.zeros((2, 0), np.int32), np.array([1], np.int64)], {"keepdims": 0}),
  ("Concat", 13, [np.zeros((2, 0), np.float32), _f(2, 3)], {"axis": 1}),
  ("Reshape", 14, [np.zeros((0, 4), np.float32), np.array([0, 2, 2], np.int64)], {"allowzero": 1}),
  ("Where", 16, [np.array(True), np.array(1.5, np.float32), _f(3)], {}),
  ("Add", 14, [np.array(2, np.int32), np.arange(4, dtype=np.int32).reshape(2, 2)], {}),
  ("Div", 14, [np.array([-7, 7, -7], np.int64), np.array([2, -2, -2], np.int64)], {}),
  ("ArgMax", 13, [np.array([[1, 3, 3], [2, 2, 0]], np.int32)], {"axis": 1, "select_last_index": 1}),
  ("Slice", 13, [np.arange(10, dtype=np.float32), np.array([8], np.int64), np.array([-100], np.int64), np.array([0], np.int64),
                 np.array([-3], np.int64)], {}),
  ("Unsqueeze", 13, [np.array(3.0, np.float32), np.array([0, -1], np.int64)], {}),
]

@pytest.mark.parametrize("op,opset,arrays,attrs", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_edge_shapes_match_the_reference(op, opset, arrays, attrs):
  ours = lookup(op, "", opset)(Ctx(opset, 1), [to_tensor(a) for a in arrays], attrs)[0].numpy()
  ref = np.asarray(reference(op, arrays, attrs, opset)[0])
  assert ours.shape == ref.shape and ours.dtype == ref.dtype, f"{ours.shape} {ours.dtype}, reference {ref.shape} {ref.dtype}"
  np.testing.assert_allclose(ours, ref, rtol=1e-6)

def test_random_ops_give_the_spec_shapes_dtypes_and_ranges():
  """Random values cannot match another generator; their shape, dtype and distribution's support can."""
  ctx = Ctx(22, 1)
  u = lookup("RandomUniform", "", 22)(ctx, [], {"shape": [200, 3], "low": -2.0, "high": 5.0, "dtype": 11})[0].numpy()
  assert u.shape == (200, 3) and u.dtype == np.float64 and u.min() >= -2 and u.max() < 5 and u.std() > 1
  n = lookup("RandomNormalLike", "", 22)(ctx, [Tensor(np.zeros((4000,), np.float16))], {"mean": 3.0, "scale": 0.5})[0].numpy()
  assert n.shape == (4000,) and n.dtype == np.float16 and abs(n.mean() - 3) < 0.05 and abs(n.std() - 0.5) < 0.05
  p = np.full((5000,), 0.25, np.float32)
  b = lookup("Bernoulli", "", 22)(ctx, [Tensor(p)], {"dtype": 7})[0].numpy()
  assert b.dtype == np.int64 and set(np.unique(b)) <= {0, 1} and abs(b.mean() - 0.25) < 0.03
  m = lookup("Multinomial", "", 22)(ctx, [Tensor(np.log(np.array([[0.0001, 0.9999]], np.float32)))], {"sample_size": 50})[0].numpy()
  assert m.shape == (1, 50) and m.dtype == np.int32 and (m == 1).mean() > 0.9
