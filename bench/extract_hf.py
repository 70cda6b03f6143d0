"""Per-word activations of every layer with Python transformers: the
reference for lca's extraction throughput (scripts/bench-extraction.sh).

Reads the first N sentences of the tagged Brown corpus exactly as lca does
(files ca01…cr09 in name order, one sentence per non-blank line, word = text
before the last '/'), runs them through the model in batches with padding,
and keeps the last piece of each word from every hidden state, as lca's
`aggregation = "last"` does. Prints one JSON line with words, seconds and
words/s.

    python extract_hf.py MODEL_DIR BROWN_DIR --sentences 2000 --batch-size 32 --threads 1 [--sort] [--out acts.npy]
"""

import argparse
import json
import os
import re
import struct
import time

import numpy as np
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast


def brown_sentences(directory, n):
    names = sorted(f for f in os.listdir(directory) if re.fullmatch(r"c[a-z][0-9][0-9]", f))
    out = []
    for name in names:
        with open(os.path.join(directory, name)) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                out.append([t.rsplit("/", 1)[0] for t in line.split()])
                if len(out) == n:
                    return out
    return out


def load_weights(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    weights = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = {"F32": np.float32, "F16": np.float16, "I64": np.int64}[info["dtype"]]
        weights[name] = torch.from_numpy(np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"]).copy())
    return weights


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("brown")
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sort", action="store_true", help="batch sentences of similar length together, as lca does")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    sentences = brown_sentences(args.brown, args.sentences)
    model = BertModel(BertConfig.from_pretrained(args.model))
    missing, _ = model.load_state_dict(load_weights(os.path.join(args.model, "model.safetensors")), strict=False)
    assert not [k for k in missing if not k.startswith("pooler.")], missing
    model.eval()
    tokenizer = BertTokenizerFast(vocab_file=os.path.join(args.model, "vocab.txt"), do_lower_case=True)
    layers = model.config.num_hidden_layers + 1
    hidden = model.config.hidden_size
    offsets = np.cumsum([0] + [len(s) for s in sentences])
    out = np.zeros((offsets[-1], layers * hidden), dtype=np.float32)
    order = list(range(len(sentences)))
    if args.sort:
        order.sort(key=lambda i: -len(tokenizer(sentences[i], is_split_into_words=True)["input_ids"]))

    start = time.perf_counter()
    with getattr(torch, "inference_mode", torch.no_grad)():
        for b in range(0, len(order), args.batch_size):
            batch = order[b:b + args.batch_size]
            enc = tokenizer([sentences[i] for i in batch], is_split_into_words=True, padding=True,
                            truncation=True, max_length=512, return_tensors="pt")
            states = model(**enc, output_hidden_states=True).hidden_states
            # The last piece of each word: a position whose word id differs
            # from the next position's. Gathered with index arrays, one copy
            # per hidden state, so the loop costs numpy calls per batch, not
            # Python statements per word.
            width = enc["input_ids"].shape[1]
            batch_rows, positions, rows = [], [], []
            for k, i in enumerate(batch):
                ids = np.array([-1 if w is None else w for w in enc.word_ids(k)] + [-1])
                last = np.flatnonzero((ids[:-1] >= 0) & (ids[:-1] != ids[1:]))
                batch_rows.append(np.full(len(last), k))
                positions.append(last)
                rows.append(offsets[i] + ids[last])
            flat = torch.from_numpy(np.concatenate(batch_rows) * width + np.concatenate(positions))
            rows = np.concatenate(rows)
            for layer, state in enumerate(states):
                out[rows, layer * hidden:(layer + 1) * hidden] = state.reshape(-1, hidden)[flat].numpy()
    seconds = time.perf_counter() - start
    words = int(offsets[-1])
    if args.out:
        np.save(args.out, out)
    print(json.dumps({"tool": "transformers", "torch": torch.__version__, "threads": args.threads,
                      "batch_size": args.batch_size, "sorted": args.sort, "sentences": len(sentences),
                      "words": words, "seconds": round(seconds, 3), "words_per_s": round(words / seconds, 1)}))


if __name__ == "__main__":
    main()
