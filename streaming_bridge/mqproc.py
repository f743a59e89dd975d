"""A private Mosquitto broker on a free port (tests, the benchmark): persistence on, unlimited queues,
restartable on the same port and persistence file, like ``amproc.AlertmanagerProcess`` for Alertmanager."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A private mosquitto on a free port with persistence and unlimited queues (restartable)."""

    def __init__(self, workdir: Path, port: int = 0):
        self.port = port or free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {self.dir}/\n"
            "autosave_interval 1\nmax_queued_messages 0\nmax_inflight_messages 0\nlog_dest stderr\nlog_type error\n"
            # run as the test's user: dropping to 'mosquitto' could not write the persistence file here
            + (f"user {getpass.getuser()}\n")
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with open(self.dir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None
