"""kernel.config.from_env: environment variables into attrs settings, strictly."""

from __future__ import annotations

import enum
import io
import json
import pickle
import traceback
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest

import kernel
from kernel.config import Duration, Secret, from_env


@attrs.frozen
class Db:
    url: str
    pool_size: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    password: str = ""


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Settings:
    db: Db
    timeout: Duration = 30.0
    ratio: float = 0.5
    debug: bool = False
    hosts: list[str] = attrs.Factory(list)
    ports: tuple[int, ...] = ()
    tags: frozenset[str] = frozenset()
    retries: int | None = None
    mode: Literal["fast", "safe"] = "safe"
    color: Color = Color.RED
    labels: dict[str, int] = attrs.Factory(dict)
    token: Secret | None = None
    home: Path = Path("/srv")


def load(**environ: str) -> Settings:
    return from_env(Settings, environ={"APP_DB__URL": "sqlite://", **environ})


def problems(**environ: str) -> str:
    with pytest.raises(kernel.ConfigError) as caught:
        load(**environ)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    return str(caught.value)


def test_every_field_from_its_variable_nested_ones_with_double_underscores() -> None:
    settings = load(
        APP_DB__POOL_SIZE="10",
        APP_TIMEOUT="2.5",
        APP_RATIO="0.25",
        APP_DEBUG="yes",
        APP_HOSTS="a.example, b.example",
        APP_PORTS="[80, 443]",
        APP_TAGS="x,y,x",
        APP_RETRIES="3",
        APP_MODE="fast",
        APP_COLOR="blue",
        APP_LABELS='{"a": 1}',
        APP_TOKEN="s3cr3t",
        APP_HOME="/var/lib/app",
    )
    assert settings == Settings(
        db=Db("sqlite://", 10),
        timeout=2.5,
        ratio=0.25,
        debug=True,
        hosts=["a.example", "b.example"],
        ports=(80, 443),
        tags=frozenset({"x", "y"}),
        retries=3,
        mode="fast",
        color=Color.BLUE,
        labels={"a": 1},
        token=Secret("s3cr3t"),
        home=Path("/var/lib/app"),
    )


def test_unset_variables_leave_the_defaults() -> None:
    assert load() == Settings(db=Db("sqlite://"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[(t, True) for t in ("true", "TRUE", "True", "1", "yes", "Yes", "on", "ON", " on ")],
        *[(t, False) for t in ("false", "False", "0", "no", "NO", "off", "Off")],
    ],
)
def test_booleans_as_people_write_them(text: str, value: bool) -> None:
    assert load(APP_DEBUG=text).debug is value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2.5", 2.5),
        ("30", 30.0),
        ("500ms", 0.5),
        ("2500ms", 2.5),
        ("2.5s", 2.5),
        ("2.5 s", 2.5),
        ("1m", 60.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        (".5s", 0.5),
        ("1e3ms", 1.0),
    ],
)
def test_durations_in_seconds_or_with_a_unit(text: str, seconds: float) -> None:
    assert load(APP_TIMEOUT=text).timeout == seconds


@pytest.mark.parametrize("text", ["2x", "ms", "2.5 seconds", "", "1m30s"])
def test_a_duration_that_does_not_read_names_the_variable_and_the_units(text: str) -> None:
    message = problems(APP_TIMEOUT=text)
    assert (
        f"APP_TIMEOUT: expected a duration (seconds, or a number with ms, s, m, h or d), "
        f"got {text!r}"
    ) in message


def test_a_unit_on_a_plain_float_says_how_to_allow_units() -> None:
    assert "APP_RATIO: expected float (for a duration with units, annotate the field " in (
        problems(APP_RATIO="2s")
    )


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        ("APP_DB__POOL_SIZE", "ten", "int"),
        ("APP_DB__POOL_SIZE", "2.5", "int"),
        ("APP_DB__POOL_SIZE", "", "int"),
        ("APP_RATIO", "half", "float"),
        ("APP_DEBUG", "maybe", "a bool (true/false, 1/0, yes/no, on/off)"),
        ("APP_RETRIES", "three", "int"),
        ("APP_MODE", "quick", "one of 'fast', 'safe'"),
        ("APP_COLOR", "green", "one of 'red', 'blue'"),
        ("APP_LABELS", "a=1", "JSON for dict"),
    ],
)
def test_a_value_that_does_not_read_is_named_by_its_variable(
    variable: str, text: str, expected: str
) -> None:
    message = problems(**{variable: text})
    assert message == f"environment: {variable}: expected {expected}, got {text!r}"


