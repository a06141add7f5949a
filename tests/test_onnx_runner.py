"""lucidgrad's ONNX runner on small graphs built with onnx.helper, against onnx.reference.ReferenceEvaluator: initializers
and dynamic shapes, If/Loop/Scan with outer-scope values, sequence and optional ops, model-local functions, the errors a
user meets (missing inputs, wrong dtypes or shapes, unknown ops), one lazy graph per call, and no onnx/protobuf import."""
import os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import onnx
from onnx import TensorProto as TP, helper as h, numpy_helper
from onnx.reference import ReferenceEvaluator
from lucidgrad import Tensor, GlobalCounters, dtypes
from lucidgrad.onnx import OnnxRunner, run
from lucidgrad.onnx.runner import NONE_OPTIONAL, to_numpy

def vi(name, elem=TP.FLOAT, shape=None): return h.make_tensor_value_info(name, elem, shape)
def model(nodes, inputs, outputs, inits=(), opset=18, **kw):
  return h.make_model(h.make_graph(nodes, "g", inputs, outputs, list(inits)), opset_imports=[h.make_opsetid("", opset)], **kw)

def check(m: onnx.ModelProto, feed: dict, rtol=1e-6):
  """Our outputs equal the reference evaluator's, in value, dtype and shape; returns ours."""
  ours = OnnxRunner(m.SerializeToString())(feed)
  ref = ReferenceEvaluator(m).run(None, feed)
  for o, r in zip(m.graph.output, ref):
    got = to_numpy(ours[o.name])
    if isinstance(r, list):
      assert isinstance(got, list) and len(got) == len(r), o.name
      for a, b in zip(got, r): assert a.dtype == b.dtype and a.shape == b.shape; np.testing.assert_allclose(a, b, rtol=rtol)
    else:
      r = np.asarray(r)
      assert got.dtype == r.dtype and got.shape == r.shape, (o.name, got.dtype, r.dtype, got.shape, r.shape)
      np.testing.assert_allclose(got, r, rtol=rtol)
  return ours

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3)).astype(np.float32)

def test_initializers_and_a_dynamic_batch_dimension():
  w = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "w")
  b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
  m = model([h.make_node("MatMul", ["x", "w"], ["t"]), h.make_node("Add", ["t", "b"], ["u"]), h.make_node("Relu", ["u"], ["y"])],
            [vi("x", shape=["batch", 3])], [vi("y", shape=["batch", 4])], [w, b])
  for n in (1, 5, 0): check(m, {"x": rng.standard_normal((n, 3)).astype(np.float32)})
  x = rng.standard_normal((4, 3)).astype(np.float32)
  np.testing.assert_allclose(run(m.SerializeToString(), [x])[0].numpy(), ReferenceEvaluator(m).run(None, {"x": x})[0], rtol=1e-6)
  # a Tensor input, from a non-contiguous view
  xt = Tensor(rng.standard_normal((3, 6)).astype(np.float32))[:, ::2].T
  np.testing.assert_allclose(OnnxRunner(m.SerializeToString())({"x": xt})["y"].numpy(), ReferenceEvaluator(m).run(None, {"x": xt.numpy()})[0], rtol=1e-6)

def test_the_whole_graph_is_one_lazy_graph_fused_into_one_kernel():
  m = model([h.make_node("Add", ["x", "x"], ["a"]), h.make_node("Mul", ["a", "x"], ["b"]), h.make_node("Relu", ["b"], ["y"])],
            [vi("x", shape=[2, 3])], [vi("y", shape=[2, 3])])
  r = OnnxRunner(m.SerializeToString())
  GlobalCounters.reset()
  y = r({"x": X})["y"]
  assert GlobalCounters.kernel_count == 0  # nothing ran between nodes
  np.testing.assert_allclose(y.numpy(), np.maximum((X + X) * X, 0), rtol=1e-6)
  assert GlobalCounters.kernel_count == 1

