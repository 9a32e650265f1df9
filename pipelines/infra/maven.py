"""The project's cache of Maven Central artifacts, filled once and shared by processes.

Everything Java this project runs (the Neo4j server, Beam's Flink job server) comes
from Maven Central through ``mvn`` and is kept under ``cache_root()``; a directory is
complete only once its fetch wrote a marker, and fetches run under a file lock, so a
half-finished fetch is redone and two processes never fetch into one directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable

from pipelines.infra.processes import check_java

#: Pinned so every Maven version resolves the goal the same way.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
#: Maven runs on Java; the servers it fetches for need 17.
MAVEN_JAVA = 17


def dependency_xml(coordinate: str, indent: str = "    ") -> str:
    """The pom ``<dependency>`` element of a ``group:artifact:version`` coordinate."""
    group, artifact, version = coordinate.split(":")
    return (f"{indent}<dependency>\n"
            f"{indent}  <groupId>{group}</groupId>\n"
            f"{indent}  <artifactId>{artifact}</artifactId>\n"
            f"{indent}  <version>{version}</version>\n"
            f"{indent}</dependency>")


def cache_root() -> Path:
    """``$TENANT_SCALER_CACHE``, else ``~/.cache/tenant-scaler``."""
    configured = os.environ.get("TENANT_SCALER_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tenant-scaler"


def fetch_once(work: Path, present: Callable[[], bool], fetch: Callable[[str], None],
               no_maven: Callable[[], Exception], java_error: type) -> None:
    """Run ``fetch(mvn)`` unless ``present()``, under a file lock in ``work``.

    ``present()`` is checked again under the lock, so the second of two processes finds
    the first one's result; ``no_maven()`` is the error to raise when Maven is missing,
    ``java_error`` the type raised when Java is (Maven needs it, and our message beats
    Maven's).
    """
    if present():
        return
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if present():  # another process finished it while we waited
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise no_maven()
        check_java(MAVEN_JAVA, "Maven (to fetch the jars)", java_error)
        fetch(mvn)
