#!/usr/bin/env python3
"""Writes the bad-input corpus: one directory per case, each with the files a
user might hand to `lca` and an `expect.toml` saying what the error must name.

Run it from anywhere; it rewrites every case below this folder. Only the
standard library is used, so the binary cases (npy files) are written byte by
byte here rather than with numpy.
"""
import json
import shutil
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent


def npy(shape, values, dtype="<f4"):
    """A .npy file (format 1.0) with the given little-endian dtype."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype,
        ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""),
    )
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    code = {"<f4": "f", "<f8": "d", "<i4": "i"}[dtype]
    body = b"".join(struct.pack("<" + code, v) for v in values)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def matrix(rows, cols, seed=1):
    """Deterministic pseudo-random values in [-1, 1)."""
    state = seed
    out = []
    for _ in range(rows * cols):
        state = (state * 1103515245 + 12345) % 2**31
        out.append(state / 2**30 - 1.0)
    return out


LABELS = ["DT", "NN", "VB", "NN", "DT", "NN", "VB", "JJ"] * 5  # 40 tokens, 4 classes

NPY_RECIPE = """[run]
seed = 1

[source.acts]
type = "npy"
path = "{path}"
labels = "{labels}"
{extra}
[ranker.corr]
type = "correlation"
"""

NEUROX_RECIPE = """[run]
seed = 1

[source.acts]
type = "neurox_json"
activations = "activations.json"
corpus = "sentences.txt"
labels = "labels.txt"
dev = 0
test = 0

