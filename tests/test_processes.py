"""The test helpers' own promise: a service a test starts does not outlive the test process, even when that process
is killed without running its teardown (a CI timeout, a second Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.utils.processes import wait_for

REPO = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"  # a zombie is dead


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's prctl")
def test_a_started_service_dies_with_the_killed_test_process(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from tests.utils.processes import start
        child = start([sys.executable, "-c", "import time; time.sleep(300)"], {{}}, Path({str(tmp_path / "log")!r}))
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    with subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True) as test_process:
        assert test_process.stdout is not None
        service = int(test_process.stdout.readline())
        try:
            assert alive(service)
            test_process.send_signal(signal.SIGKILL)  # no teardown runs
            test_process.wait()
            wait_for(lambda: not alive(service), 10, "the orphaned service to exit")
        finally:
            if alive(service):
                os.kill(service, signal.SIGKILL)


def test_a_started_service_lives_while_the_test_process_does(tmp_path: Path) -> None:
    from tests.utils.processes import start, stop

    service = start([sys.executable, "-c", "import time; time.sleep(300)"], {}, tmp_path / "log")
    try:
        time.sleep(1.0)
        assert service.poll() is None
    finally:
        stop(service)
    assert service.returncode == -signal.SIGTERM
