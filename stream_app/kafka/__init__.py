"""Kafka plumbing shared by the worker and the tools: topics, client credentials, and the
compatibility patches of Faust and aiokafka (``compat``)."""