def test_inputs_are_checked_against_the_declared_types():
  m = model([h.make_node("Add", ["x", "z"], ["y"])], [vi("x", shape=["n", 3]), vi("z", shape=[1, 3])], [vi("y", shape=["n", 3])])
  r = OnnxRunner(m.SerializeToString())
  z = np.ones((1, 3), np.float32)
  with pytest.raises(ValueError, match=r"missing input 'z'.*tensor FLOAT\(1, 3\)"): r({"x": X})
  with pytest.raises(TypeError, match="input 'x' has dtype float64, the model declares FLOAT"): r({"x": X.astype(np.float64), "z": z})
  with pytest.raises(TypeError, match="input 'x' has dtype dtypes.int32"): r({"x": Tensor(X).cast(dtypes.int32), "z": z})
  with pytest.raises(ValueError, match=r"input 'z' has shape \(2, 3\), the model declares \(1, 3\) \(dim 0 must be 1\)"): r({"x": X, "z": np.ones((2, 3), np.float32)})
  with pytest.raises(ValueError, match=r"input 'x' has shape \(6,\), the model declares rank 2: \(n, 3\)"): r({"x": X.reshape(-1), "z": z})
  with pytest.raises(ValueError, match=r"unknown input\(s\) \['q'\]"): r({"x": X, "z": z, "q": z})
  with pytest.raises(TypeError, match="must be a dict"): r([X, z])