[ranker.corr]
type = "correlation"
"""


def neurox_activations(sentences, width=3):
    lines = []
    for i, sentence in enumerate(sentences):
        tokens = sentence.split(" ")
        values = matrix(len(tokens), width, seed=i + 3)
        features = [
            {
                "token": t,
                "layers": [{"index": 0, "values": values[k * width:(k + 1) * width]}],
            }
            for k, t in enumerate(tokens)
        ]
        lines.append(json.dumps({"linex_index": i, "features": features}))
    return "\n".join(lines) + "\n"


def case(name, files, expect, command="run", args=()):
    d = HERE / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    for fname, content in files.items():
        data = content if isinstance(content, bytes) else content.encode()
        (d / fname).write_bytes(data)
    lines = ['command = "%s"' % command]
    if args:
        lines.append("args = [%s]" % ", ".join(json.dumps(a) for a in args))
    lines.append("contains = [")
    lines += ["    %s," % json.dumps(e, ensure_ascii=False) for e in expect]
    lines.append("]")
    (d / "expect.toml").write_text("\n".join(lines) + "\n")


def labels_file(labels=LABELS):
    return "\n".join(labels) + "\n"


def good_npy():
    return npy((40, 6), matrix(40, 6))


# ---- recipes -------------------------------------------------------------

case("recipe-syntax-error", {"recipe.toml": "[run]\nseed = 1\n\n[source.acts\ntype = \"synthetic\"\n"},
     ["recipe.toml:4:", "TOML"], command="validate")
case("recipe-unknown-key", {"recipe.toml": "[run]\nseeed = 1\n\n[source.s]\ntype = \"synthetic\"\n"},
     ["recipe.toml:2:1", "seeed", "seed"], command="validate")
case("recipe-wrong-type", {"recipe.toml": "[source.s]\ntype = \"synthetic\"\ntokens = \"many\"\n"},
     ["recipe.toml:3:", "tokens", "integer"], command="validate")
case("recipe-unknown-component", {"recipe.toml": "[source.s]\ntype = \"synthetic\"\n\n[ranker.r]\ntype = \"corelation\"\n"},
     ["recipe.toml:5:8", "corelation", "correlation"], command="validate")
case("recipe-missing-input", {"recipe.toml": "[source.s]\ntype = \"synthetic\"\n\n[ranker.r]\ntype = \"correlation\"\n\n[evaluator.e]\ntype = \"planted_recovery\"\nrankings = [\"r\", \"nope\"]\n"},
     ["recipe.toml:9:", "nope"], command="validate")
case("recipe-seed-out-of-range", {"recipe.toml": "[run]\nseed = -3\n\n[source.s]\ntype = \"synthetic\"\n"},
     ["recipe.toml:2:8", "seed"], command="validate")
case("recipe-wiring-cycle", {"recipe.toml": "[source.s]\ntype = \"synthetic\"\n\n[ranker.a]\ntype = \"independent_neurons\"\nrankings = [\"b\"]\n\n[ranker.b]\ntype = \"independent_neurons\"\nrankings = [\"a\"]\n"},
     ["recipe.toml:", "cycle"], command="validate")
case("recipe-output-not-writable", {"recipe.toml": "[run]\nout = \"/proc/lca-cannot-write-here\"\n\n[source.s]\ntype = \"synthetic\"\n\n[ranker.r]\ntype = \"correlation\"\n"},
     ["/proc/lca-cannot-write-here"])

# ---- corpus files ----------------------------------------------------------

SENTENCES = ["The cat sat", "A dog ran far", "It was big"]
TAGS = ["DT NN VBD", "DT NN VBD RB", "PRP VBD JJ"]

case("corpus-count-mismatch", {
    "recipe.toml": NEUROX_RECIPE,
    "activations.json": neurox_activations(SENTENCES),
    "sentences.txt": "\n".join(SENTENCES) + "\n",
    "labels.txt": "DT NN VBD\nDT NN VBD\nPRP VBD JJ\n",
}, ["labels.txt", "line 2", "4", "3"])
case("corpus-empty-file", {
    "recipe.toml": NEUROX_RECIPE,
    "activations.json": neurox_activations(SENTENCES),
    "sentences.txt": "",
    "labels.txt": "\n".join(TAGS) + "\n",
}, ["sentences.txt", "empty"])
case("corpus-empty-line", {
    "recipe.toml": NEUROX_RECIPE,
    "activations.json": neurox_activations(SENTENCES),
    "sentences.txt": "The cat sat\n\nIt was big\n",
    "labels.txt": "DT NN VBD\n\nPRP VBD JJ\n",
}, ["sentences.txt:2", "empty"])
case("corpus-invalid-utf8", {
    "recipe.toml": NEUROX_RECIPE,
    "activations.json": neurox_activations(SENTENCES),
    "sentences.txt": b"The cat sat\nA dog ran \xff\xfe\nIt was big\n",
    "labels.txt": "\n".join(TAGS) + "\n",
}, ["sentences.txt:2", "UTF-8"])
case("corpus-label-only", {
    "recipe.toml": NEUROX_RECIPE,
    "activations.json": neurox_activations(SENTENCES),
    "sentences.txt": "\n".join(TAGS) + "\n",
    "labels.txt": "",
}, ["labels.txt", "empty"])

# ---- activations -----------------------------------------------------------

case("npy-wrong-dtype", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": npy((40, 6), [int(v * 100) for v in matrix(40, 6)], dtype="<i4"),
    "labels.txt": labels_file(),
}, ["acts.npy", "int32", "float32"])
case("npy-truncated", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": good_npy()[:-100],
    "labels.txt": labels_file(),
}, ["acts.npy", "truncated"])
case("npy-wrong-shape", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": npy((240,), matrix(240, 1)),
    "labels.txt": labels_file(),
}, ["acts.npy", "2-D", "240"])
nan_values = matrix(40, 6)
nan_values[3 * 6 + 2] = float("nan")
case("npy-nan", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": npy((40, 6), nan_values),
    "labels.txt": labels_file(),
}, ["acts.npy", "NaN", "row 3", "neuron 2"])
case("npy-layers-do-not-divide", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra="layers = 4\n"),
    "acts.npy": good_npy(),
    "labels.txt": labels_file(),
}, ["layers", "6", "4"])
case("npy-label-count-mismatch", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": good_npy(),
    "labels.txt": labels_file(LABELS[:37]),
}, ["labels.txt", "37", "40"])
case("neurox-json-missing-sentence", {
    "recipe.toml": NEUROX_RECIPE,
    "activations.json": neurox_activations(SENTENCES[:2]),
    "sentences.txt": "\n".join(SENTENCES) + "\n",
    "labels.txt": "\n".join(TAGS) + "\n",
}, ["activations.json", "2", "3", "sentence"])



def raw_npy(header, body=b""):
    """A .npy file with the header text as given (padded, version 1.0)."""
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


case("npy-sizes-disagree", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    # The header claims 30 rows; the data holds 40.
    "acts.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (30, 6), }",
                        npy((40, 6), matrix(40, 6))[128:]),
    "labels.txt": labels_file(),
}, ["acts.npy", "30 × 6", "disagree", "dtype", "is fine"])
case("npy-garbage-header", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": raw_npy("{'descr': '<f4', 'fortran_order': Fals, 'shape': ((40, 6), }"),
    "labels.txt": labels_file(),
}, ["acts.npy", "damaged header"])
case("npy-header-past-end", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{'descr': '<f4'",
    "labels.txt": labels_file(),
}, ["acts.npy", "header", "60000"])
f64_values = matrix(40, 6)
f64_values[5 * 6 + 1] = 1e300
case("npy-f64-overflow", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": npy((40, 6), f64_values, dtype="<f8"),
    "labels.txt": labels_file(),
}, ["acts.npy", "1e300", "float32"])
case("npy-zero-neurons", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra=""),
    "acts.npy": npy((40, 0), []),
    "labels.txt": labels_file(),
}, ["acts.npy", "no neurons"])
case("npy-dev-file-wider", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt",
                                     extra='dev_path = "dev.npy"\ndev_labels = "dev.txt"\n'),
    "acts.npy": good_npy(),
    "labels.txt": labels_file(),
    "dev.npy": npy((8, 7), matrix(8, 7)),
    "dev.txt": labels_file(LABELS[:8]),
}, ["dev.npy", "7 neurons", "acts.npy", "6"])
case("recipe-empty", {"recipe.toml": "# nothing yet\n"}, ["recipe.toml", "no component"])
case("cli-timeout-negative", {
    "recipe.toml": "[source.s]\ntype = \"synthetic\"\n\n[ranker.r]\ntype = \"correlation\"\n",
}, ["--timeout", "-5", "above 0"], args=["--timeout", "-5"])
case("cli-threads-too-many", {
    "recipe.toml": "[source.s]\ntype = \"synthetic\"\n\n[ranker.r]\ntype = \"correlation\"\n",
}, ["--threads", "1000000", "4096"], args=["--threads", "1000000"])

# ---- data ------------------------------------------------------------------

case("data-one-class", {
    "recipe.toml": NPY_RECIPE.format(path="acts.npy", labels="labels.txt", extra="dev = 0\ntest = 0\n"),
    "acts.npy": good_npy(),
    "labels.txt": labels_file(["NN"] * 40),
}, ["single class", "NN"])
case("data-percent-out-of-range", {
    "recipe.toml": "[source.s]\ntype = \"synthetic\"\n\n[ranker.r]\ntype = \"correlation\"\n\n[evaluator.l]\ntype = \"layer_distribution\"\nrankings = [\"r\"]\ntop_percent = 120\n",
}, ["recipe.toml:10:", "top_percent", "100"], command="validate")
case("data-more-neurons-than-exist", {
    "recipe.toml": "[source.s]\ntype = \"synthetic\"\nneurons = 50\n\n[ranker.r]\ntype = \"correlation\"\n\n[evaluator.l]\ntype = \"layer_distribution\"\nrankings = [\"r\"]\ntop = 500\n",
}, ["500", "50 neurons"])

# NeuroX's extractor splits sentences on single spaces, its loader on any
# whitespace: a double space or a tab leaves the two disagreeing.
for name, line in [("corpus-double-space", "A  dog ran far"), ("corpus-tab", "A\tdog ran far")]:
    case(name, {
        "recipe.toml": NEUROX_RECIPE,
        "activations.json": neurox_activations(["The cat sat", line, "It was big"]),
        "sentences.txt": "The cat sat\n" + line + "\nIt was big\n",
        "labels.txt": "\n".join(TAGS) + "\n",
    }, ["sentences.txt:2", "double space" if "  " in line else "tab"])
