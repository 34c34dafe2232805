"""A ``hub:`` data set that cannot be loaded fails at once with one rlbook error naming it and what to do offline."""

from __future__ import annotations

import time

import pytest
from rlbook.core.config import ParamError
from rlbook.data import hub


def test_unreachable_hub_fails_at_once_with_the_data_set_and_the_offline_way(monkeypatch):
    # no offline flags, and the hub does not answer: the load goes offline (the cache) and fails fast, not after
    # datasets' retries, with a ParamError instead of datasets' ConnectionError
    from huggingface_hub import constants

    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-rlbook-test-cache")
    start = time.monotonic()
    with pytest.raises(ParamError) as err:
        hub.load_records("hub:rlbook-test/not-a-data-set", {"subset": "main"}, "train")
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "'hub:rlbook-test/not-a-data-set'" in msg and "offline" in msg and "HF_DATASETS_OFFLINE=1" in msg
    assert "file:PATH.jsonl" in msg
    assert constants.HF_HUB_OFFLINE is False  # the offline switch was for that one load only


def test_any_loading_error_is_one_param_error(monkeypatch):
    import datasets

    def fail(*a, **kw):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ParamError, match=r"data set 'hub:openai/gsm8k' \(split 'test'\).*ConnectionError.*offline"):
        hub.load_records("hub:openai/gsm8k", {"subset": "main"}, "test")
