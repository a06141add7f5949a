"""lucidgrad's ONNX reader (lucidgrad/onnx/proto.py, model.py) against the onnx package: models built with onnx.helper,
serialised, read by our decoder and compared field by field with protobuf's own parse; tensors of every type against
numpy_helper; wire-format corner cases written by hand; damaged files (every prefix, random byte flips) that must decode
or raise OnnxDecodeError quickly and in bounded memory; external data refused outside the model's directory."""
import os, struct, time, tracemalloc
import numpy as np
import pytest
import ml_dtypes
import onnx
from onnx import TensorProto as TP, helper as h, numpy_helper
from lucidgrad.onnx.proto import OnnxDecodeError, decode, read_varint
from lucidgrad.onnx.model import Graph, Model, TensorData, load_model, load_tensor

# ---- a model that uses every message and attribute type ----
def rich_model() -> onnx.ModelProto:
  rng = np.random.default_rng(0)
  then_g = h.make_graph([h.make_node("Identity", ["a"], ["t_out"])], "then", [], [h.make_tensor_value_info("t_out", TP.FLOAT, [2])])
  else_g = h.make_graph([h.make_node("Neg", ["a"], ["e_out"])], "else", [], [h.make_tensor_value_info("e_out", TP.FLOAT, [2])])
  sparse = h.make_sparse_tensor(numpy_helper.from_array(np.array([1.5, -2.0], np.float32), "sv"), numpy_helper.from_array(np.array([1, 4], np.int64), "si"), [2, 3])
  node = h.make_node("Custom", ["x", "", "w"], ["y", "z"], name="n0", domain="my.domain", doc_string="a doc",
                     f=0.25, i=-(2**40), s="héllo", raw=b"\xff\xfe", t=numpy_helper.from_array(rng.standard_normal((2, 2)).astype(np.float32), "tt"),
                     g=then_g, floats=[1.0, -2.5], ints=[-1, 0, 2**62], strings=["a", "bc"], tensors=[numpy_helper.from_array(np.arange(3, dtype=np.int32))],
                     graphs=[then_g, else_g], sp=sparse, tp=h.make_sequence_type_proto(h.make_tensor_type_proto(TP.INT64, ["N", 3])))
  inits = [numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "w"),
           h.make_tensor("typed_i64", TP.INT64, [3], [-5, 0, 2**63 - 1]), h.make_tensor("typed_f16", TP.FLOAT16, [2], np.array([0.5, -1], np.float16)),
           h.make_tensor("strs", TP.STRING, [2], [b"x", b"yz"]), h.make_tensor("empty", TP.FLOAT, [0, 3], [])]
  inputs = [h.make_tensor_value_info("x", TP.FLOAT, ["batch", 3, None]),
            h.make_value_info("seq", h.make_sequence_type_proto(h.make_tensor_type_proto(TP.FLOAT, [2]))),
            h.make_value_info("opt", h.make_optional_type_proto(h.make_tensor_type_proto(TP.INT32, []))),
            h.make_value_info("m", h.make_map_type_proto(TP.INT64, h.make_tensor_type_proto(TP.FLOAT, [1])))]
  g = h.make_graph([node, h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g)], "main", inputs,
                   [h.make_tensor_value_info("y", TP.DOUBLE, [2, -1])], inits, doc_string="graph doc",
                   value_info=[h.make_tensor_value_info("z", TP.BFLOAT16, [])], sparse_initializer=[sparse])
  fn = h.make_function("my.domain", "Fn", ["a", "b"], ["c"], [h.make_node("Add", ["a", "b"], ["c"])], [h.make_opsetid("", 18)], ["alpha"])
  m = h.make_model(g, opset_imports=[h.make_opsetid("", 18), h.make_opsetid("my.domain", 2)], producer_name="test", functions=[fn],
                   doc_string="model doc", model_version=7)
  h.set_model_props(m, {"k": "v"})
  return m

