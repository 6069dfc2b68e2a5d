"""Where the repository's files are, for tests that read them (docs, schemas, deploy files)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "schemas" / "examples"  # one valid event per type (docs/events.md)
