"""The metric families a worker runs and the tables their states live in."""

from __future__ import annotations

from .revenue import RevenueFamily
from .support import SupportFamily
from .usage import UsageFamily
from .voice import VoiceFamily

FAMILY_TYPES = (SupportFamily, VoiceFamily, UsageFamily, RevenueFamily)
# The health stage's table: one row per (account, source, entity).
HEALTH_TABLE = "account_health"
TABLES = (*(f.table for f in FAMILY_TYPES), HEALTH_TABLE)
