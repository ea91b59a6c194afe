"""Avro's own Python parser as the oracle for what is a valid schema and what a schema means.

  avro_oracle.py LIST.json  ->  prints a JSON list with, for each schema text of LIST.json, its
                                Parsing Canonical Form when avro.schema.parse accepts it, else null
"""
import json
import sys

import avro.schema

verdicts = []
for text in json.load(open(sys.argv[1], encoding="utf-8")):
    try:
        verdicts.append(avro.schema.parse(text).canonical_form)
    except Exception:  # SchemaParseException and the errors the parser lets through
        verdicts.append(None)
print(json.dumps(verdicts))
