"""Reference hidden states from Hugging Face transformers, for lca's tests.

For each sentence (a list of words, handed to the tokenizer pre-split, as
lca does) this records the token ids, the word of each token, and the hidden
states of every layer (embedding output first), as computed by transformers'
own BertModel / RobertaModel in eval mode on the CPU.

    python hf_hidden_states.py MODEL_DIR OUT.json [--dims 0,1,2] [--sentences FILE.json]

MODEL_DIR holds config.json, vocab.txt and model.safetensors. The weights are
re-saved as pytorch_model.bin in a temporary folder (read with numpy), since
the transformers release pinned here predates safetensors. With --dims only
those hidden units are stored (plus each state's L2 norm over all units);
without it, every unit is.
"""

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import BertModel, BertTokenizerFast, DistilBertModel, RobertaModel

DEFAULT_SENTENCES = [
    ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."],
    ["She", "was", "unbelievable", "!"],
    ["They", "read", "books", "and", "walked", ",", "and", "talked", "quickly", "."],
    ["The", "dog's", "house", "is", "big", "."],
]

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.astype(np.float32).copy())
    return tensors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--dims", default=None)
    parser.add_argument("--sentences", default=None)
    args = parser.parse_args()

    sentences = DEFAULT_SENTENCES
    if args.sentences:
        with open(args.sentences) as f:
            sentences = json.load(f)

    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    work = tempfile.mkdtemp()
    try:
        shutil.copy(os.path.join(args.model, "config.json"), work)
        torch.save(read_safetensors(os.path.join(args.model, "model.safetensors")), os.path.join(work, "pytorch_model.bin"))
        family = {"roberta": RobertaModel, "distilbert": DistilBertModel}.get(config.get("model_type"), BertModel)
        model = family.from_pretrained(work)
    finally:
        shutil.rmtree(work)
    model.eval()
    tokenizer = BertTokenizerFast(vocab_file=os.path.join(args.model, "vocab.txt"), do_lower_case=True)

    dims = [int(d) for d in args.dims.split(",")] if args.dims else None
    records = []
    with torch.no_grad():
        for words in sentences:
            encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
            inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
            output = model(**inputs, output_hidden_states=True)
            states = [s[0].numpy().astype(np.float64) for s in output.hidden_states]
            records.append({
                "words": words,
                "ids": encoded["input_ids"][0].tolist(),
                "word_ids": encoded.word_ids(0),
                "states": [(s[:, dims] if dims else s).tolist() for s in states],
                "norms": [np.linalg.norm(s, axis=1).tolist() for s in states],
            })
    result = {
        "generator": "scripts/golden/hf_hidden_states.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model_type": config.get("model_type"),
        "dims": dims,
        "sentences": records,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}: {len(records)} sentences, {len(records[0]['states'])} hidden states", file=sys.stderr)


if __name__ == "__main__":
    main()
