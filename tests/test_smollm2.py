"""SmolLM2-135M-Instruct, the real GGUF (Q4_1 matrices, a Q8_0 embedding; fetched like MNIST): lucidgrad's loader and
llama model against a float64 NumPy forward of the same file read by tests/gguf_numpy.py, the greedy tokens of both,
and examples/chat.py answering a simple question."""
import importlib.util, pathlib
import numpy as np
import pytest
from lucidgrad import Tensor
from lucidgrad.llm.fetch import smollm2_gguf
from lucidgrad.llm.llama import Llama, LlamaConfig
from lucidgrad.llm.tokenizer import Tokenizer
from gguf_numpy import read_gguf, dequantize
from test_llama import np_llama, np_greedy

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).parent.parent

@pytest.fixture(scope="module")
def smollm2():
  path = smollm2_gguf()
  meta, raw = read_gguf(path)
  ref = {n: dequantize(*v) for n, v in raw.items()}  # float64
  model, metadata = Llama.from_gguf(path, max_context=96)
  return model, ref, LlamaConfig.from_gguf(meta), Tokenizer.from_gguf(metadata)

def test_logits_and_greedy_tokens_match_a_float64_numpy_forward_of_the_file(smollm2):
  model, ref, cfg, tok = smollm2
  assert model.cfg == cfg and (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (30, 576, 9, 3, 49152)
  text = tok.chat_prompt([{"role": "user", "content": "Name three colours of the rainbow, and say which one is between the other two."}])
  prompt = tok.encode(text)[:32]
  assert len(prompt) == 32
  want = np_llama(cfg, ref, prompt)
  got = model(Tensor([prompt]), 0).numpy()[0]
  err = np.abs(got - want).max() / np.abs(want).max()
  assert err <= 1e-3, f"relative error {err:.2e}"
  assert (got.argmax(-1) == want.argmax(-1)).all()
  full = tok.encode(text)
  assert list(model.generate(full, 32)) == np_greedy(cfg, ref, full, 32)

def test_chat_example_answers_a_factual_question(capsys):
  spec = importlib.util.spec_from_file_location("example_chat", ROOT / "examples" / "chat.py")
  chat = importlib.util.module_from_spec(spec); spec.loader.exec_module(chat)
  answer = chat.main(["What is the capital of France?", "--max-tokens", "16"])
  assert "Paris" in answer and "Paris" in capsys.readouterr().out
