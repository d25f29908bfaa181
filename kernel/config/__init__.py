"""Settings from the environment and from files, structured like every other config.

    settings = kernel.config.from_env(Settings, prefix="APP_")
    settings = kernel.config.from_toml("orders.toml", Settings, section="orders")

``Settings`` is an attrs class; both loaders hand what they read to the kernel's strict
converter, so settings fail exactly as ``res.with_config({...})`` would, each problem named
by the variable or key it came from. The resulting instance can go straight to a resource:
``db.with_config(kernel.config.from_env(DbConfig, prefix="DB_"))``.

In the environment, each field is one variable (``APP_PORT``; a nested class adds ``__``:
``APP_DB__URL``) and its text is read as the field's type expects:

| field type | written as |
|---|---|
| ``str``, `Secret`, paths | the text itself |
| ``bool`` | ``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off`` |
| ``int`` | ``8080``, ``-1``, ``1_000`` (not ``2.5``) |
| ``float`` | ``2.5``, ``1e-3`` |
| `Duration` | seconds (``2.5``) or with a unit: ``500ms``, ``2.5s``, ``1m``, ``1h``, ``1d`` |
| ``Literal``, enums | one of the values |
| ``X | None`` | empty for None, else as ``X`` |
| lists, tuples, sets | ``a, b, c`` (items stripped; empty for none) or a JSON array |
| anything else | JSON (a mapping, a nested class in one variable) |

A field is secret when its type is `Secret` or its name is one the log redaction hides
(``password``, ``token``, ``api_key``, ... — `kernel.Redaction`'s deny-list): its value never
appears in an error. A `Secret` also never appears in a repr or a log; ``.reveal()`` gives
the text.
"""

from kernel.config._env import from_env
from kernel.config._secret import Secret
from kernel.config._text import DURATION_UNITS, Duration
from kernel.config._toml import from_toml
from resilience.faces import present as _present

__all__ = ["DURATION_UNITS", "Duration", "Secret", "from_env", "from_toml"]

_present("kernel.config", globals())
