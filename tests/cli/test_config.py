"""Where the CLI finds its server and token, and how it keeps the token (mode 0600, per URL)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from agency import config
from agency.errors import UsageProblem


@pytest.fixture
def config_path(tmp_path, monkeypatch):
    path = tmp_path / "conf" / "config.json"
    monkeypatch.setenv("AGENCY_CONFIG", str(path))
    monkeypatch.delenv("AGENCY_URL", raising=False)
    monkeypatch.delenv("AGENCY_TOKEN", raising=False)
    return path


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_default_path_honours_xdg_config_home(monkeypatch, tmp_path):
    monkeypatch.delenv("AGENCY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_path() == tmp_path / "xdg" / "agency" / "config.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.config_path() == tmp_path / "home" / ".config" / "agency" / "config.json"


def test_a_stored_token_is_written_0600_in_a_0700_directory(config_path):
    config.store_token("http://127.0.0.1:8000", "agy_secret")

    assert mode(config_path) == 0o600
    assert mode(config_path.parent) == 0o700
    assert json.loads(config_path.read_text()) == {
        "url": "http://127.0.0.1:8000",
        "tokens": {"http://127.0.0.1:8000": "agy_secret"},
    }
    assert [p.name for p in config_path.parent.iterdir()] == ["config.json"]  # no temporary left


def test_a_file_that_was_readable_by_others_is_replaced_by_a_private_one(config_path):
    config_path.parent.mkdir(parents=True)
    config_path.write_text("{}")
    config_path.chmod(0o644)

    config.store_token("http://127.0.0.1:8000", "agy_secret")

    assert mode(config_path) == 0o600


def test_the_environment_overrides_the_file_and_a_flag_overrides_both(config_path, monkeypatch):
    config.store_token("http://stored:8000", "agy_stored")
    assert config.resolve(None) == config.Settings("http://stored:8000", "agy_stored", str(config_path))

    monkeypatch.setenv("AGENCY_TOKEN", "agy_env")
    assert config.resolve(None) == config.Settings("http://stored:8000", "agy_env", "AGENCY_TOKEN")

    monkeypatch.setenv("AGENCY_URL", "http://env:9000/")
    assert config.resolve(None).url == "http://env:9000"
    assert config.resolve("https://flag.example").url == "https://flag.example"


def test_a_stored_token_is_sent_only_to_the_server_it_was_stored_for(config_path):
    config.store_token("http://stored:8000", "agy_stored")

    elsewhere = config.resolve("http://elsewhere:8000")

    assert elsewhere.token is None


def test_tokens_of_several_servers_are_kept_and_forgotten_one_by_one(config_path):
    config.store_token("http://a:1", "agy_a")
    config.store_token("http://b:2", "agy_b")
    assert config.resolve(None).url == "http://b:2"  # the last login is the default
    assert config.resolve("http://a:1").token == "agy_a"

    _, had = config.forget_token("http://b:2")
    assert had
    assert config.resolve(None) == config.Settings("http://a:1", "agy_a", str(config_path))
    assert mode(config_path) == 0o600

    _, had = config.forget_token("http://a:1")
    assert had
    assert not config_path.exists()


def test_logout_of_everything_removes_the_file(config_path):
    config.store_token("http://a:1", "agy_a")
    _, had = config.forget_token(None)
    assert had
    assert not config_path.exists()
    _, had = config.forget_token(None)
    assert not had


@pytest.mark.parametrize(
    "url", ["ftp://host", "127.0.0.1:8000", "http://", "http://user:pw@host", "http://host/?x=1", "http://host/#f"]
)
def test_a_url_that_is_not_a_server_base_url_is_a_usage_error(url):
    with pytest.raises(UsageProblem):
        config.normalize_url(url)


def test_a_broken_config_file_is_a_usage_error_that_says_how_to_recover(config_path):
    config_path.parent.mkdir(parents=True)
    config_path.write_text("{not json")

    with pytest.raises(UsageProblem, match="agency logout"):
        config.resolve(None)