def assert_same(ours, proto, path="model"):
  """Every field our schema knows, compared with protobuf's parse of the same bytes (recursively)."""
  for name, kind, repeated in type(ours).FIELDS.values():
    mine, theirs = getattr(ours, name), getattr(proto, name)
    where = f"{path}.{name}"
    if isinstance(kind, type):
      if repeated:
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs)): assert_same(a, b, f"{where}[{i}]")
      elif proto.HasField(name): assert_same(mine, theirs, where)
      else: assert mine is None, where
    elif repeated:
      if kind == "bytes": assert [bytes(v) for v in mine] == list(theirs), where
      else: np.testing.assert_array_equal(np.asarray(mine), np.asarray(list(theirs), dtype=np.asarray(mine).dtype if len(mine) else None), err_msg=where)
    elif kind == "bytes": assert (bytes(mine) if mine is not None else b"") == theirs, where
    elif hasattr(proto, "HasField") and _has(proto, name) is False: assert mine in (None, 0, 0.0, "", b""), where
    else: assert mine == theirs, (where, mine, theirs)

def _has(proto, name):
  try: return proto.HasField(name)
  except ValueError: return None  # a repeated or non-optional field

def test_a_model_with_every_message_type_reads_field_by_field_as_protobuf_does():
  m = rich_model()
  blob = m.SerializeToString()
  ours = decode(Model, memoryview(blob))
  assert_same(ours, onnx.ModelProto.FromString(blob))
  node = ours.graph.node[0]
  attrs = {a.name: a.value() for a in node.attribute}
  ref = {a.name: h.get_attribute_value(a) for a in m.graph.node[0].attribute}
  assert attrs["f"] == ref["f"] and attrs["i"] == -(2**40) and attrs["s"] == "héllo" and attrs["raw"] == b"\xff\xfe"
  assert attrs["floats"] == [1.0, -2.5] and attrs["ints"] == [-1, 0, 2**62] and attrs["strings"] == ["a", "bc"]
  np.testing.assert_array_equal(attrs["t"], numpy_helper.to_array(ref["t"]))
  np.testing.assert_array_equal(attrs["tensors"][0], np.arange(3, dtype=np.int32))
  assert isinstance(attrs["g"], Graph) and attrs["g"].node[0].op_type == "Identity" and [g.name for g in attrs["graphs"]] == ["then", "else"]
  np.testing.assert_array_equal(attrs["sp"], np.array([[0, 1.5, 0], [0, -2.0, 0]], np.float32))
  assert attrs["tp"].sequence_type.elem_type.tensor_type.shape.dim[0].dim_param == "N"
  for t_ours, t_ref in zip(ours.graph.initializer, m.graph.initializer):
    a, b = t_ours.to_numpy(), numpy_helper.to_array(t_ref)
    assert a.dtype == b.dtype and a.shape == b.shape and a.tolist() == b.tolist(), t_ref.name
  assert ours.opsets() == {"": 18, "my.domain": 2}
  assert ours.graph.input[0].type.tensor_type.shape.dim[2].dim_value is None and ours.graph.input[0].type.tensor_type.shape.dim[2].dim_param is None

@pytest.mark.parametrize("arr", [
  np.arange(-3, 3, dtype=np.float32).reshape(2, 3) / 3, np.array([-(2**63), 2**63 - 1, 0], np.int64), np.array([True, False, True]),
  np.array([0.1, -65504, np.inf], np.float16), np.array([1.5, -3.25, 1e30], ml_dtypes.bfloat16), np.array([1 + 2j, -3j], np.complex64),
  np.array([-8, 7, 3, -1, 0], ml_dtypes.int4), np.array([15, 0, 9], ml_dtypes.uint4), np.array([1, 3, 0, 2, 1], ml_dtypes.uint2),
  np.array([-2, 1, 0], ml_dtypes.int2), np.array([0.5, -448, 3], ml_dtypes.float8_e4m3fn), np.array([0.5, -6, 1], ml_dtypes.float4_e2m1fn),
  np.array([2**64 - 1, 1], np.uint64), np.array([-(2**31), 7], np.int32), np.array([65535, 0], np.uint16), np.array([-128, 127], np.int8),
  np.array([1.25, -7.5], np.float64), np.array(3.5, np.float32), np.zeros((0, 3), np.float32), np.array(["ab", "ç"], dtype=object),
  np.array([0.5, -7.5, 1], ml_dtypes.float6_e3m2fn)], ids=lambda a: f"{a.dtype}{list(a.shape)}")
