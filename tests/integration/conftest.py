"""Fixtures every integration room may share beyond the broker and Redis of tests/conftest.py:
a schema registry (Apicurio Registry, in memory) on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from worker.infra.schema_registry import SchemaRegistry
from worker.tools.stack import free_port, start_schema_registry


@dataclass(frozen=True)
class RegistryServer:
    url: str  # its Confluent-compatible API
    client: SchemaRegistry


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Started once per test process (about 5 s); its schemas live as long as it does, so a
    test names its own subjects (topics are per test already)."""
    process, url = start_schema_registry(free_port(), tmp_path_factory.mktemp("registry"))
    yield RegistryServer(url, SchemaRegistry(url))
    process.terminate()
    process.wait(30)