def test_list_items_comma_separated_or_json() -> None:
    assert load(APP_HOSTS=" a ,b,  c ").hosts == ["a", "b", "c"]
    assert load(APP_HOSTS="").hosts == []
    assert load(APP_HOSTS='["a,b", " c "]').hosts == ["a,b", " c "]
    assert load(APP_PORTS="1, 2,3").ports == (1, 2, 3)
    assert load(APP_PORTS='["1", 2]').ports == (1, 2)  # JSON text items read as the item type
    assert "APP_PORTS[1]: expected int, got 'x'" in problems(APP_PORTS="1,x")
    assert "APP_PORTS[0]: expected int, got 'a'" in problems(APP_PORTS='["a"]')
    assert "APP_PORTS: expected JSON for list, got '[1,'" in problems(APP_PORTS="[1,")


def test_json_items_of_the_wrong_type_are_refused_by_the_converter_with_the_variable() -> None:
    assert "APP_PORTS[0]: " in problems(APP_PORTS="[true]")
    assert "APP_HOSTS[0]: " in problems(APP_HOSTS="[1]")


def test_an_empty_optional_is_none() -> None:
    assert load(APP_RETRIES="").retries is None
    assert load(APP_TOKEN="").token is None


def test_a_nested_class_from_one_json_variable() -> None:
    settings = from_env(Settings, environ={"APP_DB": '{"url": "pg://", "pool_size": 2}'})
    assert settings.db == Db("pg://", 2)
    with pytest.raises(kernel.ConfigError, match=r"APP_DB\.pool_size: "):
        from_env(Settings, environ={"APP_DB": '{"url": "pg://", "pool_size": "two"}'})
    with pytest.raises(kernel.ConfigError, match="set either APP_DB or APP_DB__\\* variables"):
        from_env(Settings, environ={"APP_DB": "{}", "APP_DB__URL": "x"})


def test_required_fields_that_are_not_set_are_named() -> None:
    with pytest.raises(kernel.ConfigError) as caught:
        from_env(Settings, environ={})
    assert str(caught.value) == "environment: APP_DB__URL: required, not set"


@attrs.frozen
class Outer:
    inner: Db | None = None
    name: str = "x"


def test_an_optional_nested_class_is_read_only_when_one_of_its_variables_is_set() -> None:
    assert from_env(Outer, environ={}) == Outer()
    assert from_env(Outer, environ={"APP_INNER__URL": "u"}) == Outer(Db("u"))
    with pytest.raises(kernel.ConfigError, match="APP_INNER__URL: required, not set"):
        from_env(Outer, environ={"APP_INNER__POOL_SIZE": "3"})


def test_validators_run_and_their_errors_name_the_class_variables() -> None:
    message = problems(APP_DB__POOL_SIZE="0")
    assert message == "environment: APP_DB__*: 'pool_size' must be >= 1: 0"


def test_every_problem_is_reported_at_once() -> None:
    message = problems(APP_DB__POOL_SIZE="ten", APP_DEBUG="maybe", APP_TIMEOUT="soon")
    assert message.count("; ") == 2
    for variable in ("APP_DB__POOL_SIZE", "APP_DEBUG", "APP_TIMEOUT"):
        assert f"{variable}: expected" in message


def test_an_unknown_variable_under_the_prefix_is_a_mistake_with_a_suggestion() -> None:
    assert problems(APP_DEBG="1") == (
        "environment: APP_DEBG: no such setting; did you mean APP_DEBUG?"
    )
    assert "APP_DB__PASWORD: no such setting; did you mean APP_DB__PASSWORD?" in problems(
        APP_DB__PASWORD="x"
    )
    assert "APP_CACHE__SIZE: no such setting" in problems(APP_CACHE__SIZE="1")
    assert from_env(Outer, prefix="OTHER_", environ={"APP_DEBG": "1"}) == Outer()


