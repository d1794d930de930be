"""SQL text given to the PostgreSQL ledger by users: placeholders and statement checks.

``ledger.sql(query, params)`` and a handler's ``tx.execute(sql, params)`` take
the same placeholders on both backends, SQLite's ``?`` (with a sequence) and
``:name`` (with a mapping), so a query written against one ledger runs on the
other. psycopg's own style is ``%s``/``%(name)s``: :func:`to_pyformat` rewrites
the placeholders outside string literals, quoted identifiers, dollar quotes
and comments, and doubles every other ``%`` (psycopg would read ``LIKE 'a%'``
as a placeholder). ``::`` casts stay as they are.

:func:`check_handler_statement` refuses, in a handler's ``tx.execute``, the
statements that would end or change the settlement's transaction (``COMMIT``,
``SAVEPOINT``, ``SET``...); the tables' triggers refuse writes to the runtime's
tables (``pg_schema.py``). Statements always go over the extended protocol
(one statement per call), so ``"SELECT 1; COMMIT"`` is refused by the server.

Examples
--------
>>> to_pyformat("SELECT * FROM streams WHERE kind = ? AND reason LIKE 'a%' AND id::text = ?")
"SELECT * FROM streams WHERE kind = %s AND reason LIKE 'a%%' AND id::text = %s"
>>> to_pyformat("SELECT :kind, ':not' -- :nor ?")
"SELECT %(kind)s, ':not' -- :nor ?"
"""

from __future__ import annotations

import re

from .._errors import LedgerError

__all__ = ["check_handler_statement", "to_pyformat"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
#: first words of statements a handler's SQL may not run inside the settlement
_REFUSED = frozenset(
    {
        "abort",
        "begin",
        "checkpoint",
        "close",
        "commit",
        "copy",
        "deallocate",
        "discard",
        "end",
        "listen",
        "lock",
        "notify",
        "prepare",
        "release",
        "reset",
        "rollback",
        "savepoint",
        "set",
        "start",
        "unlisten",
        "vacuum",
    }
)


def _quoted_end(sql: str, i: int, quote: str) -> int:
    """Index after the literal starting at ``i`` (a doubled quote is part of it)."""
    n = len(sql)
    j = i + 1
    backslash = quote == "'" and i > 0 and sql[i - 1] in "eE"
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _comment_end(sql: str, i: int) -> int:
    """Index after the (nested) block comment starting at ``i``."""
    depth = 0
    j = i
    n = len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth += 1
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


def to_pyformat(sql: str) -> str:
    """``sql`` with ``?`` and ``:name`` placeholders as psycopg's ``%s`` / ``%(name)s``."""
    out: list[str] = []
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = _quoted_end(sql, i, c)
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
        elif c == "/" and sql.startswith("/*", i):
            j = _comment_end(sql, i)
        elif c == "$" and (m := _DOLLAR.match(sql, i)) and not (i and sql[i - 1].isalnum()):
            tag = m.group(0)
            k = sql.find(tag, m.end())
            j = n if k < 0 else k + len(tag)
        elif c == "?":
            out.append("%s")
            i += 1
            continue
        elif c == ":":
            if sql.startswith("::", i):
                out.append("::")
                i += 2
                continue
            m = _NAME.match(sql, i + 1)
            if m is not None:
                out.append(f"%({m.group(0)})s")
                i = m.end()
                continue
            out.append(c)
            i += 1
            continue
        elif c == "%":
            out.append("%%")
            i += 1
            continue
        else:
            out.append(c)
            i += 1
            continue
        out.append(sql[i:j].replace("%", "%%"))
        i = j
    return "".join(out)


def _first_word(sql: str) -> str:
    i = 0
    n = len(sql)
    while i < n:
        if sql[i].isspace() or sql[i] in ";(":
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            i = _comment_end(sql, i)
        else:
            break
    m = _NAME.match(sql, i)
    return "" if m is None else m.group(0).lower()


def check_handler_statement(sql: str) -> None:
    """Raise :class:`~streamnb.LedgerError` for a statement a handler may not run.

    Examples
    --------
    >>> check_handler_statement("INSERT INTO my_notes VALUES (?)")
    >>> check_handler_statement("  /* done */ COMMIT")
    Traceback (most recent call last):
    ...
    streamnb._errors.LedgerError: a handler's tx.execute may not run COMMIT ...
    """
    word = _first_word(sql)
    if word in _REFUSED:
        raise LedgerError(
            f"a handler's tx.execute may not run {word.upper()} (statements run inside the "
            "settlement's transaction, which the runtime commits); write to your own tables "
            "and use tx.insert_event for events"
        )
