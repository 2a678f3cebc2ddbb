"""Real services the tests start themselves (PostgreSQL), each in a temporary directory."""
