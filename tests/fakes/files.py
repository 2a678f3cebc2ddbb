"""`/v1/files` of the fake teacher: uploads (multipart), list, retrieve, delete.

The provider keeps every file of its account together: whoever holds the account's key sees
them all, which is what the proxy must not let one client key do to another's files.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.fakes.errors import ApiError
from tests.fakes.wire import Reply, Request

CREATED = 1_700_000_000
_FILENAME = re.compile(rb'filename="([^"]*)"')
_PURPOSE = re.compile(rb'name="purpose"\r\n\r\n([^\r]*)\r\n')


class FilesApi:
    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}

    def create(self, request: Request) -> Reply:
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            raise ApiError(400, "Uploads are multipart/form-data.")
        name, purpose = _FILENAME.search(request.raw), _PURPOSE.search(request.raw)
        file = {
            "id": f"file-{uuid.uuid4().hex[:24]}",
            "object": "file",
            "bytes": len(request.raw),
            "created_at": CREATED,
            "filename": name.group(1).decode() if name else "upload",
            "purpose": purpose.group(1).decode() if purpose else "user_data",
            "status": "processed",
        }
        self.stored[file["id"]] = file
        return Reply(body=file)

    def list(self) -> Reply:
        return Reply(body={"object": "list", "data": list(self.stored.values()), "has_more": False})

    def retrieve(self, file_id: str) -> Reply:
        return Reply(body=self._stored(file_id))

    def delete(self, file_id: str) -> Reply:
        self._stored(file_id)
        del self.stored[file_id]
        return Reply(body={"id": file_id, "object": "file", "deleted": True})

    def _stored(self, file_id: str) -> dict[str, Any]:
        if file_id not in self.stored:
            raise ApiError(404, f"No such File object: {file_id}")
        return self.stored[file_id]