def test_without_a_prefix_other_variables_are_left_alone_but_groups_are_checked() -> None:
    environ = {"PATH": "/bin", "HOME": "/root", "NAME": "svc"}
    assert from_env(Outer, prefix="", environ=environ) == Outer(name="svc")
    with pytest.raises(kernel.ConfigError, match="INNER__PORT: no such setting"):
        from_env(Outer, prefix="", environ={"INNER__URL": "u", "INNER__PORT": "1"})


def test_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFGTEST_NAME", "from-env")
    assert from_env(Outer, prefix="CFGTEST_") == Outer(name="from-env")


@attrs.frozen
class Credentials:
    user: str
    password: int = 0
    token: Secret = attrs.field(default=Secret("a-long-enough-default"))
    keys: list[Secret] = attrs.Factory(list)

    @token.validator
    def _long_enough(self, attribute: attrs.Attribute[Secret], value: Secret) -> None:
        if len(value.reveal()) < 8:
            raise ValueError(f"token {value.reveal()!r} is shorter than 8 characters")


@attrs.frozen
class Service:
    credentials: Credentials
    port: int = 80


SECRETS = ["hunter2-pass", "tok3n", "k-one-secret", "q7x-zz"]


def shown(error: BaseException) -> str:
    """Everything a person or a log could see of an error."""
    return "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)


@pytest.mark.parametrize(
    "environ",
    [
        {"APP_CREDENTIALS__USER": "u", "APP_CREDENTIALS__PASSWORD": "hunter2-pass"},
        {"APP_CREDENTIALS__USER": "u", "APP_CREDENTIALS__TOKEN": "tok3n"},
        {"APP_CREDENTIALS": '{"user": "u", "password": "hunter2-pass"}'},
        {"APP_CREDENTIALS": '{"user": "u", "token": "tok3n"}'},
        {"APP_CREDENTIALS": '{"user": "u", "keys": ["k-one-secret", 3]}'},
        {"APP_CREDENTIALS__USER": "u", "APP_CREDENTIALS__KEYS": '["k-one-secret", 3]'},
        {"APP_CREDENTIALS__USER": "u", "APP_CREDENTIALS__TOKEN": "q7x-zz", "APP_PORT": "q7x-zz"},
    ],
)
def test_a_secret_value_never_appears_in_the_error(environ: dict[str, str]) -> None:
    with pytest.raises(kernel.ConfigError) as caught:
        from_env(Service, environ=environ)
    seen = shown(caught.value)
    assert "environment: APP_" in seen
    for secret in SECRETS:
        if secret in "".join(environ.values()):
            assert secret not in seen


def test_a_secret_is_hidden_from_reprs_and_logs_but_revealed_on_demand() -> None:
    service = from_env(
        Service,
        environ={"APP_CREDENTIALS__USER": "u", "APP_CREDENTIALS__TOKEN": "tok3n-tok3n"},
    )
    token = service.credentials.token
    assert token.reveal() == "tok3n-tok3n"
    assert "tok3n" not in repr(service)
    assert (str(token), repr(token)) == ("[REDACTED]", "Secret('[REDACTED]')")
    assert token == Secret("tok3n-tok3n") != Secret("other")
    assert token != "tok3n-tok3n"
    assert hash(token) == hash(Secret("tok3n-tok3n"))
    assert pickle.loads(pickle.dumps(token)) == token
    with pytest.raises(TypeError, match="Secret: value must be a str, got int"):
        Secret(42)  # type: ignore[arg-type]


