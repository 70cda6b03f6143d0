"""Tiny random decoder models and their reference activations, for lca's tests.

For each family (GPT-2, Llama 3 with rope scaling and grouped-query attention,
Llama 2 with a SentencePiece-style tokenizer, Mistral with a sliding window,
Qwen2 with QKV bias, Qwen3 with q/k norms) this writes a model folder with
config.json, model.safetensors and tokenizer.json, and a golden JSON file
with, for a few sentences, the token ids of the space-joined words and every
activation site:

    residual   hidden_states of output_hidden_states (layer 0 = embeddings;
               the last one after the final norm, as transformers returns it)
    mlp        the input of the MLP's down projection: act(gate) * up, or
               act(fc) for GPT-2
    attention  the output of the attention's output projection, before the
               residual add

It also writes site goldens for the committed BERT-family encoder fixtures
(their weights are not regenerated here).

    python decoder_fixtures.py FIXTURES_DIR GOLDEN_DIR

The computation runs in float32 with eager attention, every sentence of a
family in one right-padded batch, as lca runs them.
"""

import json
import os
import sys

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SENTENCES = [
    ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."],
    ["She", "was", "unbelievable", "!"],
    ["They", "read", "1984", "books", "and", "walked", ",", "and", "talked", "quickly", "."],
    ["The", "dog", "'s", "naïve", "owner", "paid", "$", "12.50", "."],
]

# Text the tiny tokenizers learn their merges from.
TRAINING_TEXT = [
    " ".join(words) for words in SENTENCES
] + [
    "the cat sat on the mat and the dog sat on the log",
    "reading writing walking talking quickly slowly",
    "in 1984 they paid 12 dollars for 50 books",
]


def byte_level_tokenizer(bos):
    """A GPT-2 / Llama 3 / Qwen style byte-level BPE tokenizer."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(
            pattern=Regex(
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            ),
            behavior="isolated",
        ),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>"] + ([bos] if bos else [])
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def sentencepiece_tokenizer():
    """A Llama 2 style tokenizer: '▁' for spaces, byte fallback, <s> first."""
    tokenizer = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    # Llama 2's own tokenizer.json has no pre-tokenizer: a normalizer turns
    # spaces into '▁' and puts one in front.
    tokenizer.pre_tokenizer = None
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)
    ])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    return tokenizer


def randomize(model, seed):
    """Weights of a size that makes every part matter: N(0, 0.25) matrices,
    norm weights around 1, small random biases."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "norm" in name or name.split(".")[-2].startswith("ln_"):
                p.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.25 * noise)


