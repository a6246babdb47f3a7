"""The rank side of the dmfr wire (docs/protocol.md): framing, signing, validation, `RankLink`.

A message is a ZeroMQ multipart message `[<DMFR|MSG>, signature, header, body, *buffers]`, the
signature being the hex HMAC-SHA256 of frames 2.. under the run's key (Jupyter's messaging
scheme). `decode` checks a received message in a fixed order and raises `Rejected` with the
protocol's reason (`malformed`, `bad_signature`, `oversized`, `bad_version`, `unknown_type`,
`wrong_run`, `invalid_body`); the order is:

    oversized → malformed framing (frame count, delimiter) → bad_signature → malformed header
    → bad_version → unknown_type → wrong_run → malformed body/buffers → invalid_body

(the same order as ts/wire/frame.ts).

`RankLink` owns the rank's DEALER (control) and PUSH (events) sockets in one background thread,
because pyzmq sockets must not be shared between threads; the training thread talks to it only
through queues.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import zmq

log = logging.getLogger("dmfr.wire")

PROTOCOL_VERSION = "1.0"
DELIMITER = b"<DMFR|MSG>"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

DTYPES = {name: np.dtype(name).newbyteorder("<") for name in
          ("uint8", "int8", "int16", "int32", "int64", "float32", "float64")}

# Which types travel on which socket, in which direction (docs/protocol.md "Sockets").
RANK_CONTROL_TYPES = frozenset({"hello", "ready", "credit"})  # rank → controller, DEALER → ROUTER
RANK_EVENT_TYPES = frozenset({"metrics", "heartbeat", "checkpoint-saved", "error", "bye"})  # PUSH → PULL
CONTROLLER_TYPES = frozenset({"config", "plan", "stop", "heartbeat"})  # controller → rank
ALL_TYPES = RANK_CONTROL_TYPES | RANK_EVENT_TYPES | CONTROLLER_TYPES

REASONS = ("malformed", "bad_signature", "oversized", "bad_version", "unknown_type", "wrong_run", "invalid_body")

# Body schemas: field → (kind, required, nullable). Extra fields are allowed (forward compatible
# within a major version).
_R, _O = True, False
BODY_SCHEMAS: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "hello": {"rank": ("int", _R, False), "local_rank": ("int", _R, False), "world_size": ("int", _R, False),
              "host": ("str", _R, False), "pid": ("int", _R, False), "device": ("str", _R, False),
              "torch_version": ("str", _R, False), "python_version": ("str", _R, False)},
    "config": {"config": ("object", _R, False), "resume": ("object", _R, True)},
    "ready": {"rank": ("int", _R, False), "num_samples": ("int", _R, False), "num_classes": ("int", _R, False),
              "domains": ("array", _R, False), "start_step": ("int", _R, False)},
    "credit": {"chunks": ("int", _R, False)},
    "plan": {"first_step": ("int", _R, False), "num_steps": ("int", _R, False), "shard_size": ("int", _R, False),
             "last": ("bool", _R, False), "meta_test": ("array", _R, True)},
    "metrics": {"step": ("int", _R, False), "loss": ("number", _R, True), "lr": ("number", _R, False),
                "samples_per_s": ("number", _R, False), "plan_wait_s": ("number", _R, False),
                "step_time_s": ("number", _R, False), "terms": ("object", _R, False)},
    "heartbeat": {"step": ("int", _O, False)},
    "checkpoint-saved": {"step": ("int", _R, False), "path": ("str", _R, False), "bytes": ("int", _R, False)},
    "stop": {"reason": ("str", _R, False), "final_step": ("int", _R, False), "checkpoint": ("bool", _O, False)},
    "error": {"message": ("str", _R, False), "type": ("str", _R, False), "traceback": ("str", _R, False),
              "step": ("int", _R, True), "input_error": ("bool", _O, False)},
    "bye": {"reason": ("str", _R, False), "last_step": ("int", _R, False), "train_time_s": ("number", _O, False)},
}
BYE_REASONS = ("completed", "stopped", "error", "controller_lost")

_HEADER_FIELDS = {"version": "str", "msg_id": "str", "msg_type": "str", "run_id": "str", "session": "str",
                  "date": "str"}


class Rejected(Exception):
    """A received message that the protocol rejects; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Message:
    header: dict
    body: dict
    buffers: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.header["msg_type"]


