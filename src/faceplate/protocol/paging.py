"""Cursor paging query parameters (``limit``, ``order``, ``after``) shared by the list routes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from faceplate.errors import InvalidRequest

_INTEGER = re.compile(r"-?[0-9]+")

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class Page:
    limit: int
    order: Order
    after: str | None


def page_params(
    query: Mapping[str, str],
    *,
    default_limit: int = 20,
    max_limit: int = 100,
    default_order: str = "desc",
) -> Page:
    """The validated page request, or OpenAI's 400 naming ``limit`` or ``order``."""
    raw_limit = query.get("limit")
    limit = default_limit
    if raw_limit is not None:
        text = raw_limit.strip()
        # Only plain ASCII digits: int() would also take "1_0", "+5" or Arabic-Indic digits.
        if _INTEGER.fullmatch(text) is None:
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer, but got {raw_limit[:40]!r} instead.",
                param="limit",
            )
        # Clamp absurd lengths before int(): Python refuses to convert over 4300 digits.
        limit = int(text) if len(text) <= 18 else (-(10**18) if text.startswith("-") else 10**18)
        shown = text if len(text) <= 18 else text[:18] + "..."
        if limit < 1:
            raise InvalidRequest(
                f"Invalid 'limit': integer below minimum value. Expected a value >= 1, but got {shown} instead.",
                param="limit",
            )
        if limit > max_limit:
            raise InvalidRequest(
                f"Invalid 'limit': integer above maximum value. Expected a value <= {max_limit}, but got {shown} instead.",
                param="limit",
            )
    order = query.get("order", default_order)
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value for 'order': expected one of 'asc' or 'desc', but got {order!r} instead.",
            param="order",
        )
    after = query.get("after") or None  # an empty ?after= means "from the start", as no cursor
    return Page(limit=limit, order=cast(Order, order), after=after)
