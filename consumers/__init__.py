"""Everything that knows Kafka and the wire format; nothing here knows a model."""
