"""streamnb.providers.fake (the fake provider) and the lazy streamnb.providers namespace."""

from __future__ import annotations

import subprocess
import sys

import pytest

import streamnb.providers
import streamnb.testing
from streamnb.providers import fake


def test_the_fake_source_has_one_home_re_exported_by_testing() -> None:
    for name in ("FakeTokenSource", "fake_tokens", "lorem_tokens"):
        assert getattr(streamnb.testing, name) is getattr(fake, name)
        assert getattr(streamnb.providers, name) is getattr(fake, name)


def test_importing_the_fake_provider_does_not_import_the_openai_sdk() -> None:
    code = (
        "import sys, streamnb.providers.fake, streamnb.testing; "
        "print('openai' in sys.modules, 'streamnb.providers.openai_source' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_every_provider_name_resolves_and_dir_lists_exactly_all() -> None:
    assert dir(streamnb.providers) == sorted(streamnb.providers.__all__)
    for name in streamnb.providers.__all__:
        value = getattr(streamnb.providers, name)
        assert value.__doc__, name
        assert name in vars(streamnb.providers)  # cached after the first use


def test_an_unknown_provider_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="chat_handlr"):
        streamnb.providers.chat_handlr  # noqa: B018
