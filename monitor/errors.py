"""One exception tree, so callers can catch a whole family at once.

RaqibError
├── ConfigError          a configuration file or value is wrong (CLI exit status 2)
├── FeedError            one feed failed; the others carry on
│   ├── FetchError       transport or HTTP failure
│   │   └── ResponseTooLarge, TooManyRedirects, RetryLater
│   └── ParseError       the body could not be read as a feed
├── QueryError           a search or alert query does not parse
├── IndexError_          the index backend failed (named so it does not shadow the builtin)
└── ChannelError         an alert channel failed to deliver
"""

from __future__ import annotations


def _rebuild(cls: type[RaqibError], args: tuple, state: dict) -> RaqibError:
    e = cls.__new__(cls)
    e.args = args
    e.__dict__.update(state)
    return e


class RaqibError(Exception):
    """Base of every error Raqib raises on purpose.

    Errors cross process boundaries (parse workers): the default pickling calls `cls(*args)`
    with the formatted message, which breaks every subclass whose __init__ takes other
    arguments — and an unpicklable exception breaks the whole worker pool. Rebuilding from
    args and attributes without calling __init__ works for every subclass."""

    def __reduce__(self):
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class ConfigError(RaqibError):
    """A configuration file is invalid; the message names the file, key and problem."""


class FeedError(RaqibError):
    def __init__(self, url: str, message: str):
        super().__init__(f"{url}: {message}")
        self.url = url
        self.reason = message


class FetchError(FeedError):
    """The feed could not be fetched (network, timeout, HTTP status)."""

    def __init__(self, url: str, message: str, status: int | None = None):
        super().__init__(url, message)
        self.status = status


class ResponseTooLarge(FetchError):
    pass


class TooManyRedirects(FetchError):
    pass


class RetryLater(FetchError):
    """The server asked us to come back later (429/503 with Retry-After)."""

    def __init__(self, url: str, message: str, status: int, retry_after: float):
        super().__init__(url, message, status)
        self.retry_after = retry_after


class ParseError(FeedError):
    """Nothing usable could be recovered from the body."""


class QueryError(RaqibError):
    """A query does not parse; `position` points at the offending character."""

    def __init__(self, message: str, query: str = "", position: int | None = None):
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}" + (f" in query {query!r}" if query else ""))
        self.query = query
        self.position = position


class IndexError_(RaqibError):
    """The index backend failed; articles stay in the store and are retried."""


class ChannelError(RaqibError):
    """A notification channel failed; the alert stays in the outbox and is retried."""
