"""GGUF's quantised types in nn/state.py (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K): random and extreme blocks
dequantised by gguf_load's kernels equal, bit for bit, a NumPy dequantiser written here from the format's description;
the real SmolLM2-135M Q4_1 file loads whole and its matrices match the same reference; bad block counts are refused."""
import mmap, struct
import numpy as np, pytest
from lucidgrad import Tensor, dtypes, GlobalCounters
import lucidgrad.tensor as lt
from lucidgrad.nn.state import StateFileError, gguf_load
from lucidgrad.llm.fetch import smollm2_gguf
from test_state import gguf_file

F32 = 0

# ---- the reference: NumPy, from the block layouts (ggml's block_* structs, little-endian), float32 arithmetic in ggml's order ----
def f16(b, at) -> np.ndarray:
  """The float16 at byte `at` of each block, as float32 (blocks, 1)."""
  return np.ascontiguousarray(b[:, at:at + 2]).view("<f2").astype(np.float32)

def nibbles(qs) -> np.ndarray:
  """16 bytes -> 32 values: value j is the low nibble of byte j, value 16 + j its high nibble."""
  return np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.int32)

def fifth_bits(qh4) -> np.ndarray:
  """Q5_0/Q5_1: the 4 bytes read as a little-endian uint32, whose bit j is value j's fifth bit (blocks, 32)."""
  word = np.ascontiguousarray(qh4).view("<u4").astype(np.int64)
  return ((word >> np.arange(32)) & 1).astype(np.int32)

