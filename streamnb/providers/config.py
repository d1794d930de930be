"""One source of truth for a provider's route, credential and model.

Seed 000 says a live provider comes only "after provider route, credential, and model
facts have one source of truth". :class:`ProviderConfig` is that source. Each fact is
resolved, first match wins, from

1. an explicit argument to :meth:`ProviderConfig.resolve`,
2. the environment,
3. the ``[tool.streamnb.provider]`` table of a TOML file (``pyproject.toml`` in the
   current directory unless a path is given),
4. a built-in default,

and :meth:`ProviderConfig.describe` says where each one came from.

Environment variables
---------------------
``STREAMNB_BASE_URL``
    The Chat Completions route, e.g. ``http://localhost:11434/v1`` for Ollama.
``STREAMNB_MODEL``
    The model name.
``STREAMNB_API_KEY_ENV``
    The *name* of the variable that holds the key (default ``OPENAI_API_KEY``);
    empty or ``none`` means the endpoint needs no key.
``STREAMNB_TIMEOUT_S``, ``STREAMNB_CONNECT_TIMEOUT_S``, ``STREAMNB_MAX_RETRIES``
    Read timeout (seconds without data), connect timeout (seconds) and the number of
    retries before the first token.

The key itself is never written into the TOML file, the notebook, a ``repr``, the
output of :meth:`~ProviderConfig.describe` or :meth:`~ProviderConfig.to_dict`: the
object holds it in a private field that prints as ``<secret>``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pandas as pd

from streamnb.providers.errors import ProviderConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

__all__ = ["DEFAULT_API_KEY_ENV", "DEFAULT_BASE_URL", "ProviderConfig"]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV: Final = "OPENAI_API_KEY"
_DEFAULT_TIMEOUT_S: Final = 60.0
_DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
_DEFAULT_MAX_RETRIES: Final = 2
# Sent when the endpoint needs no key (the SDK refuses an empty one).
_NO_KEY_PLACEHOLDER: Final = "streamnb-no-key"
_TABLE: Final = "[tool.streamnb.provider]"
_TOML_KEYS: Final = frozenset(
    {"base_url", "model", "api_key_env", "timeout_s", "connect_timeout_s", "max_retries"}
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOCAL_HOSTS: Final = frozenset({"localhost", "0.0.0.0", "host.docker.internal"})


class _Unset:
    """Marker for "argument not given" where ``None`` is a meaningful value."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()


