"""Generates the event taxonomy's documents from schemas-avro/, then the clients' from the edge's.

First, from schemas-avro/ (ct.v1.Event's payload union and each record's `ct.*` attributes, the
same source ct-core's build.rs reads): the EventType enums of both OpenAPI documents, the edge's
Envelope payload list and one payload schema per event type (the region after the marker line).

Then, the edge's document (services/edge/openapi.yaml) describes each event type's payload as the edge
accepts it on the wire: its `title` is the type, its properties the fields (snake_case and
camelCase spellings of each). The libraries take the camelCase spelling, the required fields and
the enums from here, so a type or field added to the edge reaches every client by running this
script; `--check` (run by the test command) fails, naming the file, when a generated copy is stale.

    python clients/taxonomy/generate.py          # write the copies
    python clients/taxonomy/generate.py --check  # compare only
    python clients/taxonomy/generate.py --root DIR  # another checkout (the scratch-copy test)
"""

import json
import pathlib
import re
import sys
import textwrap

import yaml

ROOT = pathlib.Path(sys.argv[sys.argv.index("--root") + 1] if "--root" in sys.argv else pathlib.Path(__file__).resolve().parents[2]).resolve()
OPENAPI = ROOT / "services/edge/openapi.yaml"
API_OPENAPI = ROOT / "services/api/openapi.yaml"
SCHEMAS = ROOT / "schemas-avro"
COPIES = [
    ROOT / "clients/taxonomy/taxonomy.json",
    ROOT / "clients/python/src/controltower/taxonomy.json",
    ROOT / "clients/typescript/src/taxonomy.json",
]
TS_TYPES = ROOT / "clients/typescript/src/payloads.ts"
PY_STUB = ROOT / "clients/python/src/controltower/helpers.pyi"
RUST_PAYLOADS = ROOT / "clients/rust/src/payloads.rs"
PAYLOADS_MARKER = "    # --- one payload per event type (generated from schemas-avro by clients/taxonomy/generate.py; do not edit) ---\n"
REF = "{$ref: '#/components/schemas/%s'}"

# How each `ct.parse` kind (services/core/codegen/taxonomy.rs) looks on the wire: the OpenAPI
# property, whether the field is required, and (for amounts) the suffix the wire name drops.
WIRE = {
    "id": (REF % "Id", True),
    "text": (REF % "Text", True),
    "opt_text": (REF % "OptionalText", False),
    "int": ("{type: integer, format: int64}", True),
    "opt_int": ("{type: integer, format: int64, nullable: true}", False),
    "non_negative": (REF % "NonNegative", True),
    "opt_non_negative": (REF % "OptionalNonNegative", False),
    "opt_unit_interval": ("{type: number, minimum: 0, maximum: 1, nullable: true}", False),
    "opt_centi": ("{type: number, nullable: true}", False),
    "item_count": ("{type: integer, format: int32, nullable: true}", False),
    "string_map": (["type: object", "nullable: true", "additionalProperties: {}"], False),
    "int_map": (["type: object", "nullable: true", "additionalProperties:", "  type: integer", "  format: int64"], False),
    "money": (REF % "Money", True),
    "opt_money": (REF % "Money", False),
    "currency": (REF % "Currency", False),
    "opt_currency": (REF % "Currency", False),
}

RUST_KINDS = {
    "id": "String",
    "text": "String",
    "optional_text": "String",
    "money": "crate::Money",
    "currency": "String",
    "non_negative": "u64",
    "integer": "i64",
    "number": "f64",
    "boolean": "bool",
    "object": "serde_json::Map<String, serde_json::Value>",
    "array": "Vec<serde_json::Value>",
    "any": "serde_json::Value",
}

PY_KINDS = {
    "id": "Union[str, int]",
    "text": "str",
    "optional_text": "str",
    "money": "Union[int, float, str, Dict[str, Any]]",
    "currency": "str",
    "non_negative": "int",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "object": "Dict[str, Any]",
    "array": "List[Any]",
    "any": "Any",
}

