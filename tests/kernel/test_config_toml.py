"""kernel.config.from_toml: a TOML file (or one of its tables) into attrs settings."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import attrs
import pytest

import kernel
from kernel.config import Duration, Secret, from_toml
from tests.kernel.test_config_env import Vault


@attrs.frozen
class Db:
    url: str
    pool_size: int = attrs.field(default=4, validator=attrs.validators.ge(1))


@attrs.frozen
class Settings:
    db: Db
    timeout: Duration = 30.0
    backoff: list[Duration] = attrs.Factory(list)
    hosts: tuple[str, ...] = ()
    debug: bool = False
    api_key: Secret | None = None


def write(tmp_path: Path, text: str, name: str = "app.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_whole_file_or_one_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'timeout = 2.5\nhosts = ["a", "b"]\ndebug = true\n[db]\nurl = "pg://"\npool_size = 8\n'
        '[tool.orders]\ntimeout = "500ms"\nbackoff = ["100ms", 1, "1m"]\napi_key = "k-secret"\n'
        '[tool.orders.db]\nurl = "sqlite://"\n',
    )
    with pytest.raises(kernel.ConfigError, match="tool: no such setting"):
        from_toml(path, Settings)
    orders = from_toml(path, Settings, section="tool.orders")
    assert orders == Settings(
        db=Db("sqlite://"), timeout=0.5, backoff=[0.1, 1.0, 60.0], api_key=Secret("k-secret")
    )
    top = write(tmp_path, 'timeout = 2.5\nhosts = ["a", "b"]\n[db]\nurl = "pg://"\n', "top.toml")
    assert from_toml(str(top), Settings) == Settings(db=Db("pg://"), timeout=2.5, hosts=("a", "b"))


def error(path: Path, section: str | None = None) -> kernel.ConfigError:
    with pytest.raises(kernel.ConfigError) as caught:
        from_toml(path, Settings, section=section)
    return caught.value


def test_typed_values_are_structured_strictly_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[app]\ndebug = "yes"\n[app.db]\nurl = "u"\npool_size = "ten"\n')
    message = str(error(path, "app"))
    assert message.startswith(f"{path} [app]: ")
    # The converter's own words: "expected int" (with or without "invalid value for type").
    assert re.search(r"db\.pool_size: [^;]*expected int", message), message
    assert re.search(r"debug: [^;]*expected bool", message), message


def test_a_validator_failure_names_the_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[db]\nurl = "u"\npool_size = 0\n')
    assert str(error(path)) == f"{path}: db: 'pool_size' must be >= 1: 0"


def test_a_duration_that_does_not_read(tmp_path: Path) -> None:
    path = write(tmp_path, 'timeout = "soon"\nbackoff = [1, "2 parsecs"]\n[db]\nurl = "u"\n')
    message = str(error(path))
    assert (
        "timeout: expected a duration (seconds, or a number with ms, s, m, h or d), got 'soon'"
        in (message)
    )
    assert "backoff[1]: expected a duration" in message


def test_missing_and_unknown_keys_are_named(tmp_path: Path) -> None:
    assert str(error(write(tmp_path, "debug = false\n"))).endswith("db: required, not set")
    path = write(tmp_path, 'timout = 1\n[db]\nurl = "u"\npool = 2\n')
    message = str(error(path))
    assert "timout: no such setting; did you mean timeout?" in message
    assert "db.pool: no such setting; did you mean db.pool_size?" in message


def test_a_missing_table_or_a_file_that_is_not_toml(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool]\norders = 1\n[db]\nurl = "u"\n')
    assert str(error(path, "app")) == f"{path}: no [app] table"
    assert str(error(path, "tool.orders.x")) == f"{path}: no [tool.orders.x] table"
    assert str(error(path, "tool.orders")) == f"{path}: [tool.orders] is not a table"
    broken = write(tmp_path, 'timeout = 1\ndb = {url = "u"\n', "broken.toml")
    assert "not valid TOML: " in str(error(broken))
    assert "line 2" in str(error(broken))
    latin = tmp_path / "latin.toml"
    latin.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    assert "not UTF-8 text" in str(error(latin))
    with pytest.raises(FileNotFoundError):
        from_toml(tmp_path / "absent.toml", Settings)


def test_a_secret_never_appears_in_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'api_key = 123456789\n[db]\nurl = "u"\n')
    assert "123456789" not in str(error(path))
    path = write(tmp_path, '[db]\nurl = "u"\npassword = "pw-in-the-file"\n')
    caught = error(path)
    seen = "".join(traceback.format_exception(caught))
    assert "db.password: no such setting" in seen
    assert "pw-in-the-file" not in seen


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: from_toml(1, Settings), "path must be a str or a path"),  # type: ignore[arg-type]
        (lambda p: from_toml(p, Settings, section=""), "section must be a non-empty str"),
        (lambda p: from_toml(p, dict), "expected an attrs class"),
    ],
)
def test_bad_arguments_are_type_errors(tmp_path: Path, call, message: str) -> None:
    path = write(tmp_path, "")
    with pytest.raises(TypeError, match=message):
        call(path)


def test_everything_under_a_secret_table_is_secret(tmp_path: Path) -> None:
    for text in (
        '[api_keys]\nprimary = "pk-live-1"\nrotation = "rot-secret-2"\n',
        '[api_keys]\nprimary = "pk-live-1"\nrotation = ["pk-live-1"]\n',
    ):
        with pytest.raises(kernel.ConfigError) as caught:
            from_toml(write(tmp_path, text), Vault)
        assert "api_keys.rotation" in str(caught.value)
        assert "pk-live-1" not in str(caught.value)
        assert "rot-secret-2" not in str(caught.value)
