"""Prints the input constraints of the Kinesis API model that botocore ships, as the compact
JSON Brook embeds (src/broker/protocol/model.json): every operation's input shape and the
shapes it reaches, with types, required members in model order, lengths, ranges, patterns and
enums; documentation left out. A test compares the committed file with this output."""

import gzip
import json
import os
import sys

import botocore

KEEP = ("type", "min", "max", "pattern", "enum")


def model():
    path = os.path.join(os.path.dirname(botocore.__file__), "data", "kinesis", "2013-12-02", "service-2.json.gz")
    with gzip.open(path) as f:
        return json.load(f)


def compact(shapes, name, out):
    if name in out:
        return
    shape = shapes[name]
    entry = {k: shape[k] for k in KEEP if k in shape}
    out[name] = entry
    kind = shape["type"]
    if kind == "structure":
        entry["required"] = shape.get("required", [])
        entry["members"] = [[member, spec["shape"]] for member, spec in shape["members"].items()]
        for _, spec in shape["members"].items():
            compact(shapes, spec["shape"], out)
    elif kind == "list":
        entry["member"] = shape["member"]["shape"]
        compact(shapes, entry["member"], out)
    elif kind == "map":
        entry["key"] = shape["key"]["shape"]
        entry["value"] = shape["value"]["shape"]
        compact(shapes, entry["key"], out)
        compact(shapes, entry["value"], out)


def main():
    m = model()
    shapes = {}
    operations = {}
    for name in sorted(m["operations"]):
        op = m["operations"][name]
        if "input" in op:
            operations[name] = op["input"]["shape"]
            compact(m["shapes"], op["input"]["shape"], shapes)
    out = {"operations": operations, "shapes": dict(sorted(shapes.items()))}
    json.dump(out, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
