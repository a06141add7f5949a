"""docs/api.md is generated from the docstrings and kept current; every public Tensor method has one."""
import pathlib, subprocess, sys

ROOT = pathlib.Path(__file__).parent.parent

def test_api_doc_is_current_and_complete():
  r = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  assert "(no docstring)" not in (ROOT / "docs" / "api.md").read_text()