TS_KINDS = {
    "id": "string | number",
    "text": "string",
    "optional_text": "string",
    "money": "number | string | { amount_minor?: number; amountMinor?: number; currency?: string }",
    "currency": "string",
    "non_negative": "number",
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "object": "Record<string, unknown>",
    "array": "unknown[]",
    "any": "unknown",
}


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def avro_kind(place, field):
    """The field's `ct.parse` kind, or the one its Avro type implies (as build.rs decides)."""
    if "ct.parse" in field:
        return field["ct.parse"]
    avro = field["type"]
    implied = {"string": "text", "long": "int"}.get(avro) if isinstance(avro, str) else None
    if avro == ["null", "string"]:
        implied = "opt_text"
    elif avro == ["null", "long"]:
        implied = "opt_int"
    elif isinstance(avro, dict) and avro.get("type") == "enum":
        implied = "symbol"
    elif isinstance(avro, dict) and avro.get("type") == "map":
        implied = {"string": "string_map", "long": "int_map"}.get(avro.get("values"))
    if implied is None:
        sys.exit(f"{place}: field `{field['name']}` needs a `ct.parse` kind")
    return implied


def schema_taxonomy():
    """The event types as schemas-avro says them, in union order."""
    envelope = json.loads((SCHEMAS / "ct.v1.Event.avsc").read_text())
    union = next(f for f in envelope["fields"] if f["name"] == "payload")["type"]
    types = []
    for full in union:
        place = f"schemas-avro/{full}.avsc"
        record = json.loads((SCHEMAS / f"{full}.avsc").read_text())
        name, _, doc = record["doc"].partition(": ")
        fields = []
        for field in record["fields"]:
            kind = avro_kind(place, field)
            wire = field["name"]
            if kind in ("money", "opt_money"):
                wire = wire.removesuffix("_minor")
            elif kind == "opt_centi":
                wire = wire.removesuffix("_centi")
            fields.append({"name": field["name"], "wire": wire, "kind": kind, "avro": field["type"]})
        types.append({"name": name, "record": full.rsplit(".", 1)[-1], "sources": record.get("ct.sources"),
                      "notes": record.get("ct.notes", ""), "fields": fields})
    return types


def spellings(wire):
    return [wire] if camel(wire) == wire else [wire, camel(wire)]


def payload_schema(entry):
    """One payload schema in the edge's OpenAPI style."""
    properties, required = [], []
    for field in entry["fields"]:
        kind = field["kind"]
        if kind == "symbol":
            schema, needed = ["type: string", "enum: [" + ", ".join(field["avro"]["symbols"]) + "]"], True
        else:
            schema, needed = WIRE[kind]
        if kind == "item_count":
            properties.append(("items", ["type: array", "nullable: true", "items: {}"]))
        for spelling in spellings(field["wire"]):
            properties.append((spelling, schema))
        if needed:
            required.append(field["wire"])
    sources = entry["sources"]
    if sources is None:
        text = "Any producer source."
    else:
        text = "Source " + " or ".join(f"`{s}`" for s in sources) + "."
    names = [f"`{r}`" for r in required]
    if len(names) == 1:
        text += f" Required field: {names[0]}."
    elif names:
        text += f" Required fields: {', '.join(names[:-1])} and {names[-1]}."
    if entry["notes"]:
        text += " " + entry["notes"]
    lines = [f"    {entry['record']}:", f"      title: {entry['name']}", "      description: |"]
    lines += ["        " + line for line in textwrap.wrap(text, 72, break_on_hyphens=False)]
    lines.append("      type: object")
    plain = [r for r in required if camel(r) == r]
    pairs = [r for r in required if camel(r) != r]
    if plain:
        lines.append(f"      required: [{', '.join(plain)}]")
    if len(pairs) == 1:
        lines += ["      anyOf:", f"        - required: [{pairs[0]}]", f"        - required: [{camel(pairs[0])}]"]
    elif pairs:
        lines.append("      allOf:")
        for r in pairs:
            lines += ["        - anyOf:", f"            - required: [{r}]", f"            - required: [{camel(r)}]"]
    lines.append("      properties:")
    for key, schema in properties:
        if isinstance(schema, list):
            lines.append(f"        {key}:")
            lines += ["          " + line for line in schema]
        else:
            lines.append(f"        {key}: {schema}")
    return "\n".join(lines) + "\n"


