"""neo4j-tenant-scaler: an Apache Beam pipeline that scales an Azure-tenant graph in Neo4j."""

from setuptools import find_packages, setup

setup(
    name="neo4j-tenant-scaler",
    version="0.1.0",
    description="Scale an Azure-tenant graph in Neo4j with an Apache Beam pipeline",
    python_requires=">=3.10",  # neo4j 6.x driver needs 3.10+
    packages=find_packages(include=["pipelines", "pipelines.*", "transforms", "transforms.*"]),
    install_requires=[
        # Pinned to the version of the Flink job server that Maven Central serves
        # (beam-runners-flink-1.19:2.62.0): the SDK and the job server speak one version
        # of the portable protocol (README, "Running at scale").
        "apache-beam==2.62.0",
        # Pinned together: neo4j-rust-ext is a drop-in encoder for exactly this driver
        # version (~25x cheaper row encoding); a mismatch breaks or silently disables it.
        "neo4j==6.4.1",
        "neo4j-rust-ext==6.4.1.0",
        # Process checks (memory, leftover java processes); any recent version works.
        "psutil>=5.9",
    ],
    extras_require={
        # matplotlib is here too so CI can run the smoke benchmark, which draws its plot.
        "test": ["pytest>=8", "matplotlib"],
        "benchmark": ["matplotlib"],
    },
)
