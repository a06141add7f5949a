"""Chat with SmolLM2-135M-Instruct (a llama-architecture GGUF, fetched like MNIST on first use):
  python examples/chat.py "What is the capital of France?"
The answer streams token by token; tokens/s (prefill and decode) are printed at the end. Greedy unless --temperature
is given; --top-k, --top-p and --repetition-penalty shape the draws. SMOLLM2_GGUF=path uses a local copy of the file;
--gguf another llama GGUF."""
import argparse, sys, time
from lucidgrad.llm.fetch import smollm2_gguf
from lucidgrad.llm.llama import Llama
from lucidgrad.llm.sampling import Sampling
from lucidgrad.llm.tokenizer import Tokenizer

def main(argv=None) -> str:
  ap = argparse.ArgumentParser(description="chat with a llama GGUF model")
  ap.add_argument("question")
  ap.add_argument("--gguf", help="a llama GGUF file (default: SmolLM2-135M-Instruct, fetched)")
  ap.add_argument("--max-tokens", type=int, default=200)
  ap.add_argument("--temperature", type=float, default=0.0)
  ap.add_argument("--top-k", type=int, default=0)
  ap.add_argument("--top-p", type=float, default=1.0)
  ap.add_argument("--repetition-penalty", type=float, default=1.0)
  ap.add_argument("--seed", type=int, default=None)
  args = ap.parse_args(argv)
  if args.seed is not None:
    from lucidgrad import Tensor
    Tensor.manual_seed(args.seed)
  st = time.perf_counter()
  model, metadata = Llama.from_gguf(args.gguf or smollm2_gguf(), max_context=1024)
  tok = Tokenizer.from_gguf(metadata)
  prompt_text = tok.chat_prompt([{"role": "user", "content": args.question}])
  prompt = ([tok.bos_id] if tok.add_bos else []) + tok.encode(prompt_text)
  print(f"(loaded in {time.perf_counter() - st:.1f} s; {len(prompt)} prompt tokens)", file=sys.stderr)
  how = Sampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty)
  times, answer = [time.perf_counter()], []
  def tokens():
    for t in model.generate(prompt, min(args.max_tokens, model.max_context - len(prompt)), how, stop=(tok.eos_id,)):
      times.append(time.perf_counter())
      if t != tok.eos_id: yield t
  for piece in tok.decode_stream(tokens()):
    answer.append(piece)
    print(piece, end="", flush=True)
  print()
  n = len(times) - 1
  if n:
    first = times[1] - times[0]
    rest = f", then {(n - 1) / (times[-1] - times[1]):.1f} tokens/s decoding {n - 1}" if n > 1 else ""
    print(f"({len(prompt)} prompt tokens and the first answer token in {first:.2f} s ({len(prompt) / first:.1f} tokens/s){rest})", file=sys.stderr)
  return "".join(answer)

if __name__ == "__main__":
  main()
