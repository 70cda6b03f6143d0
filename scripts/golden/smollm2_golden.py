"""Reference activations of SmolLM2-135M-Instruct (GGUF Q4_1), for lca's
ignored real-model test.

transformers loads the GGUF file that scripts/fetch-assets.sh unpacks
(`gguf_file=`, which dequantizes every tensor to float32) and runs the
sentences of minilm-sentences.json (Brown sentences, words joined by
spaces) in one right-padded batch. Stored per sentence: the token ids, and
for the residual stream (31 states) and the MLP units (30 blocks) a few
units of every state plus each state's L2 norm over all units.

    python smollm2_golden.py MODEL.gguf OUT.json
"""

import json
import os
import sys

import torch
import transformers

from decoder_fixtures import pad_batch, record

DIMS = {"residual": [0, 1, 2, 100, 287, 288, 400, 575], "mlp": [0, 1, 2, 500, 767, 1000, 1400, 1535]}


def main():
    path, out = sys.argv[1], sys.argv[2]
    folder, name = os.path.split(os.path.abspath(path))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    ).model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    with open(os.path.join(os.path.dirname(__file__), "minilm-sentences.json")) as f:
        sentences = json.load(f)
    texts = [" ".join(words) for words in sentences]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    pad = model.config.pad_token_id or 0
    recorded = record(model, pad_batch(ids, pad), [len(i) for i in ids], rounding=False)
    records = []
    for words, text, i, sites in zip(sentences, texts, ids, recorded):
        records.append({
            "words": words,
            "text": text,
            "ids": i,
            "sites": {
                site: [[[float(f"{row[d]:.7g}") for d in DIMS[site]] for row in layer] for layer in sites[site]]
                for site in DIMS
            },
            "norms": {
                site: [[float(f"{sum(v * v for v in row) ** 0.5:.7g}") for row in layer] for layer in sites[site]]
                for site in DIMS
            },
        })
    with open(out, "w") as f:
        json.dump({
            "generator": "scripts/golden/smollm2_golden.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "model_type": model.config.model_type,
            "dims": DIMS,
            "sentences": records,
        }, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out}: {len(records)} sentences", file=sys.stderr)


if __name__ == "__main__":
    main()