@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed"])
def test_tensors_of_every_type_read_as_numpy_helper_does(arr, raw):
  if raw: tp = numpy_helper.from_array(arr, "t")
  else: tp = h.make_tensor("t", h.np_dtype_to_tensor_dtype(arr.dtype), arr.shape, arr.reshape(-1).tolist(), raw=False)
  got, ref = load_tensor(tp.SerializeToString()), numpy_helper.to_array(tp)
  assert got.dtype == ref.dtype and got.shape == ref.shape
  if arr.dtype == object: assert got.tolist() == ref.tolist()
  else: np.testing.assert_array_equal(got.view(np.uint8) if got.dtype.itemsize == 1 else got, ref.view(np.uint8) if ref.dtype.itemsize == 1 else ref)

# ---- the wire format, by hand ----
def varint(v: int) -> bytes:
  v &= (1 << 64) - 1
  out = bytearray()
  while True:
    out.append((v & 0x7f) | (0x80 if v > 0x7f else 0)); v >>= 7
    if not v: return bytes(out)

def key(num: int, wt: int) -> bytes: return varint(num << 3 | wt)
def ld(num: int, payload: bytes) -> bytes: return key(num, 2) + varint(len(payload)) + payload

def test_varints_decode_negative_ten_byte_values_and_reject_eleven_bytes():
  assert len(varint(-1)) == 10 and read_varint(varint(-1), 0, 10, "x") == ((1 << 64) - 1, 10)
  t = decode(TensorData, key(1, 0) + varint(-5) + key(1, 0) + varint(2**62) + key(2, 0) + varint(7))  # dims unpacked, data_type
  assert t.dims.tolist() == [-5, 2**62] and t.data_type == 7
  with pytest.raises(OnnxDecodeError, match="longer than 10 bytes"): decode(TensorData, key(2, 0) + b"\xff" * 10 + b"\x01")
  with pytest.raises(OnnxDecodeError, match="varint"): decode(TensorData, key(2, 0) + b"\x80\x80")
  # an int32 field's negative value is written sign-extended to 10 bytes; its low 32 bits are the value
  assert decode(TensorData, key(2, 0) + varint(-3)).data_type == -3

def test_packed_and_unpacked_repeated_fields_are_both_accepted_and_merged():
  packed = ld(1, varint(2) + varint(3)) + key(1, 0) + varint(4)  # dims: a packed run, then one unpacked value
  floats = ld(4, struct.pack("<2f", 1.5, -2.0)) + key(4, 5) + struct.pack("<f", 8.0)
  t = decode(TensorData, packed + key(2, 0) + varint(1) + floats)
  assert t.dims.tolist() == [2, 3, 4] and t.float_data.tolist() == [1.5, -2.0, 8.0]
  i64 = decode(TensorData, ld(7, b"".join(varint(v) for v in (-1, 0, 2**63 - 1, -(2**63)))))
  assert i64.int64_data.tolist() == [-1, 0, 2**63 - 1, -(2**63)]
  u64 = decode(TensorData, ld(11, varint(2**64 - 1) + varint(5)))
  assert u64.uint64_data.dtype == np.uint64 and u64.uint64_data.tolist() == [2**64 - 1, 5]
  with pytest.raises(OnnxDecodeError, match="multiple of 4"): decode(TensorData, ld(4, b"\x00" * 5))

def test_unknown_fields_of_every_wire_type_are_skipped():
  unknown = key(99, 0) + varint(2**63) + key(98, 1) + b"\x00" * 8 + ld(97, b"junk") + key(96, 5) + b"\x00" * 4 + \
            key(95, 3) + key(1, 0) + varint(5) + key(95, 4)  # a group holding a varint
  t = decode(TensorData, unknown + key(2, 0) + varint(1) + unknown + ld(8, b"name"))
  assert t.data_type == 1 and t.name == "name"
  with pytest.raises(OnnxDecodeError, match="group"): decode(TensorData, key(95, 3) + key(1, 0) + varint(5))
  with pytest.raises(OnnxDecodeError, match="invalid wire type"): decode(TensorData, key(94, 6))

