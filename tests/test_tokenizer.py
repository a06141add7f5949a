"""llm/tokenizer.py: SmolLM2's GGUF tokenizer against HF `tokenizers` configured as the GGUF says (BPE over its vocab
and merges, digits split then the byte-level GPT-2 pre-tokenizer, byte-level decoder, its control tokens as special),
round trips, streaming decode, and the ChatML prompt against jinja2 rendering the GGUF's own template."""
import random, re
import pytest
from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers
from lucidgrad.llm.fetch import smollm2_gguf
from lucidgrad.nn.state import gguf_metadata
from lucidgrad.llm.tokenizer import Tokenizer, chatml_default_system, pre_tokenizer, _byte_alphabet

try: import jinja2
except ImportError: jinja2 = None

MD = gguf_metadata(smollm2_gguf())
TOK = Tokenizer.from_gguf(MD)
CONTROL = [t for t, k in zip(MD["tokenizer.ggml.tokens"], MD["tokenizer.ggml.token_type"]) if k == 3]

def hf_pre(split_digits: bool):
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
  return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]) if split_digits else byte_level

def hf_tokenizer(split_digits: bool = True, user_defined=()) -> HFTokenizer:
  """The reference: what SmolLM2's tokenizer.json holds, rebuilt from the GGUF's vocabulary, merges and token types."""
  vocab = {t: i for i, t in enumerate(MD["tokenizer.ggml.tokens"])}
  hf = HFTokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in MD["tokenizer.ggml.merges"]]))
  hf.pre_tokenizer, hf.decoder = hf_pre(split_digits), decoders.ByteLevel()
  hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CONTROL if t not in user_defined])
  hf.add_tokens([AddedToken(t, special=False, normalized=False) for t in user_defined])
  return hf

HF = hf_tokenizer()
CHATML = TOK.chat_prompt([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
                          {"role": "user", "content": "And  3 * 3?\n"}])
TEXTS = {
  "prose": "The quick brown fox jumps over the lazy dog. It wasn't the first time, and it won't be the last!",
  "code": "def f(x):\n    if x > 0:\n\treturn x ** 2  # square\n    return -x\n\n\nprint(f(3))\n",
  "numbers": "12345 and 3.14, 1,000,000 items; -42e10 x2 v1.2.3 2024-01-01",
  "contractions": "don't I'll you're we've she'd it's I'm DON'T they'LL 'sup",
  "spaces": "a  b   c    d\n\n\ne \n \n  f\t\tg \t h",
  "trailing_spaces": "ends with spaces   ",
  "leading_spaces": "   starts with spaces",
  "only_whitespace": " \n\t \n  ",
  "unicode_letters": "café naïve Straße 漢字かなカナ 한국어 Москва Ελληνικά العربية",
  "emoji_and_combining": "😀👍🏽🇺🇸 ❤️ é (e + U+0301) Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǒ̓͂",
  "odd_whitespace": "a\u00a0b\u3000c\x1cd\x85e\u2028f\u200bg",
  "punctuation": "Hello, world!!! (really?) --- [x] {y} <z> @user #tag $5 100% ...",
  "empty": "",
  "chatml": CHATML,
  "special_inside_words": "x<|im_start|>y <|im_end|> <|endoftext|>\n<file_sep><|im_start",
}

@pytest.mark.parametrize("name", TEXTS)
def test_encode_matches_the_reference_ids(name):
  text = TEXTS[name]
  assert TOK.encode(text) == HF.encode(text, add_special_tokens=False).ids

def test_random_strings_match_the_reference_ids():
  rng = random.Random(0)
  alphabet = list("aAzZ09 5'sltdmrv\n\t .,!?-_()\"'") + ["  ", "\n\n", "é", "ß", "漢", "я", "😀", "\u0301", "\u00a0", "\u2028"]
  alphabet += ["٣", "Ⅻ", "½"]  # numbers that are not ASCII digits (Nd, Nl, No)
  for _ in range(300):
    s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30)))
    assert TOK.encode(s) == HF.encode(s, add_special_tokens=False).ids, s

def test_long_words_match_the_reference_ids():
  rng = random.Random(1)
  for alphabet in ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "!@#$%^&*()[]{};:,./<>?=-", "漢字かなカナ한국어é"):
    word = "".join(rng.choice(alphabet) for _ in range(3000))
    assert TOK.encode(word) == HF.encode(word, add_special_tokens=False).ids
  assert TOK.encode("=" * 5000 + " " * 5000) == HF.encode("=" * 5000 + " " * 5000, add_special_tokens=False).ids

