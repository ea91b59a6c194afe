#!/usr/bin/env python3
"""Writes the Kubernetes JSON schemas of testdata/k8s (kubeconform's `<version>-standalone-strict`
layout) for the kinds the Helm chart renders, from the `local-strict` schemas that the
kubernetes-validate package (PyPI) ships, which point into one `_definitions.json`: every
`$ref` is replaced by the definition it names, so each file stands alone. Standard library only.

    pip download --no-deps -d /tmp/kv kubernetes-validate==1.37.0
    unzip -q /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl -d /tmp/kv
    python3 deploy/tools/k8s/standalone.py \
        /tmp/kv/kubernetes_validate/kubernetes-json-schema/v1.35.0-local-strict \
        testdata/k8s/v1.35.0-standalone-strict

Add a kind here when the chart starts rendering it (kubeconform fails on a kind without schema).
"""

import copy
import json
import pathlib
import sys

KINDS = [
    "configmap-v1",
    "deployment-apps-v1",
    "job-batch-v1",
    "poddisruptionbudget-policy-v1",
    "secret-v1",
    "service-v1",
    "serviceaccount-v1",
]


def expand(node, definitions, seen=()):
    if isinstance(node, list):
        return [expand(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].split("#/$defs/", 1)[1]
        if name in seen:
            raise SystemExit(f"recursive definition {name}: a standalone schema cannot hold it")
        resolved = expand(copy.deepcopy(definitions[name]), definitions, seen + (name,))
        for key, value in node.items():
            if key != "$ref":
                resolved[key] = expand(value, definitions, seen)
        return resolved
    return {key: expand(value, definitions, seen) for key, value in node.items()}


def main():
    source, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    target.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        schema = json.loads((source / f"{kind}.json").read_text())
        schema.pop("$id", None)
        standalone = expand(schema, definitions)
        text = json.dumps(standalone, indent=1, sort_keys=True) + "\n"
        if "$ref" in text:
            raise SystemExit(f"{kind}: a $ref is left")
        (target / f"{kind}.json").write_text(text)
        print(f"{kind}.json: {len(text)} bytes")


if __name__ == "__main__":
    main()
