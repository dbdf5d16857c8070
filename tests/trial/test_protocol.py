"""The framed protocol: what the driver accepts from a jail, and what it refuses (ProtocolError)."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from ab.gpt.brute.fract.trial import protocol
from ab.gpt.brute.fract.trial.protocol import FrameReader, ProtocolError, check, encode, score


def roundtrip(raw: bytes, max_payload: int = 1 << 20):
    r, w = os.pipe()
    os.write(w, raw)
    os.close(w)
    try:
        return FrameReader(r, max_payload).read()
    finally:
        os.close(r)


def epoch_header(**over) -> dict:
    h = {"type": "epoch", "epoch": 1, "train_loss": 2.3, "train_accuracy": 0.1, "images": 64, "train_time_s": 0.5,
         "epoch_time_s": 0.6, "peak_memory_mb": 100.0, "gradient_norm": 1.0, "diverged": False}
    h.update(over)
    return h


def test_a_frame_round_trips_with_its_payloads():
    header, payloads = roundtrip(encode(epoch_header(), [b"abc", b""]))
    assert header["sizes"] == [3, 0] and payloads == [b"abc", b""]
    assert check(header, payloads)["epoch"] == 1


def test_clean_end_of_stream_is_none_and_a_cut_frame_is_an_error():
    assert roundtrip(b"") is None
    with pytest.raises(ProtocolError, match="ended inside a frame"):
        roundtrip(encode({"type": "result", "value": {}})[:-3])
    with pytest.raises(ProtocolError, match="ended inside a frame"):
        roundtrip(encode({"type": "epoch"}, [b"x" * 10])[:-1])


@pytest.mark.parametrize("raw, match", [
    (struct.pack(">I", 5) + b"nope!", "not JSON"),
    (struct.pack(">I", 2) + b"[]", "not an object with a type"),
    (struct.pack(">I", 4 << 20), "over the"),  # oversized header
    (struct.pack(">I", 40) + b'{"type": "x", "sizes": [-1]}'.ljust(40), "sizes"),
    (struct.pack(">I", 38) + b'{"type": "x", "sizes": [1.5]}'.ljust(38), "sizes"),
    (struct.pack(">I", 32) + b'{"type": "x", "sizes": "many"}'.ljust(32), "sizes"),
    (struct.pack(">I", 30) + b'{"type": "x", "v": NaN, "sizes": []}'[:30], "non-finite|JSON"),
])
def test_malformed_headers_are_refused(raw, match):
    with pytest.raises(ProtocolError, match=match):
        roundtrip(raw)


def test_nan_and_infinity_in_a_header_are_refused():
    text = json.dumps({"type": "epoch", "train_loss": float("nan"), "sizes": []}).encode()
    with pytest.raises(ProtocolError, match="non-finite"):
        roundtrip(struct.pack(">I", len(text)) + text)
    text = json.dumps({"type": "epoch", "train_loss": float("-inf"), "sizes": []}).encode()
    with pytest.raises(ProtocolError, match="non-finite"):
        roundtrip(struct.pack(">I", len(text)) + text)


def test_oversized_payloads_are_refused_before_they_are_read():
    with pytest.raises(ProtocolError, match="over the 100 byte limit"):
        roundtrip(struct.pack(">I", 35) + b'{"type": "epoch", "sizes": [101]}  ', max_payload=100)


@pytest.mark.parametrize("header, payloads, match", [
    ({"type": "accuracy", "value": 1.0, "sizes": []}, [], "unexpected message type"),
    ({**epoch_header(), "accuracy": 1.0, "sizes": [0, 0]}, [b"", b""], "unexpected keys"),
    ({**epoch_header(train_loss="low"), "sizes": [0, 0]}, [b"", b""], "wrong type"),
    ({**epoch_header(diverged=1), "sizes": [0, 0]}, [b"", b""], "wrong type"),
    ({**epoch_header(epoch=True), "sizes": [0, 0]}, [b"", b""], "wrong type"),
    ({**epoch_header(images=-5), "sizes": [0, 0]}, [b"", b""], "negative"),
    ({**epoch_header(), "sizes": [0]}, [b""], "carries 1 payloads"),
    ({"type": "error", "message": "x", "sizes": []}, [], "lacks oom"),
    ({"type": "result", "value": [1], "sizes": []}, [], "wrong type"),
])
def test_schema_violations_are_refused(header, payloads, match):
    with pytest.raises(ProtocolError, match=match):
        check(header, payloads)


def test_logits_must_be_float32_of_exactly_n_by_10():
    good = np.zeros((4, 10), dtype="<f4").tobytes()
    assert protocol.logits(good, 4).shape == (4, 10)
    for bad in (good[:-4], good + b"\0" * 4, np.zeros((4, 10), dtype="<f8").tobytes(),
                np.zeros((10, 4), dtype="<f4").tobytes()[:-40]):
        with pytest.raises(ProtocolError, match="expected float32"):
            protocol.logits(bad, 4)


def test_score_is_computed_from_the_logits_and_the_labels():
    z = np.array([[5, 0, 0] + [0] * 7, [0, 5, 0] + [0] * 7, [0, 0, 5] + [0] * 7, [5, 0, 0] + [0] * 7], dtype="<f4")
    labels = np.array([0, 1, 2, 3])
    acc, loss = score(z.tobytes(), labels)
    assert acc == 0.75
    zz = z.astype(np.float64)
    expect = np.mean(np.log(np.exp(zz).sum(1)) - zz[np.arange(4), labels])
    assert loss == pytest.approx(expect, rel=1e-12)
    z[1, 1] = np.nan  # a diverged model: no numbers, never a crash
    assert score(z.tobytes(), labels) == (None, None)


def test_state_must_be_well_formed_safetensors():
    import torch
    from safetensors.torch import save

    blob = save({"model/w": torch.zeros(3, 3)}, metadata={"format": "x"})
    protocol.check_safetensors(blob, 1 << 20)
    with pytest.raises(ProtocolError, match="over the"):
        protocol.check_safetensors(blob, 10)
    with pytest.raises(ProtocolError, match="too short"):
        protocol.check_safetensors(b"abc", 1 << 20)
    with pytest.raises(ProtocolError, match="bad header length"):
        protocol.check_safetensors(struct.pack("<Q", 10 ** 9) + b"{}", 1 << 20)
    with pytest.raises(ProtocolError, match="not JSON"):
        protocol.check_safetensors(struct.pack("<Q", 4) + b"{{{{", 1 << 20)
    head = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 999]}}).encode()
    with pytest.raises(ProtocolError, match="bad offsets"):
        protocol.check_safetensors(struct.pack("<Q", len(head)) + head + b"\0" * 12, 1 << 20)
    assert b"pickle" not in blob[:8 + struct.unpack("<Q", blob[:8])[0]].lower()
