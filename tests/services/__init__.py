"""Real servers the tests start on loopback (an S3-compatible store, ...), one module each."""
