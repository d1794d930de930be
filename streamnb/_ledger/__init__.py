"""The ledger: a durable, queryable record of streams, settlements and events.

One public API, :class:`Ledger`, over a storage backend (:class:`LedgerBackend`);
the runtime writes only through the backend interface. Modules, one job each:

* ``ledger.py`` - :class:`Ledger`, what users hold and query;
* ``queries.py`` - the query API: rows to DataFrames with fixed columns;
* ``backend.py`` - :class:`LedgerBackend`, the seam (tables, columns, methods);
* ``tx.py`` - :class:`LedgerTx` and :class:`Settlement`, what a settlement carries;
* ``sqlite.py`` - :class:`SQLiteBackend`, the SQLite backend (schema, statements);
* ``writer.py`` - its writer thread and group commit;
* ``readers.py`` - its read path: read-only connections with a time limit, never the writer;
* ``scratch.py`` - where an in-memory ledger keeps its tables (a WAL scratch file);
* ``recovery.py`` - its writer lock and the ``runtime_lost`` recovery.
"""

from __future__ import annotations

from .backend import LedgerBackend
from .ledger import Ledger
from .sqlite import SQLiteBackend
from .tx import LedgerTx, Settlement

__all__ = ["Ledger", "LedgerBackend", "LedgerTx", "SQLiteBackend", "Settlement"]
