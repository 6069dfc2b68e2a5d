"""ensure_topics pre-creates exactly the changelog topics the worker's Faust tables use."""

from stream_app.worker.app import StreamWorker
from stream_app.config import Settings
from stream_app.kafka.topics import changelog_topic_names


def test_changelog_topic_names_match_the_workers_tables():
    settings = Settings(app_id="cl-check", store="memory")
    worker = StreamWorker(settings)
    tables = {t.changelog_topic.get_topic_name() for t in worker.app.tables.values()}
    assert set(changelog_topic_names(settings)) == tables