async def test_a_resource_takes_its_config_from_the_environment() -> None:
    @kernel.resource("creds", config=Credentials, deps={"log": kernel.logger})
    async def creds(config: Credentials, *, log):  # type: ignore[no-untyped-def]
        log.info("configured {}", config, data={"config": config})
        yield config.token.reveal()

    lines = io.StringIO()
    config = kernel.config.from_env(
        Credentials, prefix="CREDS_", environ={"CREDS_USER": "u", "CREDS_TOKEN": "tok3n-tok3n"}
    )
    app = kernel.App("app", register=[creds.with_config(config)])
    async with kernel.run(app, log=kernel.LogConfig(format="json", sink=lines)) as rt:
        assert rt.resource(creds) == "tok3n-tok3n"
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert any(line["message"].startswith("configured Credentials(") for line in logged)
    assert "tok3n" not in lines.getvalue()


async def test_a_secret_field_structures_from_a_dict_config_too() -> None:
    @kernel.resource("creds", config=Credentials)
    async def creds(config: Credentials) -> Credentials:
        return config

    async with kernel.run(
        kernel.App("app", register=[creds.with_config({"user": "u", "token": "tok3n-tok3n"})])
    ) as rt:
        assert rt.resource(creds).token == Secret("tok3n-tok3n")
    with pytest.raises(kernel.ConfigError, match="expected a str for a Secret, got int"):
        async with kernel.run(
            kernel.App("app", register=[creds.with_config({"user": "u", "token": 12345678})])
        ):
            pass


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: from_env(dict, environ={}), "expected an attrs class for the settings"),
        (lambda: from_env(Outer, prefix=1, environ={}), "prefix must be a str"),  # type: ignore[arg-type]
        (lambda: from_env(Outer, environ=[("A", "b")]), "environ must be a mapping"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_type_errors(call, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_annotations_that_cannot_be_resolved_are_a_type_error_naming_the_class() -> None:
    @attrs.frozen
    class Broken:
        value: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match="Broken: cannot resolve its annotations"):
        from_env(Broken, environ={})


@attrs.frozen
class Loose:
    anything: Any = None
    pair: tuple[int, str] = (0, "")
    path: Path | None = None


def test_other_types_read_json_and_plain_text_where_any_is_fine() -> None:
    loose = from_env(Loose, environ={"APP_ANYTHING": "raw text", "APP_PAIR": '[1, "a"]'})
    assert loose == Loose(anything="raw text", pair=(1, "a"))
    assert from_env(Loose, environ={"APP_PATH": "/tmp/x"}).path == Path("/tmp/x")


@attrs.frozen
class Odd:
    switch: Literal[True, "auto"] = "auto"
    level: Literal[1, 2] = 1
    secrets: dict[str, Secret] = attrs.Factory(dict)
    timeout: Duration | None = None


def test_literals_of_bools_and_ints_and_secrets_in_a_mapping() -> None:
    assert from_env(Odd, environ={"APP_SWITCH": "on", "APP_LEVEL": "2"}) == Odd(True, 2)
    assert from_env(Odd, environ={"APP_TIMEOUT": "1m"}).timeout == 60.0
    assert from_env(Odd, environ={"APP_TIMEOUT": ""}).timeout is None
    with pytest.raises(kernel.ConfigError) as caught:
        from_env(Odd, environ={"APP_SECRETS": '{"db": "pw-in-a-map", "api": 7}'})
    assert "APP_SECRETS" in str(caught.value)
    assert "pw-in-a-map" not in str(caught.value)
    assert repr(Duration.__metadata__[0]) == "kernel.config.Duration"


@attrs.frozen
class Keys:
    primary: str
    rotation: Duration = 3600.0


@attrs.frozen
class Vault:
    api_keys: Keys


def test_everything_under_a_secret_field_is_secret() -> None:
    for environ in (
        {"APP_API_KEYS__PRIMARY": "pk-live-1", "APP_API_KEYS__ROTATION": "rot-secret-2"},
        {"APP_API_KEYS": '{"primary": "pk-live-1", "rotation": [1]}'},
    ):
        with pytest.raises(kernel.ConfigError) as caught:
            from_env(Vault, environ=environ)
        assert "APP_API_KEYS" in str(caught.value)
        assert "pk-live-1" not in str(caught.value)
        assert "rot-secret-2" not in str(caught.value)
