"""Pydantic models and prompts shared by the client tests (contract only: a 135M model's facts are not checked)."""

from __future__ import annotations

from pydantic import BaseModel

HI = "Say hi in one word."


class City(BaseModel):
    """A city and its population."""

    name: str
    population: int
