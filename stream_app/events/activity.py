"""Product activity events. Topic setting ``topic_activity``; subject/key = ``data.user_id``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ..vocabulary import Client
from .envelope import Envelope, EventData, Id

#: Feature names are bounded identifiers (they may become metric label values after allow-listing).
FeatureName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]


class ActivityEvent(Envelope):
    FAMILY = "activity"
    SUBJECT_FIELD = "user_id"


class SignedUpData(EventData):
    user_id: Id
    account_id: Id


class ActivitySignedUp(ActivityEvent):
    type: Literal["activity.signed_up"] = "activity.signed_up"
    data: SignedUpData


class LoginData(EventData):
    user_id: Id
    account_id: Id
    session_id: Id
    client: Client = "web"


class ActivityLogin(ActivityEvent):
    type: Literal["activity.login"] = "activity.login"
    data: LoginData


class SessionData(EventData):
    user_id: Id
    session_id: Id


class ActivityLogout(ActivityEvent):
    type: Literal["activity.logout"] = "activity.logout"
    data: SessionData


class ActivityHeartbeat(ActivityEvent):
    type: Literal["activity.heartbeat"] = "activity.heartbeat"
    data: SessionData


class FeatureUsedData(EventData):
    user_id: Id
    account_id: Id
    session_id: Id | None = None
    feature: FeatureName = Field(description="Feature key, e.g. 'reports.export'.")


class ActivityFeatureUsed(ActivityEvent):
    type: Literal["activity.feature_used"] = "activity.feature_used"
    data: FeatureUsedData


ACTIVITY_EVENTS = (
    ActivitySignedUp,
    ActivityLogin,
    ActivityLogout,
    ActivityHeartbeat,
    ActivityFeatureUsed,
)
