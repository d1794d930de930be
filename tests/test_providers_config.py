"""ProviderConfig: one source of truth for route, credential and model."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pickle
from pathlib import Path

import pytest

from streamnb._errors import StreamnbError
from streamnb.providers import DEFAULT_BASE_URL, ProviderConfig, ProviderConfigError

SECRET = "sk-very-secret-value-0123456789"
TABLE = "pyproject.toml:[tool.streamnb.provider]"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STREAMNB_* or key variables from the outside, and no stray pyproject.toml."""
    for name in (
        "STREAMNB_BASE_URL",
        "STREAMNB_MODEL",
        "STREAMNB_API_KEY_ENV",
        "STREAMNB_TIMEOUT_S",
        "STREAMNB_CONNECT_TIMEOUT_S",
        "STREAMNB_MAX_RETRIES",
        "OPENAI_API_KEY",
        "OTHER_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write_pyproject(path: Path, body: str) -> Path:
    path.write_text(f"[project]\nname = 'x'\n\n[tool.streamnb.provider]\n{body}\n")
    return path


def test_explicit_arguments_win_and_are_labelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("STREAMNB_MODEL", "env-model")
    write_pyproject(Path("pyproject.toml"), 'model = "toml-model"')
    cfg = ProviderConfig.resolve(model="arg-model", timeout_s=5)
    assert cfg.model == "arg-model"
    assert cfg.timeout_s == 5
    facts = cfg.describe()
    assert facts.loc["model", "source"] == "argument"
    assert facts.loc["timeout_s", "source"] == "argument"
    assert facts.loc["base_url", "source"] == "default"
    assert cfg.base_url == DEFAULT_BASE_URL


def test_environment_beats_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("STREAMNB_MODEL", "env-model")
    monkeypatch.setenv("STREAMNB_TIMEOUT_S", "7.5")
    monkeypatch.setenv("STREAMNB_MAX_RETRIES", "0")
    write_pyproject(Path("pyproject.toml"), 'model = "toml-model"\nconnect_timeout_s = 3')
    cfg = ProviderConfig.resolve()
    assert (cfg.model, cfg.timeout_s, cfg.max_retries) == ("env-model", 7.5, 0)
    assert cfg.connect_timeout_s == 3
    facts = cfg.describe()
    assert facts.loc["model", "source"] == "env:STREAMNB_MODEL"
    assert facts.loc["timeout_s", "source"] == "env:STREAMNB_TIMEOUT_S"
    assert facts.loc["connect_timeout_s", "source"] == TABLE


def test_pyproject_table_is_read_from_the_current_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTHER_KEY", SECRET)
    write_pyproject(
        Path("pyproject.toml"),
        'model = "m"\nbase_url = "https://llm.example.com/v1"\napi_key_env = "OTHER_KEY"',
    )
    cfg = ProviderConfig.resolve()
    assert cfg.base_url == "https://llm.example.com/v1"
    assert cfg.api_key_env == "OTHER_KEY"
    assert cfg.reveal_api_key() == SECRET
    facts = cfg.describe()
    assert facts.loc["credential", "value"] == "set (from env OTHER_KEY)"
    assert facts.loc["api_key_env", "source"] == TABLE


def test_explicit_toml_path_is_labelled_with_its_file_name(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path / "provider.toml", 'model = "m"\napi_key_env = ""')
    cfg = ProviderConfig.resolve(toml_path=path, base_url="http://localhost:11434/v1")
    assert cfg.api_key_env is None
    assert cfg.describe().loc["model", "source"] == "provider.toml:[tool.streamnb.provider]"


def test_missing_toml_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderConfigError, match="does not exist"):
        ProviderConfig.resolve(model="m", toml_path=tmp_path / "nope.toml")


def test_api_key_env_names_the_variable_holding_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTHER_KEY", SECRET)
    monkeypatch.setenv("STREAMNB_API_KEY_ENV", "OTHER_KEY")
    cfg = ProviderConfig.resolve(model="m")
    assert cfg.reveal_api_key() == SECRET
    assert cfg.describe().loc["api_key_env", "source"] == "env:STREAMNB_API_KEY_ENV"


def test_missing_model_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with pytest.raises(ProviderConfigError, match="no model is configured") as info:
        ProviderConfig.resolve()
    assert "STREAMNB_MODEL" in str(info.value)
    assert isinstance(info.value, StreamnbError)


