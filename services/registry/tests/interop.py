"""Third-party side of the registry interop test: Confluent's own Python client
(SchemaRegistryClient, AvroSerializer, AvroDeserializer) against our registry and broker.

  interop.py produce --registry URL --bootstrap HOST:PORT --topic T --schema-file F --event-id ID
      registers F's schema through the serializer (auto-register) and produces one event
  interop.py consume --registry URL --bootstrap HOST:PORT --topic T
      reads the first record with AvroDeserializer and prints it as JSON on stdout
"""
import argparse
import datetime
import json
import sys

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def produce(args):
    registry = SchemaRegistryClient({"url": args.registry})
    schema = open(args.schema_file, encoding="utf-8").read()
    serializer = AvroSerializer(registry, schema)
    now = datetime.datetime(2025, 9, 27, 10, 0, 0, tzinfo=datetime.timezone.utc)
    event = {
        "event_id": args.event_id,
        "type": "ci.workflow.failed",
        "ts": now,
        "source": "github",
        "correlation_id": None,
        "payload": ("ct.v1.CiWorkflowFailed", {
            "repo": "swan-portal", "run_id": 1234567, "job": "build",
            "url": "https://ci.example/runs/1234567", "branch": "main",
        }),
        "ingest": {"received_at": now, "attempt": 1, "status": "accepted", "redactions": 0, "trace_id": None},
    }
    value = serializer(event, SerializationContext(args.topic, MessageField.VALUE))
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True, "acks": "all"})
    errors = []
    producer.produce(args.topic, key=b"github", value=value, on_delivery=lambda err, _msg: err and errors.append(err))
    producer.flush(30)
    if errors:
        sys.exit(f"produce failed: {errors}")


def consume(args):
    registry = SchemaRegistryClient({"url": args.registry})
    deserializer = AvroDeserializer(registry)
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"interop-{args.topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([args.topic])
    try:
        for _ in range(120):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                sys.exit(f"consume failed: {msg.error()}")
            value = deserializer(msg.value(), SerializationContext(args.topic, MessageField.VALUE))
            print(json.dumps(value, default=str, sort_keys=True))
            return
        sys.exit("no record within 60 s")
    finally:
        consumer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["produce", "consume"])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schema-file")
    parser.add_argument("--event-id", default="evt_from_python")
    args = parser.parse_args()
    produce(args) if args.command == "produce" else consume(args)


if __name__ == "__main__":
    main()
