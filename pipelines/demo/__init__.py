"""The demo: load a generated tenant (``load``) and scale it on a local Neo4j
(``run_local``, behind ``./run_local.sh``)."""
