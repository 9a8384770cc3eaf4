"""A real Apache Kafka broker (KRaft, single node) run as a local JVM process.

The pipeline's Kafka behaviour (consumer groups, offsets, rebalances, a broker going away and coming
back) is what the integration tests and benchmarks are about, so they run against the real broker, not
a fake. Without Docker, the broker's jars are fetched once from Maven Central with ``mvn`` into the
tool cache (see ``cache.py``) and run with ``java``: one process that is both the KRaft controller and
the broker, on two free loopback ports, storing its log in ``data_dir``.

Topic auto-creation is switched off, as in production: the product must create its topics itself.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from ._process import (
    LocalServer,
    ServerStartError,
    free_port,
    port_accepts,
    require_executable,
    run_with_heartbeat,
    tail,
)
from .cache import ToolFetchError, ensure_tool, is_complete, tool_dir
from .tls import make_server_certificate

KAFKA_VERSION = "3.9.1"
SCALA_BINARY_VERSION = "2.13"

_JAVA_HINT = (
    "The Kafka dev server needs a Java 11+ runtime: install one, e.g. "
    "'apt-get install openjdk-17-jre-headless', or put its bin/ directory on PATH."
)
_MVN_HINT = (
    "Fetching Kafka needs Maven: install it, e.g. 'apt-get install maven', "
    "or pre-fill the cache with 'python -m camerafleet_dev.devservers fetch kafka' on a machine "
    "that has it and copy the cache directory over."
)

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Throwaway project whose only purpose is to make Maven download the Kafka broker's runtime jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.camerafleet_dev.devservers</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <!-- Kafka 3.x logs through slf4j 1.7 to log4j 1.x; reload4j is its maintained drop-in. -->
    <dependency>
      <groupId>ch.qos.reload4j</groupId>
      <artifactId>reload4j</artifactId>
      <version>1.2.26</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J = """# Written by camerafleet_dev.devservers: the broker logs to a file in its data directory.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log_path}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
log4j.logger.kafka.log.UnifiedLog=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""

# The dev machines have 2 cores shared with Ray and the pipeline, so the broker is kept frugal. C1-only
# JIT measured on such a machine: restart 2.5 s instead of 3.5 s, and about 35 % less broker CPU while
# producing 150k 2 KB messages at the same throughput (C2 compilation never pays off in short runs).
_JVM_OPTIONS = (
    "-XX:+UseSerialGC",  # no parallel GC threads competing with the pipeline
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",  # die visibly rather than limp along
    "-XX:-UsePerfData",  # no /tmp/hsperfdata_* files
    "-Djava.awt.headless=true",
)


def kafka_home() -> Path:
    """The cache directory of the pinned Kafka (it holds ``libs/``); it may not be fetched yet."""
    return tool_dir("kafka", KAFKA_VERSION)


def fetch_kafka(out: TextIO | None = None) -> Path:
    """Make sure the Kafka broker jars are in the tool cache (downloading them with Maven if not).

    Returns the Kafka directory, whose ``libs/`` holds the jars. Safe to call from several processes.
    """
    out = sys.stderr if out is None else out
    return ensure_tool("kafka", KAFKA_VERSION, lambda staging: _download_jars(staging, out), out=out)


