"""Reads over the request log for the control room: percentiles, Claude Code sessions,
upstream key health and the rows behind one session.

Every function issues a fixed number of queries, whatever the number of requests: the work
is done by GROUP BY and window functions in the database, never by loading rows to count.
Money is summed exactly on both databases, as an integer count of 1E-10 dollars (SQLite
keeps a DecimalField as a float).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import (
    Count,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
    Window,
)
from django.db.models.functions import Coalesce, NullIf, RowNumber

from accounts.models import User
from gateway.models import RequestLog, RequestOutcome, UpstreamKey
from gateway.selectors import exact_cost_sum, from_cost_units

SESSION_REQUEST_LIMIT = 500
TOKEN_CLASSES = (
    ("input_tokens", "Input"),
    ("cache_write_5m_tokens", "Cache write (5m)"),
    ("cache_write_1h_tokens", "Cache write (1h)"),
    ("cache_read_tokens", "Cache read"),
    ("output_tokens", "Output"),
)
INPUT_COLUMNS = (
    "input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
)


def can_view_traffic(user: Any) -> bool:
    """Who may see requests, spend and sessions in the control room: active staff allowed to
    read the request log. The one check behind the dashboard, session pages and live feed."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm("gateway.view_requestlog")
    )


def served_model() -> Coalesce:
    return Coalesce(NullIf(F("model_served"), Value("")), F("model_requested"))


def cache_hit_ratio(cache_read_tokens: int, total_input_tokens: int) -> Decimal | None:
    """Cache reads as a share of every input token (uncached, written and read)."""
    if not total_input_tokens:
        return None
    return Decimal(cache_read_tokens) / Decimal(total_input_tokens)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def requests_on(day: date, *, cost_center_id: int | None = None) -> QuerySet[RequestLog]:
    requests = RequestLog.objects.filter(
        started_at__gte=day_start(day), started_at__lt=day_start(day + timedelta(days=1))
    )
    if cost_center_id is not None:
        requests = requests.filter(cost_center_id=cost_center_id)
    return requests


# --- Percentiles


def percentiles(
    requests: QuerySet[RequestLog], column: str, points: Iterable[int] = (50, 95)
) -> dict[int, int | None]:
    """Nearest-rank percentiles of `column` (one query): the value at rank ⌈p·n/100⌉."""
    points = tuple(points)
    ranked = (
        requests.order_by()
        .filter(**{f"{column}__isnull": False})
        .annotate(
            rank=Window(RowNumber(), order_by=[F(column).asc(), F("pk").asc()]),
            total=Window(Count("pk")),
        )
    )
    wanted = Q()
    for point in points:
        wanted |= Q(rank=(F("total") * point + 99) / 100)
    found: dict[int, int] = {}
    for rank, total, value in ranked.filter(wanted).values_list("rank", "total", column):
        for point in points:
            if rank == (total * point + 99) // 100:
                found[point] = value
    return {point: found.get(point) for point in points}


# --- Claude Code sessions


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    username: str | None
    requests: int
    agents: int
    cost_usd: Decimal
    first_seen: datetime
    last_seen: datetime


