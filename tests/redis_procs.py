"""Throwaway ``redis-server`` processes for fault tests: start on a free port, kill -9, restart;
and a throwaway Redis Cluster made of them."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: A cluster node also listens on its port + 10000 (the cluster bus), so its port is at most this.
CLUSTER_PORT_MAX = 55535


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = random.randint(20000, CLUSTER_PORT_MAX)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """A private redis-server with ``--appendonly yes`` (fsync always) in its own directory."""

    def __init__(
        self,
        workdir: Path,
        *,
        appendonly: bool = True,
        password: str | None = None,
        cluster: bool = False,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_cluster_port() if cluster else free_port()
        self.appendonly = appendonly
        self.password = password  # --requirepass: clients must AUTH with it
        self.cluster = cluster  # --cluster-enabled yes: a node of a RedisClusterProcs
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, password=self.password)
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise RuntimeError(
            f"redis-server on port {self.port} did not start; see {self.dir}/redis.log"
        )

    def kill(self) -> None:
        """kill -9: no shutdown save, exactly like a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()


class RedisClusterProcs:
    """A private Redis Cluster: ``nodes`` primaries (no replicas, no persistence) on free loopback
    ports, each a :class:`RedisServer` with ``--cluster-enabled yes``, joined by
    ``redis-cli --cluster create``.  ``url`` is the ``redis+cluster://`` URL airfix takes."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.nodes = [
            RedisServer(workdir / f"node{i}", appendonly=False, cluster=True) for i in range(nodes)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout_s: float = 30) -> RedisClusterProcs:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-tools)")
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:  # every node must see the whole cluster, not just its own slots
            client = redis.Redis(port=node.port)
            try:
                while client.cluster("INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"cluster node {node.port} never reached cluster_state:ok"
                        )
                    time.sleep(0.1)
            finally:
                client.close()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
