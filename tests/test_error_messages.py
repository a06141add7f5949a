"""The errors a user meets most, as a user meets them: each names what was wrong (the op, the shapes, dtypes or
devices), carries one hint, fits in 15 lines, and points at the user's line -- the line that built the op is the last
frame outside lucidgrad in the traceback, and an error found only when values are computed (an index out of range)
names in its message the line where the op was built."""
import re, sys, traceback
import numpy as np, pytest
from lucidgrad import Tensor, jit, JitError, no_grad
import lucidgrad.nn as nn
import lucidgrad.nn.functional as F

def user_frame(excinfo):
  """(file, line) of the innermost traceback frame outside the lucidgrad package."""
  frames = [f for f in traceback.extract_tb(excinfo.tb) if "/lucidgrad/" not in f.filename.replace("\\", "/")]
  return frames[-1].filename, frames[-1].lineno

CASES = [  # (what, the op as a lambda written on one line, error type, what the message names, its hint)
  ("broadcast", lambda: Tensor.ones(2, 3) + Tensor.ones(4, 3), ValueError, r"\(2, 3\) and \(4, 3\)", "must be equal or 1"),
  ("matmul", lambda: Tensor.ones(2, 3) @ Tensor.ones(2, 3), ValueError, r"\(2, 3\) and \(2, 3\) do not align", "transpose one"),
  ("Linear input", lambda: nn.Linear(4, 2)(Tensor.ones(3, 5)), ValueError, r"in_features=4.*\(3, 5\)", "must be 4"),
  ("conv channels", lambda: nn.Conv2d(3, 8, 3)(Tensor.ones(1, 4, 8, 8)), ValueError, r"4 channels.*expects 3", r"weight \(8, 3, 3, 3\)"),
  ("reshape", lambda: Tensor.ones(2, 3).reshape(4, 2), ValueError, r"\(2, 3\) \(6 elements\) into \(4, 2\)", "multiply to the same count"),
  ("expand", lambda: Tensor.ones(2, 3).expand(4, 3), ValueError, r"\(2, 3\) to \(4, 3\)", "only axes of size 1"),
  ("devices", lambda: Tensor([1.0], device="PYTHON") + Tensor([1.0]), RuntimeError, "PYTHON and CPU", r"move one with \.to\(\)"),
  ("int grad", lambda: Tensor([1, 2]).requires_grad_(), TypeError, "int64", r"\.float\(\)"),
  ("target dtype", lambda: F.cross_entropy(Tensor.ones(2, 3), Tensor([0.5, 1.5])), ValueError, r"cross_entropy.*\(2,\)", "shape"),
  ("float index", lambda: Tensor.ones(3)[Tensor([0.5])], TypeError, "float32", "must be an integer tensor"),
  ("dim", lambda: Tensor.ones(2, 3).sum(dim=5), IndexError, r"5 is out of range.*\(2, 3\)", "2 dimensions"),
  ("item", lambda: Tensor.ones(2).item(), ValueError, r"shape \(2,\)", "one element"),
  ("cat", lambda: Tensor.cat(Tensor.ones(2, 3), Tensor.ones(2, 4)), ValueError, r"\(2, 3\), \(2, 4\)", "outside dim 0"),
  ("load_state_dict", lambda: nn.Linear(2, 2).load_state_dict({"weight": np.ones((3, 2), np.float32)}), RuntimeError, "weight", "bias"),
]

@pytest.mark.parametrize("what,op,err,names,hint", CASES, ids=[c[0] for c in CASES])
def test_a_build_error_names_the_problem_and_points_at_the_users_line(what, op, err, names, hint):
  with pytest.raises(err) as e: op()
  msg = str(e.value)
  assert len(msg.splitlines()) <= 15, msg
  assert re.search(names, msg, re.S) and re.search(hint, msg, re.S), msg
  assert user_frame(e) == (__file__, op.__code__.co_firstlineno), traceback.format_exception(e.value)

def test_an_index_error_found_when_values_are_computed_names_the_line_that_built_the_op():
  x, idx = Tensor(np.arange(6, dtype=np.float32)).realize(), Tensor([0, 1]) * 7   # computed: checked on the device
  built_at = sys._getframe().f_lineno + 1
  y = x[idx]
  z = y * 2                                                                          # nothing raised yet: the check is lazy
  with pytest.raises(IndexError) as e: z.numpy()
  msg = str(e.value)
  assert len(msg.splitlines()) <= 15
  assert "index 7 is out of range for size 6" in msg and f"{__file__}:{built_at}" in msg and "CHECK_INDEX=0" in msg, msg

def test_a_host_read_inside_jit_names_the_users_line():
  f = jit(lambda x: Tensor(x.numpy()))
  x = Tensor([1.0]).realize()
  with pytest.raises(JitError) as e: f(x)
  assert "numpy()" in str(e.value) and __file__ in str(e.value) and "return the tensor" in str(e.value), str(e.value)

def test_backward_after_an_in_place_change_names_the_tensor():
  w = Tensor([1.0, 2.0], requires_grad=True)
  loss = (w * w).sum()
  with no_grad(): w -= 1
  with pytest.raises(RuntimeError, match="modified in place") as e: loss.backward()
  assert user_frame(e)[0] == __file__