@pytest.mark.parametrize("blob, match", [
  (ld(7, b"")[:1] + varint(2**60), "past the end"),          # a graph of 2**60 bytes in a few bytes: refused before any allocation
  (key(7, 2) + varint(100) + b"\x00" * 10, "past the end"),
  (key(7, 0) + varint(1), "wire type"),                        # a message field written as a varint
  (key(0, 0) + varint(1), "field number 0"),
  (ld(2, b"\xff\xfe"), "not UTF-8"),
], ids=["huge length", "short message", "wrong wire type", "field 0", "bad utf8"])
def test_malformed_bytes_raise_onnx_decode_error_naming_the_field(blob, match):
  out, used = peak(lambda: decode(Model, memoryview(blob)))
  assert isinstance(out, OnnxDecodeError) and used < 1 << 20, (out, used)
  assert match in str(out) and "offset" in str(out)

def test_deeply_nested_graphs_raise_instead_of_exhausting_the_stack():
  blob = b""
  for _ in range(200): blob = ld(1, ld(5, ld(6, blob)))  # graph.node.attribute.g, 200 levels
  with pytest.raises(OnnxDecodeError, match="deeper than"): decode(Model, ld(7, blob))

# ---- damaged files ----
def peak(fn):
  tracemalloc.start()
  try:
    try: out = fn()
    except Exception as e: out = e
    return out, tracemalloc.get_traced_memory()[1]
  finally: tracemalloc.stop()

def small_model_bytes() -> bytes:
  body = h.make_graph([h.make_node("Add", ["s", "x"], ["s2"])], "body", [h.make_tensor_value_info("s", TP.FLOAT, [2]), h.make_tensor_value_info("x", TP.FLOAT, [2])],
                      [h.make_tensor_value_info("s2", TP.FLOAT, [2])])
  g = h.make_graph([h.make_node("Scan", ["init", "xs"], ["out"], body=body, num_scan_inputs=1, scan_input_axes=[0]),
                    h.make_node("Cast", ["out"], ["y"], to=TP.DOUBLE)], "g",
                   [h.make_tensor_value_info("xs", TP.FLOAT, ["n", 2])], [h.make_tensor_value_info("y", TP.DOUBLE, [2])],
                   [h.make_tensor("init", TP.FLOAT, [2], [1.0, 2.0]), numpy_helper.from_array(np.arange(6, dtype=np.int64), "ids")])
  return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()

def read_everything(blob):
  """Decode and convert every tensor and attribute: what a runner would touch before running."""
  m = load_model(blob)
  stack = [m.graph]
  while stack:
    g = stack.pop()
    for t in g.initializer: t.to_numpy()
    for n in g.node:
      for a in n.attribute:
        v = a.value()
        stack += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, Graph)]
  return m

def check_damaged(blob):
  t0 = time.process_time()
  out, used = peak(lambda: read_everything(blob))
  assert time.process_time() - t0 < 1.0, "took over a second"
  assert used < 4 * len(blob) + (1 << 20), f"allocated {used} bytes for a {len(blob)}-byte file"
  assert not isinstance(out, Exception) or isinstance(out, (OnnxDecodeError, NotImplementedError)), repr(out)

def test_every_prefix_of_a_model_decodes_or_raises_onnx_decode_error():
  blob = small_model_bytes()
  for n in range(len(blob)): check_damaged(blob[:n])

def test_random_byte_flips_decode_or_raise_onnx_decode_error():
  blob, rng = small_model_bytes(), np.random.default_rng(0)
  for _ in range(400):
    bad = bytearray(blob)
    for pos in rng.integers(0, len(bad), rng.integers(1, 4)): bad[pos] = int(rng.integers(0, 256)) if rng.random() < 0.5 else bad[pos] ^ (1 << int(rng.integers(0, 8)))
    check_damaged(bytes(bad))

def test_a_file_that_is_not_a_model_says_so(tmp_path):
  with pytest.raises(OnnxDecodeError, match="no graph"): load_model(b"")
  (p := tmp_path / "x.onnx").write_bytes(b"hello world, not protobuf")
  with pytest.raises(OnnxDecodeError): load_model(p)
  with pytest.raises(TypeError, match="path or bytes"): load_model(3)

# ---- external data ----
def external_model(tmp_path, location: str, arr: np.ndarray, offset: int | None = None, length: int | None = None) -> str:
  t = numpy_helper.from_array(arr, "w")
  t.ClearField("raw_data")
  t.data_location = TP.EXTERNAL
  for k, v in [("location", location)] + ([("offset", str(offset))] if offset is not None else []) + ([("length", str(length))] if length is not None else []):
    e = t.external_data.add(); e.key, e.value = k, v
  g = h.make_graph([h.make_node("Identity", ["w"], ["y"])], "g", [], [h.make_tensor_value_info("y", TP.FLOAT, list(arr.shape))], [t])
  path = tmp_path / "model" / "m.onnx"
  path.parent.mkdir(exist_ok=True)
  path.write_bytes(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString())
  return str(path)

