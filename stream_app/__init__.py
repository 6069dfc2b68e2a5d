"""stream_app: live customer-success metrics from Kafka event streams."""

__version__ = "0.1.0"
