"""Ticket (helpdesk) events. Topic setting ``topic_tickets``; subject/key = ``data.ticket_id``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..vocabulary import Channel, Priority, TicketStatus
from .envelope import Envelope, EventData, Id, Name64, Seconds

AuthorRole = Literal["agent", "customer", "bot"]


class TicketEvent(Envelope):
    FAMILY = "ticket"
    SUBJECT_FIELD = "ticket_id"


class TicketCreatedData(EventData):
    ticket_id: Id
    account_id: Id = Field(description="Customer account that raised the ticket.")
    requester_id: Id = Field(description="User who raised the ticket.")
    channel: Channel
    priority: Priority
    team: Name64 = Field(description="Team (group) the ticket is routed to.")


class TicketCreated(TicketEvent):
    type: Literal["ticket.created"] = "ticket.created"
    data: TicketCreatedData


class TicketRepliedData(EventData):
    ticket_id: Id
    author_role: AuthorRole
    public: bool = Field(True, description="False for internal notes.")
    author_id: Id | None = None
    time_spent_seconds: Seconds | None = Field(
        None, description="Agent working time spent on this reply."
    )


class TicketReplied(TicketEvent):
    type: Literal["ticket.replied"] = "ticket.replied"
    data: TicketRepliedData


class TicketStatusChangedData(EventData):
    ticket_id: Id
    status: TicketStatus
    previous_status: TicketStatus | None = None


class TicketStatusChanged(TicketEvent):
    type: Literal["ticket.status_changed"] = "ticket.status_changed"
    data: TicketStatusChangedData


class TicketAssignedData(EventData):
    ticket_id: Id
    team: Name64
    agent_id: Id | None = Field(None, description="Null when assigned to the team only.")


class TicketAssigned(TicketEvent):
    type: Literal["ticket.assigned"] = "ticket.assigned"
    data: TicketAssignedData


class TicketSolvedData(EventData):
    ticket_id: Id
    agent_id: Id | None = None
    time_spent_seconds: Seconds | None = Field(
        None, description="Total agent working time on the ticket, if the helpdesk tracks it."
    )


class TicketSolved(TicketEvent):
    type: Literal["ticket.solved"] = "ticket.solved"
    data: TicketSolvedData


class TicketRefData(EventData):
    ticket_id: Id


class TicketReopened(TicketEvent):
    type: Literal["ticket.reopened"] = "ticket.reopened"
    data: TicketRefData


class TicketClosed(TicketEvent):
    type: Literal["ticket.closed"] = "ticket.closed"
    data: TicketRefData


TICKET_EVENTS = (
    TicketCreated,
    TicketReplied,
    TicketStatusChanged,
    TicketAssigned,
    TicketSolved,
    TicketReopened,
    TicketClosed,
)
