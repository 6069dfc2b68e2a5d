"""What the tests share: the engine runner on the real engine step, the worker process, the
reference inputs and the dashboard helpers. Imported by name, never from a test module."""
