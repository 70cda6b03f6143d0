"""Tiny GGUF models and their reference activations, for lca's tests.

Each fixture is one GGUF file written with gguf-py as llama.cpp lays it out
(tensor names, metadata keys, the tokenizer in the metadata), holding
quantized weights of every type lca reads, and a golden JSON file with the
activations transformers computes after loading the same file
(`gguf_file=`, which dequantizes it):

    tiny-llama-gguf    llama architecture, a byte-level (gpt2) tokenizer with
                       the llama-bpe split, BOS; weights in Q4_0, Q4_1, Q5_0,
                       Q8_0, Q4_K, Q5_K, Q6_K, F16 and F32
    tiny-llama2-gguf   llama architecture, a SentencePiece (llama) tokenizer
                       with byte fallback; Q8_0, F16 and F32
    tiny-qwen2-gguf    qwen2 architecture (no query/key permutation, biases),
                       a byte-level tokenizer with the qwen2 split

Quantized blocks hold random bytes, with their scales set so the weights
have a sensible spread: any bytes are a valid block, so every bit of every
format is exercised. Queries and keys of the llama files are read back
through the permutation llama.cpp applies, as for a converted checkpoint.

    python gguf_fixtures.py FIXTURES_DIR GOLDEN_DIR

Run by scripts/golden/decoder-golden.sh, after decoder_fixtures.py (the
tokenizers come from its fixtures).
"""

import json
import os
import sys

import numpy as np
import torch
import transformers
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q, GGUFWriter, TokenType
from gguf.quants import dequantize

from decoder_fixtures import SENTENCES, pad_batch, record, write_golden

# Byte offsets of the f16 scales in each block type (linear in the values).
SCALES = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208], Q.Q2_K: [80, 82], Q.Q3_K: [108],
}


def quantized(rng, rows, cols, qtype, spread):
    """Random blocks of `qtype` for a rows × cols weight whose values have
    standard deviation `spread` (and their dequantized values)."""
    if qtype in (Q.F32, Q.F16):
        values = (rng.standard_normal((rows, cols)) * spread).astype(np.float32)
        raw = values if qtype == Q.F32 else values.astype(np.float16)
        return raw, raw.astype(np.float32)
    block, size = GGML_QUANT_SIZES[qtype]
    assert cols % block == 0, (qtype, cols)
    blocks = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    for at in SCALES[qtype]:
        scale = rng.uniform(0.5, 1.0, size=len(blocks)).astype(np.float16)
        blocks[:, at:at + 2] = scale.view(np.uint8).reshape(-1, 2)
    values = dequantize(blocks.reshape(rows, -1), qtype)
    factor = spread / values.std()
    for at in SCALES[qtype]:
        scale = blocks[:, at:at + 2].copy().view(np.float16).astype(np.float32) * factor
        blocks[:, at:at + 2] = scale.astype(np.float16).view(np.uint8).reshape(-1, 2)
    raw = blocks.reshape(rows, -1)
    return raw, dequantize(raw, qtype)


def tokenizer_metadata(writer, tokenizer_dir, kind, pre, add_bos):
    """The fixture's tokenizer.json as llama.cpp keeps a tokenizer."""
    with open(os.path.join(tokenizer_dir, "tokenizer.json")) as f:
        spec = json.load(f)
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    special = {t["content"] for t in spec["added_tokens"] if t["special"]}
    types = []
    for token in tokens:
        if token in special:
            types.append(TokenType.CONTROL)
        elif kind == "llama" and token.startswith("<0x") and len(token) == 6:
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model(kind)
    if pre:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if kind == "llama":
        writer.add_token_scores([-float(i) for i in range(len(tokens))])
        writer.add_unk_token_id(vocab["<unk>"])
    writer.add_token_merges(merges)
    bos = [t for t in ("<|begin_of_text|>", "<s>") if t in vocab]
    if bos:
        writer.add_bos_token_id(vocab[bos[0]])
    writer.add_add_bos_token(add_bos)
    return len(tokens)


