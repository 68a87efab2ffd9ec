"""Debian's nginx in front of the servers under test: deploy/nginx.conf rendered with
this run's ports and paths (only its `# chaos:` lines change), run as a child process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "nginx.conf"
MARK = re.compile(r"^(\s*)(\S+).*#\s*chaos:\s*(\w+)\s*$")


def binary() -> str | None:
    """nginx's path, or None when it is not installed (also outside PATH in /usr/sbin)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def render(prefix: Path, listen: int, upstreams: list[int]) -> Path:
    """Write `prefix/nginx.conf` from deploy/nginx.conf: every line marked `# chaos:`
    rewritten for this prefix, the listening port and the servers' ports."""
    out: list[str] = []
    wrote_upstreams = False
    for line in CONFIG.read_text().splitlines():
        found = MARK.match(line)
        if found is None:
            out.append(line)
            continue
        indent, directive, kind = found.groups()
        if kind == "pid":
            out.append(f"{indent}pid {prefix / 'nginx.pid'};")
        elif kind == "error_log":
            out.append(f"{indent}error_log {prefix / 'error.log'} warn;")
        elif kind == "access_log":
            out.append(f"{indent}access_log {prefix / 'access.log'};")
        elif kind == "temp":
            path = prefix / "temp" / directive.split("_")[0]
            path.mkdir(parents=True, exist_ok=True)
            # Workers drop root's privileges when started as root: let them write.
            path.chmod(0o777)
            out.append(f"{indent}{directive} {path};")
        elif kind == "listen":
            out.append(f"{indent}listen 127.0.0.1:{listen};")
        elif kind == "upstream":
            if not wrote_upstreams:
                # The options of the first marked server line go to every server.
                options = line.split("#")[0].split(None, 2)[2].strip().rstrip(";")
                out += [f"{indent}server 127.0.0.1:{p} {options};" for p in upstreams]
                wrote_upstreams = True
        else:
            raise ValueError(f"unknown chaos mark {kind!r} in {CONFIG.name}")
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text("\n".join(out) + "\n")
    return conf


def check(conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on `conf`; the completed process (returncode 0 when valid)."""
    nginx = binary()
    assert nginx is not None
    return subprocess.run([nginx, "-t", "-p", str(conf.parent), "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)


class Nginx:
    """nginx in the foreground (`daemon off`) as this process's child; `stop()` always."""

    def __init__(self, conf: Path) -> None:
        self.conf = conf
        self.prefix = conf.parent
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, port: int, within: float = 15.0) -> None:
        nginx = binary()
        assert nginx is not None
        log = (self.prefix / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _wait_port(port, within, self.process)

    def reload(self) -> None:
        """SIGHUP: new workers with the configuration read again, old ones finish."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def stop(self, *, fast: bool = True) -> None:
        """SIGTERM (fast: connections cut) or SIGQUIT (graceful), then SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM if fast else signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    @property
    def pids(self) -> list[int]:
        """The master and its workers (for the soak's RSS and open files)."""
        import psutil

        if self.process is None or self.process.poll() is not None:
            return []
        try:
            master = psutil.Process(self.process.pid)
            return [master.pid, *(c.pid for c in master.children())]
        except psutil.Error:
            return []


def _wait_port(port: int, within: float, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nginx did not listen on {port} within {within:.0f} s")
