"""What a remote worker (Flink, Spark, Dataflow) needs: DoFns that pickle cleanly and open
their clients in ``setup()``, and a package built from setup.py that holds ``pipelines``
and ``transforms`` and nothing else. Fast: no Neo4j, no pipeline run."""

import concurrent.futures
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import apache_beam as beam
import neo4j
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.beam_job import LOCAL_RUNNER
from pipelines.scale_up import build_pipeline
from transforms.connection import Neo4jConnection
from transforms.replicate import ReplicationSettings
from tests.support import made_up_plan

REPO = ROOT = Path(__file__).resolve().parent.parent
OUR_MODULES = ("pipelines", "transforms")
#: Things that belong to one process and must be created in setup(), never pickled.
PROCESS_BOUND = (neo4j.Driver, neo4j.Session, concurrent.futures.Executor, socket.socket,
                 threading.Thread, type(threading.Lock()), type(threading.RLock()))
#: A connection no worker could reach: opening a driver never connects until first use.
CONNECTION = Neo4jConnection(uri="bolt://127.0.0.1:1", user="neo4j", password="not-a-secret",
                             database="neo4j")


def scale_up_pipeline() -> beam.Pipeline:
    """The scale-up graph as ``pipelines.scale_up.run`` builds it, for a made-up plan."""
    plan = made_up_plan(templates=40, base_copies=2, parts=3,
                        types=("Microsoft.Compute/virtualMachines",))
    settings = ReplicationSettings("op-packaging", "2026-01-01T00:00:00Z", plan.base_copies)
    pipeline = beam.Pipeline(options=PipelineOptions([f"--runner={LOCAL_RUNNER}"]))
    build_pipeline(pipeline, CONNECTION, plan, settings, max_concurrent_writes=4)
    return pipeline


def do_fns(pipeline: beam.Pipeline) -> dict:
    """Full label → DoFn of every ParDo in the graph (Beam's own included)."""
    found = {}

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.ParDo):
                found[node.full_label] = node.transform.fn

    pipeline.visit(Visitor())
    return found


def ours(fn) -> bool:
    return type(fn).__module__.split(".")[0] in OUR_MODULES


def process_bound_attributes(value, path="fn", seen=None):
    """Paths of attributes (recursively, through objects, lists, dicts) that hold a
    process-bound resource."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, (str, bytes, int, float, bool, type(None))):
        return []
    seen.add(id(value))
    if isinstance(value, PROCESS_BOUND):
        return [f"{path}: {type(value).__name__}"]
    children = []
    if isinstance(value, dict):
        children = [(f"{path}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    elif hasattr(value, "__dict__") and type(value).__module__.split(".")[0] in OUR_MODULES:
        children = [(f"{path}.{k}", v) for k, v in vars(value).items()]
    problems = []
    for child_path, child in children:
        problems += process_bound_attributes(child, child_path, seen)
    return problems


@pytest.fixture(scope="module")
def pipeline():
    return scale_up_pipeline()


def test_the_graph_has_our_do_fns(pipeline):
    names = {type(fn).__name__ for fn in do_fns(pipeline).values() if ours(fn)}
    # Reading, replicating and writing all run in DoFns of ours.
    assert {"_ReadPartFn", "_ReplicatePartsFn", "_WriteFn"} <= names, names
    assert any("Replicate" in name for name in names), names


def test_every_do_fn_round_trips_through_beams_pickler(pipeline):
    for label, fn in do_fns(pipeline).items():
        restored = pickler.loads(pickler.dumps(fn))
        # Beam's own DoFns may be classes local to a function, which its pickler
        # restores as a class of the same name: compare names for those.
        assert type(restored).__qualname__.rsplit(".", 1)[-1] == type(fn).__qualname__.rsplit(
            ".", 1)[-1], label
        if ours(fn):
            assert type(restored) is type(fn), label
            assert vars(restored).keys() == vars(fn).keys(), label


def test_no_do_fn_carries_a_client_thread_or_lock_before_setup(pipeline):
    problems = [problem for label, fn in do_fns(pipeline).items() if ours(fn)
                for problem in process_bound_attributes(fn, label)]
    assert problems == []


_WORKER = r"""
import json, sys
from apache_beam.internal import pickler
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2

proto = beam_runner_api_pb2.Pipeline.FromString(open(sys.argv[1], "rb").read())
checked = []
for transform in proto.components.transforms.values():
    if transform.spec.urn != common_urns.primitives.PAR_DO.urn:
        continue
    payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
    if payload.do_fn.urn != python_urns.PICKLED_DOFN_INFO:
        continue  # a DoFn the SDK names by urn (e.g. key-with-None), nothing pickled
    fn = pickler.loads(payload.do_fn.payload)[0]
    module = type(fn).__module__
    if module.split(".")[0] in ("pipelines", "transforms"):
        fn.setup()  # opens its driver/pool here, in this process
        fn.teardown()
    checked.append([transform.unique_name, module + "." + type(fn).__name__])