FIXTURES = {
    "tiny-llama-gguf": dict(
        arch="llama", tokenizer="tiny-llama", kind="gpt2", pre="llama-bpe", add_bos=True,
        hidden=256, heads=4, kv_heads=2, inner=512, layers=2, biases=False,
        types=[
            dict(token_embd=Q.Q4_K, attn_q=Q.Q4_0, attn_k=Q.Q4_1, attn_v=Q.Q8_0, attn_output=Q.Q5_K,
                 ffn_gate=Q.Q6_K, ffn_up=Q.F16, ffn_down=Q.Q4_K),
            dict(attn_q=Q.Q5_0, attn_k=Q.Q6_K, attn_v=Q.Q4_K, attn_output=Q.Q8_0,
                 ffn_gate=Q.Q4_1, ffn_up=Q.Q5_K, ffn_down=Q.F32),
        ],
    ),
    "tiny-llama2-gguf": dict(
        arch="llama", tokenizer="tiny-llama2", kind="llama", pre=None, add_bos=True,
        hidden=64, heads=4, kv_heads=4, inner=96, layers=2, biases=False,
        types=[
            dict(token_embd=Q.Q8_0, attn_q=Q.Q8_0, attn_k=Q.F16, attn_v=Q.Q8_0, attn_output=Q.F16,
                 ffn_gate=Q.Q8_0, ffn_up=Q.F32, ffn_down=Q.Q8_0),
            dict(attn_q=Q.F16, attn_k=Q.Q8_0, attn_v=Q.F32, attn_output=Q.Q8_0,
                 ffn_gate=Q.F16, ffn_up=Q.Q8_0, ffn_down=Q.F16),
        ],
    ),
    "tiny-qwen2-gguf": dict(
        arch="qwen2", tokenizer="tiny-qwen2", kind="gpt2", pre="qwen2", add_bos=False,
        hidden=64, heads=4, kv_heads=2, inner=96, layers=2, biases=True,
        types=[
            dict(token_embd=Q.F16, attn_q=Q.Q8_0, attn_k=Q.Q4_0, attn_v=Q.Q8_0, attn_output=Q.F16,
                 ffn_gate=Q.Q8_0, ffn_up=Q.Q4_1, ffn_down=Q.F16),
            dict(attn_q=Q.F16, attn_k=Q.Q8_0, attn_v=Q.F32, attn_output=Q.Q8_0,
                 ffn_gate=Q.F16, ffn_up=Q.Q8_0, ffn_down=Q.Q8_0),
        ],
    ),
}


def write_fixture(name, spec, fixtures):
    out = os.path.join(fixtures, name)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "model.gguf")
    rng = np.random.default_rng(sum(map(ord, name)))
    arch = spec["arch"]
    writer = GGUFWriter(path, arch)
    writer.add_name(name)
    vocab = tokenizer_metadata(
        writer, os.path.join(fixtures, spec["tokenizer"]), spec["kind"], spec["pre"], spec["add_bos"]
    )
    h, heads, kv, inner = spec["hidden"], spec["heads"], spec["kv_heads"], spec["inner"]
    head_dim = h // heads
    writer.add_context_length(64)
    writer.add_embedding_length(h)
    writer.add_block_count(spec["layers"])
    writer.add_feed_forward_length(inner)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)

    def weight(tensor, rows, cols, qtype):
        raw, _ = quantized(rng, rows, cols, qtype, 1.0 / np.sqrt(cols))
        writer.add_tensor(tensor, raw, raw_dtype=qtype)

    def norm(tensor, size):
        writer.add_tensor(tensor, (1.0 + 0.2 * rng.standard_normal(size)).astype(np.float32))

    types = spec["types"]
    weight("token_embd.weight", vocab, h, types[0]["token_embd"])
    for i in range(spec["layers"]):
        t = types[i]
        norm(f"blk.{i}.attn_norm.weight", h)
        for part, rows in [("attn_q", heads * head_dim), ("attn_k", kv * head_dim), ("attn_v", kv * head_dim)]:
            weight(f"blk.{i}.{part}.weight", rows, h, t[part])
            if spec["biases"]:
                writer.add_tensor(f"blk.{i}.{part}.bias", (0.1 * rng.standard_normal(rows)).astype(np.float32))
        weight(f"blk.{i}.attn_output.weight", h, heads * head_dim, t["attn_output"])
        norm(f"blk.{i}.ffn_norm.weight", h)
        weight(f"blk.{i}.ffn_gate.weight", inner, h, t["ffn_gate"])
        weight(f"blk.{i}.ffn_up.weight", inner, h, t["ffn_up"])
        weight(f"blk.{i}.ffn_down.weight", h, inner, t["ffn_down"])
    norm("output_norm.weight", h)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)
    return out


def golden(name, out, goldens):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        out, gguf_file="model.gguf", dtype=torch.float32, attn_implementation="eager"
    ).model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")
    texts = [" ".join(words) for words in SENTENCES]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    sites = record(model, pad_batch(ids, 0), [len(i) for i in ids])
    sentences = [
        {"words": words, "text": text, "ids": i, "sites": s}
        for words, text, i, s in zip(SENTENCES, texts, ids, sites)
    ]
    write_golden(os.path.join(goldens, f"{name}.json"), model.config.model_type, sentences)


def main():
    fixtures, goldens = sys.argv[1], sys.argv[2]
    for name, spec in FIXTURES.items():
        golden(name, write_fixture(name, spec, fixtures), goldens)


if __name__ == "__main__":
    main()