FAMILIES = {
    "tiny-gpt2": dict(
        config=lambda v: transformers.GPT2Config(
            vocab_size=v, n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=None,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=0, eos_token_id=0,
        ),
        head=False,
        tokenizer=lambda: byte_level_tokenizer(None),
    ),
    "tiny-llama": dict(
        config=lambda v: transformers.LlamaConfig(
            vocab_size=v, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
            rope_parameters={
                "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16,
            },
        ),
        head=True,
        tokenizer=lambda: byte_level_tokenizer("<|begin_of_text|>"),
        # Hub checkpoints of Llama 3 keep rope_theta and rope_scaling at the top.
        legacy_rope=True,
    ),
    "tiny-llama2": dict(
        config=lambda v: transformers.LlamaConfig(
            vocab_size=v, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
            rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        ),
        head=True,
        tokenizer=sentencepiece_tokenizer,
        legacy_rope=True,
    ),
    "tiny-mistral": dict(
        config=lambda v: transformers.MistralConfig(
            vocab_size=v, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
            sliding_window=4, rms_norm_eps=1e-5, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2,
        ),
        head=True,
        tokenizer=sentencepiece_tokenizer,
    ),
    "tiny-qwen2": dict(
        config=lambda v: transformers.Qwen2Config(
            vocab_size=v, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            rms_norm_eps=1e-6, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
        head=True,
        tokenizer=lambda: byte_level_tokenizer(None),
    ),
    "tiny-qwen3": dict(
        config=lambda v: transformers.Qwen3Config(
            vocab_size=v, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
            rms_norm_eps=1e-6, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
        head=True,
        tokenizer=lambda: byte_level_tokenizer(None),
    ),
}


def site_modules(model):
    """(mlp module whose input is the site, attention module whose output is
    the site) for each block of a base model."""
    kind = model.config.model_type
    if kind == "gpt2":
        return [(b.mlp.c_proj, b.attn.c_proj) for b in model.h]
    if kind in ("bert", "roberta"):
        return [(l.output.dense, l.attention.output.dense) for l in model.encoder.layer]
    if kind == "distilbert":
        return [(l.ffn.lin2, l.attention.out_lin) for l in model.transformer.layer]
    return [(l.mlp.down_proj, l.self_attn.o_proj) for l in model.layers]


def record(model, batch, lengths, rounding=True):
    """Every site of every real token of a right-padded batch (rounded for
    storage, or as plain lists)."""
    captured = {"mlp": [], "attention": []}
    hooks = []
    for mlp, attention in site_modules(model):
        hooks.append(mlp.register_forward_pre_hook(lambda m, args: captured["mlp"].append(args[0].detach())))
        hooks.append(attention.register_forward_hook(lambda m, args, out: captured["attention"].append(out.detach())))
    with torch.no_grad():
        output = model(**batch, output_hidden_states=True)
    for h in hooks:
        h.remove()
    sites = {"residual": list(output.hidden_states), **captured}
    return [
        {
            site: [rounded(layer[b, :n]) if rounding else layer[b, :n].tolist() for layer in layers]
            for site, layers in sites.items()
        }
        for b, n in enumerate(lengths)
    ]


def rounded(values):
    """Seven significant digits: far below the 1e-4 the tests allow, and
    half the size of full precision."""
    return [[float(f"{v:.7g}") for v in row] for row in values.tolist()]


def pad_batch(id_lists, pad):
    width = max(len(ids) for ids in id_lists)
    ids = torch.full((len(id_lists), width), pad, dtype=torch.long)
    mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for b, row in enumerate(id_lists):
        ids[b, : len(row)] = torch.tensor(row)
        mask[b, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def write_golden(path, model_type, sentences):
    with open(path, "w") as f:
        json.dump({
            "generator": "scripts/golden/decoder_fixtures.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "model_type": model_type,
            "sentences": sentences,
        }, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


def decoder(name, spec, fixtures, golden):
    out = os.path.join(fixtures, name)
    os.makedirs(out, exist_ok=True)
    tokenizer = spec["tokenizer"]()
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    config = spec["config"](tokenizer.get_vocab_size())
    torch.manual_seed(0)
    if spec["head"]:
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    else:
        model = transformers.AutoModel.from_config(config, attn_implementation="eager")
    randomize(model, seed=sum(map(ord, name)))
    model.save_pretrained(out, safe_serialization=True)
    extra = os.path.join(out, "generation_config.json")
    if os.path.exists(extra):
        os.remove(extra)
    if spec.get("legacy_rope"):
        path = os.path.join(out, "config.json")
        with open(path) as f:
            saved = json.load(f)
        rope = dict(saved.pop("rope_parameters"))
        saved["rope_theta"] = rope.pop("rope_theta")
        if rope.pop("rope_type") != "default":
            saved["rope_scaling"] = {"rope_type": config.rope_parameters["rope_type"], **rope}
        with open(path, "w") as f:
            json.dump(saved, f, indent=2, sort_keys=True)
            f.write("\n")
    # The reference reads the files back, as lca does.
    model = transformers.AutoModel.from_pretrained(out, attn_implementation="eager", dtype=torch.float32).eval()
    texts = [" ".join(words) for words in SENTENCES]
    ids = [tokenizer.encode(t).ids for t in texts]
    sites = record(model, pad_batch(ids, 0), [len(i) for i in ids])
    sentences = [
        {"words": words, "text": text, "ids": i, "sites": s}
        for words, text, i, s in zip(SENTENCES, texts, ids, sites)
    ]
    write_golden(os.path.join(golden, f"{name}.json"), model.config.model_type, sentences)


def encoder(name, fixtures, golden):
    """Site goldens of a committed encoder fixture (pre-split words)."""
    path = os.path.join(fixtures, name)
    model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    encodings = [tokenizer.encode(words, is_pretokenized=True) for words in SENTENCES]
    ids = [e.ids for e in encodings]
    sites = record(model, pad_batch(ids, model.config.pad_token_id or 0), [len(i) for i in ids])
    sentences = [
        {"words": words, "ids": i, "sites": s} for words, i, s in zip(SENTENCES, ids, sites)
    ]
    write_golden(os.path.join(golden, f"{name}-sites.json"), model.config.model_type, sentences)


def main():
    fixtures, golden = sys.argv[1], sys.argv[2]
    os.makedirs(golden, exist_ok=True)
    for name, spec in FAMILIES.items():
        decoder(name, spec, fixtures, golden)
    for name in ["tiny-bert", "tiny-roberta", "tiny-distilbert"]:
        encoder(name, fixtures, golden)


if __name__ == "__main__":
    main()
