"""Exceptions raised by :mod:`streamnb.providers`.

All derive from :class:`streamnb._errors.StreamnbError`, so ``except StreamnbError``
catches them with the rest of streamnb::

    StreamnbError
    ├── ProviderConfigError   route, credential or model missing or malformed
    │                         (raised at configuration time, never mid-stream)
    ├── ToolDefinitionError   a Tool is defined wrongly (bad name, schema, duplicate)
    ├── CassetteError         a cassette file is missing or malformed, or a stream
    │                         cannot be recorded (names the file and the problem)
    └── ProviderError         the provider failed a request or a stream: HTTP 4xx/5xx,
                              an ``error`` object mid-stream, a timeout, a dropped
                              connection (carries .status, .retryable, .provider_message)

Errors of the ``openai`` SDK and of its HTTP layer are translated into
:class:`ProviderError` at the boundary (``raise ... from exc``), so callers never need
to import ``openai`` to handle a failed stream.
"""

from __future__ import annotations

from streamnb._errors import StreamnbError

__all__ = ["CassetteError", "ProviderConfigError", "ProviderError", "ToolDefinitionError"]


class ProviderConfigError(StreamnbError):
    """The provider configuration is incomplete or malformed.

    Raised by :meth:`ProviderConfig.resolve` (and the constructor) before any request
    is made. The message names the missing or bad fact and what to set to fix it.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class ToolDefinitionError(StreamnbError):
    """A :class:`~streamnb.providers.Tool` is defined wrongly; raised when it is made."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"tool {name!r} is not valid: {problem}")


class CassetteError(StreamnbError):
    """A cassette cannot be read, replayed or recorded.

    Parameters
    ----------
    where : str
        The cassette file (or, when recording from frames, what was being recorded).
    problem : str
        What is wrong, e.g. ``"line 3: not JSON"`` or ``"no terminal frame"``.
    fix : str
        What to do about it.
    """

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        self.where = where
        self.problem = problem
        hint = f"; {fix}" if fix else ""
        super().__init__(f"cassette {where}: {problem}{hint}")


class ProviderError(StreamnbError):
    """A request to the provider, or its stream, failed.

    Parameters
    ----------
    message : str
        The provider's own message when it sent one (for example the ``message`` of
        an OpenAI error object), otherwise a description of the transport failure.
    status : int or None
        The HTTP status of the failed response; ``None`` for timeouts, dropped
        connections and error objects sent inside a ``200`` stream.
    retryable : bool
        Whether the same request may succeed if sent again (connection errors,
        timeouts, 408/409/429 and 5xx). streamnb retries only before the first token.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        self.provider_message = message
        self.status = status
        self.retryable = retryable
        where = f"HTTP {status}" if status is not None else "no HTTP status"
        hint = (
            "the error is transient: try again, or raise ProviderConfig.max_retries"
            if retryable
            else "check the model name, the request and the credential"
        )
        super().__init__(f"provider error ({where}): {message} ({hint})")
