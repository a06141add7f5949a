"""The byte-level BPE tokenizer a GGUF file carries (tokenizer.ggml.model 'gpt2'): special tokens matched whole, GPT-2
pre-tokenisation (digits split one by one first for 'smollm'), merges by rank; streaming decode; the ChatML chat prompt."""
from __future__ import annotations
import codecs, collections, functools, heapq, re, sys, unicodedata
from typing import Any, Iterable, Iterator, Mapping, Sequence

# tokenizer.ggml.pre -> whether every digit is its own pre-token before the GPT-2 pattern runs. llama.cpp gives the
# 'smollm' family the regex list [\p{N}, GPT-2] and the 'gpt-2' family [GPT-2] alone; SmolLM2's tokenizer.json says the
# same as Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)].
PRE_TOKENIZERS = {"gpt-2": False, "gpt2": False, "smollm": True, "starcoder": True, "refact": True, "codeshell": True}
CONTROL, USER_DEFINED = 3, 4    # tokenizer.ggml.token_type values matched whole rather than built by merges
_CACHE_WORDS = 1 << 16          # pre-tokens whose merged ids are remembered before the cache starts over

def _byte_alphabet() -> list[str]:
  """GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves, the other 68 bytes (controls,
  space, NBSP, soft hyphen) take the characters from U+0100 up, so every byte string is a string of visible letters."""
  printable = [*range(0x21, 0x7f), *range(0xa1, 0xad), *range(0xae, 0x100)]
  shifted = iter(range(0x100, 0x200))
  return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]

@functools.cache
def _unicode_classes() -> tuple[str, str, str]:
  """Regex class bodies (ranges, no brackets) for \\p{L} (letters), \\p{N} (numbers) and \\s (Unicode White_Space:
  Zs, Zl, Zp, TAB..CR and NEL), from unicodedata once per process (~0.2 s). Python's re has no \\p{..}, and its own \\s
  also takes U+001C..1F, which the Oniguruma \\s of HF tokenizers and llama.cpp's own does not."""
  kind = collections.defaultdict(int, {c: 1 for c in ("Lu", "Ll", "Lt", "Lm", "Lo")} | {c: 2 for c in ("Nd", "Nl", "No")} |
                                 {c: 3 for c in ("Zs", "Zl", "Zp")})
  # one byte per code point, built by C-level maps: a Python loop over 1.1M code points would take a second
  marks = bytearray(map(kind.__getitem__, map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))))
  marks[0x09:0x0e], marks[0x85] = b"\x03" * 5, 3
  def ranges(k: int) -> str: return "".join(f"\\U{m.start():08x}-\\U{m.end() - 1:08x}" for m in re.finditer(b"%c+" % k, marks))
  return ranges(1), ranges(2), ranges(3)

@functools.cache
def pre_tokenizer(split_digits: bool) -> re.Pattern[str]:
  """The GPT-2 pre-tokenisation pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`
  (contractions lower-case only, ` ?` a plain space) for re.finditer. With split_digits it equals running the pattern on
  each stretch between single digits: a digit is a piece alone, and a digit ends a stretch, so the lookahead that keeps
  a run of spaces' last space for the next word also accepts a digit after the run (the run is then one piece)."""
  L, N, S = _unicode_classes()
  number, run_end = (f"[{N}]", f"[^{S}{N}]") if split_digits else (f" ?[{N}]+", f"[^{S}]")
  return re.compile(f"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+|{number}| ?[^{S}{L}{N}]+|[{S}]+(?!{run_end})|[{S}]+")

