"""Workers without processes: where a worker imports the target from, the options that can
travel to it, the shared ports, the settings, the command line."""

from __future__ import annotations

import socket
import sys
import types
from pathlib import Path

import pytest

import kernel
import resilience as rs
from kernel import _workers
from kernel._cli import main as cli
from kernel._worker import load
from kernel._workers import locate, portable_options, reserve
from tests.kernel.workers import service as workers_service


def test_locate_names_the_module_and_attribute_holding_the_very_object() -> None:
    assert locate(workers_service.service) == "tests.kernel.workers.service:service"
    assert locate(workers_service.app) == "tests.kernel.workers.service:app"


def test_locate_refuses_an_object_no_module_holds() -> None:
    orphan = kernel.App("orphan", register=[])
    with pytest.raises(kernel.KernelError, match="top level of a module"):
        locate(orphan)


def test_locate_finds_a_script_by_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    app = kernel.App("scripted", register=[])
    script = types.ModuleType("__main__")
    script.__file__ = "/srv/app/run.py"
    script.__spec__ = None
    script.the_app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert locate(app) == "/srv/app/run.py:the_app"


def test_a_worker_loads_a_script_without_running_its_main_block(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(
        "import kernel\n"
        "app = kernel.App('scripted', register=[])\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('the main block ran')\n"
    )
    loaded = load(f"{script}:app")
    assert isinstance(loaded, kernel.App)
    assert loaded.id == "scripted"
    with pytest.raises(kernel.KernelError, match=r"not a kernel\.App"):
        load(f"{script}:kernel")


def test_only_plain_options_travel_to_workers() -> None:
    assert portable_options({"drain_timeout": 5.0, "parallel_init": True}) == {
        "drain_timeout": 5.0,
        "parallel_init": True,
    }
    with pytest.raises(TypeError, match=r"log= must be set in the kernel.Service"):
        portable_options({"log": kernel.LogConfig()})
    with pytest.raises(TypeError, match=r"drain_timeout="):
        portable_options({"drain_timeout": float("inf")})


def test_reserve_shares_one_port_per_exposure_and_port_0_becomes_a_real_one() -> None:
    exposure = kernel.exposure.http("api", auth=kernel.exposure.BearerAuth(tokens=["t"]))
    app = kernel.App("reserved", register=[exposure])
    with reserve(app) as reservation:
        (port,) = reservation.ports.values()
        assert set(reservation.ports) == {"api"}
        assert port > 0
        (held,) = reservation.sockets
        assert held.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        # A worker can listen on the same port beside the parent's reservation.
        worker = kernel.exposure._server.listening_socket("127.0.0.1", port, reuse_port=True)
        worker.listen()
        worker.close()
    assert held.fileno() == -1


def test_an_app_without_exposures_reserves_nothing() -> None:
    with reserve(kernel.App("quiet", register=[])) as reservation:
        assert reservation.ports == {}


def test_service_checks_workers_and_worker_restart() -> None:
    app = kernel.App("svc", register=[])
    assert kernel.Service(app=app).workers == 1
    with pytest.raises(TypeError, match="workers must be an int"):
        kernel.Service(app=app, workers=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="workers must be an int"):
        kernel.Service(app=app, workers=True)
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        kernel.Service(app=app, workers=0)
    with pytest.raises(TypeError, match=r"worker_restart must be an rs\.Retry"):
        kernel.Service(app=app, worker_restart="never")  # type: ignore[arg-type]
    retry = rs.Retry(attempts=2)
    assert kernel.Service(app=app, worker_restart=retry).worker_restart is retry
    assert "workers" not in kernel.Service(app=app, workers=3).options()


def test_main_with_workers_refuses_serve() -> None:
    async def serve(rt: kernel.Runtime) -> None:
        raise AssertionError("never runs")

    with pytest.raises(ValueError, match="serve= runs in one process"):
        kernel.main(workers_service.app, workers=2, serve=serve)


def test_main_with_workers_inside_a_worker_says_to_guard_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(_workers.ENV_WORKER, "1")
    with pytest.raises(kernel.KernelError, match='if __name__ == "__main__"'):
        kernel.main(workers_service.service)


def test_serve_command_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["serve", "tests.kernel.workers.service:service", "--workers", "0"]) == 2
    assert "must be >= 1, got 0" in capsys.readouterr().err
    assert cli(["serve", "tests.kernel.workers.service:service", "--workers", "x"]) == 2
    assert "expected a whole number" in capsys.readouterr().err
    assert cli(["serve", "tests.kernel.workers.service:nope"]) == 2
    assert "no attribute 'nope'" in capsys.readouterr().err