def test_an_unknown_op_fails_naming_the_op_its_domain_and_opset():
  m = model([h.make_node("NoSuchOp", ["x"], ["y"])], [vi("x")], [vi("y")], opset=17)
  with pytest.raises(NotImplementedError, match=r"'NoSuchOp' of domain 'ai.onnx' at opset 17"): OnnxRunner(m.SerializeToString())({"x": X})
  m = h.make_model(h.make_graph([h.make_node("Thing", ["x"], ["y"], domain="com.acme")], "g", [vi("x")], [vi("y")]),
                   opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.acme", 3)])
  with pytest.raises(NotImplementedError, match=r"'Thing' of domain 'com.acme' at opset 3"): OnnxRunner(m.SerializeToString())({"x": X})
  m = h.make_model(h.make_graph([h.make_node("Thing", ["x"], ["y"], domain="com.other")], "g", [vi("x")], [vi("y")]), opset_imports=[h.make_opsetid("", 17)])
  with pytest.raises(NotImplementedError, match=r"'Thing' of domain 'com.other': the model imports no opset for that domain"): OnnxRunner(m.SerializeToString())({"x": X})
  m = model([h.make_node("Add", ["x", "nowhere"], ["y"])], [vi("x")], [vi("y")])
  with pytest.raises(ValueError, match=r"node Add: 'nowhere' is not an input, initializer or output of an earlier node"): OnnxRunner(m.SerializeToString())({"x": X})

# ---- control flow ----
def test_if_takes_the_branch_the_condition_names_and_branches_see_the_outer_scope():
  then_g = h.make_graph([h.make_node("Add", ["x", "w"], ["t"])], "then", [], [vi("t", shape=[2, 3])])
  else_g = h.make_graph([h.make_node("Mul", ["x", "x"], ["e"])], "else", [], [vi("e", shape=[2, 3])])
  w = numpy_helper.from_array(np.full((2, 3), 10, np.float32), "w")
  m = model([h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], [vi("c", TP.BOOL, []), vi("x", shape=[2, 3])], [vi("y", shape=[2, 3])], [w])
  for c in (True, False): check(m, {"c": np.array(c), "x": X})

def loop_model(with_cond: bool):
  # while s < limit (when with_cond) and i < M: s = s * 2 + i; scan output s each step
  body = h.make_graph([h.make_node("Identity", ["fi_const"], ["fi"]),
                       h.make_node("Mul", ["s_in", "two"], ["s2"]), h.make_node("Add", ["s2", "fi"], ["s_out"]),
                       h.make_node("Less", ["s_out", "limit"], ["c_out"]), h.make_node("Identity", ["s_out"], ["scan"])], "body",
                      [vi("i", TP.INT64, []), vi("c_in", TP.BOOL, []), vi("s_in", shape=[1])], [vi("c_out", TP.BOOL, [1]), vi("s_out", shape=[1]), vi("scan", shape=[1])])
  inits = [numpy_helper.from_array(np.array(2, np.float32), "two"), numpy_helper.from_array(np.array(0.5, np.float32), "fi_const")]
  return model([h.make_node("Loop", ["M", "cond" if with_cond else "", "s0"], ["s", "ss"], body=body)],
               [vi("M", TP.INT64, []), vi("cond", TP.BOOL, []), vi("s0", shape=[1]), vi("limit", shape=[])], [vi("s", shape=[1]), vi("ss", shape=[None, 1])], inits)

def test_loop_as_a_while_loop_matches_the_reference():
  m = loop_model(True)
  for n, limit in ((10, 20.0), (3, 1000.0), (0, 5.0)):
    feed = {"M": np.array(n), "cond": np.array(True), "s0": np.array([1.0], np.float32), "limit": np.array(limit, np.float32)}
    if n: check(m, feed)
    else:  # zero iterations: the state passes through, the scan output is empty (the reference cannot stack nothing)
      out = OnnxRunner(m.SerializeToString())(feed)
      np.testing.assert_array_equal(out["s"].numpy(), feed["s0"]); assert out["ss"].shape == (0, 1)

def test_loop_without_a_condition_runs_m_times_and_ignores_the_body_condition():
  m = loop_model(False)
  out = OnnxRunner(m.SerializeToString())({"M": np.array(4), "cond": np.array(True), "s0": np.array([1.0], np.float32), "limit": np.array(0.0, np.float32)})
  s, ref = np.array([1.0], np.float32), []
  for _ in range(4): s = s * 2 + 0.5; ref.append(s)
  np.testing.assert_allclose(out["s"].numpy(), s); np.testing.assert_allclose(out["ss"].numpy(), np.stack(ref))

@pytest.mark.parametrize("directions, axis", [([0], 0), ([1], 1)], ids=["forward-axis0", "reverse-axis1"])
def test_scan_accumulates_over_its_axis_in_either_direction(directions, axis):
  body = h.make_graph([h.make_node("Add", ["acc", "xt"], ["acc2"]), h.make_node("Identity", ["acc2"], ["out"])], "body",
                      [vi("acc", shape=[3]), vi("xt", shape=[3])], [vi("acc2", shape=[3]), vi("out", shape=[3])])
  shape = [4, 3] if axis == 0 else [3, 4]
  m = model([h.make_node("Scan", ["init", "xs"], ["final", "outs"], body=body, num_scan_inputs=1, scan_input_axes=[axis],
                         scan_input_directions=directions, scan_output_axes=[axis])],
            [vi("init", shape=[3]), vi("xs", shape=shape)], [vi("final", shape=[3]), vi("outs", shape=shape)], opset=16)
  xs = rng.standard_normal(shape).astype(np.float32)
  out = OnnxRunner(m.SerializeToString())({"init": np.zeros(3, np.float32), "xs": xs})
  steps = np.moveaxis(xs, axis, 0)[::-1 if directions[0] else 1]  # the reference evaluator scans forward only
  np.testing.assert_allclose(out["final"].numpy(), steps.sum(0), rtol=1e-5)
  np.testing.assert_allclose(out["outs"].numpy(), np.moveaxis(np.cumsum(steps, 0), 0, axis), rtol=1e-5)
  if not directions[0]: check(m, {"init": np.zeros(3, np.float32), "xs": xs}, rtol=1e-5)

# ---- sequences and optionals ----
def test_sequence_ops_match_the_reference():
  nodes = [h.make_node("SequenceConstruct", ["a", "b"], ["s1"]), h.make_node("SequenceInsert", ["s1", "c", "zero"], ["s2"]),
           h.make_node("SequenceErase", ["s2", "minus1"], ["s3"]), h.make_node("SequenceAt", ["s3", "minus1"], ["last"]),
           h.make_node("SequenceLength", ["s3"], ["n"]), h.make_node("ConcatFromSequence", ["s3"], ["cat"], axis=0),
           h.make_node("ConcatFromSequence", ["s3"], ["stk"], axis=-1, new_axis=1),
           h.make_node("SplitToSequence", ["cat", "two"], ["parts"], axis=0), h.make_node("SplitToSequence", ["cat"], ["rows"], axis=1, keepdims=0),
           h.make_node("SequenceEmpty", [], ["empty"]), h.make_node("SequenceLength", ["empty"], ["n0"])]
  inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in (("zero", 0), ("minus1", -1), ("two", 2))]
  m = model(nodes, [vi("a", shape=[2, 3]), vi("b", shape=[2, 3]), vi("c", shape=[2, 3])],
            [vi("last", shape=[2, 3]), vi("n", TP.INT64, []), vi("cat", shape=[4, 3]), vi("stk", shape=[2, 3, 2]), vi("n0", TP.INT64, []),
             h.make_value_info("parts", h.make_sequence_type_proto(h.make_tensor_type_proto(TP.FLOAT, None))),
             h.make_value_info("rows", h.make_sequence_type_proto(h.make_tensor_type_proto(TP.FLOAT, None)))], inits)
  check(m, {k: rng.standard_normal((2, 3)).astype(np.float32) for k in "abc"})

