"""The directory store: data_dir by default, or a shared directory; nothing to move."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import MARKER, ObjectExists, Store, StoreError, StoreSettings, open_store
from store.store import marker_files


def test_no_url_is_data_dir_itself(tmp_path: Path) -> None:
    store = open_store(StoreSettings(), tmp_path)
    assert type(store) is Store and store.root == tmp_path and not store.remote
    assert store.pull("segments").fetched == 0
    assert store.describe() == f"directory {tmp_path}"


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_a_directory_url_is_the_root(tmp_path: Path, scheme: str) -> None:
    store = open_store(StoreSettings(url=f"{scheme}{tmp_path / 'shared'}"), tmp_path / "data")
    assert store.root == tmp_path / "shared"


def test_push_is_a_no_op_for_files_under_root_and_refuses_others(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    (tmp_path / "root").mkdir()
    inside = tmp_path / "root" / "f"
    inside.write_text("x")
    assert store.push(inside, exclusive=True) is False
    assert store.relative(inside) == "f"
    with pytest.raises(StoreError, match="is not under the store's root"):
        store.push(tmp_path / "elsewhere")


def test_push_tree_marks_a_folder_complete_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    folder = tmp_path / "students" / "r" / "3"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter.bin").write_bytes(b"a" * 10)
    (folder / "sub" / "tok.json").write_bytes(b"{}")
    (folder / ".half.tmp").write_bytes(b"ignored")
    assert not store.is_complete(folder)
    report = store.push_tree(folder, exclusive=True)
    assert store.is_complete(folder) and report.bytes == 12
    listed = marker_files((folder / MARKER).read_bytes())
    assert listed == {"adapter.bin": 10, "sub/tok.json": 2}  # temporary files left out
    with pytest.raises(ObjectExists, match="published already"):
        store.push_tree(folder, exclusive=True)
    store.push_tree(folder)  # not exclusive: the marker is rewritten
    assert list(folder.glob(f".{MARKER}*")) == []
