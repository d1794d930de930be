"""Set-up for the docstring examples (``pytest --doctest-modules streamnb``, scripts/test.sh).

Every example runs as written in a plain Python process, so each creates what it
uses (``import streamnb as sn``, a ``StreamRuntime``) and closes it; top-level
``await`` does not work in a doctest, so examples drive coroutines with
``runtime.run(...)``, the sync facade a script would use. Only ``sn`` is
pre-imported, for the short examples of methods.
"""

from __future__ import annotations

from typing import Any

import pytest

import streamnb


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, Any]) -> None:
    doctest_namespace["sn"] = streamnb