def _is_kind(value, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    raise AssertionError(kind)


def parse_key(hex_key: str) -> bytes:
    """`DMFR_KEY`: 64 hex characters → the 32-byte HMAC key."""
    try:
        key = bytes.fromhex(hex_key)
    except ValueError:
        raise ValueError("DMFR_KEY must be 64 hex characters") from None
    if len(key) != 32:
        raise ValueError(f"DMFR_KEY must be 64 hex characters (32 bytes), got {len(hex_key)} characters")
    return key


def sign(key: bytes, frames: list[bytes]) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        mac.update(frame)
    return mac.hexdigest().encode("ascii")


def make_header(msg_type: str, run_id: str, rank: int | None, session: str) -> dict:
    now = _dt.datetime.now(_dt.timezone.utc)
    return {"version": PROTOCOL_VERSION, "msg_id": uuid.uuid4().hex, "msg_type": msg_type, "run_id": run_id,
            "rank": rank, "session": session,
            "date": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"}


def encode(key: bytes, header: dict, body: dict, buffers: dict[str, np.ndarray] | None = None) -> list[bytes]:
    """Frames of one message; `buffers` (name → array) are described in the body's `buffers` field."""
    body = dict(body)
    frames_extra: list[bytes] = []
    if buffers:
        descriptions = []
        for name, array in buffers.items():
            array = np.asarray(array)
            dtype_name = array.dtype.name
            if dtype_name not in DTYPES:
                raise ValueError(f"buffer {name!r}: dtype {dtype_name} is not in the protocol's list {sorted(DTYPES)}")
            array = np.ascontiguousarray(array, dtype=DTYPES[dtype_name])
            descriptions.append({"name": name, "dtype": dtype_name, "shape": list(array.shape)})
            frames_extra.append(array.tobytes())
        body["buffers"] = descriptions
    payload = [json.dumps(header, allow_nan=False).encode("utf-8"),
               json.dumps(body, allow_nan=False).encode("utf-8"), *frames_extra]
    return [DELIMITER, sign(key, payload), *payload]


def _decode_buffers(body: dict, frames: list[bytes]) -> dict[str, np.ndarray]:
    descriptions = body.get("buffers", [])
    if not isinstance(descriptions, list):
        raise Rejected("malformed", "body.buffers is not a list")
    if len(descriptions) != len(frames):
        raise Rejected("malformed", f"body.buffers describes {len(descriptions)} buffers, message has {len(frames)}")
    out: dict[str, np.ndarray] = {}
    for i, (desc, frame) in enumerate(zip(descriptions, frames)):
        where = f"body.buffers[{i}]"
        if not isinstance(desc, dict) or not isinstance(desc.get("name"), str) or desc.get("dtype") not in DTYPES:
            raise Rejected("malformed", f"{where}: needs a name and a dtype in {sorted(DTYPES)}")
        shape = desc.get("shape")
        if not isinstance(shape, list) or not all(_is_kind(n, "int") and n >= 0 for n in shape):
            raise Rejected("malformed", f"{where}: shape must be a list of non-negative integers")
        dtype = DTYPES[desc["dtype"]]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if len(frame) != expected:
            raise Rejected("malformed", f"{where} ({desc['name']}): {len(frame)} bytes, shape {shape} × "
                                        f"{dtype.itemsize} needs {expected}")
        if desc["name"] in out:
            raise Rejected("malformed", f"{where}: duplicate buffer name {desc['name']!r}")
        out[desc["name"]] = np.frombuffer(frame, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return out


def _check_body(msg_type: str, body: dict, buffers: dict[str, np.ndarray]) -> None:
    for name, (kind, required, nullable) in BODY_SCHEMAS[msg_type].items():
        if name not in body:
            if required:
                raise Rejected("invalid_body", f"{msg_type}: missing field {name!r}")
            continue
        value = body[name]
        if value is None and nullable:
            continue
        if not _is_kind(value, kind):
            raise Rejected("invalid_body", f"{msg_type}.{name}: expected {kind}, got {type(value).__name__}")
    if msg_type == "plan":
        shape = [body["num_steps"], body["shard_size"]]
        if body["num_steps"] < 1 or body["shard_size"] < 1 or body["first_step"] < 0:
            raise Rejected("invalid_body", "plan: first_step must be ≥ 0, num_steps and shard_size ≥ 1")
        for name, dtype, required in (("indices", "int32", True), ("domains", "int16", True), ("pair", "int32", False)):
            if name not in buffers:
                if required:
                    raise Rejected("invalid_body", f"plan: missing buffer {name!r}")
                continue
            if buffers[name].dtype.name != dtype or list(buffers[name].shape) != shape:
                raise Rejected("invalid_body", f"plan: buffer {name!r} must be {dtype} {shape}, got "
                                               f"{buffers[name].dtype.name} {list(buffers[name].shape)}")
        meta_test = body.get("meta_test")
        if meta_test is not None and (len(meta_test) != body["num_steps"] or not all(_is_kind(m, "int") for m in meta_test)):
            raise Rejected("invalid_body", "plan: meta_test must hold one integer per step")
    elif msg_type == "ready" and buffers:
        n = body["num_samples"]
        for name, dtype in (("labels", "int32"), ("domains", "int16"), ("pair", "int32")):
            if name not in buffers or buffers[name].dtype.name != dtype or list(buffers[name].shape) != [n]:
                raise Rejected("invalid_body", f"ready: buffer {name!r} must be {dtype} [{n}]")
    elif msg_type == "credit" and body["chunks"] < 1:
        raise Rejected("invalid_body", "credit: chunks must be ≥ 1")
    elif msg_type == "bye" and body["reason"] not in BYE_REASONS:
        raise Rejected("invalid_body", f"bye: reason must be one of {BYE_REASONS}")


def _json_object(frame: bytes, what: str) -> dict:
    try:
        value = json.loads(bytes(frame).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected("malformed", f"{what} is not UTF-8 JSON: {e}") from None
    if not isinstance(value, dict):
        raise Rejected("malformed", f"{what} is not a JSON object")
    return value


def decode(key: bytes, frames: list[bytes], *, run_id: str, allowed: frozenset[str] | set[str],
           identity: bytes | None = None, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Check and parse one received message (without a ROUTER's identity frame).

    `allowed`: the message types this socket accepts in this direction. `identity`: the ROUTER
    routing identity the message came with, which must agree with the header (controller side).
    """
    total = sum(len(f) for f in frames)
    if total > max_bytes:
        raise Rejected("oversized", f"{total} bytes > max_message_bytes {max_bytes}")
    if len(frames) < 4:
        raise Rejected("malformed", f"{len(frames)} frames, need at least 4")
    if frames[0] != DELIMITER:
        raise Rejected("malformed", "frame 0 is not the <DMFR|MSG> delimiter")
    if not hmac.compare_digest(bytes(frames[1]), sign(key, frames[2:])):
        raise Rejected("bad_signature", "HMAC-SHA256 does not match" if frames[1] else "no signature")
    header = _json_object(frames[2], "header")
    for name, kind in _HEADER_FIELDS.items():
        if not _is_kind(header.get(name), kind):
            raise Rejected("malformed", f"header.{name} missing or not a {kind}")
    if "rank" not in header or not (header["rank"] is None or _is_kind(header["rank"], "int")):
        raise Rejected("malformed", "header.rank missing or not an integer/null")
    major = header["version"].split(".", 1)[0]
    if major != PROTOCOL_VERSION.split(".", 1)[0]:
        raise Rejected("bad_version", f"version {header['version']!r}, this side speaks {PROTOCOL_VERSION}")
    msg_type = header["msg_type"]
    if msg_type not in ALL_TYPES or msg_type not in allowed:
        raise Rejected("unknown_type", f"msg_type {msg_type!r} is not accepted here")
    if header["run_id"] != run_id:
        raise Rejected("wrong_run", f"run_id {header['run_id']!r} is not this run")
    if identity is not None:
        expected = f"{header['run_id']}/{header['rank']}/{header['session']}".encode("utf-8")
        if bytes(identity) != expected:
            raise Rejected("wrong_run", f"header {expected!r} disagrees with routing identity {bytes(identity)!r}")
    body = _json_object(frames[3], "body")
    buffers = _decode_buffers(body, [bytes(f) for f in frames[4:]])
    _check_body(msg_type, body, buffers)
    return Message(header, body, buffers)


# --------------------------------------------------------------------------------------------
# RankLink: the rank's two sockets in one background thread.


@dataclass(frozen=True)
class Endpoints:
    control: str
    events: str
    run_id: str
    key: bytes
    #: the controller's CURVE public key (Z85) when runtime.curve is on: the rank's sockets
    #: then encrypt everything with a key pair of their own (docs/protocol.md, "Encryption")
    curve_server_key: str | None = None

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Endpoints":
        env = os.environ if env is None else env
        missing = [v for v in ("DMFR_CONTROL_ENDPOINT", "DMFR_EVENTS_ENDPOINT", "DMFR_RUN_ID", "DMFR_KEY")
                   if not env.get(v)]
        if missing:
            raise ValueError(f"environment variables not set: {', '.join(missing)} (docs/protocol.md)")
        return cls(env["DMFR_CONTROL_ENDPOINT"], env["DMFR_EVENTS_ENDPOINT"], env["DMFR_RUN_ID"],
                   parse_key(env["DMFR_KEY"]), env.get("DMFR_CURVE_SERVER_KEY") or None)


class ControllerLost(Exception):
    """Nothing arrived from the controller for `runtime.controller_timeout_s`."""


class RankLink:
    """Connects one rank to its controller.

    The training thread calls `send` (never blocks) and `recv` (blocks with a timeout); the link
    thread receives `config`/`plan`/`stop`/`heartbeat`, sends rank heartbeats every `heartbeat_s`
    with `last_step`, and sets `lost` when the controller has been silent for
    `controller_timeout_s`. Once lost, if the training thread has not exited after
    `lost_exit_grace_s` (e.g. it is stuck in a collective), the link exits the process with code 3.
    Sockets use linger 0 and non-blocking sends (a send that would block is retried on the next
    turn); only `close` lingers, for at most its `timeout`, so that `bye` leaves before the
    process does.
    """

    POLL_MS = 5  # while sends are held back by a full or unconnected peer: retry soon
    IDLE_POLL_MS = 50  # otherwise: a wake-up pipe brings new sends at once, so idle wakeups stay rare

    def __init__(self, endpoints: Endpoints, rank: int, *, heartbeat_s: float = 1.0,
                 controller_timeout_s: float = 15.0, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 lost_exit_grace_s: float | None = 10.0, deliver_heartbeats: bool = False):
        self.endpoints = endpoints
        self.rank = rank
        self.session = secrets.token_hex(8)
        self.identity = f"{endpoints.run_id}/{rank}/{self.session}".encode("utf-8")
        self.heartbeat_s = heartbeat_s
        self.controller_timeout_s = controller_timeout_s
        self.max_message_bytes = max_message_bytes
        self.lost_exit_grace_s = lost_exit_grace_s
        self.deliver_heartbeats = deliver_heartbeats  # also hand controller heartbeats to `recv`
        self.last_step = -1  # written by the training thread, read by heartbeats
        self.rejected: Counter[str] = Counter()
        self.lost = threading.Event()
        self.stop_requested: dict | None = None  # the `stop` body once received
        self.failure: BaseException | None = None
        self._inbox: queue.Queue[Message] = queue.Queue()
        self._outbox: queue.Queue[tuple[str, dict, dict | None]] = queue.Queue()
        self._closing = threading.Event()
        # Set once the rank has sent its bye: it has nothing left to hear, and the controller stops
        # heartbeating a rank after its bye, so silence from then on is not a lost controller (a
        # slow shutdown, e.g. flushing TensorBoard on a loaded host, used to end in os._exit(3)).
        self._said_bye = threading.Event()
        self._closed = threading.Event()
        self._flush_s = 1.0
        # The training thread wakes the link thread's poll when it queues a message: a busy poll
        # loop would take the GIL from training hundreds of times a second.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name=f"dmfr-link-{rank}", daemon=True)

    def configure(self, heartbeat_s: float, controller_timeout_s: float) -> None:
        """Adopt the `runtime` settings once the config has arrived."""
        self.heartbeat_s = heartbeat_s
        self.controller_timeout_s = controller_timeout_s

    def start(self) -> "RankLink":
        self._thread.start()
        return self

    # ---- training-thread side -------------------------------------------------------------

    def send(self, msg_type: str, body: dict, buffers: dict[str, np.ndarray] | None = None) -> None:
        if msg_type not in RANK_CONTROL_TYPES | RANK_EVENT_TYPES:
            raise ValueError(f"a rank does not send {msg_type!r}")
        if msg_type == "bye":
            self._said_bye.set()
        self._outbox.put((msg_type, body, buffers))
        self._wake()

    def _wake(self) -> None:
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):  # full: a wake-up is already pending; closed: link gone
            pass

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next config/plan/stop (/heartbeat) message; None on timeout. Raises ControllerLost."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.lost.is_set() and self._inbox.empty():
                raise ControllerLost(f"nothing from the controller for {self.controller_timeout_s:g} s")
            if self.failure is not None:
                raise RuntimeError(f"wire link failed: {self.failure!r}")
            wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                return self._inbox.get(timeout=wait)
            except queue.Empty:
                continue

    def close(self, flush: bool = True, timeout: float = 3.0) -> None:
        """Send what is queued (bounded by `timeout`), then close the sockets."""
        if self._thread.is_alive():
            self._flush_s = timeout if flush and not self.lost.is_set() else 0.0
            self._closing.set()
            self._wake()
            self._thread.join(timeout + 2.0)
        if not self._thread.is_alive() and self._wake_w >= 0:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    # ---- link thread -------------------------------------------------------------------------

    def _run(self) -> None:
        ctx = zmq.Context()
        control = ctx.socket(zmq.DEALER)
        events = ctx.socket(zmq.PUSH)
        try:
            public, secret = zmq.curve_keypair() if self.endpoints.curve_server_key else (None, None)
            for sock in (control, events):
                sock.setsockopt(zmq.LINGER, 0)
                if public:
                    sock.curve_serverkey = self.endpoints.curve_server_key.encode("ascii")
                    sock.curve_publickey, sock.curve_secretkey = public, secret
            control.setsockopt(zmq.IDENTITY, self.identity)
            control.connect(self.endpoints.control)
            events.connect(self.endpoints.events)
            self._loop(control, events)
        except BaseException as e:  # noqa: BLE001 - reported to the training thread
            self.failure = e
            log.exception("wire link thread failed")
        finally:
            # A bounded linger lets `bye` leave before the sockets go; never longer than _flush_s.
            linger_ms = int(self._flush_s * 1000) if not self.lost.is_set() else 0
            control.close(linger=linger_ms)
            events.close(linger=linger_ms)
            ctx.term()
            self._closed.set()

    def _loop(self, control: zmq.Socket, events: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(control, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        pending: list[tuple[zmq.Socket, list[bytes], str]] = []
        last_heard = time.monotonic()
        next_heartbeat = 0.0
        lost_at: float | None = None
        close_deadline: float | None = None
        while True:
            # receive
            timeout_ms = self.POLL_MS if pending else min(self.IDLE_POLL_MS, max(1, int((next_heartbeat - time.monotonic()) * 1000) + 1))
            for sock, _ in poller.poll(timeout_ms):
                if sock == self._wake_r:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        msg = decode(self.endpoints.key, frames, run_id=self.endpoints.run_id,
                                     allowed=CONTROLLER_TYPES, max_bytes=self.max_message_bytes)
                    except Rejected as r:
                        self.rejected[r.reason] += 1
                        log.warning("rejected message from the controller (%s): %s", r.reason, r.detail)
                        continue
                    last_heard = time.monotonic()
                    if msg.type == "heartbeat" and not self.deliver_heartbeats:
                        continue
                    if msg.type == "stop":
                        self.stop_requested = msg.body
                    self._inbox.put(msg)
            now = time.monotonic()
            if not self.lost.is_set() and not self._said_bye.is_set() and now - last_heard > self.controller_timeout_s:
                log.error("nothing from the controller for %.1f s: assuming it is gone", now - last_heard)
                self.lost.set()
                lost_at = now
            if lost_at is not None and self.lost_exit_grace_s is not None and not self._closing.is_set() \
                    and now - lost_at > self.lost_exit_grace_s:
                log.error("training thread did not exit after the controller was lost; exiting with code 3")
                os._exit(3)
            # send: heartbeats, then whatever the training thread queued, never blocking
            if now >= next_heartbeat and not self._closing.is_set() \
                    and not any(t == "heartbeat" for *_, t in pending):  # no pile-up while unsent
                next_heartbeat = now + self.heartbeat_s
                self._outbox.put(("heartbeat", {"step": int(self.last_step)}, None))
            while True:
                try:
                    msg_type, body, buffers = self._outbox.get_nowait()
                except queue.Empty:
                    break
                header = make_header(msg_type, self.endpoints.run_id, self.rank, self.session)
                sock = control if msg_type in RANK_CONTROL_TYPES else events
                try:
                    frames = encode(self.endpoints.key, header, body, buffers)
                except (TypeError, ValueError) as e:  # e.g. NaN in a body: drop it, keep the link
                    log.error("cannot encode a %s message: %s", msg_type, e)
                    continue
                pending.append((sock, frames, msg_type))
            while pending:
                sock, frames, msg_type = pending[0]
                try:
                    sock.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:
                    break  # peer not there yet / queue full: retry on the next turn
                pending.pop(0)
            if self._closing.is_set():  # after one last attempt to send what is queued
                if close_deadline is None:
                    close_deadline = now + self._flush_s
                if (not pending and self._outbox.empty()) or time.monotonic() >= close_deadline:
                    return
