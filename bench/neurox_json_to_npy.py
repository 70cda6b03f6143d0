"""Turns a NeuroX JSON-lines activation file and its labels file (one line
per sentence, space-separated) into the inputs of the NeuroX harness and of
lca's npy source: <prefix>.acts.npy (float32, tokens x neurons, layers in
file order) and <prefix>.labels.txt (one label per token).

    python neurox_json_to_npy.py ACTS.json LABELS.txt PREFIX
"""
import json
import sys

import numpy as np


def main():
    acts_path, labels_path, prefix = sys.argv[1:4]
    rows = []
    with open(acts_path) as f:
        for line in f:
            sentence = json.loads(line)
            for feature in sentence["features"]:
                rows.append(np.concatenate(
                    [np.asarray(layer["values"], dtype=np.float32) for layer in feature["layers"]]))
    labels = [label for line in open(labels_path) for label in line.split()]
    if len(labels) != len(rows):
        sys.exit("error: %s has %d labels but %s has %d tokens" % (labels_path, len(labels), acts_path, len(rows)))
    matrix = np.stack(rows)
    np.save(prefix + ".acts.npy", matrix)
    with open(prefix + ".labels.txt", "w") as f:
        f.write("\n".join(labels) + "\n")
    print("%d tokens x %d neurons, %d classes" % (matrix.shape[0], matrix.shape[1], len(set(labels))))


if __name__ == "__main__":
    main()
