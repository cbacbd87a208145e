"""Named schedules: weekdays and time-of-day ranges in an IANA time zone.

A range "22:00-06:00" wraps midnight and belongs to the day it starts on: with days
[fri], Friday 23:00 and Saturday 05:00 are inside, Friday 05:00 is not. The end of a range
is exclusive. Evaluation time is ArrivalMeta.received_at; a naive datetime counts as UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from axiom_dagster.config.rules import Schedule

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class CompiledSchedule:
    __slots__ = ("name", "tz_name", "tz", "days", "ranges")

    def __init__(self, name: str, spec: Schedule) -> None:
        self.name = name
        self.tz_name = spec.timezone
        self.tz = ZoneInfo(spec.timezone)
        self.days = frozenset(_DAYS.index(d) for d in spec.days)
        self.ranges = tuple(
            (_minutes(r.replace(" ", "").split("-")[0]), _minutes(r.replace(" ", "").split("-")[1]))
            for r in spec.ranges
        )

    def __getstate__(self):
        return (self.name, self.tz_name, self.days, self.ranges)

    def __setstate__(self, state):
        self.name, self.tz_name, self.days, self.ranges = state
        self.tz = ZoneInfo(self.tz_name)

    def active(self, when: datetime) -> bool:
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        local = when.astimezone(self.tz)
        day = local.weekday()
        minute = local.hour * 60 + local.minute
        if not self.ranges:
            return day in self.days
        for start, end in self.ranges:
            if start < end:
                if day in self.days and start <= minute < end:
                    return True
            elif start > end:  # overnight: the tail belongs to the previous day
                if (day in self.days and minute >= start) or ((day - 1) % 7 in self.days and minute < end):
                    return True
            elif day in self.days:  # start == end: the whole day
                return True
        return False
