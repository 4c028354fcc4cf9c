"""Faceplate: OpenAI's HTTP API in front of your own models."""

__version__ = "0.1.0"
