"""Every method of confluent-kafka's SchemaRegistryClient against our registry, on Avro schemas
with references: each call must succeed and answer what Confluent's registry would.

  client_methods.py REGISTRY_URL PREFIX  ->  prints the names of the methods it called
"""
import sys

from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
)
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.schema_registry_client import ConfigCompatibilityLevel, ServerConfig

url, prefix = sys.argv[1], sys.argv[2]
client = SchemaRegistryClient({"url": url})
called = []

ADDRESS = Schema(
    '{"type":"record","name":"Address","namespace":"py","fields":[{"name":"city","type":"string"}]}', "AVRO"
)
reference = SchemaReference(name="py.Address", subject=f"{prefix}-address", version=1)
CUSTOMER = Schema(
    '{"type":"record","name":"Customer","namespace":"py","fields":[{"name":"home","type":"Address"}]}',
    "AVRO",
    [reference],
)
CUSTOMER_V2 = Schema(
    '{"type":"record","name":"Customer","namespace":"py","fields":[{"name":"home","type":"Address"},'
    '{"name":"note","type":"string","default":""}]}',
    "AVRO",
    [reference],
)


def call(name, *args, **kwargs):
    called.append(name)
    return getattr(client, name)(*args, **kwargs)


def refused(code, name, *args, **kwargs):
    try:
        call(name, *args, **kwargs)
    except SchemaRegistryError as error:
        assert error.error_code == code, (name, error.error_code, error.error_message)
        return
    raise AssertionError(f"{name} succeeded; expected error {code}")


address_subject, customer_subject = f"{prefix}-address", f"{prefix}-customer"
assert "AVRO" in call("get_schema_types")
address_id = call("register_schema", address_subject, ADDRESS)
customer = call("register_schema_full_response", customer_subject, CUSTOMER)
assert customer.schema_id != address_id

client.clear_caches()
fetched = call("get_schema", customer.schema_id)
assert [(r.name, r.subject, r.version) for r in fetched.references] == [("py.Address", address_subject, 1)]
assert call("get_subjects_by_schema_id", address_id) == [address_subject]
assert [(v.subject, v.version) for v in call("get_schema_versions", customer.schema_id)] == [(customer_subject, 1)]
found = call("lookup_schema", customer_subject, CUSTOMER)
assert (found.schema_id, found.version) == (customer.schema_id, 1)
assert call("get_subjects", subject_prefix=prefix) == [address_subject, customer_subject]
latest = call("get_latest_version", customer_subject)
assert (latest.version, latest.schema_id) == (1, customer.schema_id)
by_guid = call("get_schema_by_guid", latest.guid)
# The client may answer from its cache, with the text it sent; the references are the same.
assert by_guid.references == fetched.references, (by_guid, fetched)
assert call("get_latest_with_metadata", customer_subject, {}).version == 1
refused(40403, "get_latest_with_metadata", customer_subject, {"owner": "nobody"})
assert call("get_version", customer_subject, 1).schema_id == customer.schema_id
assert call("get_referenced_by", address_subject, 1) == [customer.schema_id]
assert call("get_versions", customer_subject) == [1]

assert call("set_compatibility", customer_subject, "FULL") == {"compatibility": "FULL"}
assert call("get_compatibility", customer_subject) == "FULL"
assert call("test_compatibility", customer_subject, CUSTOMER_V2) is True
assert call("test_compatibility_all_versions", customer_subject, CUSTOMER_V2) is True
call("set_config", customer_subject, ServerConfig(compatibility=ConfigCompatibilityLevel.BACKWARD_TRANSITIVE))
assert str(call("get_config", customer_subject).compatibility_level) == "BACKWARD_TRANSITIVE"
assert str(call("delete_config", customer_subject).compatibility_level) == "BACKWARD_TRANSITIVE"
assert str(call("get_config").compatibility_level) == "BACKWARD"
v2_id = call("register_schema", customer_subject, CUSTOMER_V2)

assert call("update_mode", customer_subject, "READONLY") == "READONLY"
assert call("get_mode", customer_subject) == "READONLY"
refused(42205, "register_schema", customer_subject, Schema('{"type":"string"}', "AVRO"))
assert call("delete_mode", customer_subject) == "READONLY"
assert call("get_global_mode") == "READWRITE"
assert call("update_global_mode", "READWRITE") == "READWRITE"
assert call("get_contexts") == ["."]

refused(42206, "delete_version", address_subject, 1)
assert call("delete_version", customer_subject, 2) == 2
assert call("get_versions", customer_subject, deleted=True) == [1, 2]
assert call("delete_subject", customer_subject) == [1]
assert call("delete_subject", customer_subject, permanent=True) == [1, 2]
assert call("delete_subject", address_subject) == [1]
assert call("get_subjects", subject_prefix=prefix) == []
assert call("get_subjects", subject_prefix=prefix, deleted=True) == [address_subject]
assert v2_id not in (address_id, customer.schema_id)
call("clear_latest_caches")
call("clear_caches")
# Every public method of the client, so a client that grows one makes this test say so.
offered = {m for m in dir(SchemaRegistryClient) if not m.startswith("_") and callable(getattr(SchemaRegistryClient, m))}
missed = offered - set(called) - {"config", "new_client"}
assert not missed, f"methods not exercised: {sorted(missed)}"
print(" ".join(sorted(set(called))))