class Tokenizer:
  """A GGUF's byte-level BPE tokenizer (GPT-2 style). encode: special tokens first (control ones only when allowed,
  user-defined ones always, longest first), then each stretch between them pre-tokenised and merged pair by pair in
  merge-rank order; decode: the tokens' bytes joined, then UTF-8. Encoding never adds BOS; `add_bos` says whether the
  model wants it."""
  def __init__(self, tokens: Sequence[str], token_types: Sequence[int], merges: Sequence[str], bos_id: int, eos_id: int,
               unk_id: int | None = None, split_digits: bool = False, add_bos: bool = False, chat_template: str | None = None):
    if len(token_types) != len(tokens):
      raise ValueError(f"token_types has {len(token_types)} entries but there are {len(tokens)} tokens")
    self.tokens, self.token_types = list(tokens), list(token_types)
    self.vocab = {t: i for i, t in enumerate(self.tokens)}
    for name, i in (("bos_id", bos_id), ("eos_id", eos_id), ("unk_id", unk_id)):
      if i is not None and not 0 <= i < len(self.tokens): raise ValueError(f"{name}={i} is outside the vocabulary of {len(self.tokens)}")
    self.bos_id, self.eos_id, self.unk_id, self.add_bos = bos_id, eos_id, unk_id, add_bos
    self.split_digits, self.chat_template = split_digits, chat_template
    self.ranks: dict[tuple[str, str], int] = {}
    for rank, m in enumerate(merges):
      a, sep, b = m.partition(" ")
      if not sep or not a or not b: raise ValueError(f"merge {rank} {m!r} is not two tokens separated by one space")
      self.ranks.setdefault((a, b), rank)
    self.byte_char = _byte_alphabet()
    char_byte = {c: b for b, c in enumerate(self.byte_char)}
    # a token's bytes: merged tokens spell bytes in the alphabet; special ones (or anything outside it) are their UTF-8
    self.token_bytes = [t.encode() if tt in (CONTROL, USER_DEFINED) or any(c not in char_byte for c in t)
                        else bytes(char_byte[c] for c in t) for t, tt in zip(self.tokens, self.token_types)]
    self.pattern = pre_tokenizer(split_digits)
    def splitter(types):  # one alternation, longest first: of two specials starting at the same place the longer wins
      found = sorted((t for t, k in zip(self.tokens, self.token_types) if k in types and t), key=len, reverse=True)
      return re.compile("(" + "|".join(map(re.escape, found)) + ")") if found else None
    self._special_split = {True: splitter((CONTROL, USER_DEFINED)), False: splitter((USER_DEFINED,))}
    self._cache: dict[str, list[int]] = {}

  @classmethod
  def from_gguf(cls, metadata: Mapping[str, Any]) -> Tokenizer:
    """The tokenizer a GGUF's metadata (nn.state.gguf_metadata) describes. Raises ValueError for a tokenizer.ggml.model
    other than 'gpt2' or a tokenizer.ggml.pre this module does not know, naming the value."""
    def need(key):
      if key not in metadata: raise ValueError(f"GGUF metadata has no {key!r}, which a BPE tokenizer needs")
      return metadata[key]
    if (model := need("tokenizer.ggml.model")) != "gpt2":
      raise ValueError(f"tokenizer.ggml.model {model!r} is not supported: only 'gpt2' (byte-level BPE) is implemented")
    if (pre := metadata.get("tokenizer.ggml.pre")) not in PRE_TOKENIZERS:
      raise ValueError(f"tokenizer.ggml.pre {pre!r} is not supported: known pre-tokenizers are {sorted(PRE_TOKENIZERS)}")
    tokens = need("tokenizer.ggml.tokens")
    return cls(tokens, metadata.get("tokenizer.ggml.token_type", [1] * len(tokens)), need("tokenizer.ggml.merges"),
               need("tokenizer.ggml.bos_token_id"), need("tokenizer.ggml.eos_token_id"),
               metadata.get("tokenizer.ggml.unknown_token_id"), PRE_TOKENIZERS[pre],
               bool(metadata.get("tokenizer.ggml.add_bos_token", False)), metadata.get("tokenizer.chat_template"))

  @property
  def vocab_size(self) -> int: return len(self.tokens)

  def token(self, id: int) -> str:
    """The vocabulary's string for a token id (merged tokens in GPT-2's byte alphabet, e.g. 'Ġthe' for ' the')."""
    return self.tokens[self._check_id(id)]

  def _check_id(self, id) -> int:
    if not isinstance(id, int) or not 0 <= id < len(self.tokens):
      raise IndexError(f"token id {id!r} is outside the vocabulary of {len(self.tokens)}")
    return id

  def encode(self, text: str, allow_special: bool = True) -> list[int]:
    """The token ids of text. With allow_special, control tokens written in the text (<|im_start|>) are single ids;
    without, they are tokenised as the characters they are. No BOS is added."""
    if not isinstance(text, str): raise TypeError(f"encode: text must be a str, got {type(text).__name__}")
    ids: list[int] = []
    split = self._special_split[bool(allow_special)]
    for i, part in enumerate(split.split(text) if split is not None else [text]):
      if i % 2: ids.append(self.vocab[part])
      else:
        for m in self.pattern.finditer(part): ids.extend(self._word(m.group()))
    return ids

  def _word(self, word: str) -> list[int]:
    """The ids of one pre-token: its UTF-8 bytes as alphabet characters, adjacent pairs merged lowest rank first
    (leftmost first among equal ranks). A heap of candidate pairs over a linked list keeps a long word O(n log n)."""
    if (hit := self._cache.get(word)) is not None: return hit
    parts: list[str] = [self.byte_char[b] for b in word.encode()]
    n, ranks = len(parts), self.ranks
    nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
    heap = [(r, i) for i in range(n - 1) if (r := ranks.get((parts[i], parts[i + 1]))) is not None]
    heapq.heapify(heap)
    while heap:
      r, i = heapq.heappop(heap)
      # an entry is stale once either side has merged elsewhere; a rank names one pair, so a match means it is current
      if not parts[i] or (j := nxt[i]) >= n or ranks.get((parts[i], parts[j])) != r: continue
      parts[i], parts[j], nxt[i] = parts[i] + parts[j], "", nxt[j]
      if nxt[i] < n:
        prv[nxt[i]] = i
        if (r := ranks.get((parts[i], parts[nxt[i]]))) is not None: heapq.heappush(heap, (r, i))
      if prv[i] >= 0 and (r := ranks.get((parts[prv[i]], parts[i]))) is not None: heapq.heappush(heap, (r, prv[i]))
    ids = [self.vocab[p] if p in self.vocab else self._unknown(p) for p in parts if p]
    if len(self._cache) >= _CACHE_WORDS: self._cache.clear()
    self._cache[word] = ids
    return ids

  def _unknown(self, piece: str) -> int:
    if self.unk_id is None: raise ValueError(f"piece {piece!r} is not in the vocabulary and there is no unknown token")
    return self.unk_id

  def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
    """The text of token ids: their bytes joined, then UTF-8 with U+FFFD for bytes that do not decode. Control tokens
    read as their text (<|im_end|>) unless skip_special."""
    return b"".join(self._bytes(ids, skip_special)).decode("utf-8", errors="replace")

  def decode_stream(self, ids: Iterable[int], skip_special: bool = False) -> Iterator[str]:
    """Text pieces as ids arrive (ids may be a generator sampling them): bytes of a character split over tokens are
    held back until it is whole, so the pieces joined equal decode(ids)."""
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for b in self._bytes(ids, skip_special):
      if (text := dec.decode(b)): yield text
    if (text := dec.decode(b"", final=True)): yield text

  def _bytes(self, ids: Iterable[int], skip_special: bool) -> Iterator[bytes]:
    for i in map(self._check_id, ids):
      if not (skip_special and self.token_types[i] == CONTROL): yield self.token_bytes[i]

  def chat_prompt(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """The prompt text the GGUF's ChatML chat template renders for messages ({'role', 'content'} dicts): each as
    `<|im_start|>{role}\\n{content}<|im_end|>\\n`, the template's default system message first when the first message
    is not a system one, `<|im_start|>assistant\\n` last when add_generation_prompt. Raises ValueError when the template
    is missing or not ChatML (there is no Jinja engine here)."""
    default_system = self._chatml_default_system
    for k, m in enumerate(messages):
      if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
        raise TypeError(f"chat_prompt: messages[{k}] must be a dict with str 'role' and 'content', got {m!r}")
    turns = [(m["role"], m["content"]) for m in messages]
    if turns and turns[0][0] != "system" and default_system is not None: turns.insert(0, ("system", default_system))
    return "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns) + \
      ("<|im_start|>assistant\n" if add_generation_prompt else "")

  @functools.cached_property
  def _chatml_default_system(self) -> str | None:
    return chatml_default_system(self.chat_template)

# ---- reading a ChatML chat template without a Jinja engine ----
_TAG = re.compile(r"\{%(-?)\s*(.*?)\s*(-?)%\}|\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_TERM = re.compile(r"""\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|message(?:\[\s*['"](\w+)['"]\s*\]|\.(\w+)))\s*(\+|$)""", re.S)
_NOT_SYSTEM = re.compile(r"""if\s+(loop\.first\s+and\s+)?messages\[0\]\[\s*['"]role['"]\s*\]\s*!=\s*['"]system['"]""")
_CHATML_TURN = [("text", "<|im_start|>"), ("var", "role"), ("text", "\n"), ("var", "content"), ("text", "<|im_end|>\n")]
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}

def _template_error(template: str, why: str) -> ValueError:
  return ValueError(f"chat template is not a ChatML template this reader knows ({why}); template: {template[:200]!r}")

def _expression(template: str, expr: str) -> list[tuple[str, str]]:
  """The parts a `{{ }}` expression prints: ('text', literal) and ('var', message field), for `+` of string literals
  and message['role'] / message.content alone."""
  out, pos = [], 0
  while pos < len(expr):
    if not (m := _TERM.match(expr, pos)): raise _template_error(template, f"cannot read the expression {expr!r}")
    lit = m.group(1) if m.group(1) is not None else m.group(2)
    if lit is not None: out.append(("text", re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(0)), lit)))
    else: out.append(("var", m.group(3) or m.group(4)))
    pos = m.end()
  return out

def _text_between(raw: str, after: str, dash_before: bool, block_before: bool, at_start: bool) -> str:
  """The text Jinja prints between two tags (trim_blocks and lstrip_blocks on, as chat templates are rendered): `after`
  is 'all' after a `-%}`/`-}}` (leading whitespace goes), 'newline' after a block tag (its one newline goes)."""
  text = raw.lstrip() if after == "all" else raw.removeprefix("\n") if after == "newline" else raw
  if dash_before: return text.rstrip()
  if block_before and (line := re.search(r"(^|\n)[ \t]*\Z", raw)) and (line.group(1) or at_start): return text.rstrip(" \t")
  return text

def chatml_default_system(template: str | None) -> str | None:
  """The default system message a ChatML template inserts when the first message is not a system one (None when it
  inserts none). Raises ValueError naming what it could not read when the template is missing or is not ChatML.
  Text between tags is read as HF transformers and llama.cpp render it: `{%-`/`-%}` and `{{-`/`-}}` strip the
  whitespace beside them, a block tag drops the one newline after it and the spaces before it on its line."""
  if not template: raise ValueError("the GGUF has no tokenizer.chat_template, so there is no chat prompt format")
  parts: dict[str, list[tuple[str, str]]] = {"top": [], "turn": [], "default_system": [], "generation": []}
  stack, pos, seen_loop, after = ["top"], 0, False, ""
  for m in _TAG.finditer(template):
    dash_before, stmt, dash_after, expr_dash_before, expr, expr_dash_after = m.groups()
    if (text := _text_between(template[pos:m.start()], after, bool(dash_before or expr_dash_before), stmt is not None, pos == 0)):
      parts[stack[-1]].append(("text", text))
    pos, after = m.end(), "all" if dash_after or expr_dash_after else "newline" if stmt is not None else ""
    if expr is not None: parts[stack[-1]] += _expression(template, expr)
    elif re.fullmatch(r"for\s+message\s+in\s+messages", stmt) and stack == ["top"] and not seen_loop:
      stack.append("turn"); seen_loop = True
    elif re.fullmatch(r"if\s+add_generation_prompt", stmt) and stack == ["top"]: stack.append("generation")
    # the default system message: first thing in the loop under loop.first, or before the loop without it
    elif (c := _NOT_SYSTEM.fullmatch(stmt)) and not parts["turn"] and not parts["default_system"] and \
        (stack == ["top", "turn"] if c.group(1) else stack == ["top"] and not seen_loop):
      stack.append("default_system")
    elif stmt in ("endfor", "endif") and len(stack) > 1 and (stmt == "endfor") == (stack[-1] == "turn"): stack.pop()
    else: raise _template_error(template, f"unexpected {{% {stmt} %}}")
  if (text := _text_between(template[pos:], after, False, False, False)): parts[stack[-1]].append(("text", text))
  if stack != ["top"]: raise _template_error(template, f"block {stack[-1]!r} is never closed")
  def merged(ps):  # adjacent literals as one, so '<|im_end|>' + '\n' reads like '<|im_end|>\n'
    out: list[tuple[str, str]] = []
    for kind, v in ps:
      if out and kind == out[-1][0] == "text": out[-1] = ("text", out[-1][1] + v)
      else: out.append((kind, v))
    return out
  if (turn := merged(parts["turn"])) != _CHATML_TURN: raise _template_error(template, f"a message renders as {turn}")
  if (top := [p for p in merged(parts["top"]) if p != ("text", "")]): raise _template_error(template, f"it prints {top} outside the messages")
  if merged(parts["generation"]) != [("text", "<|im_start|>assistant\n")]:
    raise _template_error(template, f"the generation prompt is {merged(parts['generation'])}")
  if not parts["default_system"]: return None
  system = merged(parts["default_system"])
  if len(system) != 1 or not (s := re.fullmatch(r"<\|im_start\|>system\n(.*)<\|im_end\|>\n", system[0][1], re.S)):
    raise _template_error(template, f"the default system message renders as {system}")
  return s.group(1)
