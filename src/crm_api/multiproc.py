"""The directory where the processes of one ``serve`` or ``worker`` run keep their metrics.

prometheus_client adds up several processes' metrics from per-process files in ``PROMETHEUS_MULTIPROC_DIR``,
and reads that variable once, when it is first imported: the command sets it here, before anything imports
prometheus_client, and every worker process it starts inherits it. This module must not import it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client's file names: <kind>[_<gauge mode>]_<pid>.db
_METRIC_FILES = ("counter_", "gauge_", "histogram_", "summary_")
_PREFIX = "crm-api-metrics-"


def prepare(configured: Path | None) -> Path:
    """Use ``configured`` (``CRM_METRICS_DIR``), else an already set ``PROMETHEUS_MULTIPROC_DIR``, emptied of
    an earlier run's metric files; else a fresh temporary directory, removed when this process exits."""
    given = configured or (Path(os.environ[VARIABLE]) if os.environ.get(VARIABLE) else None)
    if given is None:
        _sweep_abandoned()
        path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
        atexit.register(shutil.rmtree, path, True)
    else:
        path = given
        path.mkdir(parents=True, exist_ok=True)
        for old in path.iterdir():
            if old.name.startswith(_METRIC_FILES) and old.name.endswith(".db"):
                old.unlink(missing_ok=True)
    if "prometheus_client" in sys.modules and os.environ.get(VARIABLE) != str(path):
        # too late: each process would count alone, and /metrics would show whichever one answered
        raise RuntimeError("prometheus_client was imported before the metrics directory was set")
    os.environ[VARIABLE] = str(path)
    return path


def _sweep_abandoned() -> None:
    """Remove the temporary directories of runs killed without their exit (SIGKILL, the OOM killer), which
    name the process that made them."""
    for old in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = old.name.removeprefix(_PREFIX).split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass
