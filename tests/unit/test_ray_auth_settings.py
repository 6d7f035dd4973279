"""Where the Ray token comes from, and that it does not leak through errors or reprs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from moderator.config import Settings, load_settings, settings_file_data
from moderator.errors import ConfigError
from moderator.local.process import free_port
from moderator.local.stack import worker_env
from moderator.serving.ray_auth import RayAuthError, RayToken, check_token, resolve_token
from moderator.serving_settings import ServingSettings

TOKEN = "f" * 64


@pytest.fixture(autouse=True)
def no_ray_token_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_settings_come_first_then_the_file_then_rays_own_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    default = tmp_path / "home" / ".ray" / "auth_token"
    default.parent.mkdir(parents=True)
    default.write_text("d" * 64)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "e" * 64)

    inline = resolve_token(ServingSettings(ray_auth_token=SecretStr("a" * 64)))
    assert inline == RayToken("a" * 64, "serving.ray_auth_token")
    from_file = resolve_token(ServingSettings(ray_auth_token_file=token_file))
    assert from_file is not None and from_file.value == TOKEN
    assert str(token_file) in from_file.source
    assert resolve_token(ServingSettings()) == RayToken("e" * 64, "RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert resolve_token(ServingSettings()) == RayToken(
        TOKEN, f"RAY_AUTH_TOKEN_PATH ({token_file})"
    )
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    found = resolve_token(ServingSettings())
    assert found is not None and found.value == "d" * 64
    assert (
        resolve_token(ServingSettings(ray_auth_mode="disabled", ray_auth_token=SecretStr(TOKEN)))
        is None
    )


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        ({}, "no Ray token is configured"),
        ({"ray_auth_token": "   "}, "serving.ray_auth_token: the Ray token is empty"),
        ({"ray_auth_token": "two words"}, "must not contain spaces"),
        ({"ray_auth_token_file": "/nonexistent/token"}, "cannot read the Ray token file"),
    ],
)
def test_a_missing_or_unusable_token_is_named(serving: dict[str, object], message: str) -> None:
    with pytest.raises(RayAuthError, match=message):
        resolve_token(ServingSettings.model_validate(serving))


def test_the_token_stays_out_of_reprs_and_errors(tmp_path: Path) -> None:
    token = RayToken(TOKEN, "serving.ray_auth_token")
    assert TOKEN not in repr(token)
    assert TOKEN not in repr(ServingSettings(ray_auth_token=SecretStr(TOKEN)))
    config = tmp_path / "settings.yaml"
    config.write_text(f"serving:\n  ray_auth_token: {TOKEN}\n  ray_auth_mode: sometimes\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "ray_auth_mode" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_child_workers_get_the_token_from_their_settings_file_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(serving=ServingSettings(ray_auth_token=SecretStr(TOKEN)))
    assert settings_file_data(settings)["serving"]["ray_auth_token"] == TOKEN  # type: ignore[index]
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    env = worker_env()
    assert not {"RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "RAY_ADDRESS"} & set(env)


def test_an_unreachable_cluster_is_left_to_ray_init() -> None:
    """No answer is not a refusal: ray.init waits for the cluster and reports it itself."""
    address = f"127.0.0.1:{free_port()}"
    check_token(address, RayToken(TOKEN, "test"), timeout_s=1.0)
    check_token(f"ray://{address}", None, timeout_s=1.0)
