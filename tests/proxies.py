"""A real proxy nobody here wrote: Debian's tinyproxy, counting what it saw from its own log.

``TinyproxyServer`` runs tinyproxy in the foreground as a child process on 127.0.0.1 with a
configuration in a temporary directory: clients from 127.0.0.1 only, CONNECT to any port (no
``ConnectPort`` line), and, when given credentials, ``BasicAuth``. Its Info-level log names each
client connection and each request (``GET http://...`` in absolute form, ``CONNECT host:port``
for tunnels), which is what ``stats`` counts.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from real_servers import start_on_a_free_port
from servers import LOCALHOST

TINYPROXY_CONF = """\
Port {port}
Listen {host}
Timeout 30
LogFile "{dir}/tinyproxy.log"
LogLevel Info
PidFile "{dir}/tinyproxy.pid"
MaxClients 64
Allow {host}
DisableViaHeader Yes
{auth}
"""

_CONNECTION = re.compile(r"Connect \(file descriptor (\d+)\)")
_REQUEST = re.compile(r"Request \(file descriptor (\d+)\): (.+)")


class ProxyLogStats:
    """What tinyproxy logged since the last ``reset()``: client connections and requests."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def reset(self) -> None:
        self._offset = self._path.stat().st_size if self._path.exists() else 0

    def _lines(self) -> list[str]:
        if not self._path.exists():
            return []
        with open(self._path, "rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace").splitlines()

    @property
    def connections(self) -> int:
        """Client connections tinyproxy accepted."""
        return sum(1 for line in self._lines() if _CONNECTION.search(line))

    @property
    def request_lines(self) -> list[str]:
        """Each request line, e.g. ``GET http://127.0.0.1:8000/peer HTTP/1.1``."""
        return [match.group(2) for line in self._lines() if (match := _REQUEST.search(line))]

    @property
    def log(self) -> str:
        return "\n".join(self._lines())


class TinyproxyServer:
    """tinyproxy on 127.0.0.1:<free port>; ``url`` carries the credentials when it wants them."""

    def __init__(self, binary: str, *, user: str | None = None, password: str | None = None):
        self._dir = Path(tempfile.mkdtemp(prefix="tinyproxy-"))
        self._auth = f"BasicAuth {user} {password}" if user is not None else ""
        self._process, self.port = start_on_a_free_port(
            functools.partial(self._launch, binary), "tinyproxy", self.error_log
        )
        self.origin = f"http://{LOCALHOST}:{self.port}"
        credentials = f"{user}:{password}@" if user is not None else ""
        self.url = f"http://{credentials}{LOCALHOST}:{self.port}"
        self.stats = ProxyLogStats(self._dir / "tinyproxy.log")

    def _launch(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        conf = TINYPROXY_CONF.format(host=LOCALHOST, port=port, dir=self._dir, auth=self._auth)
        (self._dir / "tinyproxy.conf").write_text(conf)
        with open(self._dir / "stderr.log", "ab") as log:
            return subprocess.Popen(
                [binary, "-d", "-c", str(self._dir / "tinyproxy.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def error_log(self) -> str:
        texts = [
            (self._dir / name).read_text(errors="replace")
            for name in ("stderr.log", "tinyproxy.log")
            if (self._dir / name).exists()
        ]
        return "\n".join(texts).strip()

    def reset(self) -> None:
        if self._process.poll() is not None:
            raise RuntimeError(f"tinyproxy exited: {self.error_log()}")
        self.stats.reset()

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def tinyproxy_binary() -> str | None:
    return shutil.which("tinyproxy") or (
        "/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None
    )