def k_scales_mins(s) -> tuple[np.ndarray, np.ndarray]:
  """The 8 six-bit (scale, min) pairs of a Q4_K/Q5_K block's 12 bytes: j < 4 in the low 6 bits of bytes j and j+4; j >= 4
  in the low / high nibble of byte j+4 with its top 2 bits in the top 2 bits of byte j-4 / byte j."""
  s = s.astype(np.int32)
  sc, mn = np.zeros((len(s), 8), np.int32), np.zeros((len(s), 8), np.int32)
  for j in range(8):
    if j < 4: sc[:, j], mn[:, j] = s[:, j] & 63, s[:, j + 4] & 63
    else: sc[:, j], mn[:, j] = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4), (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
  return sc.astype(np.float32), mn.astype(np.float32)

def k_nibbles(qs) -> np.ndarray:
  """Q4_K/Q5_K's 128 bytes -> (blocks, 8, 32): sub-blocks 2i and 2i+1 are the low and high nibbles of bytes 32i..32i+31."""
  q = qs.reshape(-1, 4, 32).astype(np.int32)
  return np.stack([q & 0xF, q >> 4], axis=2).reshape(-1, 8, 32)

def ref_q8_0(b): return f16(b, 0) * b[:, 2:34].view(np.int8).astype(np.float32)
def ref_q4_0(b): return (nibbles(b[:, 2:18]) - 8).astype(np.float32) * f16(b, 0)
def ref_q4_1(b): return nibbles(b[:, 4:20]).astype(np.float32) * f16(b, 0) + f16(b, 2)
def ref_q5_0(b): return ((nibbles(b[:, 6:22]) | (fifth_bits(b[:, 2:6]) << 4)) - 16).astype(np.float32) * f16(b, 0)
def ref_q5_1(b): return (nibbles(b[:, 8:24]) | (fifth_bits(b[:, 4:8]) << 4)).astype(np.float32) * f16(b, 0) + f16(b, 2)

def ref_q4_k(b):
  sc, mn = k_scales_mins(b[:, 4:16])
  d, dmin = f16(b, 0) * sc, f16(b, 2) * mn  # ggml: d1 = d * sc, m1 = dmin * m, y = d1 * q - m1
  return (d[:, :, None] * k_nibbles(b[:, 16:144]).astype(np.float32) - dmin[:, :, None]).reshape(-1, 256)

def ref_q5_k(b):
  sc, mn = k_scales_mins(b[:, 4:16])
  d, dmin = f16(b, 0) * sc, f16(b, 2) * mn
  # qh[l] holds the fifth bits of value l of all 8 sub-blocks, sub-block s in bit s: unpack LSB first, then (s, l)
  hi = np.unpackbits(b[:, 16:48], axis=1, bitorder="little").reshape(-1, 32, 8).transpose(0, 2, 1).astype(np.int32)
  q = (k_nibbles(b[:, 48:176]) | (hi << 4)).astype(np.float32)
  return (d[:, :, None] * q - dmin[:, :, None]).reshape(-1, 256)

def ref_q6_k(b):
  ql, qh, sc, d = b[:, :128].astype(np.int32), b[:, 128:192].astype(np.int32), b[:, 192:208].view(np.int8).astype(np.float32), f16(b, 208)
  y = np.zeros((len(b), 256), np.float32)
  for h in range(2):  # each 128 values: 64 bytes of ql, 32 of qh, 8 scales (one per 16 values)
    lo, hb = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
    for k in range(4):  # value 32k + l: nibble k // 2 of ql[l + 32 (k % 2)], bits 2k..2k+1 of qh[l]
      nib = lo[:, 32 * (k % 2):32 * (k % 2) + 32]
      q = ((nib & 0xF) if k < 2 else (nib >> 4)) | (((hb >> (2 * k)) & 3) << 4)
      s = np.repeat(sc[:, 8 * h + 2 * k:8 * h + 2 * k + 2], 16, axis=1)  # scale l // 16 of this 32
      y[:, 128 * h + 32 * k:128 * h + 32 * k + 32] = (d * s) * (q - 32).astype(np.float32)
  return y

# name: (ggml type, values per block, bytes per block, byte offsets of the float16 fields, reference)
QUANTS = {"Q8_0": (8, 32, 34, [0], ref_q8_0), "Q4_0": (2, 32, 18, [0], ref_q4_0), "Q4_1": (3, 32, 20, [0, 2], ref_q4_1),
          "Q5_0": (6, 32, 22, [0], ref_q5_0), "Q5_1": (7, 32, 24, [0, 2], ref_q5_1), "Q4_K": (12, 256, 144, [0, 2], ref_q4_k),
          "Q5_K": (13, 256, 176, [0, 2], ref_q5_k), "Q6_K": (14, 256, 210, [208], ref_q6_k)}
NEW = ["Q4_1", "Q5_0", "Q5_1", "Q5_K"]

def reference(qname: str, b: np.ndarray) -> np.ndarray:
  with np.errstate(invalid="ignore"): return QUANTS[qname][4](b)  # inf * 0 and inf - inf make NaN on purpose

# float16 scales at the ends of the range: largest, smallest subnormal, smallest normal, signed zeros, infinities, NaN
EXTREME = np.array([65504, -65504, 2**-24, -2**-24, 2**-14, -0.0, 0.0, 1, -1, np.inf, -np.inf, np.nan], np.float16)

def make_blocks(rng, qname: str, nb: int = 24) -> np.ndarray:
  """nb random blocks: in the first 12 every float16 field holds an EXTREME value (a second field the one before the
  first's: (0, -0), (inf, -1), (-inf, inf), ...), in the rest random scales over 7 decades; the last three have every
  other byte 0 (all-zero nibbles, scales, bits), 0xFF (all-15 nibbles, every fifth bit set, 63 scales and mins, int8 -1)
  and 0x80 (int8 -128, only the top bit of each byte)."""
  _, _, size, f16s, _ = QUANTS[qname]
  b = rng.integers(0, 256, (nb, size), dtype=np.uint8)
  other = np.ones(size, bool)
  for k, at in enumerate(f16s):
    other[at:at + 2] = False
    v = (rng.standard_normal(nb) * 10.0 ** rng.uniform(-5, 2, nb)).astype(np.float16)
    v[:len(EXTREME)] = np.roll(EXTREME, k)
    b[:, at:at + 2] = v.reshape(-1, 1).view(np.uint8)
  for i, fill in zip((-3, -2, -1), (0x00, 0xFF, 0x80)): b[i, other] = fill
  return b

def assert_same_bits(got: np.ndarray, want: np.ndarray, what: str):
  """Equal float32 bit patterns (so -0.0 is not 0.0), except that any NaN matches any NaN (C and NumPy may differ in the
  payload of the NaN that inf - inf or 0 * inf makes)."""
  assert got.dtype == want.dtype == np.float32 and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
  nan = np.isnan(want)
  np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{what}: NaNs differ")
  bad = (got.view(np.uint32) != want.view(np.uint32)) & ~nan
  assert not bad.any(), f"{what}: {bad.sum()} values differ, first at {np.argwhere(bad)[0]}: {got[bad][:4]} vs {want[bad][:4]}"

def sync_pending_checks():
  """Run index checks an earlier test on this worker left pending (they run with the next realize) so kernel counts are ours."""
  if lt._pending_checks: lt.realize_nodes([])

@pytest.fixture(scope="module")
def quant_file():
  """One GGUF file holding every quantised type (2-D, (3, 8 blocks) in PyTorch order) and Q4_1 and Q5_K again as 3-D
  tensors, with an F32 tensor first so the quantised data start at a non-zero offset: (the blocks, the file). Each test
  loads it afresh, so no test sees tensors another realized (a failing test's traceback shows, and so realizes, them)."""
  rng = np.random.default_rng(13)
  blocks = {q: make_blocks(rng, q) for q in QUANTS}
  extra = {f"{q}_3d": make_blocks(rng, q) for q in ("Q4_1", "Q5_K")}
  tensors = [("f", (3,), F32, np.float32([1, 2, 3]).tobytes())]
  tensors += [(q, (8 * QUANTS[q][1], 3), QUANTS[q][0], b.tobytes()) for q, b in blocks.items()]
  tensors += [(n, (2 * QUANTS[n[:4]][1], 3, 4), QUANTS[n[:4]][0], b.tobytes()) for n, b in extra.items()]
  return blocks | extra, gguf_file([("general.architecture", 8, "test")], tensors)

def load_lazily(blob: bytes) -> dict[str, Tensor]:
  # gguf_load copies the 32-value types' fields into planes (kernels at load); the unpacking itself stays lazy, which
  # the tests below check by counting the kernels of the first use
  meta, ts = gguf_load(blob)
  assert meta == {"general.architecture": "test"}
  return ts

@pytest.mark.parametrize("qname", list(QUANTS))
def test_every_quant_type_dequantises_bit_exactly_like_the_reference(qname, quant_file):
  blocks, ts = quant_file[0], load_lazily(quant_file[1])
  blk = QUANTS[qname][1]
  w = ts[qname]
  assert w.shape == (3, 8 * blk) and w.dtype == dtypes.float32
  want = reference(qname, blocks[qname]).reshape(3, 8 * blk)
  assert np.isnan(want).any() and np.isinf(want).any() and (want == 0).any()  # the extremes reached the values
  sync_pending_checks()
  before = GlobalCounters.kernel_count
  got = w.numpy()
  assert GlobalCounters.kernel_count - before == 1  # the unpacking is one kernel
  assert_same_bits(got, want, qname)

@pytest.mark.parametrize("qname", ["Q4_1_3d", "Q5_K_3d"])
def test_a_three_dimensional_quantised_tensor_keeps_its_shape(qname, quant_file):
  blocks, ts = quant_file[0], load_lazily(quant_file[1])
  blk = QUANTS[qname[:4]][1]
  assert ts[qname].shape == (4, 3, 2 * blk)
  assert_same_bits(ts[qname].numpy(), reference(qname[:4], blocks[qname]).reshape(4, 3, 2 * blk), qname)

def test_dequantising_fuses_into_the_first_use(quant_file):
  blocks, ts = quant_file[0], load_lazily(quant_file[1])
  want = reference("Q5_1", blocks["Q5_1"]).reshape(3, -1)[2:].astype(np.float64)  # row 2: blocks 16-23, past the extreme scales
  assert np.isfinite(want).all()
  # the last row, scaled and summed: still one kernel, reading the raw blocks
  sync_pending_checks()
  before = GlobalCounters.kernel_count
  got = (ts["Q5_1"][2:, :] * 2).sum(axis=1).numpy()
  assert GlobalCounters.kernel_count - before == 1
  want = (want * 2).sum(1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())

# ---- bad files ----
@pytest.mark.parametrize("qname", NEW)
def test_a_quantised_tensor_whose_bytes_do_not_match_its_blocks_is_refused(qname):
  tt, blk, size, _, _ = QUANTS[qname]
  whole = gguf_file([], [("blk.0.w", (2 * blk,), tt, bytes(2 * size))])
  start = len(whole) - (2 * size + -2 * size % 32)  # the data section: the tensor, then padding to the alignment
  with pytest.raises(StateFileError, match=r"'blk\.0\.w'.*truncated"): gguf_load(whole[:start + 2 * size - 1])
  # a second tensor 32 bytes on: the first's two blocks (40 bytes and more) run into it
  two = gguf_file([], [("blk.0.a", (2 * blk,), tt, bytes(32)), ("blk.0.b", (4 * blk,), tt, bytes(4 * size))], offsets=[0, 32])
  with pytest.raises(StateFileError, match=r"'blk\.0\.a' and 'blk\.0\.b' overlap"): gguf_load(two)
  with pytest.raises(StateFileError, match=rf"'blk\.0\.w' of {qname} has dims \({blk + 16}, 2\), whose first is not a multiple of {blk}"):
    gguf_load(gguf_file([], [("blk.0.w", (blk + 16, 2), tt, bytes(4 * size))]))

def test_an_unsupported_quant_type_is_named_with_the_supported_ones():
  with pytest.raises(StateFileError, match=r"'t' has type Q2_K \(10\), which gguf_load does not dequantise; supported: .*'Q4_1', 'Q5_0', 'Q5_1'.*'Q5_K'"):
    gguf_load(gguf_file([], [("t", (256,), 10, bytes(84))]))

# ---- the real model: SmolLM2-135M-Instruct, 210 Q4_1 matrices, a Q8_0 embedding, 61 F32 norms ----
GG_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF scalar value types: bytes

def gguf_index(mem) -> tuple[int, dict[str, tuple[tuple[int, ...], int, int]]]:
  """(the data section's start, {name: (dims fastest first, ggml type, offset)}) of a GGUF v3 file, read by the spec."""
  pos = 0
  def take(fmt):
    nonlocal pos
    out = struct.unpack_from(fmt, mem, pos)
    pos += struct.calcsize(fmt)
    return out
  def string():
    nonlocal pos
    (n,) = take("<Q")
    pos += n
    return bytes(mem[pos - n:pos]).decode()
  def skip(vt):
    nonlocal pos
    if vt in GG_SIZES: pos += GG_SIZES[vt]
    elif vt == 8: string()
    else:
      et, n = take("<IQ")
      if et in GG_SIZES: pos += n * GG_SIZES[et]
      else:
        for _ in range(n): skip(et)
  magic, version, n_tensors, n_kv = take("<4sIQQ")
  assert magic == b"GGUF" and version == 3
  align = 32
  for _ in range(n_kv):
    key, (vt,) = string(), take("<I")
    if key == "general.alignment": (align,) = take("<I")
    else: skip(vt)
  index = {}
  for _ in range(n_tensors):
    name, (nd,) = string(), take("<I")
    dims, (tt, off) = take(f"<{nd}Q"), take("<IQ")
    index[name] = (dims, tt, off)
  return -(-pos // align) * align, index

def test_smollm2_q4_1_gguf_loads_every_tensor_and_matches_the_reference():
  path = smollm2_gguf()
  with open(path, "rb") as f: mem = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)
  start, index = gguf_index(mem)
  kinds = {tt for _, tt, _ in index.values()}
  assert kinds == {0, 3, 8} and len(index) == 272
  def raw(name, nbytes_per_block):
    dims, tt, off = index[name]
    n = int(np.prod(dims)) // QUANTS[{3: "Q4_1", 8: "Q8_0"}[tt]][1]
    return mem[start + off:start + off + n * nbytes_per_block].reshape(n, nbytes_per_block)
  meta, ts = gguf_load(path)
  assert meta["general.architecture"] == "llama" and sorted(ts) == sorted(index)
  full = {"blk.0.ffn_down.weight", "blk.0.attn_k.weight", "blk.29.ffn_gate.weight"}  # compared whole; the others by rows
  for name, (dims, tt, off) in index.items():
    t, shape = ts[name], tuple(reversed(dims))
    assert t.shape == shape and t.dtype == dtypes.float32, name
    if tt == 0: np.testing.assert_array_equal(t.numpy(), mem[start + off:start + off + 4 * int(np.prod(dims))].view("<f4").reshape(shape), name)
    elif tt == 3:
      got, blocks = t.numpy(), raw(name, 20)
      assert np.isfinite(got).all(), name
      if name in full: assert_same_bits(got, ref_q4_1(blocks).reshape(shape), name)
      else:
        per_row = shape[1] // 32
        for r in (0, shape[0] - 1): assert_same_bits(got[r], ref_q4_1(blocks[r * per_row:(r + 1) * per_row]).reshape(-1), f"{name} row {r}")
  # the embedding (49152 x 576, Q8_0, 113 MB as float32): two slices of rows, each dequantised alone by a fused kernel
  emb, blocks = ts["token_embd.weight"], raw("token_embd.weight", 34)
  assert emb.shape == (49152, 576)
  for rows in (slice(0, 64), slice(49152 - 64, 49152)):
    want = ref_q8_0(blocks[rows.start * 18:rows.stop * 18]).reshape(64, 576)
    assert_same_bits(emb[rows].numpy(), want, f"token_embd rows {rows}")

# ---- string arrays (a tokenizer's vocabulary and merges) take a faster path than single strings ----
def test_string_arrays_load_and_bad_ones_are_refused():
  tokens = ["", "a", "ünï", "Ġthe", "<|im_start|>", "\x00", "🙂" * 3]
  meta, _ = gguf_load(gguf_file([("tokenizer.ggml.tokens", 9, (8, tokens)), ("after", 4, 7)], []))
  assert meta == {"tokenizer.ggml.tokens": tokens, "after": 7}
  head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"t" + struct.pack("<IIQ", 9, 8, 3)
  one = struct.pack("<Q", 2) + b"ok"
  with pytest.raises(StateFileError, match="metadata 't' is not valid UTF-8"): gguf_load(head + one + struct.pack("<Q", 2) + b"\xff\xfe" + one)
  for cut in (head + one, head + one + struct.pack("<Q", 3) + b"ab", head + one + b"\x05\x00", head + one + struct.pack("<Q", 2**63)):
    with pytest.raises(StateFileError, match=r"metadata 't' needs bytes .* \(truncated\?\)"): gguf_load(cut)
