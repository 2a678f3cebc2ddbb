"""The shared store: segments, feedback, datasets and students, for every replica (see
`store.store`)."""

from store.settings import StoreSettings
from store.store import (
    MARKER,
    ObjectExists,
    PullReport,
    PushReport,
    Store,
    StoreError,
    StoreUnavailable,
    open_store,
)

__all__ = [
    "MARKER",
    "ObjectExists",
    "PullReport",
    "PushReport",
    "Store",
    "StoreError",
    "StoreSettings",
    "StoreUnavailable",
    "open_store",
]
