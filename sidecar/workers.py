"""`server.workers: N`: N `trackgate serve` processes sharing the ports.

With more than one worker, `trackgate serve` becomes this supervisor. Each
worker is a fresh `trackgate serve` process (not a fork: prometheus-client must
see `PROMETHEUS_MULTIPROC_DIR` before it is imported) binding the tracking and
admin ports with SO_REUSEPORT, running its own rules watcher (so a reload
reaches every worker) and writing its metrics where `/metrics`, answered by any
worker, aggregates them. The supervisor forwards SIGTERM, SIGINT and SIGHUP,
restarts a worker that dies while serving, and exits 0 when all workers did.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from sidecar import logs

WORKER_ENV = "TRACKGATE_WORKER"  # set in workers: they serve instead of supervising
RESTART_DELAY_SECONDS = 1.0
_POLL_SECONDS = 0.2


class Supervisor:
    """Starts, watches and stops the workers."""

    def __init__(self, config: Path, count: int) -> None:
        self.config = config
        self.count = count
        self.metrics_dir = tempfile.mkdtemp(prefix="trackgate-metrics-")
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def run(self) -> int:
        """Serve until told to stop; the exit code is 0 when every worker exited 0."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._forward)
        try:
            for index in range(self.count):
                self._start(index)
            logs.event("workers_started", workers=self.count)
            while not self.stopping:
                self._restart_dead()
                time.sleep(_POLL_SECONDS)
            codes = [worker.wait() for worker in self.workers.values()]
            logs.event("workers_stopped", exit_codes=codes)
            return 0 if all(code == 0 for code in codes) else 1
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _start(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(index), "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        command = [sys.executable, "-m", "sidecar", "serve", "--config", str(self.config)]
        self.workers[index] = subprocess.Popen(command, env=env)  # noqa: S603 - our own CLI

    def _restart_dead(self) -> None:
        for index, worker in list(self.workers.items()):
            code = worker.poll()
            if code is None or self.stopping:
                continue
            _mark_dead(worker.pid, self.metrics_dir)
            logs.event("worker_died", logging.ERROR, worker=index, exit_code=code)
            time.sleep(RESTART_DELAY_SECONDS)
            if not self.stopping:
                self._start(index)

    def _stop(self, signum: int, _: FrameType | None) -> None:
        self.stopping = True
        self._forward(signum, None)

    def _forward(self, signum: int, _: FrameType | None) -> None:
        for worker in self.workers.values():
            if worker.poll() is None:
                worker.send_signal(signum)


def _mark_dead(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges (in-flight, rules version) from /metrics."""
    from prometheus_client import multiprocess  # noqa: PLC0415 - only with workers

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def supervise(config: Path, count: int) -> int:
    """Run `count` workers for the rules file `config`."""
    return Supervisor(config, count).run()