def test_external_data_inside_the_model_directory_is_read(tmp_path):
  arr = np.arange(12, dtype=np.float32).reshape(3, 4)
  m = h.make_model(h.make_graph([h.make_node("Identity", ["w"], ["y"])], "g", [], [h.make_tensor_value_info("y", TP.FLOAT, [3, 4])],
                                [numpy_helper.from_array(arr, "w")]), opset_imports=[h.make_opsetid("", 17)])
  (tmp_path / "d" / "sub").mkdir(parents=True)
  onnx.save_model(m, str(tmp_path / "d" / "m.onnx"), save_as_external_data=True, location="sub/w.bin", size_threshold=0)
  ours = load_model(tmp_path / "d" / "m.onnx")
  np.testing.assert_array_equal(ours.graph.initializer[0].to_numpy(ours.graph.base_dir), arr)
  # with an offset and length into a shared file
  p = external_model(tmp_path, "blob.bin", arr, offset=8, length=48)
  (tmp_path / "model" / "blob.bin").write_bytes(b"\x00" * 8 + arr.tobytes() + b"tail")
  np.testing.assert_array_equal(load_model(p).graph.initializer[0].to_numpy(str(tmp_path / "model")), arr)

def test_external_data_that_climbs_out_with_dotdot_is_refused(tmp_path):
  arr = np.ones(2, np.float32)
  (tmp_path / "secret.bin").write_bytes(arr.tobytes())
  m = load_model(external_model(tmp_path, "../secret.bin", arr))
  with pytest.raises(ValueError, match=r"climbs out with '\.\.'"): m.graph.initializer[0].to_numpy(m.graph.base_dir)
  m = load_model(external_model(tmp_path, "sub/../../secret.bin", arr))
  with pytest.raises(ValueError, match=r"'\.\.'"): m.graph.initializer[0].to_numpy(m.graph.base_dir)

def test_external_data_at_an_absolute_path_is_refused(tmp_path):
  arr = np.ones(2, np.float32)
  (tmp_path / "abs.bin").write_bytes(arr.tobytes())
  m = load_model(external_model(tmp_path, str(tmp_path / "abs.bin"), arr))
  with pytest.raises(ValueError, match="absolute path"): m.graph.initializer[0].to_numpy(m.graph.base_dir)

def test_external_data_through_a_symlink_leading_out_is_refused(tmp_path):
  arr = np.ones(2, np.float32)
  (tmp_path / "outside.bin").write_bytes(arr.tobytes())
  p = external_model(tmp_path, "link.bin", arr)
  os.symlink(tmp_path / "outside.bin", tmp_path / "model" / "link.bin")
  m = load_model(p)
  with pytest.raises(ValueError, match="leads outside the model's directory"): m.graph.initializer[0].to_numpy(m.graph.base_dir)
  os.symlink(tmp_path, tmp_path / "model" / "dirlink")  # a directory link out, then a plain name
  m = load_model(external_model(tmp_path, "dirlink/outside.bin", arr))
  with pytest.raises(ValueError, match="leads outside"): m.graph.initializer[0].to_numpy(m.graph.base_dir)

def test_external_data_outside_its_file_or_without_a_model_path_is_refused(tmp_path):
  arr = np.ones(4, np.float32)
  p = external_model(tmp_path, "w.bin", arr, offset=8, length=16)
  (tmp_path / "model" / "w.bin").write_bytes(arr.tobytes())  # 16 bytes: offset 8 + 16 runs past
  m = load_model(p)
  with pytest.raises(OnnxDecodeError, match="outside 'w.bin'"): m.graph.initializer[0].to_numpy(m.graph.base_dir)
  with pytest.raises(ValueError, match="not read from a file"): load_model(open(p, "rb").read()).graph.initializer[0].to_numpy()
  m = load_model(external_model(tmp_path, "missing.bin", arr))
  with pytest.raises(FileNotFoundError, match="missing.bin"): m.graph.initializer[0].to_numpy(m.graph.base_dir)