print(json.dumps(checked))
"""


def test_do_fns_load_and_set_up_in_a_fresh_process(pipeline, tmp_path):
    """What a worker does: read the portable pipeline proto (as the runner gets it), unpickle
    every ParDo's DoFn in a process that never ran the launching code, and call
    ``setup()``/``teardown()`` on ours. A DoFn that relied on a global of the launching
    process (``__main__``, a module-level client) fails here."""
    proto = tmp_path / "pipeline.pb"
    proto.write_bytes(pipeline.to_runner_api().SerializeToString())
    script = tmp_path / "worker.py"
    script.write_text(_WORKER, encoding="utf-8")
    result = subprocess.run([sys.executable, str(script), str(proto)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    checked = json.loads(result.stdout.strip().splitlines()[-1])
    classes = {name for _, name in checked}
    expected = {f"{type(fn).__module__}.{type(fn).__name__}"
                for fn in do_fns(pipeline).values() if ours(fn)}
    assert expected and expected <= classes


def _source_copy(destination: Path) -> Path:
    """The repository's files as a clone has them (what git tracks or would track: no
    venv, caches, build output or anything else .gitignore names)."""
    source = destination / "src"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, timeout=60)
    if listed.returncode != 0:  # not a git checkout: copy the tree minus the usual clutter
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", ".neo4j", "build", "dist", "*.egg-info", "__pycache__",
            ".pytest_cache", "benchmark-results"))
        return source
    for name in filter(None, listed.stdout.decode().split("\0")):
        origin = REPO / name
        if origin.is_file():  # listed but deleted in the work tree: skip
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    return source


def test_wheel_holds_only_pipelines_and_transforms(tmp_path):
    source = _source_copy(tmp_path)
    out = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
         ".", "-w", str(out)], cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == set(OUR_MODULES)
    for package in OUR_MODULES:  # every module of the tree is in it
        expected = {p.relative_to(REPO).as_posix() for p in (REPO / package).rglob("*.py")
                    if "__pycache__" not in p.parts}
        assert expected <= set(names), expected - set(names)


def test_sdist_for_setup_file_builds_and_holds_both_packages(tmp_path):
    """``--setup_file ./setup.py`` makes Beam build an sdist (``python setup.py sdist`` when
    ``build`` is not installed) that every worker pip-installs."""
    source = _source_copy(tmp_path)
    out = tmp_path / "sdist"
    result = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(out)],
                            cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {"/".join(name.split("/")[1:]) for name in archive.getnames()}
    assert {"setup.py", "pipelines/__init__.py", "transforms/__init__.py",
            "pipelines/scale_up.py", "transforms/write.py"} <= names


def _pickled_payloads(pipeline: beam.Pipeline) -> list:
    """The raw pickle bytes of every DoFn in the pipeline's portable form (what a runner
    receives): Beam stores them compressed (bz2 in 2.62, zlib in other versions) and
    base64-encoded."""
    import base64
    import bz2
    import zlib

    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    proto = pipeline.to_runner_api()
    payloads = []
    for transform in proto.components.transforms.values():
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            pardo = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
            packed = base64.b64decode(pardo.do_fn.payload)
            if packed:
                payloads.append(bz2.decompress(packed) if packed.startswith(b"BZh")
                                else zlib.decompress(packed))
    return payloads


def test_the_serialized_pipeline_does_not_contain_the_password():
    payloads = _pickled_payloads(scale_up_pipeline())
    # The search sees inside the payloads: the URI that does travel is found there.
    assert any(CONNECTION.uri.encode() in payload for payload in payloads)
    assert not any(CONNECTION.password.encode() in payload for payload in payloads)
    assert CONNECTION.password.encode() not in scale_up_pipeline().to_runner_api().SerializeToString()


def test_an_unpickled_connection_takes_the_password_of_its_own_process(tmp_path):
    """A worker in another process gets the settings that travelled and its own password."""
    travelled = tmp_path / "connection.pickle"
    travelled.write_bytes(pickler.dumps(CONNECTION))
    worker = ("import sys; from apache_beam.internal import pickler; "
              "c = pickler.loads(open(sys.argv[1], 'rb').read()); "
              "print(repr((c.uri, c.user, c.database, c.password)))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    for password in ("the-workers-own", None):
        if password is not None:
            env["NEO4J_PASSWORD"] = password
        else:
            env.pop("NEO4J_PASSWORD")
        out = subprocess.run([sys.executable, "-c", worker, str(travelled)], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == repr((CONNECTION.uri, CONNECTION.user, CONNECTION.database, password))


def test_a_connection_unpickled_in_its_own_process_keeps_its_password(monkeypatch):
    """The local runner pickles and unpickles in one process: a connection built in code
    (not from the environment) must keep its password there."""
    monkeypatch.delenv("NEO4J_PASSWORD_FILE", raising=False)
    monkeypatch.setenv("NEO4J_PASSWORD", "the-environments")
    assert pickler.loads(pickler.dumps(CONNECTION)).password == CONNECTION.password
    assert pickler.loads(pickler.dumps(dataclasses.replace(CONNECTION, password=None))).password \
        == "the-environments"