def test_sequence_map_runs_its_body_per_element_with_extra_tensors():
  body = h.make_graph([h.make_node("Add", ["e", "t"], ["o"])], "body", [vi("e", shape=None), vi("t", shape=[3])], [vi("o", shape=None)])
  seq_t = h.make_sequence_type_proto(h.make_tensor_type_proto(TP.FLOAT, None))
  m = model([h.make_node("SequenceMap", ["s", "t"], ["out"], body=body)], [h.make_value_info("s", seq_t), vi("t", shape=[3])], [h.make_value_info("out", seq_t)])
  check(m, {"s": [rng.standard_normal((k, 3)).astype(np.float32) for k in (1, 2, 4)], "t": np.arange(3, dtype=np.float32)})

def test_optional_ops_with_and_without_an_element():
  opt_t = h.make_optional_type_proto(h.make_tensor_type_proto(TP.FLOAT, [2, 3]))
  m = model([h.make_node("Optional", ["x"], ["o"]), h.make_node("OptionalHasElement", ["o"], ["has"]), h.make_node("OptionalGetElement", ["o"], ["y"]),
             h.make_node("Optional", [], ["none"], type=h.make_tensor_type_proto(TP.FLOAT, [])), h.make_node("OptionalHasElement", ["none"], ["has_none"])],
            [vi("x", shape=[2, 3])], [vi("has", TP.BOOL, []), vi("y", shape=[2, 3]), vi("has_none", TP.BOOL, [])])
  out = OnnxRunner(m.SerializeToString())({"x": X})  # the reference evaluator gets these wrong (y as a list, has_none True)
  assert out["has"].numpy().item() is True and out["has_none"].numpy().item() is False and out["has"].dtype == dtypes.bool
  np.testing.assert_array_equal(out["y"].numpy(), X)
  g = model([h.make_node("OptionalGetElement", ["o"], ["y"])], [h.make_value_info("o", opt_t)], [vi("y", shape=[2, 3])])
  with pytest.raises(ValueError, match="OptionalGetElement: the optional is empty"): OnnxRunner(g.SerializeToString())({"o": None})
  np.testing.assert_array_equal(OnnxRunner(g.SerializeToString())({"o": X})["y"].numpy(), X)
  has = model([h.make_node("OptionalHasElement", ["o"], ["h"])], [h.make_value_info("o", opt_t)], [vi("h", TP.BOOL, [])])
  assert OnnxRunner(has.SerializeToString())({})["h"].numpy() == np.array(False)  # an optional input left out is empty
  assert NONE_OPTIONAL is not None and not NONE_OPTIONAL

# ---- model-local functions ----
def test_model_local_functions_expand_inline_with_attribute_references_and_defaults():
  # f(a, b) = (a + b) * scale, scale an attribute with a default of 2
  scale = h.make_node("Constant", [], ["s"], value=h.make_tensor("v", TP.FLOAT, [], [0.0]))
  scale.attribute[0].ClearField("t"); scale.attribute[0].ref_attr_name = "scale"; scale.attribute[0].type = onnx.AttributeProto.TENSOR
  fn = h.make_function("my.fns", "AddScale", ["a", "b"], ["c"], [h.make_node("Add", ["a", "b"], ["t"]), scale, h.make_node("Mul", ["t", "s"], ["c"])],
                       [h.make_opsetid("", 18)], attributes=[], attribute_protos=[h.make_attribute("scale", h.make_tensor("d", TP.FLOAT, [], [2.0]))])
  nodes = [h.make_node("AddScale", ["x", "x"], ["y1"], domain="my.fns"),
           h.make_node("AddScale", ["x", "y1"], ["y2"], domain="my.fns", scale=h.make_tensor("v", TP.FLOAT, [], [-3.0]))]
  m = h.make_model(h.make_graph(nodes, "g", [vi("x", shape=[2, 3])], [vi("y1", shape=[2, 3]), vi("y2", shape=[2, 3])]),
                   opset_imports=[h.make_opsetid("", 18), h.make_opsetid("my.fns", 1)], functions=[fn])
  out = OnnxRunner(m.SerializeToString())({"x": X})  # the reference evaluator cannot run attribute references in functions
  y1 = (X + X) * 2
  np.testing.assert_allclose(out["y1"].numpy(), y1, rtol=1e-6); np.testing.assert_allclose(out["y2"].numpy(), (X + y1) * -3, rtol=1e-6)

# ---- what the runner needs and does not need ----
def test_constant_inputs_read_on_the_host_cost_no_kernel():
  from lucidgrad.onnx.ops import onnx_op
  seen = []
  @onnx_op("PeekConst", 1, domain="test.peek")
  def peek(ctx, inputs, attrs):
    seen.append(ctx.const(inputs[0]).tolist())
    return [inputs[0]]
  m = h.make_model(h.make_graph([h.make_node("PeekConst", ["k"], ["y"], domain="test.peek")], "g", [], [vi("y", TP.INT64, [2])],
                                [numpy_helper.from_array(np.array([3, 4], np.int64), "k")]), opset_imports=[h.make_opsetid("", 18), h.make_opsetid("test.peek", 1)])
  r = OnnxRunner(m.SerializeToString())
  GlobalCounters.reset()
  r({}); r({})
  assert seen == [[3, 4], [3, 4]] and GlobalCounters.kernel_count == 0

def test_the_runner_never_imports_onnx_or_protobuf(tmp_path):
  m = model([h.make_node("Add", ["x", "x"], ["y"])], [vi("x", shape=[2, 3])], [vi("y", shape=[2, 3])])
  (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
  script = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('onnx', 'google', 'onnxruntime'): raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import numpy as np
from lucidgrad.onnx import OnnxRunner
y = OnnxRunner({str(tmp_path / 'm.onnx')!r})({{'x': np.ones((2, 3), np.float32)}})['y'].numpy()
assert (y == 2).all(), y
bad = [m for m in sys.modules if m.split('.')[0] in ('onnx', 'google')]
assert not bad, bad
print('ok')
"""
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=str(tmp_path), timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]

def test_bfloat16_inputs_and_outputs_keep_their_dtype_and_split_sees_the_node_output_count():
  import ml_dtypes
  from lucidgrad.onnx.ops import onnx_op
  @onnx_op("CountOutputs", 1, domain="test.count")
  def count(ctx, inputs, attrs): return [inputs[0]] * ctx.num_outputs
  x = np.array([1.5, -2.25, 3e38], ml_dtypes.bfloat16)
  m = h.make_model(h.make_graph([h.make_node("CountOutputs", ["x"], ["a", "b", "c"], domain="test.count")], "g", [vi("x", TP.BFLOAT16, [3])],
                                [vi(n, TP.BFLOAT16, [3]) for n in "abc"]), opset_imports=[h.make_opsetid("", 18), h.make_opsetid("test.count", 1)])
  out = OnnxRunner(m.SerializeToString())({"x": x})
  assert out["a"].dtype == dtypes.bfloat16 and out["c"].dtype == dtypes.bfloat16
  got = to_numpy(out["c"])
  assert got.dtype == x.dtype and got.tobytes() == x.tobytes()

def test_the_gradient_op_differentiates_the_graph_that_computed_y():
  nodes = [h.make_node("Mul", ["a", "b"], ["ab"]), h.make_node("Add", ["ab", "a"], ["c"]),
           h.make_node("Gradient", ["a", "b", "k"], ["da", "db", "dk"], domain="ai.onnx.preview.training", xs=["a", "b", "k"], y="c")]
  m = h.make_model(h.make_graph(nodes, "g", [vi("a", shape=[3]), vi("b", shape=[3]), vi("k", shape=[3])], [vi(n, shape=[3]) for n in ("c", "da", "db", "dk")]),
                   opset_imports=[h.make_opsetid("", 18), h.make_opsetid("ai.onnx.preview.training", 1)])
  a, b, k = (rng.standard_normal(3).astype(np.float32) for _ in range(3))
  out = OnnxRunner(m.SerializeToString())({"a": a, "b": b, "k": k})
  np.testing.assert_allclose(out["da"].numpy(), b + 1, rtol=1e-6); np.testing.assert_allclose(out["db"].numpy(), a, rtol=1e-6)
  np.testing.assert_array_equal(out["dk"].numpy(), np.zeros(3, np.float32))  # c does not depend on k