def sessions_on(
    day: date, *, cost_center_id: int | None = None, limit: int = 10
) -> tuple[int, list[SessionSummary]]:
    """How many Claude Code sessions sent requests on `day`, and the most recent ones."""
    in_sessions = requests_on(day, cost_center_id=cost_center_id).exclude(session_id="")
    total = in_sessions.order_by().values("session_id").distinct().count()
    rows = (
        in_sessions.order_by()
        .values("session_id")
        .annotate(
            requests=Count("pk"),
            agents=Count(NullIf(F("agent_id"), Value("")), distinct=True),
            cost_units=exact_cost_sum(),
            first_seen=Min("started_at"),
            last_seen=Max("started_at"),
            username=Max("user__username"),
        )
        .order_by("-last_seen")[:limit]
    )
    return total, [
        SessionSummary(
            session_id=row["session_id"],
            username=row["username"],
            requests=row["requests"],
            agents=row["agents"],
            cost_usd=from_cost_units(row["cost_units"]),
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class TokenCount:
    label: str
    tokens: int


@dataclass(frozen=True)
class AgentSummary:
    agent_id: str  # "" for the main conversation
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_usd: Decimal
    first_seen: datetime
    last_seen: datetime

    @property
    def label(self) -> str:
        return self.agent_id or "main conversation"


@dataclass(frozen=True)
class SessionDetail:
    session_id: str
    requests: int
    error_requests: int
    unpriced_requests: int
    cost_usd: Decimal
    cache_savings_usd: Decimal
    first_seen: datetime
    last_seen: datetime
    tokens: list[TokenCount]
    cache_hit_ratio: Decimal | None
    usernames: list[str]
    agents: list[AgentSummary]
    rows: list[RequestLog] = field(default_factory=list)

    @property
    def subagent_count(self) -> int:
        return sum(1 for agent in self.agents if agent.agent_id)

    @property
    def is_truncated(self) -> bool:
        return self.requests > len(self.rows)

    @property
    def duration(self) -> timedelta:
        return self.last_seen - self.first_seen

    def timeline(self) -> dict[str, Any]:
        """Chart data: one point per request, seconds since the session began, per agent."""
        series: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            label = row.agent_id or "main conversation"
            series.setdefault(label, []).append(
                {
                    "x": round((row.started_at - self.first_seen).total_seconds(), 3),
                    "y": row.latency_ms or 0,
                    "model": row.model_served or row.model_requested,
                    "status": row.status_code,
                }
            )
        return {"series": [{"label": label, "points": points} for label, points in series.items()]}


def session_detail(session_id: str, *, limit: int = SESSION_REQUEST_LIMIT) -> SessionDetail | None:
    """One Claude Code session: totals, subagents, token classes and its first `limit` rows."""
    requests = RequestLog.objects.filter(session_id=session_id).order_by()
    totals = requests.aggregate(
        requests=Count("pk"),
        error_requests=Count("pk", filter=~Q(outcome=RequestOutcome.OK)),
        unpriced_requests=Count("pk", filter=Q(is_priced=False) | Q(cost_usd__isnull=True)),
        cost_units=exact_cost_sum(),
        savings_units=exact_cost_sum("cache_savings_usd"),
        first_seen=Min("started_at"),
        last_seen=Max("started_at"),
        **{column: Sum(column) for column, _ in TOKEN_CLASSES},
    )
    if not totals["requests"]:
        return None
    agents = sorted(
        (
            AgentSummary(
                agent_id=row["agent_id"],
                requests=row["requests"],
                input_tokens=int(row["input"] or 0),
                output_tokens=int(row["output"] or 0),
                cache_read_tokens=int(row["cache_read"] or 0),
                cost_usd=from_cost_units(row["cost_units"]),
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
            )
            for row in requests.values("agent_id").annotate(
                requests=Count("pk"),
                input=Sum("input_tokens"),
                output=Sum("output_tokens"),
                cache_read=Sum("cache_read_tokens"),
                cost_units=exact_cost_sum(),
                first_seen=Min("started_at"),
                last_seen=Max("started_at"),
            )
        ),
        # The main conversation first, then subagents in the order they started.
        key=lambda agent: (agent.agent_id != "", agent.first_seen, agent.agent_id),
    )
    rows = list(requests.select_related("user", "provider").order_by("started_at", "pk")[:limit])
    tokens = {column: int(totals[column] or 0) for column, _ in TOKEN_CLASSES}
    return SessionDetail(
        session_id=session_id,
        requests=totals["requests"],
        error_requests=totals["error_requests"],
        unpriced_requests=totals["unpriced_requests"],
        cost_usd=from_cost_units(totals["cost_units"]),
        cache_savings_usd=from_cost_units(totals["savings_units"]),
        first_seen=totals["first_seen"],
        last_seen=totals["last_seen"],
        tokens=[TokenCount(label, tokens[column]) for column, label in TOKEN_CLASSES],
        cache_hit_ratio=cache_hit_ratio(
            tokens["cache_read_tokens"], sum(tokens[column] for column in INPUT_COLUMNS)
        ),
        usernames=sorted({row.user.username for row in rows if row.user is not None}),
        agents=agents,
        rows=rows,
    )


# --- Upstream keys


@dataclass(frozen=True)
class UpstreamKeyActivity:
    requests_24h: int
    rate_limited_1h: int
    rate_limited_24h: int
    last_rate_limited_at: datetime | None
    recent_rate_limited: list[RequestLog]


def upstream_key_activity(
    upstream_key: UpstreamKey, *, now: datetime, recent: int = 10
) -> UpstreamKeyActivity:
    """Traffic the key served in the last day and the requests that ended in a 429 on it.

    Cooldowns live in the pool state (process memory or Redis), not in the database; the
    request log shows the 429s that started them.
    """
    day_ago, hour_ago = now - timedelta(days=1), now - timedelta(hours=1)
    served = RequestLog.objects.filter(upstream_key=upstream_key).order_by()
    counts = served.filter(started_at__gte=day_ago).aggregate(
        requests=Count("pk"),
        limited_day=Count("pk", filter=Q(status_code=429)),
        limited_hour=Count("pk", filter=Q(status_code=429, started_at__gte=hour_ago)),
    )
    limited = list(
        served.filter(status_code=429).select_related("user").order_by("-started_at")[:recent]
    )
    return UpstreamKeyActivity(
        requests_24h=counts["requests"],
        rate_limited_1h=counts["limited_hour"],
        rate_limited_24h=counts["limited_day"],
        last_rate_limited_at=limited[0].started_at if limited else None,
        recent_rate_limited=limited,
    )


def usernames(user_ids: Iterable[int | None]) -> dict[int, str]:
    ids = {user_id for user_id in user_ids if user_id is not None}
    if not ids:
        return {}
    return dict(User.objects.filter(pk__in=ids).values_list("pk", "username"))
