"""Mock LLM provider for aispend's end-to-end tests and `make run`."""
from .server import MockProvider
from .usage import expected_usage, reported_model

__all__ = ["MockProvider", "expected_usage", "reported_model"]
