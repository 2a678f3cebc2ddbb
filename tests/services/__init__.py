"""Real services the tests start themselves on loopback (PostgreSQL, an S3-compatible store),
one module each, each in a temporary directory."""
