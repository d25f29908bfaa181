"""mypy (strict, the project's settings) on `typed_lookups.py`: its ``assert_type`` lines
hold and each ``type: ignore`` there is needed (``warn_unused_ignores``), so a refused
option or a lost generic fails this test."""

from __future__ import annotations

from pathlib import Path

from mypy import api

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def test_mypy_infers_resources_results_and_refuses_misspelt_options() -> None:
    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), str(HERE / "typed_lookups.py")]
    )
    assert status == 0, out + err
