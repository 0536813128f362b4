"""Real inference servers for the endpoint tests, started on loopback by ``tests/servers/conftest`` fixtures."""
