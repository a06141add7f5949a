"""Bad shapes, axes, dtypes and devices raise a clear error -- ValueError, TypeError, RuntimeError or IndexError -- whose
message names what the user passed, and they raise at the call, before any kernel is built."""
import re
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes

pytestmark = pytest.mark.usefixtures("no_kernels")

def names(*parts) -> str:
  """A regex matching a message that mentions every part, in any order."""
  return "".join(f"(?=.*{re.escape(str(p))})" for p in parts)

def a23(): return Tensor.ones(2, 3)

# ---- broadcasting
@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a < b, lambda a, b: a.maximum(b), lambda a, b: a == b,
                                lambda a, b: (a > 0).where(a, b), lambda a, b: a.int() & b.int()])
def test_broadcast_mismatch_names_both_shapes(op):
  with pytest.raises(ValueError, match=names((2, 3), (4,))): op(a23(), Tensor.ones(4))

def test_broadcast_mismatch_of_three_way_where():
  with pytest.raises(ValueError, match=names((2,), (3,))): Tensor.ones(2, dtype=dtypes.bool).where(Tensor.ones(3), 0.0)
  with pytest.raises(ValueError, match=names((2, 3), (5, 1))): (a23() > 0).where(a23(), Tensor.ones(5, 1))

@pytest.mark.parametrize("target", [(4, 3), (3,), (2, 2)], ids=str)
def test_expand_mismatch(target):
  with pytest.raises(ValueError, match=names((2, 3), target)): a23().expand(target)

# ---- reshape
@pytest.mark.parametrize("shape", [(4, 2), (7,), (5, -1), (0, -1), (2, 3, 2)], ids=str)
def test_bad_reshape_names_shapes(shape):
  with pytest.raises(ValueError, match=names((2, 3), shape)): a23().reshape(shape)

def test_reshape_with_two_minus_ones_or_negative_sizes():
  with pytest.raises(ValueError, match=names((-1, -1))): a23().reshape(-1, -1)
  with pytest.raises(ValueError, match=names((3, -2))): a23().reshape(3, -2)
  with pytest.raises(ValueError, match=names((4, 2))): a23().view(4, 2)

# ---- axes
@pytest.mark.parametrize("call", [lambda t: t.sum(2), lambda t: t.max(-3), lambda t: t.mean((0, 2)), lambda t: t.argmax(2), lambda t: t.softmax(5),
                                  lambda t: t.log_softmax(-3), lambda t: t.logsumexp(2), lambda t: t.flip(2), lambda t: t.squeeze(2),
                                  lambda t: t.transpose(0, 2), lambda t: t.flatten(0, 2), lambda t: t.var(2), lambda t: t.prod(-3), lambda t: t.min(2),
                                  lambda t: t.unsqueeze(3), lambda t: t.cat(t, dim=2)])
def test_axis_out_of_range_names_axis_and_shape(call):
  with pytest.raises(IndexError, match=r"axis -?\d.*\(2, 3\)"): call(a23())

@pytest.mark.parametrize("call", [lambda t: t.sum((0, 0)), lambda t: t.flip((1, -1)), lambda t: t.max((0, -2))])
def test_repeated_axis(call):
  with pytest.raises(ValueError, match="repeated axis"): call(a23())

def test_axis_of_wrong_type():
  with pytest.raises(TypeError, match=names("axis", 1.5)): a23().sum(1.5)

@pytest.mark.parametrize("order", [(0, 0), (0, 1, 2), (1,)], ids=str)
def test_bad_permute(order):
  with pytest.raises((ValueError, IndexError), match=names(order, (2, 3))): a23().permute(order)

# ---- indexing, padding, shrinking
def test_index_out_of_range():
  with pytest.raises(IndexError, match=names("index 2", "dimension 0", "size 2")): a23()[2]
  with pytest.raises(IndexError, match=names("index -4", "dimension 1", "size 3")): a23()[0, -4]

def test_too_many_indices_and_ellipses():
  with pytest.raises(IndexError, match=names("too many indices", (2, 3))): a23()[0, 0, 0]
  with pytest.raises(IndexError, match="single ellipsis"): a23()[..., 0, ...]

@pytest.mark.parametrize("idx", [1.5, "a", True], ids=repr)
def test_bad_index_type(idx):
  with pytest.raises(TypeError, match=names(repr(idx))): a23()[idx]

def test_bad_pad_and_shrink():
  with pytest.raises(ValueError, match=names((2, 3))): a23().pad(((1, 1),))
  with pytest.raises(ValueError, match=names((1, 2, 3), (2, 3))): a23().pad((1, 2, 3))
  with pytest.raises(ValueError, match=names((-4, 0), (2, 3))): a23().pad((-4, 0))
  with pytest.raises(ValueError, match=names(((0, 3), (0, 3)), (2, 3))): a23().shrink(((0, 3), (0, 3)))
  with pytest.raises(ValueError, match=names((2, 3))): a23().shrink(((0, 1),))

def test_cat_mismatch():
  with pytest.raises(ValueError, match=names((2, 3), (2, 4))): a23().cat(Tensor.ones(2, 4), dim=0)

# ---- matmul
@pytest.mark.parametrize("sa,sb", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)), ((5, 2, 3), (4, 3, 2))], ids=str)
def test_matmul_mismatch_names_shapes(sa, sb):
  with pytest.raises(ValueError, match=names(sa, sb)): Tensor.ones(*sa) @ Tensor.ones(*sb)

def test_matmul_of_scalars():
  with pytest.raises(ValueError, match=names("matmul", (), (3,))): Tensor(2.0) @ Tensor.ones(3)