@pytest.mark.parametrize("split_digits", [True, False])
def test_pre_tokenizer_pieces_match_the_reference(split_digits):
  # the pieces themselves (in the byte alphabet), so a BPE that hides a wrong split cannot pass
  alphabet, ref = _byte_alphabet(), hf_pre(split_digits)
  for s in list(TEXTS.values())[:-3] + ["x  12  y", "a 1", "  1", "1 ", "abc123def 4 5", "\n\n1\n\nb"]:
    ours = ["".join(alphabet[b] for b in m.group().encode()) for m in pre_tokenizer(split_digits).finditer(s)]
    assert ours == [p for p, _ in ref.pre_tokenize_str(s)], s

def test_gpt2_pre_tokenizer_keeps_digit_runs():
  tok = Tokenizer.from_gguf({**MD, "tokenizer.ggml.pre": "gpt-2"})
  hf = hf_tokenizer(split_digits=False)
  for s in (TEXTS["numbers"], TEXTS["prose"], "x  12  y", "2024"):
    assert tok.encode(s) == hf.encode(s, add_special_tokens=False).ids
  assert [m.group() for m in tok.pattern.finditer("x 123")] == ["x", " 123"]
  assert [m.group() for m in TOK.pattern.finditer("x 123")] == ["x", " ", "1", "2", "3"]

def test_special_tokens_are_text_when_not_allowed():
  hf = hf_tokenizer()
  hf.encode_special_tokens = True   # split_special_tokens: control tokens in the text are ordinary characters
  for s in (CHATML, TEXTS["special_inside_words"]):
    ids = TOK.encode(s, allow_special=False)
    assert ids == hf.encode(s, add_special_tokens=False).ids and not set(ids) & set(range(len(CONTROL)))
  assert TOK.encode("<|im_start|>") == [TOK.vocab["<|im_start|>"]]

def test_user_defined_tokens_are_matched_whole_even_when_special_tokens_are_not():
  types = list(MD["tokenizer.ggml.token_type"])
  types[TOK.vocab["<file_sep>"]] = 4   # user-defined: llama.cpp matches these always, like HF's non-special added tokens
  tok = Tokenizer.from_gguf({**MD, "tokenizer.ggml.token_type": types})
  hf = hf_tokenizer(user_defined=["<file_sep>"])
  hf.encode_special_tokens = True
  s = "a<file_sep>b <|im_start|>user\n<file_sep>"
  assert tok.encode(s, allow_special=False) == hf.encode(s, add_special_tokens=False).ids
  assert tok.encode(s, allow_special=False).count(TOK.vocab["<file_sep>"]) == 2

@pytest.mark.parametrize("name", TEXTS)
def test_decode_round_trips_and_matches_the_reference(name):
  text = TEXTS[name]
  ids = TOK.encode(text)
  assert TOK.decode(ids) == text == HF.decode(ids, skip_special_tokens=False)
  assert TOK.decode(ids, skip_special=True) == HF.decode(ids, skip_special_tokens=True)

def whole_chars(b: bytes) -> str:
  """The text of b without an incomplete character at its end (what a stream may show so far)."""
  for cut in range(4):
    try: return b[:len(b) - cut].decode()
    except UnicodeDecodeError: pass
  raise AssertionError(b)

@pytest.mark.parametrize("name", ["emoji_and_combining", "unicode_letters", "chatml", "code"])
def test_decode_stream_yields_whole_characters_as_soon_as_they_are_complete(name):
  ids, seen, shown = TOK.encode(TEXTS[name]), [], ""
  def arriving():
    for i in ids: seen.append(i); yield i
  for piece in TOK.decode_stream(arriving()):
    shown += piece
    assert piece and shown == whole_chars(b"".join(TOK.token_bytes[i] for i in seen))
  assert shown == TEXTS[name] and len(seen) == len(ids)
  if name in ("emoji_and_combining", "unicode_letters"):  # these texts do split characters over tokens
    assert any("\ufffd" in TOK.token_bytes[i].decode(errors="replace") for i in ids)

def test_decode_stream_replaces_bad_bytes_like_decode():
  bad = [TOK.vocab[_byte_alphabet()[0x80]], *TOK.encode("ok"), TOK.vocab[_byte_alphabet()[0xf0]], TOK.vocab[_byte_alphabet()[0x9f]]]
  assert "".join(TOK.decode_stream(bad)) == TOK.decode(bad) == b"\x80ok\xf0\x9f".decode(errors="replace")
  assert "\ufffd" in TOK.decode(bad) and list(TOK.decode_stream([])) == []

def test_vocabulary_facts_come_from_the_metadata():
  assert (TOK.vocab_size, TOK.bos_id, TOK.eos_id) == (len(MD["tokenizer.ggml.tokens"]), MD["tokenizer.ggml.bos_token_id"],
                                                     MD["tokenizer.ggml.eos_token_id"])
  assert TOK.token(TOK.eos_id) == "<|im_end|>" and TOK.token(HF.encode(" the").ids[0]) == "Ġthe"
  assert TOK.add_bos is MD["tokenizer.ggml.add_bos_token"]

