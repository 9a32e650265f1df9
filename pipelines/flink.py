"""Run the scale-up on Apache Flink through Beam's portable FlinkRunner.

    python -m pipelines.flink fetch          # fetch the job server jar once, print its path
    python -m pipelines.flink args [-p 2]    # print the Beam flags for a local embedded Flink
    python -m pipelines.scale_up --tenant-id T --scale-factor 3 $(python -m pipelines.flink args)

How it fits together: the Python pipeline is translated to Beam's portable pipeline
proto and handed to a **job server**, a Java program
(``org.apache.beam:beam-runners-flink-<flink>-job-server:<beam>``, one shaded jar) that
turns it into a Flink job. With ``--flink_master=[local]`` that job server also runs
Flink itself, as an embedded mini cluster in its own JVM; with
``--environment_type=LOOPBACK`` the Python parts of the pipeline (our DoFns) run in SDK
workers inside the launching Python process, which Flink calls back over gRPC on
localhost. Nothing needs Docker.

Contract:

* ``flink_job_server_jar()`` returns the job server jar, fetched once with Maven
  (``dependency:copy``) into ``pipelines.infra.maven.cache_root()`` beside the Neo4j
  jars, in ``beam-flink-<flink>-job-server-<beam>/``; a marker written after a complete
  fetch makes later calls download nothing, and a file lock keeps two processes from
  fetching at once. ``$TENANT_SCALER_FLINK_JOB_SERVER_JAR`` names a jar to use instead
  (e.g. one copied from a machine that reaches the artifact). Raises
  ``FlinkJobServerUnavailable`` with what to do if the artifact cannot be had.
* The job server's Beam version is the installed SDK's (2.77.0): the portable protocol is only guaranteed between equal versions.
* ``flink_args(parallelism)`` gives the Beam flags for a local embedded Flink.

Why Flink 1.20 (``FLINK_VERSION``; ``$TENANT_SCALER_FLINK_VERSION`` or ``--flink-version``
picks another of Beam 2.77's 1.19, 1.20, 2.0, 2.1, 2.2): it is the last 1.x line, runs on
the Java 17 our machines have (Flink supports 17 from 1.18 on; 2.x needs 11+, so they
would run too), and is the most exercised by Beam's portable runner. On Java 17 Flink's
Kryo serializer reflects into ``java.util`` and friends, so the job server JVM gets the
``--add-opens`` flags Flink's own distribution sets (``JOB_SERVER_JVM_PROPERTIES``).

A real Flink cluster (the same pipeline, other flags):

* ``--runner=FlinkRunner --flink_master=HOST:8081 --flink_job_server_jar=<jar>``
  (``flink_args(flink_master="HOST:8081")``): the job server still runs where you launch
  the job and submits to the cluster's REST endpoint; the cluster's Flink version must be
  the jar's. ``--flink_submit_uber_jar`` instead builds one jar (job server + pipeline)
  and uploads it through the REST API, so no job server process stays on the launching
  machine. ``--parallelism=N`` sets how many parallel instances (task slots) each step
  gets.
* The Python workers must then run next to the Flink task managers, with this project
  installed, because the task managers cannot call back into a laptop:

  - ``--environment_type=DOCKER --environment_config=<image>``: an SDK container image
    built ``FROM apache/beam_python3.11_sdk:2.77.0`` (the launching Python's minor
    version) with ``pip install .`` of this repository in it; the task managers need
    Docker.
  - ``--environment_type=PROCESS --environment_config='{"command": "/opt/apache/beam/boot"}'``:
    the SDK harness boot program installed on every task manager host.
  - ``--environment_type=EXTERNAL --environment_config=localhost:50000``: a worker pool
    you run beside each task manager (``python -m apache_beam.runners.worker.worker_pool_main
    --service_port=50000``, e.g. a sidecar container) in a Python environment that has this
    project installed.
  - ``--setup_file ./setup.py`` stages this project (``pipelines``, ``transforms``) as a
    source package that each worker pip-installs at start-up, when the image does not
    already contain it; ``--requirements_file`` does the same for extra packages.

* Neo4j must be reachable from the workers (``NEO4J_URI`` etc. are read where you
  launch; the connection settings travel inside the pickled DoFns, the password
  included, so the job graph is as secret as the password).
* ``--max-concurrent-writes`` is per DoFn instance: every parallel instance of the write
  step keeps that many transactions in flight, so a job with ``--parallelism=P`` has up
  to ``P x max_concurrent_writes`` (docs/RUNNING_AT_SCALE.md).

Metrics: the Flink portable runner reports Beam metrics only as *attempted* values
(``FlinkPortableRunnerResult.portableMetrics`` fills ``attempted`` only), so
``committed`` is ``None`` on the Python side; ``pipelines.runner.metric_totals`` falls
back to ``attempted``. They come from Flink accumulators gathered when the job ends, i.e. only
in attached mode (the default); a detached job reports none.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from pipelines.infra.maven import DEPENDENCY_PLUGIN, cache_root, fetch_once
from pipelines.infra.processes import LOG_TAIL_LINES, say

#: Beam 2.77's Flink versions (``FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS``).
SUPPORTED_FLINK_VERSIONS = ("1.19", "1.20", "2.0", "2.1", "2.2")
FLINK_VERSION = "1.20"
#: The job server must speak the SDK's version of the portable protocol. (Read from the
#: installed distribution: importing apache_beam for it would cost seconds per CLI call.)
BEAM_VERSION = importlib.metadata.version("apache-beam")
JAR_ENV = "TENANT_SCALER_FLINK_JOB_SERVER_JAR"
VERSION_ENV = "TENANT_SCALER_FLINK_VERSION"
#: Java the job server needs (Flink 2.x needs 11; our machines have 17).
#: Heap of the job server JVM, which also hosts the embedded Flink with ``[local]``
#: (it only shuffles the pipeline's elements; the data goes to Neo4j).
JOB_SERVER_HEAP = "1g"
#: What Flink's own distribution passes on Java 17 (``env.java.opts.all``): Kryo and
#: Flink's closure cleaner reflect into these packages.
_ADD_OPENS = ("java.lang", "java.lang.reflect", "java.io", "java.net", "java.nio",
              "sun.nio.ch", "java.text", "java.time", "java.util", "java.util.concurrent",
              "java.util.concurrent.atomic", "java.util.concurrent.locks")
JOB_SERVER_JVM_PROPERTIES = (f"-Xmx{JOB_SERVER_HEAP}",
                             *(f"--add-opens=java.base/{package}=ALL-UNNAMED"
                               for package in _ADD_OPENS))
_FETCH_MARKER = ".fetch-complete"
#: What Maven says when the repository has no such artifact (now, or cached from before).
_NOT_SERVED = ("Could not find artifact", "was not found in", "could not be resolved")

#: How many times this process ran Maven to fetch the jar (tests check a second call fetched none).
fetch_count = 0


class FlinkJobServerUnavailable(RuntimeError):
    """The job server jar cannot be fetched or used; the message says what to do."""


# --------------------------------------------------------------------------- the jar


def _flink_version(flink_version: Optional[str]) -> str:
    version = flink_version or os.environ.get(VERSION_ENV) or FLINK_VERSION
    if version not in SUPPORTED_FLINK_VERSIONS:
        raise FlinkJobServerUnavailable(
            f"Flink {version!r} is not one Beam {BEAM_VERSION} supports; choose one of "
            f"{', '.join(SUPPORTED_FLINK_VERSIONS)}")
    return version


def artifact(flink_version: Optional[str] = None) -> str:
    """``group:artifact:version`` of the job server for ``flink_version``."""
    return (f"org.apache.beam:beam-runners-flink-{_flink_version(flink_version)}-job-server:"
            f"{BEAM_VERSION}")


def jar_dir(flink_version: Optional[str] = None) -> Path:
    return cache_root() / f"beam-flink-{_flink_version(flink_version)}-job-server-{BEAM_VERSION}"


def jar_path(flink_version: Optional[str] = None) -> Path:
    """Where the fetched jar lives (complete only with the fetch marker beside it)."""
    version = _flink_version(flink_version)
    return jar_dir(version) / f"beam-runners-flink-{version}-job-server-{BEAM_VERSION}.jar"


def jar_present(flink_version: Optional[str] = None) -> bool:
    return (jar_dir(flink_version) / _FETCH_MARKER).is_file() and jar_path(flink_version).is_file()


def flink_job_server_jar(flink_version: Optional[str] = None) -> Path:
    """The job server jar for ``flink_version`` (default ``FLINK_VERSION``), fetched once.

    ``$TENANT_SCALER_FLINK_JOB_SERVER_JAR`` wins when set (it must exist). Otherwise Maven
    runs only while the completion marker is missing; a half-finished fetch is redone.
    """
    provided = os.environ.get(JAR_ENV)
    if provided:
        path = Path(provided).expanduser()
        if not path.is_file():
            raise FlinkJobServerUnavailable(f"${JAR_ENV} names {path}, which is not a file")
        return path.resolve()
    version = _flink_version(flink_version)
    target, work = jar_path(version), jar_dir(version)
    coordinates = artifact(version)

    def fetch(mvn: str) -> None:
        global fetch_count
        say("fetching %s from Maven Central (once) into %s …", coordinates, work)
        began = time.monotonic()
        target.unlink(missing_ok=True)
        (work / _FETCH_MARKER).unlink(missing_ok=True)
        # -U: ask again even if an earlier attempt cached "not found" in ~/.m2.
        command = [mvn, "-B", "-q", "-U", f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={coordinates}",
                   f"-DoutputDirectory={work}", "-Dmdep.overWriteReleases=true"]
        fetch_count += 1
        result = subprocess.run(command, cwd=work, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0 or not target.is_file():
            tail = "\n".join(result.stdout.splitlines()[-LOG_TAIL_LINES:])
            if any(sign in result.stdout for sign in _NOT_SERVED):
                raise FlinkJobServerUnavailable(
                    f"Maven Central, as this machine reaches it, does not serve {coordinates}.\n"
                    f"Ran: {' '.join(command)}\nFetch the jar where it is served (e.g. "
                    f"mvn dependency:copy -Dartifact={coordinates}) and set ${JAR_ENV} to it, or "
                    f"pick another Flink version with ${VERSION_ENV} "
                    f"({', '.join(SUPPORTED_FLINK_VERSIONS)}). Maven said:\n{tail}")
            raise FlinkJobServerUnavailable(
                f"fetching {coordinates} failed (exit {result.returncode}) running "
                f"{' '.join(command)}\nCan Maven reach Maven Central? Last output:\n{tail}")
        (work / _FETCH_MARKER).write_text(f"{coordinates}\n", encoding="utf-8")
        say("fetched %s (%.0f MB) in %.1f s", target.name, target.stat().st_size / 1e6,
             time.monotonic() - began)

    fetch_once(work, lambda: jar_present(version), fetch, lambda: FlinkJobServerUnavailable(
        f"Maven ('mvn') is not on PATH; it is needed once to fetch {coordinates} "
        f"from Maven Central (Debian/Ubuntu: apt-get install maven), or set ${JAR_ENV} "
        "to a job server jar you have"), FlinkJobServerUnavailable)
    return target


# --------------------------------------------------------------------------- flags


def flink_args(parallelism: int = 2, flink_master: str = "[local]",
               flink_version: Optional[str] = None, jar: Optional[Path] = None) -> List[str]:
    """Beam flags that run a pipeline on Flink: by default a local embedded mini cluster.

    ``--environment_type=LOOPBACK`` runs the Python DoFns in the launching process (no
    Docker); that only works when Flink runs on this machine, so for a remote
    ``flink_master`` pass an ``--environment_type`` of your own after these flags (a
    later flag wins; see the module docstring). Fetches the jar if needed.
    """
    if not isinstance(parallelism, int) or parallelism < 1:
        raise ValueError(f"parallelism must be a positive integer, got {parallelism!r}")
    version = _flink_version(flink_version)
    jar = jar or flink_job_server_jar(version)
    return [
        "--runner=FlinkRunner",
        f"--flink_master={flink_master}",
        f"--flink_version={version}",
        f"--flink_job_server_jar={jar}",
        "--environment_type=LOOPBACK",
        f"--parallelism={parallelism}",
        *(f"--job_server_jvm_properties={prop}" for prop in JOB_SERVER_JVM_PROPERTIES),
    ]


# --------------------------------------------------------------------------- CLI


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.flink",
        description="Beam's portable FlinkRunner for the scale-up: the job server jar "
                    f"(cached under {cache_root()}) and the flags for a local Flink.")
    parser.add_argument("--flink-version", default=None, choices=SUPPORTED_FLINK_VERSIONS,
                        help=f"Flink version (default: ${VERSION_ENV} or {FLINK_VERSION})")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="fetch the job server jar (once) and print its path")
    flags = commands.add_parser("args", help="print the Beam flags for a local embedded Flink, "
                                             "one line, for $(...)")
    flags.add_argument("-p", "--parallelism", type=int, default=2,
                       help="parallel instances of every step (default 2)")
    flags.add_argument("--flink-master", default="[local]",
                       help="[local] (default) or HOST:PORT of a running Flink's REST endpoint")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(flink_job_server_jar(args.flink_version))
        else:
            print(" ".join(flink_args(args.parallelism, args.flink_master, args.flink_version)))
    except (FlinkJobServerUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
