"""Raqib (رقيب): a streaming monitor for Arabic news feeds."""

__version__ = "0.1.0"