def replace_list(text, place, head, item_indent, items):
    """Replaces the YAML list that follows the line `head` with `items`."""
    pattern = re.compile("(" + re.escape(head) + "\n)((?:" + re.escape(item_indent) + "- .*\n)+)")
    if not pattern.search(text):
        sys.exit(f"{place}: no list after {head.strip()!r}")
    return pattern.sub(lambda m: m.group(1) + "".join(f"{item_indent}- {i}\n" for i in items), text, count=1)


def openapi_documents():
    """Both OpenAPI documents with their taxonomy parts regenerated from schemas-avro."""
    types = schema_taxonomy()
    names = [t["name"] for t in types]
    edge = OPENAPI.read_text()
    place = OPENAPI.relative_to(ROOT)
    edge = replace_list(edge, place, "    EventType:\n      type: string\n" + edge.split("    EventType:\n      type: string\n", 1)[1].split("      enum:\n", 1)[0] + "      enum:", "        ", names)
    envelope = edge.index("    Envelope:\n")
    head, tail = edge[:envelope], edge[envelope:]
    tail = replace_list(tail, place, "          oneOf:", "            ", [f"$ref: '#/components/schemas/{t['record']}'" for t in types])
    edge = head + tail
    if PAYLOADS_MARKER not in edge:
        sys.exit(f"{place}: no line {PAYLOADS_MARKER.strip()!r}")
    edge = edge.split(PAYLOADS_MARKER, 1)[0] + PAYLOADS_MARKER + "".join("\n" + payload_schema(t) for t in types)
    api = API_OPENAPI.read_text()
    api_place = API_OPENAPI.relative_to(ROOT)
    api = replace_list(api, api_place, "    EventType:\n      type: string\n" + api.split("    EventType:\n      type: string\n", 1)[1].split("      enum:\n", 1)[0] + "      enum:", "        ", names)
    return {OPENAPI: edge, API_OPENAPI: api}


def kind(schema, components):
    """A small vocabulary the libraries check values against."""
    ref = schema.get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    if name in ("Id",):
        return "id"
    if name in ("Text",):
        return "text"
    if name in ("OptionalText",):
        return "optional_text"
    if name in ("Money",):
        return "money"
    if name in ("Currency",):
        return "currency"
    if name in ("NonNegative", "OptionalNonNegative"):
        return "non_negative"
    if name and name in components:
        return kind(components[name], components)
    if "enum" in schema:
        return "enum"
    return {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean",
            "object": "object", "array": "array"}.get(schema.get("type"), "any")


def taxonomy(openapi_text):
    document = yaml.safe_load(openapi_text)
    components = document["components"]["schemas"]
    payload = components["Envelope"]["properties"]["payload"]["oneOf"]
    types = []
    for ref in payload:
        name = ref["$ref"].rsplit("/", 1)[-1]
        schema = components[name]
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        for alternative in schema.get("anyOf", []):
            required.update(alternative.get("required", []))
        fields = {}
        for key, spec in properties.items():
            wire = camel(key)
            if wire != key and wire in properties:
                continue  # the camelCase spelling of this field is listed too
            field = {"kind": kind(spec, components), "required": key in required or wire in required}
            if "enum" in spec:
                field["enum"] = spec["enum"]
            fields[wire] = field
        description = schema.get("description", "")
        match = re.match(r"Source `(\w+)`", description)
        types.append({
            "type": schema["title"],
            "schema": name,
            "sources": [match.group(1)] if match else "any",
            "fields": dict(sorted(fields.items())),
        })
    return {
        "_doc": "Generated by clients/taxonomy/generate.py from services/edge/openapi.yaml; do not edit.",
        "sources": components["ProducerSource"]["enum"],
        "eventTypes": types,
    }