class _Secret:
    """A credential that never shows itself in ``repr``, ``str``, copies or pickles."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __deepcopy__(self, memo: dict[int, Any]) -> _Secret:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("a provider credential cannot be pickled; resolve the config again")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Route, credential and model of an OpenAI-compatible Chat Completions endpoint.

    Prefer :meth:`resolve`, which reads arguments, environment and ``pyproject.toml``.
    Constructing the class directly takes every fact as an argument and reads only the
    key from the environment variable named by ``api_key_env``.

    Parameters
    ----------
    model : str
        Model name sent with every request, e.g. ``"gpt-4o-mini"`` or ``"llama3.2"``.
    base_url : str
        Root of the API, ending before ``/chat/completions``
        (default ``https://api.openai.com/v1``).
    api_key_env : str or None
        Name of the environment variable holding the key (default ``OPENAI_API_KEY``).
        ``None`` means the endpoint needs no key (Ollama, llama.cpp, LM Studio); a
        placeholder is sent instead.
    timeout_s : float
        Read timeout in seconds: the longest wait for the next byte of a response,
        so a stalled stream fails after this long (default 60).
    connect_timeout_s : float
        Timeout in seconds for opening the connection (default 10).
    max_retries : int
        Retries of a request that failed before its first token with a retryable
        error (connection error, timeout, 408/409/429, 5xx). Never after a token.

    Raises
    ------
    ProviderConfigError
        The model is missing, the URL is not ``http(s)``, a timeout is not positive,
        or the key is missing for a non-local ``base_url``.

    Examples
    --------
    A local server (Ollama, vLLM, LM Studio) needs no key:

    >>> cfg = ProviderConfig.resolve(model="llama3.2", base_url="http://localhost:11434/v1",
    ...                              api_key_env=None)
    >>> facts = cfg.describe()
    >>> facts.loc["credential", "value"], facts.loc["model", "source"]
    ('not needed (api_key_env=None)', 'argument')
    """

    model: str
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = DEFAULT_API_KEY_ENV
    timeout_s: float = _DEFAULT_TIMEOUT_S
    connect_timeout_s: float = _DEFAULT_CONNECT_TIMEOUT_S
    max_retries: int = _DEFAULT_MAX_RETRIES
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    _secret: _Secret | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_model(self.model)
        _check_base_url(self.base_url)
        _check_api_key_env(self.api_key_env)
        _check_positive("timeout_s", self.timeout_s)
        _check_positive("connect_timeout_s", self.connect_timeout_s)
        _check_retries(self.max_retries)
        known = dict.fromkeys(_TOML_KEYS, "argument")
        known.update(self.sources)
        object.__setattr__(self, "sources", known)
        if self._secret is None:
            object.__setattr__(self, "_secret", _read_secret(self, os.environ))

    @classmethod
    def resolve(
        cls,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str | _Unset | None = _UNSET,
        timeout_s: float | None = None,
        connect_timeout_s: float | None = None,
        max_retries: int | None = None,
        toml_path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ProviderConfig:
        """Resolve every fact from arguments, then environment, then TOML, then defaults.

        Parameters
        ----------
        model, base_url, api_key_env, timeout_s, connect_timeout_s, max_retries
            Explicit values; ``None`` (or, for ``api_key_env``, leaving it out) defers
            to the next source. ``api_key_env=None`` means "no key needed".
        toml_path : path-like, optional
            TOML file with a ``[tool.streamnb.provider]`` table. Default:
            ``pyproject.toml`` in the current directory, skipped if absent.
        environ : mapping, optional
            Environment to read (default ``os.environ``); also where the key is read.

        Returns
        -------
        ProviderConfig
            With ``sources`` naming, per fact, ``"argument"``, ``"env:NAME"``,
            ``"<file>:[tool.streamnb.provider]"`` or ``"default"``.

        Raises
        ------
        ProviderConfigError
            A fact is missing or malformed, the TOML file is unreadable, or the key is
            missing for a non-local ``base_url``. The message says what to set.
        """
        env = os.environ if environ is None else environ
        table, table_label = _load_table(toml_path)
        given: dict[str, Any] = {
            "model": model,
            "base_url": base_url,
            "timeout_s": timeout_s,
            "connect_timeout_s": connect_timeout_s,
            "max_retries": max_retries,
        }
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in ("model", "base_url", "timeout_s", "connect_timeout_s", "max_retries"):
            env_name = f"STREAMNB_{name.upper()}"
            if given[name] is not None:
                values[name], sources[name] = given[name], "argument"
            elif env.get(env_name, "").strip():
                values[name] = _parse_env(name, env_name, env[env_name].strip())
                sources[name] = f"env:{env_name}"
            elif name in table:
                values[name], sources[name] = table[name], table_label
            else:
                sources[name] = "default"
        if not isinstance(api_key_env, _Unset):
            values["api_key_env"], sources["api_key_env"] = api_key_env, "argument"
        elif "STREAMNB_API_KEY_ENV" in env:
            values["api_key_env"] = _optional_name(env["STREAMNB_API_KEY_ENV"])
            sources["api_key_env"] = "env:STREAMNB_API_KEY_ENV"
        elif "api_key_env" in table:
            values["api_key_env"], sources["api_key_env"] = table["api_key_env"], table_label
        else:
            sources["api_key_env"] = "default"
        if "model" not in values:
            raise ProviderConfigError(
                "no model is configured",
                'pass model=..., set STREAMNB_MODEL, or add model = "..." under '
                f"{_TABLE} in pyproject.toml",
            )
        # Validate everything but the key first, then read the key from `env`.
        probe = cls(**values, sources=sources, _secret=_Secret(""))
        return cls(**values, sources=sources, _secret=_read_secret(probe, env))

    @property
    def needs_key(self) -> bool:
        """Whether requests must carry a real key (``api_key_env`` set, URL not local)."""
        return self.api_key_env is not None and not _is_local(self.base_url)

    @property
    def has_key(self) -> bool:
        """Whether a key was found in the environment variable named ``api_key_env``."""
        return self._secret is not None and self._secret.reveal() != _NO_KEY_PLACEHOLDER

    def reveal_api_key(self) -> str:
        """Return the key to hand to an HTTP client (a placeholder when none is needed).

        Never display or store the result; it is the secret itself.
        """
        assert self._secret is not None  # set in __post_init__
        return self._secret.reveal()

    def to_dict(self) -> dict[str, Any]:
        """The non-secret facts as a JSON-ready dict (safe for ledgers and logs).

        Returns
        -------
        dict
            Keys ``base_url, model, api_key_env, credential, timeout_s,
            connect_timeout_s, max_retries``; ``credential`` is a status string,
            never the key.
        """
        return {
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "credential": self._credential_status(),
            "timeout_s": self.timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "max_retries": self.max_retries,
        }

    def describe(self) -> pd.DataFrame:
        """Say what each fact is and where it came from, without the key.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``fact`` (``base_url, model, api_key_env, credential,
            timeout_s, connect_timeout_s, max_retries``) with string columns
            ``value`` and ``source``. ``source`` is ``"argument"``, ``"env:NAME"``,
            ``"pyproject.toml:[tool.streamnb.provider]"`` or ``"default"``.
            The credential's value is ``"set (from env NAME)"``, ``"missing"`` or
            ``"not needed (api_key_env=None)"``.
        """
        facts = self.to_dict()
        rows = []
        for fact, value in facts.items():
            source_key = "api_key_env" if fact == "credential" else fact
            shown = "None" if value is None else str(value)
            rows.append((fact, shown, self.sources.get(source_key, "argument")))
        frame = pd.DataFrame(rows, columns=["fact", "value", "source"], dtype="string")
        return frame.set_index("fact")

    def _credential_status(self) -> str:
        if self.api_key_env is None:
            return "not needed (api_key_env=None)"
        if self.has_key:
            return f"set (from env {self.api_key_env})"
        return "missing"


def _read_secret(config: ProviderConfig, env: Mapping[str, str]) -> _Secret:
    name = config.api_key_env
    if name is None:
        return _Secret(_NO_KEY_PLACEHOLDER)
    value = env.get(name, "").strip()
    if value:
        return _Secret(value)
    if _is_local(config.base_url):
        return _Secret(_NO_KEY_PLACEHOLDER)
    raise ProviderConfigError(
        f"the credential for {config.base_url} is missing: environment variable {name} is not set",
        f"export {name}=... in the shell that starts Python or Jupyter (never write the key "
        "into a notebook or pyproject.toml), or set STREAMNB_API_KEY_ENV to the name of the "
        "variable that holds it; for a local server that needs no key pass api_key_env=None",
    )


def _is_local(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_table(toml_path: str | os.PathLike[str] | None) -> tuple[dict[str, Any], str]:
    path = Path("pyproject.toml") if toml_path is None else Path(toml_path)
    label = f"{path.name}:{_TABLE}"
    if not path.is_file():
        if toml_path is None:
            return {}, label
        raise ProviderConfigError(
            f"the TOML file {str(path)!r} does not exist",
            "pass toml_path= pointing at a file with a [tool.streamnb.provider] table",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProviderConfigError(
            f"cannot read {str(path)!r}: {exc}", "fix the file or pass toml_path=..."
        ) from exc
    table = data.get("tool", {}).get("streamnb", {}).get("provider", {})
    if not isinstance(table, dict):
        raise ProviderConfigError(f"{_TABLE} in {path.name} is not a table", "make it a table")
    if "api_key" in table:
        raise ProviderConfigError(
            f"{path.name} contains api_key under {_TABLE}; keys must not be stored in files",
            "delete it, export the key in an environment variable and set "
            'api_key_env = "THAT_VARIABLE" instead',
        )
    unknown = sorted(set(table) - _TOML_KEYS)
    if unknown:
        raise ProviderConfigError(
            f"unknown setting(s) {', '.join(unknown)} under {_TABLE} in {path.name}",
            f"use only {', '.join(sorted(_TOML_KEYS))}",
        )
    if table.get("api_key_env") in ("", False):
        table["api_key_env"] = None
    return table, label


def _parse_env(name: str, env_name: str, raw: str) -> Any:
    if name in ("model", "base_url"):
        return raw
    try:
        return int(raw) if name == "max_retries" else float(raw)
    except ValueError:
        kind = "a whole number" if name == "max_retries" else "a number of seconds"
        raise ProviderConfigError(
            f"{env_name}={raw!r} is not {kind}", f"set {env_name} to {kind} or unset it"
        ) from None


def _optional_name(raw: str) -> str | None:
    raw = raw.strip()
    return None if raw.lower() in ("", "none") else raw


def _check_model(model: object) -> None:
    if not isinstance(model, str) or not model.strip():
        raise ProviderConfigError(
            "the model must be a non-empty string",
            f"pass model=..., set STREAMNB_MODEL, or set model under {_TABLE}",
        )


def _check_base_url(base_url: object) -> None:
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderConfigError(
            f"base_url {base_url!r} is not an http(s) URL",
            "use the API root such as https://api.openai.com/v1 or http://localhost:11434/v1",
        )


def _check_api_key_env(name: object) -> None:
    if name is None:
        return
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        # Do not echo the value: a common mistake is passing the key itself here.
        raise ProviderConfigError(
            "api_key_env must be the name of an environment variable (like OPENAI_API_KEY), "
            "not the key itself",
            "export the key as a variable and pass its name, or api_key_env=None for none",
        )


def _check_positive(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ProviderConfigError(
            f"{name} must be a positive number of seconds, got {value!r}", f"fix {name}"
        )


def _check_retries(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProviderConfigError(
            f"max_retries must be a whole number >= 0, got {value!r}", "fix max_retries"
        )
