"""`stream-app top --url` takes what people type: a URL, host:port, :port or a bare port."""

import pytest

from stream_app.tools.top import _parser, worker_url


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("http://10.0.0.5:6066", "http://10.0.0.5:6066"),
        ("https://metrics.example.com/w1", "https://metrics.example.com/w1"),
        ("127.0.0.1:6067", "http://127.0.0.1:6067"),
        ("worker-2:6066", "http://worker-2:6066"),
        (":6068", "http://127.0.0.1:6068"),
        ("6069", "http://127.0.0.1:6069"),
    ],
)
def test_worker_url(typed, url):
    assert worker_url(typed) == url


def test_the_command_line_normalises_each_url():
    args = _parser().parse_args(["--url", "127.0.0.1:6066", "--url", "6067"])
    assert args.url == ["http://127.0.0.1:6066", "http://127.0.0.1:6067"]
