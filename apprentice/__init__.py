"""Apprentice's shell: the CLI, the configuration, and the `serve` and job entry points.

The stages (`proxy`, `logbook`, `curation`, `retrain`, `canary`, `monitoring`) never import
this package; it composes them.
"""

from __future__ import annotations

__version__ = "0.1.0"