def _download_jars(staging: Path, out: TextIO) -> None:
    mvn = require_executable("mvn", _MVN_HINT)
    (staging / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, scala=SCALA_BINARY_VERSION))
    libs = staging / "libs"
    argv = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(staging / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    print(f"[camerafleet] fetching Kafka {KAFKA_VERSION} jars from Maven Central (about 20 s on a fresh ~/.m2) ...", file=out, flush=True)
    log = staging / "mvn.log"
    code = run_with_heartbeat(argv, log, cwd=staging, what="mvn", out=out)
    if code != 0:
        raise ToolFetchError(
            f"'mvn dependency:copy-dependencies' failed with status {code} while fetching Kafka "
            f"{KAFKA_VERSION}. Check that Maven Central is reachable (proxy settings in "
            f"~/.m2/settings.xml). Last lines of its output:\n{tail(log, 30)}"
        )
    main_jar = libs / f"kafka_{SCALA_BINARY_VERSION}-{KAFKA_VERSION}.jar"
    if not main_jar.is_file():
        raise ToolFetchError(f"Maven finished but {main_jar.name} is missing from {libs}")
    jars = list(libs.glob("*.jar"))
    print(f"[camerafleet] fetched {len(jars)} jars ({sum(j.stat().st_size for j in jars) / 2**20:.0f} MiB)", file=out, flush=True)


def _random_cluster_id() -> str:
    """A Kafka cluster id, as ``kafka-storage random-uuid`` makes them (without starting a JVM)."""
    while True:
        encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not encoded.startswith("-"):  # Kafka avoids ids that look like command-line options
            return encoded


def _escape_property(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")  # a PEM value spans lines


class KafkaServer(LocalServer):
    """A single-node Kafka broker (KRaft combined mode) on free loopback ports.

    >>> with KafkaServer() as kafka:          # doctest: +SKIP
    ...     produce_to(kafka.bootstrap)

    ``bootstrap`` ("127.0.0.1:<port>") is known from construction on and never changes, also across
    ``restart()`` and ``stop()`` / ``start()`` (what fault-injection tests do). ``data_dir`` holds the
    configuration, the topic data (``kraft-logs/``) and the broker log (``log_path``).
    ``extra_config`` adds or overrides ``server.properties`` entries; ``jvm_options`` are appended to
    the JVM flags (``heap`` sets ``-Xmx``).

    ``scram_users`` ({name: password}) adds a second listener, SASL_SSL with SCRAM-SHA-512 on
    ``secure_port``, as managed Kafka services require: its certificate comes from a private CA made for
    the broker (``tls.ca`` is what clients trust); ``secure_bootstrap`` is its address. The plain listener
    stays (the broker's own traffic and the other tests use it).
    """

    kind = "kafka"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        broker_port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        extra_config: Mapping[str, str | int | bool] | None = None,
        jvm_options: Sequence[str] = (),
        startup_timeout_s: float = 90.0,
        detached: bool = False,
        out: TextIO | None = None,
        listen_host: str = "127.0.0.1",
        scram_users: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir, startup_timeout_s=startup_timeout_s, detached=detached, out=out)
        self.scram_users = dict(scram_users or {})
        self.secure_port = free_port() if self.scram_users else None
        self.tls = make_server_certificate(self.data_dir / "tls", [listen_host, "localhost"]) if self.scram_users else None
        #: The address clients use (loopback; a node's address when Pods are the clients, ``cluster.py``).
        self.listen_host = listen_host
        self.broker_port = broker_port or free_port()
        self.controller_port = controller_port or free_port(exclude=[self.broker_port])
        if self.broker_port == self.controller_port:
            raise ValueError("broker_port and controller_port must differ")
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self.jvm_options = tuple(jvm_options)
        self._java: str | None = None
        self._classpath = ""
        self._log4j = self.data_dir / "log4j.properties"

    def __repr__(self) -> str:
        return f"KafkaServer(bootstrap={self.bootstrap!r}, data_dir={str(self.data_dir)!r}, running={self.is_running()})"

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap_servers`` string for clients: ``<listen host>:<broker port>``."""
        return f"{self.listen_host}:{self.broker_port}"

    @property
    def secure_bootstrap(self) -> str:
        """The SASL_SSL listener's ``bootstrap_servers`` (with ``scram_users`` only)."""
        if self.secure_port is None:
            raise ValueError("this broker has no SASL_SSL listener (give it scram_users)")
        return f"{self.listen_host}:{self.secure_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def log_dir(self) -> Path:
        """Where the broker keeps topic partitions and the KRaft metadata log."""
        return self.data_dir / "kraft-logs"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    def server_properties(self) -> dict[str, str]:
        """The broker configuration written to ``server.properties`` on each start."""
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (f"PLAINTEXT://{self.listen_host}:{self.broker_port},CONTROLLER://127.0.0.1:{self.controller_port}"),
            "advertised.listeners": f"PLAINTEXT://{self.listen_host}:{self.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "false",  # the product must create its topics itself
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",  # 50 by default: slow first group join, no benefit
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash (kill()), the restarted broker cannot register until the controller has
            # expired its previous session: 9 s by default, 3 s here.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 2**20),
        }
        if self.tls is not None:
            secure = f"SASL_SSL://{self.listen_host}:{self.secure_port}"
            key, chain = self.tls.key.read_text(), self.tls.cert.read_text()
            props["listeners"] += f",{secure}"
            props["advertised.listeners"] += f",{secure}"
            props["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
            props["sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
            props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
            # Inline PEM: a PEM key store in a file needs an encrypted key, inline it may be plain.
            props["listener.name.sasl_ssl.ssl.keystore.type"] = "PEM"
            props["listener.name.sasl_ssl.ssl.keystore.certificate.chain"] = chain
            props["listener.name.sasl_ssl.ssl.keystore.key"] = key
        props.update({key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in self.extra_config.items()})
        return props

    def _prepare(self) -> None:
        self._java = require_executable("java", _JAVA_HINT)
        home = fetch_kafka(out=self._out)
        main_jar = home / "libs" / f"kafka_{SCALA_BINARY_VERSION}-{KAFKA_VERSION}.jar"
        if not main_jar.is_file():
            raise ServerStartError(
                f"the Kafka tool cache {home} is damaged ({main_jar.name} is missing): delete that "
                f"directory and run 'python -m camerafleet_dev.devservers fetch kafka'"
            )
        self._classpath = str(home / "libs" / "*")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log4j.write_text(_LOG4J.format(log_path=_escape_property(str(self.log_path))))
        lines = ["# Written by camerafleet_dev.devservers.kafka on each start; edits are overwritten."]
        lines += [f"{key}={_escape_property(value)}" for key, value in self.server_properties().items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        if not (self.log_dir / "meta.properties").exists():
            self._format_storage()

    def _java_argv(self, main_class: str, *args: str, heap: str) -> list[str]:
        assert self._java is not None
        return [
            self._java,
            f"-Xmx{heap}",
            *_JVM_OPTIONS,
            *self.jvm_options,
            f"-Dlog4j.configuration=file:{self._log4j}",
            "-cp",
            self._classpath,
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        """Format the empty log directory for a new single-node cluster (``kafka-storage format``)."""
        cluster_id = _random_cluster_id()
        scram = [
            arg
            for name, password in self.scram_users.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]
        argv = self._java_argv("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_path), *scram, heap="256m")
        result = subprocess.run(argv, check=False, cwd=self.data_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise ServerStartError(
                f"formatting the Kafka storage in {self.log_dir} failed (status {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n--- last lines of {self.log_path} ---\n"
                f"{tail(self.log_path, 20)}"
            )

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        return (self._java_argv("kafka.Kafka", str(self.config_path), heap=self.heap), dict(os.environ))

    def _ready(self) -> bool:
        # Cheap check first: the broker only opens its client port once it is registered and
        # unfenced, and a metadata request then proves that it really serves requests.
        if not port_accepts(self.broker_port, host=self.listen_host):
            return False
        return broker_answers(self.bootstrap)


_probe_pool: ThreadPoolExecutor | None = None
_probe_pool_lock = threading.Lock()


def broker_answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """Whether the Kafka broker at ``bootstrap`` answers a metadata request listing a broker.

    Runs the aiokafka client on its own event loop in a helper thread, so it also works when called
    from inside a running event loop.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), client_id="camerafleet-devservers-probe"
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        finally:
            await admin.close()

    global _probe_pool
    with _probe_pool_lock:
        if _probe_pool is None:
            _probe_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-probe")
    try:
        return _probe_pool.submit(lambda: asyncio.run(probe())).result(timeout=timeout_s * 3)
    except Exception:  # noqa: BLE001 - any failure just means "not ready yet"
        return False


def is_fetched() -> bool:
    """Whether the pinned Kafka is already in the tool cache."""
    return is_complete(kafka_home())


__all__ = ["KAFKA_VERSION", "KafkaServer", "broker_answers", "fetch_kafka", "is_fetched", "kafka_home"]