def typescript(document):
    """Payload interfaces per event type, so `events["backend.fn.error"]({...})` is checked by tsc."""
    lines = ["// Generated by clients/taxonomy/generate.py from services/edge/openapi.yaml; do not edit.", ""]
    names = []
    for entry in document["eventTypes"]:
        name = entry["schema"] + "Payload"
        names.append((entry["type"], name))
        lines.append(f"/** `{entry['type']}` */")
        lines.append(f"export interface {name} {{")
        for key, field in entry["fields"].items():
            if "enum" in field:
                kind = " | ".join(json.dumps(v) for v in field["enum"])
            else:
                kind = TS_KINDS[field["kind"]]
            lines.append(f"  {key}{'' if field['required'] else '?'}: {kind};")
        lines.append("}")
        lines.append("")
    lines.append("/** Every event type and its payload. */")
    lines.append("export interface EventPayloads {")
    for event_type, name in names:
        lines.append(f"  {json.dumps(event_type)}: {name};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def snake(name):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def python_stub(document):
    """Type stubs for `events.<type>(...)`, so type checkers and editors know every field."""
    lines = [
        "# Generated by clients/taxonomy/generate.py from services/edge/openapi.yaml; do not edit.",
        "from typing import Any, Dict, List, Literal, Optional, Union",
        "",
        "from .events import Event",
        "",
        "class Helpers:",
    ]
    for entry in document["eventTypes"]:
        params = []
        for key, field in sorted(entry["fields"].items(), key=lambda kv: not kv[1]["required"]):
            kind = "Literal[" + ", ".join(json.dumps(v) for v in field["enum"]) + "]" if "enum" in field else PY_KINDS[field["kind"]]
            params.append(f"{snake(key)}: {kind}" if field["required"] else f"{snake(key)}: Optional[{kind}] = ...")
        params += ["source: Optional[str] = ...", "event_id: str = ...", "ts: str = ...", "correlation_id: Optional[str] = ..."]
        lines.append(f"    def {entry['type'].replace('.', '_')}(self, *, {', '.join(params)}) -> Event:")
        lines.append(f'        """`{entry["type"]}`."""')
        lines.append("        ...")
    return "\n".join(lines) + "\n"


def rust_payloads(document):
    """A struct per event type; `Event::of(&payload)` checks and wraps it."""
    lines = [
        "// Generated by clients/taxonomy/generate.py from services/edge/openapi.yaml; do not edit.",
        "//! One struct per event type, with the edge's camelCase keys; `Event::of(&payload)` builds",
        "//! the event (enums are checked there, against the taxonomy).",
        "",
        "use serde::Serialize;",
        "",
    ]
    for entry in document["eventTypes"]:
        name = entry["schema"]
        lines.append(f"/// `{entry['type']}`")
        lines.append("#[derive(Debug, Clone, PartialEq, Serialize)]")
        lines.append('#[serde(rename_all = "camelCase")]')
        lines.append(f"pub struct {name} {{")
        for key, field in entry["fields"].items():
            kind = RUST_KINDS[field["kind"]] if "enum" not in field else "String"
            if "enum" in field:
                lines.append(f"    /// One of {', '.join(field['enum'])}.")
            if field["required"]:
                lines.append(f"    pub {snake(key)}: {kind},")
            else:
                lines.append('    #[serde(skip_serializing_if = "Option::is_none")]')
                lines.append(f"    pub {snake(key)}: Option<{kind}>,")
        lines.append("}")
        lines.append("")
        lines.append(f"impl crate::Payload for {name} {{")
        lines.append(f"    const TYPE: &'static str = {json.dumps(entry['type'])};")
        lines.append("}")
        lines.append("")
    return "\n".join(lines)


def main():
    outputs = openapi_documents()
    document = taxonomy(outputs[OPENAPI])
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    outputs.update({path: text for path in COPIES})
    outputs[TS_TYPES] = typescript(document)
    outputs[PY_STUB] = python_stub(document)
    outputs[RUST_PAYLOADS] = rust_payloads(document)
    stale = [path for path, content in outputs.items() if not path.exists() or path.read_text() != content]
    if "--check" in sys.argv:
        if stale:
            print("stale taxonomy (run python clients/taxonomy/generate.py): "
                  + ", ".join(str(p.relative_to(ROOT)) for p in stale), file=sys.stderr)
            sys.exit(1)
        print(f"taxonomy up to date in {len(outputs)} places")
        return
    for path, content in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    print(f"wrote {len(outputs)} files")


if __name__ == "__main__":
    main()
