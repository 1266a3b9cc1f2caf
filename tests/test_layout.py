"""keras_se.export.layout: versions, temporaries, models.config and the publishing rename."""

from __future__ import annotations

import os

import pytest

from keras_se.export import layout
from keras_se_core.errors import UsageError


def test_versions_are_the_numbered_directories(tmp_path):
    assert layout.existing_versions(tmp_path / "missing") == []
    assert layout.next_version(tmp_path / "missing") == 1
    for entry in ("2", "10", "notes", ".tmp-export-11-1-00"):
        (tmp_path / entry).mkdir()
    assert layout.existing_versions(tmp_path) == [2, 10]  # numerically, not as text
    assert layout.next_version(tmp_path) == 11


def test_stale_temporaries_of_dead_processes_only_are_removed(tmp_path):
    dead = f"{layout.TMP_PREFIX}1-999999999-00ff00ff"  # no such process id
    alive = f"{layout.TMP_PREFIX}2-{os.getpid()}-00ff00ff"
    other = f"{layout.TMP_PREFIX}not-a-temporary"
    for entry in (dead, alive, other):
        (tmp_path / entry).mkdir()
    assert layout.remove_stale_temporaries(tmp_path) == [str(tmp_path / dead)]
    assert sorted(os.listdir(tmp_path)) == sorted([alive, other])
    fresh = layout.temporary_path(str(tmp_path), 3)
    assert os.path.basename(fresh).startswith(f"{layout.TMP_PREFIX}3-{os.getpid()}-")
    assert layout._TMP_RE.match(os.path.basename(fresh))


def test_model_dir_refuses_a_base_that_is_a_file(tmp_path):
    assert layout.prepare_model_dir(str(tmp_path / "base"), "net") == str(tmp_path / "base" / "net")
    assert os.path.isdir(tmp_path / "base" / "net")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="`base` exists and is not a directory"):
        layout.prepare_model_dir(str(tmp_path / "file"), "net")


def test_versions_are_never_overwritten(tmp_path):
    model_dir = str(tmp_path)
    (tmp_path / "1").mkdir()
    with pytest.raises(layout.VersionExistsError, match="Version 1 of 'net' already exists"):
        layout.version_path(model_dir, "net", 1)
    assert layout.version_path(model_dir, "net", 2) == str(tmp_path / "2")
    tmp = tmp_path / f"{layout.TMP_PREFIX}1-1-ab"
    tmp.mkdir()
    with pytest.raises(FileExistsError, match="created by another export meanwhile"):
        layout.publish(str(tmp), str(tmp_path / "1"), "net", 1)
    assert tmp.is_dir()  # the caller removes it
    layout.publish(str(tmp), str(tmp_path / "2"), "net", 2)
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]


def test_models_config_keeps_other_models_and_refuses_unparseable(tmp_path):
    path = str(tmp_path / layout.MODELS_CONFIG)
    assert len(layout.read_models_config(path).model_config_list.config) == 0
    with open(path, "w") as f:
        f.write('model_config_list { config { name: "other" base_path: "/srv/other" } }\n')
    layout.write_models_config(path, "net", "/srv/net")
    layout.write_models_config(path, "net", "/srv/net2")  # updated, not added twice
    entries = layout.read_models_config(path).model_config_list.config
    assert [(e.name, e.base_path) for e in entries] == [
        ("other", "/srv/other"),
        ("net", "/srv/net2"),
    ]
    assert entries[1].model_platform == "tensorflow"
    with open(path, "w") as f:
        f.write("model_config_list { not protobuf text")
    with pytest.raises(UsageError, match="cannot be read or parsed, not overwriting it"):
        layout.write_models_config(path, "net", "/srv/net")
