"""Survey response events. Topic setting ``topic_surveys``; subject/key = ``data.response_id``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from .envelope import Envelope, EventData, Id, field_error

Comment = Annotated[str, StringConstraints(max_length=2000)]


class SurveyEvent(Envelope):
    FAMILY = "survey"
    SUBJECT_FIELD = "response_id"


class NpsData(EventData):
    response_id: Id
    score: int = Field(ge=0, le=10, description="0-10, fixed scale.")
    comment: Comment | None = None
    account_id: Id | None = None
    ticket_id: Id | None = None
    respondent_id: Id | None = None


class SurveyNps(SurveyEvent):
    type: Literal["survey.nps"] = "survey.nps"
    data: NpsData


class _ScaledData(EventData):
    """Score on a survey-declared scale; the bounds travel with each response."""

    response_id: Id
    score: int = Field(description="Within scale_min..scale_max.")
    scale_min: int = 1
    scale_max: int = 5
    comment: Comment | None = None
    account_id: Id | None = None
    ticket_id: Id | None = None
    respondent_id: Id | None = None

    @model_validator(mode="after")
    def _score_within_scale(self) -> _ScaledData:
        if self.scale_min >= self.scale_max:
            raise field_error(
                ("scale_max",), "scale_invalid", "scale_max must be greater than scale_min", None
            )
        if not self.scale_min <= self.score <= self.scale_max:
            raise field_error(
                ("score",),
                "score_out_of_scale",
                f"Input should be within the scale {self.scale_min}..{self.scale_max}",
                None,
            )
        return self


class CsatData(_ScaledData):
    scale_max: int = 5


class SurveyCsat(SurveyEvent):
    type: Literal["survey.csat"] = "survey.csat"
    data: CsatData


class CesData(_ScaledData):
    scale_max: int = 7


class SurveyCes(SurveyEvent):
    type: Literal["survey.ces"] = "survey.ces"
    data: CesData


SURVEY_EVENTS = (SurveyNps, SurveyCsat, SurveyCes)
