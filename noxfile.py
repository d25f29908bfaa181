"""The test suite on every supported Python found on this machine: ``nox`` (``.ci/run`` runs it
after ``make test``, which tests the default interpreter with the coverage gate).

One session per version, ``tests-3.11``, ``tests-3.12``, ``tests-3.13``. Each interpreter is
looked for on PATH (``python3.12``), then in pyenv's versions (``$PYENV_ROOT/versions/3.12.*``,
newest first); a candidate counts only if it runs and is that version (pyenv's shims exist
for versions that are not active, and fail). A version that is not found is reported and its
session skipped; if none is found at all, every session fails.

The sessions run pytest without coverage and without the test that installs the Node
benchmark anchor (``npm ci``; the DBOS anchor's venv is only made by ``python -m bench``,
never by the tests), in virtualenvs kept in ``.nox/`` and reused from run to run: a venv is
reinstalled only when ``pyproject.toml`` changed. ``nox -s tests-3.13 -- tests/kernel -x``
passes arguments to pytest.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ("3.11", "3.12", "3.13")
EXTRAS = "dev,bench,prometheus,otel,http,postgres,redis,sentry"
#: The one test that installs a benchmark anchor (BlueLibs Runner, with npm ci).
ANCHOR_TEST = "tests/bench/test_bench.py::test_quick_run_with_the_runner_anchor"
ROOT = Path(__file__).resolve().parent

nox.options.sessions = [f"tests-{version}" for version in PYTHONS]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


def _is_version(executable: str, version: str) -> bool:
    try:
        done = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def _pyenv_candidates(version: str) -> list[str]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = [path for path in root.glob(f"{version}.*") if path.name[len(version) + 1 :].isdigit()]
    found.sort(key=lambda path: int(path.name[len(version) + 1 :]), reverse=True)
    return [str(path / "bin" / f"python{version}") for path in found]


@functools.cache
def interpreter(version: str) -> str | None:
    """The path of a working Python ``version`` on this machine, or None."""
    on_path = shutil.which(f"python{version}")
    for candidate in [*([on_path] if on_path else []), *_pyenv_candidates(version)]:
        if _is_version(candidate, version):
            return candidate
    return None


def _stamp() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()


def _tests(session: nox.Session, version: str) -> None:
    if interpreter(version) is None:
        if not any(interpreter(other) for other in PYTHONS):
            session.error(f"no supported Python found at all ({', '.join(PYTHONS)})")
        session.skip(
            f"Python {version} not found: no working python{version} on PATH, none in "
            f"pyenv's versions; install it (e.g. `pyenv install {version}`) to test on it"
        )
    stamp = Path(session.virtualenv.location) / ".installed-trio-runner"
    if not stamp.is_file() or stamp.read_text() != _stamp():
        session.install("--quiet", "-e", f".[{EXTRAS}]")
        stamp.write_text(_stamp())
    session.run("python", "--version")
    session.run(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--deselect={ANCHOR_TEST}",
        *session.posargs,
    )


for _version in PYTHONS:

    def _session(session: nox.Session, version: str = _version) -> None:
        _tests(session, version)

    nox.session(
        name=f"tests-{_version}",
        python=interpreter(_version) or False,
        reuse_venv=True,
    )(_session)
