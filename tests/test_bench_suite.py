"""bench/bench_suite.py runs: two cheap rows of its --quick mode in a subprocess print their agreement checks (so the suite
catches wrong numbers) and a timing line each; its agreement check fails on a value off by more than its tolerance."""
import os, pathlib, re, subprocess, sys, tempfile
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from models import assert_close  # noqa: E402

def test_agreement_check_catches_a_wrong_value():
  ref = np.random.default_rng(0).standard_normal(100)
  assert assert_close("exact", ref.astype(np.float32), ref).startswith("  agree:")
  off = ref.copy(); off[7] += 0.01 * np.abs(ref).max()
  with pytest.raises(AssertionError, match="disagrees"): assert_close("off by 1%", off, ref)
  with pytest.raises(AssertionError): assert_close("nan", np.full(100, np.nan), ref)

@pytest.mark.slow
def test_quick_rows_run_and_check_against_torch():
  pytest.importorskip("torch")
  with tempfile.TemporaryDirectory() as cache:
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_suite.py"), "--quick", "--no-compile", "--only", "softmax,gpt2_forward"],
                       env={**os.environ, "CACHEDIR": cache, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert r.returncode == 0, r.stdout + r.stderr
  out = r.stdout
  assert re.search(r"agree: softmax\(-1\) vs NumPy", out) and re.search(r"agree: gpt2 output vs torch", out), out
  assert re.search(r"^softmax\(-1\) 256x256 f32 +lucidgrad [\d.]+ GB/s \| numpy [\d.]+ GB/s \([\d.]+x\) \| torch [\d.]+ GB/s", out, re.M), out
  assert re.search(r"^GPT-2 forward .* lucidgrad [\d.]+ [mu]?s .*\| torch [\d.]+ [mu]?s \([\d.]+x\)", out, re.M), out
  assert re.search(r"first call, empty cache, new process: lucidgrad [\d.]+ s \(\d+ C compiles; CPU: [\d.]+ s own, [\d.]+ s C compiler\)", out), out
  assert "2 of 2 rows ran" in out, out
