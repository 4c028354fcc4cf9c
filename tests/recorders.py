"""A usage sink that keeps every record, for tests that check what was metered."""

from __future__ import annotations

from faceplate.access.usage import UsageRecord


class Recorder:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def record(self, rec: UsageRecord) -> None:
        self.records.append(rec)
