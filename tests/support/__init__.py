"""What the tests share, imported by name (a test module never imports another test module):

- engine: the real engine step over states in a dict (EngineRunner), and decode + every family
  (Pipeline);
- events: the decoded-event stand-in (Ev), wire events from the schema examples, arrival orders;
- samples: an index read at one instant, compared (samples, lab, assert_same, exposition);
- references: the reference computations' parameters, inputs and comparison with /metrics;
- worker: real worker processes (WorkerProcess, worker_env, wait_for, total);
- kafka: reading a topic back; dashboards: the Grafana boards and Prometheus rules; paths.
"""
