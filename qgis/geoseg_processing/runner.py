"""Running geoseg out of process, with its progress in QGIS's progress bar."""

import os
import re
import shutil
import signal
import subprocess

from qgis.core import QgsProcessingException

#: geoseg's plain progress lines (GEOSEG_PROGRESS=lines): "progress: predict chunks: 3/12".
PROGRESS = re.compile(r"^progress: (?P<what>.+): (?P<done>\d+)/(?P<total>\d+)$")


def geoseg_command():
    """The geoseg executable: ``GEOSEG_EXECUTABLE``, else ``geoseg`` on the PATH."""
    command = os.environ.get("GEOSEG_EXECUTABLE") or shutil.which("geoseg")
    if not command:
        raise QgsProcessingException(
            "geoseg is not found: set the environment variable GEOSEG_EXECUTABLE to the geoseg "
            "command of the environment where geoseg is installed (for example "
            "/home/me/geoseg/.venv/bin/geoseg) and restart QGIS"
        )
    return command


def run_geoseg(arguments, feedback):
    """Run ``geoseg ARGUMENTS``; progress lines move the progress bar, the rest is logged.

    Cancelling sends SIGINT (checked whenever geoseg prints a line, which its progress lines do
    for every chunk), so geoseg stops cleanly and keeps its finished chunks for a ``--resume``;
    the algorithm then fails as cancelled. A non-zero exit raises
    :class:`QgsProcessingException` with geoseg's last messages.
    """
    command = [geoseg_command(), *arguments]
    feedback.pushCommandInfo(" ".join(command))
    env = dict(os.environ, GEOSEG_PROGRESS="lines", NO_COLOR="1", COLUMNS="200")
    tail = []
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        bufsize=1,
    ) as process:
        for line in process.stdout:
            line = line.rstrip()
            match = PROGRESS.match(line)
            if match:
                total = int(match["total"])
                feedback.setProgressText(match["what"])
                feedback.setProgress(100.0 * int(match["done"]) / total if total else 0.0)
            elif line:
                feedback.pushInfo(line)
                tail = [*tail, line][-20:]
            if feedback.isCanceled() and process.poll() is None:
                process.send_signal(signal.SIGINT)
        code = process.wait()
    if feedback.isCanceled():  # never hand back (or load) what an earlier run left there
        raise QgsProcessingException(
            "cancelled: geoseg stopped and kept its finished chunks; run again to continue"
        )
    if code != 0:
        raise QgsProcessingException(f"geoseg exited with code {code}:\n" + "\n".join(tail))
    return code
