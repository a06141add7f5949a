"""A Conv whose weight is a constant of the model (an initializer, through Identity or not) has it packed once, at the
first call, in the order the conv reads it (tensor_nn.conv_weight_order), as a runtime packs weights at load: later
calls run no copy of the weight. Values against onnx.reference.ReferenceEvaluator."""
from collections import ChainMap
import numpy as np
import pytest
from onnx import TensorProto as TP, helper as h, numpy_helper
from onnx.reference import ReferenceEvaluator
from lucidgrad import Tensor
from lucidgrad.onnx import OnnxRunner
from lucidgrad.onnx.runner import Context
from lucidgrad.schedule import create_schedule
from conftest import rnd

def vi(name, shape): return h.make_tensor_value_info(name, TP.FLOAT, shape)

def conv_model(inits, nodes, inputs, out_shape):
  g = h.make_graph(nodes, "g", inputs, [vi("y", out_shape)], [numpy_helper.from_array(a, n) for n, a in inits.items()])
  return h.make_model(g, opset_imports=[h.make_opsetid("", 18)])

def output_sizes(t: Tensor) -> list[int]:
  return [it.bufs[0].size for it in create_schedule([t.uop])[0]]

def test_an_initializer_weight_is_packed_once_and_not_copied_again():
  wn, bn, xn = rnd(0, 16, 8, 3, 3), rnd(1, 16), rnd(2, 1, 8, 14, 14)
  m = conv_model({"w": wn, "b": bn}, [h.make_node("Identity", ["w"], ["wi"]),
                 h.make_node("Conv", ["x", "wi", "b"], ["y"], pads=[1, 1, 1, 1])], [vi("x", [1, 8, 14, 14])], [1, 16, 14, 14])
  r = OnnxRunner(m.SerializeToString())
  ref = ReferenceEvaluator(m).run(None, {"x": xn})[0]
  np.testing.assert_allclose(r({"x": xn})["y"].numpy(), ref, rtol=1e-5, atol=1e-5)
  assert len(r._packed) == 1 and next(iter(r._packed.values()))[1].shape == (3, 3, 8, 16)  # output channels innermost
  packed = next(iter(r._packed.values()))[1]
  y = r({"x": xn})["y"]
  assert wn.size not in output_sizes(y) and next(iter(r._packed.values()))[1] is packed
  np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-5)

def test_one_weight_read_by_two_convs_in_two_orders():
  """Rows of 14 pixels read the weight with output channels innermost, rows of 3 with input channels innermost: each
  node keeps its own packing."""
  wn, xn = rnd(3, 16, 8, 3, 3), rnd(4, 1, 8, 14, 14)
  nodes = [h.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), h.make_node("Conv", ["x", "w"], ["z"], strides=[4, 4])]
  g = h.make_graph(nodes, "g", [vi("x", [1, 8, 14, 14])], [vi("y", [1, 16, 14, 14]), vi("z", [1, 16, 3, 3])], [numpy_helper.from_array(wn, "w")])
  m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
  r, ref = OnnxRunner(m.SerializeToString()), ReferenceEvaluator(m).run(None, {"x": xn})
  for _ in range(2):
    out = r({"x": xn})
    for name, want in zip("yz", ref): np.testing.assert_allclose(out[name].numpy(), want, rtol=1e-5, atol=1e-5)
  assert sorted(v[1].shape for v in r._packed.values()) == [(3, 3, 8, 16), (16, 3, 3, 8)]

def test_a_weight_given_as_an_input_is_used_as_it_is():
  wn, xn = rnd(6, 8, 8, 3, 3), rnd(7, 2, 8, 12, 12)
  m = conv_model({}, [h.make_node("Conv", ["x", "w"], ["y"])], [vi("x", [2, 8, 12, 12]), vi("w", [8, 8, 3, 3])], [2, 8, 10, 10])
  r = OnnxRunner(m.SerializeToString())
  got = r({"x": xn, "w": wn})["y"].numpy()
  np.testing.assert_allclose(got, ReferenceEvaluator(m).run(None, {"x": xn, "w": wn})[0], rtol=1e-5, atol=1e-5)
  assert r._packed == {}
  # a new weight next call gives the new result (nothing of the first is kept)
  np.testing.assert_allclose(r({"x": xn, "w": -wn})["y"].numpy(), -got, rtol=1e-5, atol=1e-5)

def test_packing_a_value_that_is_not_a_constant_raises():
  m = conv_model({}, [h.make_node("Conv", ["x", "w"], ["y"])], [vi("x", [1, 8, 4, 4]), vi("w", [8, 8, 1, 1])], [1, 8, 4, 4])
  r = OnnxRunner(m.SerializeToString())
  ctx = Context(r, 18, ChainMap(), r.opsets, r.graph.node[0])
  with pytest.raises(ValueError, match=r"float32 tensor of shape \(8, 8, 1, 1\) is not a constant of the model"): ctx.packed(Tensor(rnd(8, 8, 8, 1, 1)), "k", lambda w: w)

def test_packing_inside_a_jit_capture_from_the_first_call():
  """The weight is packed by a realize inside the captured function's first calls: replays use the packed copy."""
  from lucidgrad import jit
  wn = rnd(9, 16, 8, 3, 3)
  m = conv_model({"w": wn}, [h.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [vi("x", [1, 8, 12, 12])], [1, 16, 12, 12])
  r, ref = OnnxRunner(m.SerializeToString()), ReferenceEvaluator(m)
  step = jit(lambda x: r({"x": x})["y"].realize())
  for i in range(4):
    xn = rnd(10 + i, 1, 8, 12, 12)
    np.testing.assert_allclose(step(Tensor(xn).realize()).numpy(), ref.run(None, {"x": xn})[0], rtol=1e-5, atol=1e-5)
  assert len(r._packed) == 1
