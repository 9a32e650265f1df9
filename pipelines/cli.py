"""What every command of this project shares on its command line: the connection."""

from __future__ import annotations

import argparse

from transforms.connection import Neo4jConnection


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--neo4j-uri``, ``--neo4j-user``, ``--neo4j-database``; never a password flag."""
    parser.add_argument("--neo4j-uri", dest="neo4j_uri", default=None,
                        help="Bolt URI (default: $NEO4J_URI or bolt://127.0.0.1:7687)")
    parser.add_argument("--neo4j-user", dest="neo4j_user", default=None,
                        help="user (default: $NEO4J_USER or neo4j); the password comes only "
                             "from $NEO4J_PASSWORD or the file $NEO4J_PASSWORD_FILE; without "
                             "one, no authentication is used")
    parser.add_argument("--neo4j-database", dest="neo4j_database", default=None,
                        help="database (default: $NEO4J_DATABASE or neo4j)")


def connection_from(args: argparse.Namespace) -> Neo4jConnection:
    """The connection named by the flags, completed from the environment."""
    return Neo4jConnection.from_environment(
        uri=args.neo4j_uri, user=args.neo4j_user, database=args.neo4j_database)