def test_bad_input_raises_clear_errors():
  with pytest.raises(ValueError, match="tokenizer.ggml.model 'llama'"): Tokenizer.from_gguf({**MD, "tokenizer.ggml.model": "llama"})
  with pytest.raises(ValueError, match="tokenizer.ggml.pre 'qwen2'"): Tokenizer.from_gguf({**MD, "tokenizer.ggml.pre": "qwen2"})
  with pytest.raises(ValueError, match="tokenizer.ggml.merges"):
    Tokenizer.from_gguf({k: v for k, v in MD.items() if k != "tokenizer.ggml.merges"})
  with pytest.raises(TypeError, match="text must be a str"): TOK.encode(b"bytes")
  with pytest.raises(IndexError, match="token id 49152"): TOK.decode([1, 49152])
  with pytest.raises(IndexError, match="token id -1"): TOK.token(-1)
  with pytest.raises(TypeError, match=r"messages\[1\]"): TOK.chat_prompt([{"role": "user", "content": "a"}, {"role": "user"}])

# ---- the chat prompt ----
TEMPLATE = MD["tokenizer.chat_template"]
CONVERSATIONS = [[{"role": "user", "content": "Hi!"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}],
                 [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], []]

def rendered(template: str, messages, add_generation_prompt: bool) -> str:
  """The template rendered by jinja2 when it is installed, else ChatML assembled from the template's own pieces."""
  if jinja2 is not None:  # as HF transformers renders chat templates
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)
  system = re.search(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", template, re.S)
  turns = ([{"role": "system", "content": system.group(1)}] if system and messages and messages[0]["role"] != "system" else []) + messages
  return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in turns) + \
    ("<|im_start|>assistant\n" if add_generation_prompt else "")

@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("k", range(len(CONVERSATIONS)))
def test_chat_prompt_is_what_the_template_renders(k, add_generation_prompt):
  assert TOK.chat_prompt(CONVERSATIONS[k], add_generation_prompt) == rendered(TEMPLATE, CONVERSATIONS[k], add_generation_prompt)

def test_default_system_message_is_read_from_the_template():
  assert chatml_default_system(TEMPLATE) in TEMPLATE and chatml_default_system(TEMPLATE).startswith("You are")
  changed = TEMPLATE.replace("named SmolLM", "named Ada")
  assert "named Ada" in Tokenizer.from_gguf({**MD, "tokenizer.chat_template": changed}).chat_prompt(CONVERSATIONS[0])

def test_plain_chatml_template_without_a_default_system_message():
  plain = ("{% for message in messages %}{{ \"<|im_start|>\" + message.role + \"\\n\" + message.content + \"<|im_end|>\\n\" }}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
  tok = Tokenizer.from_gguf({**MD, "tokenizer.chat_template": plain})
  for msgs in CONVERSATIONS[:3]: assert tok.chat_prompt(msgs) == rendered(plain, msgs, True)

MULTI_LINE = """{%- for message in messages %}
  {%- if loop.first and messages[0]["role"] != "system" %}
    {{- "<|im_start|>system\\nYou are Pat, a parrot.<|im_end|>\\n" }}
  {%- endif %}
  {{- "<|im_start|>" + message.role + "\\n" + message.content + "<|im_end|>" + "\\n" }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- "<|im_start|>assistant\\n" }}
{%- endif %}
"""
SYSTEM_BEFORE_LOOP = """{% if messages[0]['role'] != 'system' %}
<|im_start|>system
Be kind.<|im_end|>
{% endif %}
{% for message in messages %}
{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""

@pytest.mark.parametrize("template", [MULTI_LINE, SYSTEM_BEFORE_LOOP])
def test_chatml_templates_written_over_several_lines(template):
  tok = Tokenizer.from_gguf({**MD, "tokenizer.chat_template": template})
  for msgs in CONVERSATIONS[:3]:
    for add in (True, False): assert tok.chat_prompt(msgs, add) == rendered(template, msgs, add)
  assert chatml_default_system(template) in ("You are Pat, a parrot.", "Be kind.")

@pytest.mark.parametrize("template, why", [
  ("{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] "
   "| trim + '<|eot_id|>' }}{% endfor %}", "cannot read the expression"),
  (TEMPLATE.replace("'<|im_end|>' + '\n'", "'<|im_end|>'"), "a message renders as"),
  (TEMPLATE.rsplit("{% endif %}", 1)[0], "never closed"),
  (MULTI_LINE.replace('{{- "<|im_start|>" +', '{{ "<|im_start|>" +'), "a message renders as"),   # keeps the indent
  (TEMPLATE.replace("loop.first and ", ""), "unexpected"),   # the system message before every message
  (None, "no tokenizer.chat_template")])
def test_templates_that_are_not_chatml_raise(template, why):
  tok = Tokenizer.from_gguf({**MD, "tokenizer.chat_template": template})
  with pytest.raises(ValueError, match=why): tok.chat_prompt(CONVERSATIONS[0])
