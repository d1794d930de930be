"""Test package (lets test modules import shared helpers such as ``tests.openai_server``)."""

import pytest

# The fixture module is also a pytest plugin; mark it before any test module imports it.
pytest.register_assert_rewrite("tests.openai_server")
