"""Local infrastructure for development, tests and demos: a Neo4j server and a Flink
cluster assembled from Maven Central and PyPI artifacts, and the cache they share.

Only launchers import this package (``run_local``, the tests, the ``local_neo4j`` and
``flink`` commands); the pipeline's workers never do, so nothing here has to be
installed where the DoFns run.
"""