def test_missing_credential_for_remote_url_names_the_variable() -> None:
    with pytest.raises(ProviderConfigError) as info:
        ProviderConfig.resolve(model="m")
    message = str(info.value)
    assert "OPENAI_API_KEY is not set" in message
    assert "export OPENAI_API_KEY" in message
    assert "STREAMNB_API_KEY_ENV" in message


def test_missing_credential_is_checked_by_the_constructor_too() -> None:
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
        ProviderConfig(model="m")


@pytest.mark.parametrize(
    "base_url",
    ["http://localhost:11434/v1", "http://127.0.0.1:8000/v1", "http://[::1]:1234/v1"],
)
def test_local_url_needs_no_key(base_url: str) -> None:
    cfg = ProviderConfig.resolve(model="llama3.2", base_url=base_url)
    assert cfg.reveal_api_key()  # a placeholder: the SDK refuses an empty key
    assert cfg.describe().loc["credential", "value"] == "missing"
    assert not cfg.has_key


def test_api_key_env_none_means_no_key_needed() -> None:
    cfg = ProviderConfig.resolve(
        model="m", base_url="https://internal.example/v1", api_key_env=None
    )
    assert cfg.describe().loc["credential", "value"] == "not needed (api_key_env=None)"
    assert cfg.to_dict()["api_key_env"] is None


def test_streamnb_api_key_env_none_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMNB_API_KEY_ENV", "none")
    cfg = ProviderConfig.resolve(model="m")
    assert cfg.api_key_env is None


def test_key_never_appears_in_repr_describe_dict_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    cfg = ProviderConfig.resolve(model="m")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("config: %r %s", cfg, cfg)
    shown = [
        repr(cfg),
        str(cfg),
        cfg.describe().to_string(),
        json.dumps(cfg.to_dict()),
        repr(dataclasses.asdict(cfg)),
        repr(copy.deepcopy(cfg)),
        caplog.text,
    ]
    for text in shown:
        assert SECRET not in text
    assert cfg.describe().loc["credential", "value"] == "set (from env OPENAI_API_KEY)"
    assert cfg.reveal_api_key() == SECRET


def test_config_with_a_key_refuses_to_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    cfg = ProviderConfig.resolve(model="m")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(cfg)


def test_passing_the_key_as_api_key_env_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ProviderConfigError, match="name of an environment variable") as info:
        ProviderConfig.resolve(model="m", api_key_env=SECRET)
    assert SECRET not in str(info.value)


def test_key_in_pyproject_is_refused() -> None:
    write_pyproject(Path("pyproject.toml"), f'model = "m"\napi_key = "{SECRET}"')
    with pytest.raises(ProviderConfigError, match="must not be stored in files") as info:
        ProviderConfig.resolve()
    assert SECRET not in str(info.value)


def test_unknown_pyproject_setting_is_refused() -> None:
    write_pyproject(Path("pyproject.toml"), 'model = "m"\nmodle = "typo"')
    with pytest.raises(ProviderConfigError, match="unknown setting"):
        ProviderConfig.resolve()


def test_malformed_toml_is_a_configuration_error() -> None:
    Path("pyproject.toml").write_text("[tool.streamnb.provider\nmodel = ")
    with pytest.raises(ProviderConfigError, match="cannot read"):
        ProviderConfig.resolve(model="m")


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("STREAMNB_TIMEOUT_S", "soon", "not a number of seconds"),
        ("STREAMNB_MAX_RETRIES", "1.5", "not a whole number"),
        ("STREAMNB_TIMEOUT_S", "-1", "positive number of seconds"),
        ("STREAMNB_BASE_URL", "ftp://x/v1", "not an http"),
    ],
)
def test_bad_environment_values_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ProviderConfigError, match=match):
        ProviderConfig.resolve(model="m", api_key_env=None)


def test_explicit_environ_mapping_is_used_instead_of_os_environ() -> None:
    env = {"STREAMNB_MODEL": "from-mapping", "OPENAI_API_KEY": SECRET}
    cfg = ProviderConfig.resolve(environ=env)
    assert cfg.model == "from-mapping"
    assert cfg.reveal_api_key() == SECRET


def test_configs_compare_by_facts_not_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    a = ProviderConfig.resolve(model="m", environ={"OPENAI_API_KEY": "sk-a"})
    b = ProviderConfig.resolve(model="m", environ={"OPENAI_API_KEY": "sk-b"})
    assert a == b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.model = "other"  # type: ignore[misc]
