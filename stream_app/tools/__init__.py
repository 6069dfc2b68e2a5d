"""What people run next to the workers, never imported by them: the local stack, the event
generator and producer, the demo, ``top`` and the local Prometheus."""
