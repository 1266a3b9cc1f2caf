"""Tests for keras_se.state_dicts: reading and fetching reference state dicts (file errors are
one-line usage errors, download failures connection errors; bugs keep their tracebacks)."""

from __future__ import annotations

import keras
import pytest

from keras_se import state_dicts


def test_layouts_are_detected_from_the_keys():
    assert state_dicts.detect_layout(["layer0.conv1.weight", "last_linear.weight"]) == "legacy"
    assert state_dicts.detect_layout(["conv1.weight", "layer1.0.conv1.weight", "fc.weight"]) == "timm"
    assert state_dicts.layout_architecture("legacy", groups=32)["stride_in_1x1"] is False


def test_unreadable_files_are_usage_errors_and_bugs_keep_their_traceback(tmp_path, monkeypatch):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"Cannot read the weights file .*junk"):
        state_dicts.read_state_dict(str(junk))

    def bug(path):
        raise KeyError("a bug in the reader")

    monkeypatch.setattr("safetensors.numpy.load_file", bug)
    with pytest.raises(KeyError, match="a bug in the reader"):
        state_dicts.read_state_dict(str(junk))


def test_download_failures_are_connection_errors_and_bugs_propagate(monkeypatch):
    hub_errors = pytest.importorskip("huggingface_hub.errors")
    import huggingface_hub

    def offline(**kwargs):  # from huggingface_hub 1.0 its HTTP library's errors are no OSErrors
        raise getattr(hub_errors, "HTTPError", OSError)("no route to host")

    def get_file(*args, **kwargs):  # what keras.utils.get_file makes of an URLError
        raise Exception("URL fetch failure on https://example.invalid/w.pth: None -- no route")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setattr(state_dicts, "_import_torch", lambda what: None)
    with pytest.raises(ConnectionError, match="no route to host.*URL fetch failure"):
        state_dicts.download("timm/x", url="https://example.invalid/w.pth")

    def bug(**kwargs):
        raise AttributeError("a bug, not a download failure")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", bug)
    with pytest.raises(AttributeError, match="a bug"):
        state_dicts.download("timm/x", url="https://example.invalid/w.pth")
