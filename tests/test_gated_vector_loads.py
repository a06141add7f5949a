"""Vector loads with a gate per lane (renderer.gated_vector_loads): a padded input's lanes group into one vector load
whose first or last lanes are gated by the border. Results match NumPy and the PYTHON device at both borders, for
prime sizes, and no gated-off address is ever read: the input is put against a page the process may not read, so a
read past either end of it would kill the program (run in a subprocess, where that is a failure, not a crash)."""
import subprocess, sys, os
import numpy as np
import pytest
from lucidgrad import Tensor
from lucidgrad.device import Device
from lucidgrad.uop.ops import Ops
from lucidgrad.codegen import get_program
from lucidgrad.codegen.opt import Opt, OptOps
from test_opt_actions import last_kernel, run_with_opts, conv_ref

rng = np.random.default_rng(7)

def lane_gated_loads(item, device: str, opts) -> int:
  spec = get_program(item.ast, Device[device].renderer, list(opts))
  return sum(1 for u in spec.uops if u.op is Ops.INDEX and u.src[2].op is Ops.VECTORIZE)

@pytest.mark.parametrize("n,pad,amount", [(13, (3, 4), 4), (13, (3, 4), 8), (17, (1, 6), 8), (7, (5, 0), 4), (11, (0, 5), 8)])
def test_padded_row_lanes_at_both_borders(n, pad, amount):
  x = rng.standard_normal(n).astype(np.float32)
  ref = np.pad(x, pad) * 2 + 1
  item = last_kernel(Tensor(x).realize().pad(pad) * 2 + 1)
  size = n + sum(pad)
  opts = [Opt(OptOps.PADTO, 0, amount), Opt(OptOps.UPCAST, 0, amount)] if size % amount else [Opt(OptOps.UPCAST, 0, amount)]
  assert lane_gated_loads(item, "CPU", opts) >= 1
  np.testing.assert_allclose(run_with_opts(item, "CPU", opts), ref, rtol=1e-6)
  np.testing.assert_allclose(run_with_opts(item, "PYTHON", opts), ref, rtol=1e-6)

@pytest.mark.parametrize("n,pad", [(3, (5, 0)), (2, (3, 3)), (1, (0, 7))])
@pytest.mark.parametrize("strided", [False, True])
def test_lanes_whose_gate_folds_to_false_read_nothing(n, pad, strided):
  """One group of 8 lanes: each lane's gate folds to a constant, and a load gated by false is the 0 it would read (a
  select after it once hid this; without it such a scalar load was rendered as an unguarded read). Strided lanes
  (a transposed read) stay scalar loads; contiguous ones group into a vector."""
  x = rng.standard_normal((n, 2)).astype(np.float32)
  t = Tensor(x).realize().pad((pad, (0, 0)))
  ref = np.pad(x, (pad, (0, 0)))
  t, ref, axis = (t.T, ref.T, 1) if strided else (t, ref, 0)
  item = last_kernel(t * 2 + 1)
  for dev in ("CPU", "PYTHON"):
    np.testing.assert_allclose(run_with_opts(item, dev, [Opt(OptOps.UPCAST, axis, 8)]).reshape(ref.shape), ref * 2 + 1, rtol=1e-6)

@pytest.mark.parametrize("hw", [(5, 7), (13, 11), (8, 16)])
def test_conv_rows_upcast_along_x(hw):
  x, w = rng.standard_normal((2, 3, *hw)).astype(np.float32), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
  item = last_kernel(Tensor(x).realize().conv2d(Tensor(w).realize(), padding=1))
  amount = next(a for a in (8, 4, 7, 5, 2) if hw[1] % a == 0 or a == 8)
  opts = ([Opt(OptOps.PADTO, 3, amount)] if hw[1] % amount else []) + [Opt(OptOps.UPCAST, 3, amount), Opt(OptOps.UPCAST, 1, 4)]
  assert lane_gated_loads(item, "CPU", opts) >= 1
  for dev in ("CPU", "PYTHON"):
    np.testing.assert_allclose(run_with_opts(item, dev, opts).reshape(2, 4, *hw), conv_ref(x, w), rtol=1e-4, atol=1e-4)

GUARDED = r"""
import ctypes, mmap, sys, types
import numpy as np
from lucidgrad import Tensor
from lucidgrad.device import Device
from lucidgrad.codegen import get_program
from lucidgrad.codegen.opt import Opt, OptOps
sys.path.insert(0, "tests")
from test_opt_actions import last_kernel
n, lo, hi, amount, at_end = [int(a) for a in sys.argv[1:]]
x = np.arange(1, n + 1, dtype=np.float32)
item = last_kernel(Tensor(x).realize().pad((lo, hi)) + 1)
dev = Device["CPU"]
opts = [Opt(OptOps.PADTO, 0, amount)] if (n + lo + hi) % amount else []
spec = get_program(item.ast, dev.renderer, opts + [Opt(OptOps.UPCAST, 0, amount)])
# [no access][the input's page][no access]: the input starts or ends at its page's edge
page = mmap.PAGESIZE
mem = mmap.mmap(-1, 3 * page)
base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
libc = ctypes.CDLL(None)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
start = base + 2 * page - 4 * n if at_end else base + page
ctypes.memmove(start, x.ctypes.data, 4 * n)
assert libc.mprotect(base, page, 0) == 0 and libc.mprotect(base + 2 * page, page, 0) == 0
out = np.zeros(n + lo + hi, dtype=np.float32)
raws = [types.SimpleNamespace(ptr=p, arg=ctypes.c_void_p(p)) for p in (out.ctypes.data, start)]  # what a kernel call reads of a HostMemory
dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)(*[raws[i] for i in spec.slots])
assert np.array_equal(out, np.pad(x, (lo, hi)) + 1), out
print("ok")
"""

@pytest.mark.parametrize("n,lo,hi,amount", [(13, 3, 4, 8), (5, 3, 0, 8), (7, 0, 6, 8), (31, 7, 2, 4)])
@pytest.mark.parametrize("at_end", [0, 1])
def test_no_gated_off_lane_is_read_past_the_buffer(n, lo, hi, amount, at_end):
  r = subprocess.run([sys.executable, "-c", GUARDED, str(n), str(lo), str(hi), str(amount), str(at_end)], capture_output=True,
                     text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=300)
  assert r.returncode == 0 and r.stdout.strip().endswith("ok"), f"rc {r.returncode}: {r.stderr[-2000:]}"