# ---- reductions with no identity
@pytest.mark.parametrize("call", [lambda t: t.max(), lambda t: t.min(1), lambda t: t.max(1, keepdim=True), lambda t: t.argmax(1), lambda t: t.argmin()])
def test_max_min_argmax_of_an_empty_axis(call):
  with pytest.raises((ValueError, IndexError, RuntimeError), match=names((2, 0, 3))): call(Tensor.ones(2, 0, 3))

# ---- dtypes
@pytest.mark.parametrize("name", ["float8", "int128", "complex64", "void"])
def test_unknown_dtype_names_it(name):
  with pytest.raises(TypeError, match=name): Tensor([1, 2], dtype=name)
  with pytest.raises(TypeError, match=name): Tensor.ones(2).cast(name)
  with pytest.raises(TypeError, match=name): Tensor.zeros(2, dtype=name)

@pytest.mark.parametrize("arr", [np.array(["a", "b"]), np.array([1 + 2j]), np.array([1, 2], dtype=np.float128) if hasattr(np, "float128") else
                                 np.array([1], dtype=object)], ids=lambda a: str(a.dtype))
def test_numpy_array_of_unsupported_dtype(arr):
  with pytest.raises(TypeError, match=str(arr.dtype)): Tensor(arr)

@pytest.mark.parametrize("call", [lambda t: t & t, lambda t: t | 1, lambda t: t ^ t, lambda t: ~t, lambda t: t << 1, lambda t: t >> 2,
                                  lambda t: t.bitwise_and(t)])
@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float16, dtypes.bfloat16, dtypes.float64], ids=str)
def test_bitwise_ops_on_floats_name_the_dtype(call, dt):
  with pytest.raises(TypeError, match=dt.name): call(Tensor.ones(2, dtype=dt))

def test_int_tensor_with_float_in_bitwise_op():
  with pytest.raises(TypeError, match="float32"): Tensor.ones(2, dtype=dtypes.int32) & 1.5

@pytest.mark.parametrize("src,dst", [(dtypes.float32, dtypes.float16), (dtypes.int8, dtypes.int32), (dtypes.float64, dtypes.bfloat16)], ids=str)
def test_bitcast_of_different_sizes(src, dst):
  with pytest.raises(TypeError, match=names(src, src.itemsize, dst, dst.itemsize)): Tensor.ones(2, dtype=src).bitcast(dst)

@pytest.mark.parametrize("signed", [dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64], ids=str)
def test_uint64_with_a_signed_int_has_no_common_dtype(signed):
  with pytest.raises(TypeError, match=names("uint64", signed.name)): Tensor.ones(2, dtype=dtypes.uint64) + Tensor.ones(2, dtype=signed)
  with pytest.raises(TypeError, match=names("uint64", signed.name)): Tensor.ones(2, dtype=signed) * Tensor.ones(2, dtype=dtypes.uint64)

def test_default_float_must_be_a_float():
  with pytest.raises(TypeError, match="int32"): Tensor.default_float = dtypes.int32
  assert Tensor.default_float == dtypes.float32

# ---- devices
@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a @ b, lambda a, b: a < b, lambda a, b: (a > 0).where(a, b),
                                lambda a, b: a.maximum(b), lambda a, b: a.cat(b)])
def test_device_mismatch_names_both_devices(op):
  with pytest.raises(RuntimeError, match=names("CPU", "PYTHON")): op(Tensor.ones(2, device="CPU"), Tensor.ones(2, device="PYTHON"))

@pytest.mark.parametrize("dev", ["TPU", "GPU:3", "cpux"])
def test_unknown_device(dev):
  with pytest.raises(RuntimeError, match=re.escape(repr(dev))): Tensor([1, 2], device=dev)
  with pytest.raises(RuntimeError, match=re.escape(repr(dev))): Tensor.ones(2).to(dev)

def test_device_of_wrong_type():
  with pytest.raises(TypeError, match="3"): Tensor.ones(2, device=3)

# ---- creation and reading values
def test_bad_shapes_at_creation():
  with pytest.raises(ValueError, match=names("negative", (2, -1))): Tensor.zeros(2, -1)
  with pytest.raises(TypeError, match=names((2.5,))): Tensor.ones(2.5)
  with pytest.raises(TypeError, match="ints"): Tensor.empty(2, "3")

def test_bad_creation_arguments():
  with pytest.raises(ValueError, match="step"): Tensor.arange(0, 5, 0)
  with pytest.raises(ValueError, match="-1"): Tensor.linspace(0, 1, -1)
  with pytest.raises(ValueError, match=names("low=5", "high=5")): Tensor.randint(3, low=5, high=5)
  with pytest.raises(ValueError, match="ragged"): Tensor([[1, 2], [3]])
  with pytest.raises(TypeError, match="str"): Tensor("abc")
  with pytest.raises(TypeError, match="dict"): Tensor({1: 2})

def test_reading_the_wrong_number_of_elements():
  with pytest.raises(ValueError, match=names((2, 3))): a23().item()
  with pytest.raises(RuntimeError, match="6 elements"): bool(a23())
  with pytest.raises(TypeError, match="0-d"): len(Tensor(1.0))

def test_bad_mode_and_option_values():
  with pytest.raises(ValueError, match="'mirror'"): a23().pad((1, 1), mode="mirror")
  with pytest.raises(ValueError, match="'fast'"): a23().gelu(approximate="fast")
  with pytest.raises(ValueError, match="'ceil'"): a23().div(a23(), rounding_mode="ceil")
  with pytest.raises(ValueError, match="min and max"): a23().clip()

def test_combining_with_unsupported_python_objects():
  with pytest.raises(TypeError, match="str"): a23() + "1"
  with pytest.raises(TypeError, match="NoneType"): a23() * None
