"""Avro's own Python parser as the oracle for what is a valid schema.

  avro_oracle.py CORPUS.json  ->  prints a JSON list: true where avro.schema.parse accepts the entry
"""
import json
import sys

import avro.schema

verdicts = []
for text in json.load(open(sys.argv[1], encoding="utf-8")):
    try:
        avro.schema.parse(text)
        verdicts.append(True)
    except Exception:  # SchemaParseException and the errors the parser lets through
        verdicts.append(False)
print(json.dumps(verdicts))
