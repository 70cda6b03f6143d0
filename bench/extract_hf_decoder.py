"""Per-word activations of a decoder with Python transformers: the reference
for lca's decoder extraction throughput (scripts/bench-decoders.sh).

Reads the first N Brown sentences as lca does, joins each sentence's words
with spaces, tokenizes the batch with offsets, runs it right-padded through
the model with `output_hidden_states` and forward pre-hooks on the chosen
blocks' MLP down projections, and keeps each word's last piece from the
chosen residual states and MLP units, as lca's `aggregation = "last"` does.
Prints one JSON line with words, seconds and words/s.

    python extract_hf_decoder.py MODEL --sentences 500 --batch-size 32 --threads 1 \
        --layers 0,6,12 --mlp-layers 6,12 [--gguf FILE] [--sort]
"""

import argparse
import bisect
import json
import time

import numpy as np
import torch
import transformers

from extract_hf import brown_sentences


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("brown")
    p.add_argument("--gguf", default=None, help="a GGUF file inside MODEL")
    p.add_argument("--sentences", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--layers", required=True)
    p.add_argument("--mlp-layers", required=True)
    p.add_argument("--sort", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    extra = {"gguf_file": args.gguf} if args.gguf else {}
    model = transformers.AutoModel.from_pretrained(args.model, dtype=torch.float32, **extra).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model, **extra)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.convert_ids_to_tokens(0)
    layers = [int(l) for l in args.layers.split(",")]
    mlp_layers = [int(l) for l in args.mlp_layers.split(",")]
    blocks = model.h if hasattr(model, "h") else model.layers
    down = lambda b: b.mlp.c_proj if hasattr(b.mlp, "c_proj") else b.mlp.down_proj  # noqa: E731
    captured = {}
    for l in mlp_layers:
        down(blocks[l - 1]).register_forward_pre_hook(lambda m, a, l=l: captured.__setitem__(l, a[0]))
    hidden = model.config.hidden_size
    inner = down(blocks[0]).in_features if hasattr(down(blocks[0]), "in_features") else down(blocks[0]).nx

    sentences = brown_sentences(args.brown, args.sentences)
    texts = [" ".join(s) for s in sentences]
    starts = []
    for s in sentences:
        at, row = [], 0
        for w in s:
            at.append(row)
            row += len(w) + 1
        starts.append(at)
    offsets = np.cumsum([0] + [len(s) for s in sentences])
    width = len(layers) * hidden + len(mlp_layers) * inner
    out = np.zeros((offsets[-1], width), dtype=np.float32)
    order = list(range(len(sentences)))
    if args.sort:
        order.sort(key=lambda i: -len(tokenizer(texts[i])["input_ids"]))

    start = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(order), args.batch_size):
            batch = order[b:b + args.batch_size]
            enc = tokenizer([texts[i] for i in batch], padding=True, return_offsets_mapping=True,
                            return_tensors="pt")
            spans = enc.pop("offset_mapping").numpy()
            states = model(**enc, output_hidden_states=True).hidden_states
            tokens = enc["input_ids"].shape[1]
            flat, rows = [], []
            for k, i in enumerate(batch):
                # The word of each piece: the last word starting at or before
                # the piece's last character; its last piece wins.
                last = {}
                for t, (s, e) in enumerate(spans[k]):
                    if e > s and enc["attention_mask"][k, t]:
                        last[bisect.bisect_right(starts[i], e - 1) - 1] = t
                for w, t in last.items():
                    flat.append(k * tokens + t)
                    rows.append(offsets[i] + w)
            flat, rows = torch.tensor(flat), np.array(rows)
            at = 0
            for l in layers:
                out[rows, at:at + hidden] = states[l].reshape(-1, hidden)[flat].numpy()
                at += hidden
            for l in mlp_layers:
                out[rows, at:at + inner] = captured[l].reshape(-1, inner)[flat].numpy()
                at += inner
    seconds = time.perf_counter() - start
    words = int(offsets[-1])
    print(json.dumps({"tool": "transformers", "torch": torch.__version__, "threads": args.threads,
                      "model_type": model.config.model_type, "sorted": args.sort,
                      "sentences": len(sentences), "words": words, "seconds": round(seconds, 3),
                      "words_per_s": round(words / seconds, 1)}))


if __name__ == "__main__":
    main()
