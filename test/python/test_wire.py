"""The rank side of the wire (python/dmfr/wire.py) against docs/protocol.md, over real ZeroMQ sockets.

The test plays the controller with a ROUTER and a PULL bound on 127.0.0.1, as ts/controller does.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import zmq

from dmfr import wire
from dmfr.wire import (CONTROLLER_TYPES, RANK_CONTROL_TYPES, RANK_EVENT_TYPES, ControllerLost, Endpoints,
                       RankLink, Rejected, decode, encode, make_header, sign)

KEY = bytes(range(32))
RUN = "r-test-1"
CTRL_SESSION = "c0ffee"


def header(msg_type, rank=None, session=CTRL_SESSION, run=RUN):
    return make_header(msg_type, run, rank, session)


def plan_body(first=0, steps=2, shard=4):
    body = {"first_step": first, "num_steps": steps, "shard_size": shard, "last": False, "meta_test": None}
    buffers = {"indices": np.arange(steps * shard, dtype=np.int32).reshape(steps, shard),
               "domains": np.ones((steps, shard), np.int16),
               "pair": np.full((steps, shard), -1, np.int32)}
    return body, buffers


# One valid body (and buffers) for every message type of docs/protocol.md.
def every_message():
    n = 6
    ready_buffers = {"labels": np.arange(n, dtype=np.int32) % 3, "domains": np.zeros(n, np.int16),
                     "pair": np.full(n, -1, np.int32)}
    return {
        "hello": ({"rank": 1, "local_rank": 1, "world_size": 2, "host": "h", "pid": 42, "device": "cpu",
                   "torch_version": "2.13.0", "python_version": "3.11.7"}, None),
        "config": ({"config": {"seed": 3, "train": {"steps": 5}}, "resume": None}, None),
        "ready": ({"rank": 0, "num_samples": n, "num_classes": 3,
                   "domains": [{"id": 0, "name": "real", "kind": "real"}], "start_step": 0}, ready_buffers),
        "credit": ({"chunks": 4}, None),
        "plan": plan_body(),
        "metrics": ({"step": 3, "loss": 4.5, "lr": 0.1, "samples_per_s": 10.0, "plan_wait_s": 0.0,
                     "step_time_s": 0.1, "terms": {"L_cls": 4.5}}, None),
        "heartbeat": ({"step": 3}, None),
        "checkpoint-saved": ({"step": 3, "path": "/x/step-00000004.pt", "bytes": 10}, None),
        "stop": ({"reason": "canceled", "final_step": 7}, None),
        "error": ({"message": "boom", "type": "RuntimeError", "traceback": "tb", "step": 3}, None),
        "bye": ({"reason": "completed", "last_step": 9}, None),
    }


def test_every_message_type_round_trips_with_buffers():
    for msg_type, (body, buffers) in every_message().items():
        frames = encode(KEY, header(msg_type, rank=0, session="s1"), body, buffers)
        msg = decode(KEY, frames, run_id=RUN, allowed={msg_type})
        assert msg.type == msg_type
        assert {k: v for k, v in msg.body.items() if k != "buffers"} == body
        for name, array in (buffers or {}).items():
            assert msg.buffers[name].dtype == array.dtype and np.array_equal(msg.buffers[name], array), (msg_type, name)


def test_signature_is_hmac_sha256_over_frames_after_it():
    import hashlib
    import hmac as _hmac

    frames = encode(KEY, header("credit", rank=0, session="s"), {"chunks": 1})
    assert frames[0] == b"<DMFR|MSG>"
    assert frames[1] == _hmac.new(KEY, b"".join(frames[2:]), hashlib.sha256).hexdigest().encode()


def resign(frames, key=KEY):
    return [frames[0], sign(key, frames[2:]), *frames[2:]]


def bad_messages():
    """(name, frames, expected reason) — every rejection of docs/protocol.md, sent to a rank."""
    body, buffers = plan_body()
    good = encode(KEY, header("plan"), body, buffers)
    tampered = list(good)
    tampered[1] = bytes([good[1][0] ^ 1]) + good[1][1:]
    import json as _json

    def with_header(**changes):
        h = _json.loads(good[2])
        h.update(changes)
        return resign([good[0], good[1], _json.dumps(h).encode(), *good[3:]])

    no_steps = {k: v for k, v in body.items() if k != "num_steps"}
    wrong_dtype = dict(buffers, indices=buffers["indices"].astype(np.int64))
    return [
        ("tampered signature", tampered, "bad_signature"),
        ("empty signature", [good[0], b"", *good[2:]], "bad_signature"),
        ("other key", encode(bytes(32), header("plan"), body, buffers), "bad_signature"),
        ("buffer frame cut short, not re-signed", [*good[:-1], good[-1][:-4]], "bad_signature"),
        ("buffer frame cut short, re-signed", resign([*good[:-1], good[-1][:-4]]), "malformed"),
        ("buffer frame missing, re-signed", resign(good[:-1]), "malformed"),
        ("three frames", good[:3], "malformed"),
        ("random bytes, one frame", [os.urandom(200)], "malformed"),
        ("random bytes, five frames", [os.urandom(16) for _ in range(5)], "malformed"),
        ("header not JSON", resign([good[0], good[1], b"\xff{not json", *good[3:]]), "malformed"),
        ("header without msg_id", with_header(msg_id=None), "malformed"),
        ("major version 2", with_header(version="2.0"), "bad_version"),
        ("unknown msg_type", with_header(msg_type="bogus"), "unknown_type"),
        ("rank-only msg_type", with_header(msg_type="hello"), "unknown_type"),
        ("another run", with_header(run_id="r-other"), "wrong_run"),
        ("plan without num_steps", encode(KEY, header("plan"), no_steps, buffers), "invalid_body"),
        ("plan with int64 indices", encode(KEY, header("plan"), body, wrong_dtype), "invalid_body"),
        ("plan without indices", encode(KEY, header("plan"), body, {"domains": buffers["domains"]}), "invalid_body"),
        ("stop without final_step", encode(KEY, header("stop"), {"reason": "x"}), "invalid_body"),
    ]


def test_decode_names_the_reason():
    for name, frames, reason in bad_messages():
        with pytest.raises(Rejected) as e:
            decode(KEY, frames, run_id=RUN, allowed=CONTROLLER_TYPES)
        assert e.value.reason == reason, name
    big = encode(KEY, header("plan"), *plan_body(steps=64, shard=64))
    with pytest.raises(Rejected) as e:
        decode(KEY, big, run_id=RUN, allowed=CONTROLLER_TYPES, max_bytes=4096)
    assert e.value.reason == "oversized"
    # a newer minor version is accepted
    h = header("heartbeat")
    h["version"] = "1.9"
    assert decode(KEY, encode(KEY, h, {}), run_id=RUN, allowed=CONTROLLER_TYPES).type == "heartbeat"


def test_controller_side_checks_routing_identity():
    frames = encode(KEY, header("credit", rank=1, session="abc"), {"chunks": 2})
    assert decode(KEY, frames, run_id=RUN, allowed=RANK_CONTROL_TYPES, identity=f"{RUN}/1/abc".encode()).body == {"chunks": 2}
    with pytest.raises(Rejected) as e:
        decode(KEY, frames, run_id=RUN, allowed=RANK_CONTROL_TYPES, identity=f"{RUN}/0/abc".encode())
    assert e.value.reason == "wrong_run"


class Controller:
    """A controller's two sockets, bound on random ports."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.pull = self.ctx.socket(zmq.PULL)
        for s in (self.router, self.pull):
            s.setsockopt(zmq.LINGER, 0)
        port_c = self.router.bind_to_random_port("tcp://127.0.0.1")
        port_e = self.pull.bind_to_random_port("tcp://127.0.0.1")
        self.endpoints = Endpoints(f"tcp://127.0.0.1:{port_c}", f"tcp://127.0.0.1:{port_e}", RUN, KEY)

    def recv_control(self, timeout=5.0):
        assert self.router.poll(int(timeout * 1000)), "nothing on the control socket"
        identity, *frames = self.router.recv_multipart()
        return identity, decode(KEY, frames, run_id=RUN, allowed=RANK_CONTROL_TYPES, identity=identity)

    def recv_event(self, timeout=5.0, skip_heartbeats=True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pull.poll(100):
                continue
            msg = decode(KEY, self.pull.recv_multipart(), run_id=RUN, allowed=RANK_EVENT_TYPES)
            if not (skip_heartbeats and msg.type == "heartbeat"):
                return msg
        raise AssertionError("no event")

    def send(self, identity, msg_type, body, buffers=None):
        self.router.send_multipart([identity, *encode(KEY, header(msg_type), body, buffers)])

    def close(self):
        self.router.close()
        self.pull.close()
        self.ctx.term()


@pytest.fixture
def controller():
    c = Controller()
    yield c
    c.close()


def start_link(controller, **kw):
    kw = {"heartbeat_s": 0.2, "controller_timeout_s": 10.0, "lost_exit_grace_s": None, **kw}
    return RankLink(controller.endpoints, rank=0, **kw).start()


def test_rank_and_controller_exchange_every_message_type(controller):
    link = start_link(controller)
    try:
        msgs = every_message()
        link.send("hello", msgs["hello"][0])
        identity, hello = controller.recv_control()
        assert identity == f"{RUN}/0/{link.session}".encode() and hello.type == "hello"
        assert hello.header["rank"] == 0 and hello.header["session"] == link.session
        for msg_type in ("config", "plan", "heartbeat", "stop"):
            controller.send(identity, msg_type, *msgs[msg_type])
        got = [link.recv(timeout=5) for _ in range(3)]  # heartbeats are consumed by the link itself
        assert [m.type for m in got] == ["config", "plan", "stop"]
        assert np.array_equal(got[1].buffers["indices"], msgs["plan"][1]["indices"])
        assert got[1].buffers["domains"].dtype == np.int16
        assert link.stop_requested == msgs["stop"][0]
        for msg_type in ("ready", "credit"):
            link.send(msg_type, *msgs[msg_type])
            _, m = controller.recv_control()
            assert m.type == msg_type
            for name, array in (msgs[msg_type][1] or {}).items():
                assert np.array_equal(m.buffers[name], array)
        for msg_type in ("metrics", "checkpoint-saved", "error", "bye"):
            link.send(msg_type, msgs[msg_type][0])
            m = controller.recv_event()
            assert m.type == msg_type and {k: v for k, v in m.body.items()} == msgs[msg_type][0]
        link.last_step = 41
        beat = controller.recv_event(skip_heartbeats=False)
        while beat.body["step"] != 41:
            beat = controller.recv_event(skip_heartbeats=False)
        assert beat.type == "heartbeat" and beat.header["rank"] == 0
        assert not link.rejected
    finally:
        link.close()


def test_rank_rejects_and_counts_bad_messages_and_stays_up(controller):
    link = start_link(controller, max_message_bytes=64 * 1024)
    try:
        link.send("hello", every_message()["hello"][0])
        identity, _ = controller.recv_control()
        cases = bad_messages()
        big_body, big_buffers = plan_body(steps=128, shard=128)  # 128·128·10 bytes > 64 KiB
        cases.append(("oversized", encode(KEY, header("plan"), big_body, big_buffers), "oversized"))
        expected: dict[str, int] = {}
        for _, frames, reason in cases:
            controller.router.send_multipart([identity, *frames])
            expected[reason] = expected.get(reason, 0) + 1
        deadline = time.monotonic() + 10
        while dict(link.rejected) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dict(link.rejected) == expected
        assert link.recv(timeout=0.2) is None  # nothing bad got through
        controller.send(identity, "plan", *plan_body(first=5))
        msg = link.recv(timeout=5)
        assert msg.type == "plan" and msg.body["first_step"] == 5
        assert link.failure is None and not link.lost.is_set()
    finally:
        link.close()


def test_a_rank_that_said_bye_takes_no_silence_for_a_lost_controller(controller):
    # The controller stops heartbeating a rank once it has its bye; the rank's shutdown after it
    # (TensorBoard flush, process group teardown) may take longer than controller_timeout_s.
    link = start_link(controller, controller_timeout_s=0.3)
    try:
        link.send("hello", every_message()["hello"][0])
        controller.recv_control()
        link.send("bye", {"reason": "completed", "last_step": 0})
        time.sleep(0.3 + 1.0)  # > controller_timeout_s of silence, and several link loop turns
        assert not link.lost.is_set()
    finally:
        link.close()


def test_rank_notices_a_silent_controller(controller):
    link = start_link(controller, controller_timeout_s=0.6)
    try:
        link.send("hello", every_message()["hello"][0])
        identity, _ = controller.recv_control()
        t0 = time.monotonic()
        for _ in range(6):  # controller heartbeats keep it alive
            controller.send(identity, "heartbeat", {})
            time.sleep(0.25)
        assert not link.lost.is_set()
        with pytest.raises(ControllerLost):
            while True:
                link.recv(timeout=0.1)
        assert time.monotonic() - t0 < 1.5 + 0.6 + 1.0
    finally:
        link.close()


def test_sends_never_block_without_a_controller():
    # Nothing listens on these ports: every send stays queued, close returns within its bound.
    ends = Endpoints("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", RUN, KEY)
    link = RankLink(ends, rank=3, heartbeat_s=0.05, controller_timeout_s=60, lost_exit_grace_s=None).start()
    t0 = time.monotonic()
    for i in range(200):
        link.send("metrics", {"step": i, "loss": 1.0, "lr": 0.1, "samples_per_s": 1.0, "plan_wait_s": 0.0,
                              "step_time_s": 0.1, "terms": {}})
    link.close(timeout=0.5)
    assert time.monotonic() - t0 < 4.0
    assert link._closed.is_set()


def test_key_and_environment_are_checked():
    with pytest.raises(ValueError, match="64 hex"):
        wire.parse_key("abcd")
    with pytest.raises(ValueError, match="DMFR_KEY"):
        Endpoints.from_env({"DMFR_CONTROL_ENDPOINT": "tcp://x:1", "DMFR_EVENTS_ENDPOINT": "tcp://x:2", "DMFR_RUN_ID": "r"})
    ends = Endpoints.from_env({"DMFR_CONTROL_ENDPOINT": "tcp://x:1", "DMFR_EVENTS_ENDPOINT": "tcp://x:2",
                               "DMFR_RUN_ID": "r", "DMFR_KEY": KEY.hex()})
    assert ends.key == KEY
    with pytest.raises(ValueError, match="does not send"):
        RankLink(ends, 0).send("plan", {})


def test_an_unencodable_message_is_dropped_and_the_link_keeps_going(controller):
    link = start_link(controller)
    try:
        link.send("metrics", {"step": 1, "loss": float("nan"), "lr": 0.1, "samples_per_s": 1.0,
                              "plan_wait_s": 0.0, "step_time_s": 0.1, "terms": {}})
        link.send("bye", {"reason": "completed", "last_step": 1})
        assert controller.recv_event().type == "bye"
        assert link.failure is None
    finally:
        link.close()
