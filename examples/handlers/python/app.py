"""An event handler for Switchyard, in Python (componentize-py).

The payload says what to do, so each outcome of the contract can be driven from outside:

    {"key": "k1", "action": "ack"}                       count the event under "count:k1", remember the
                                                         payload under "last:k1", emit <service>.followup
    {"key": "k1", "action": "retry", "delay_ms": 50}     retry (after at least 50 ms)
    {"key": "k1", "action": "retry", "until_attempt": 2} retry, then ack from attempt 2 on
    {"key": "k1", "action": "dead", "reason": "..."}     dead with that reason

The follow-up (`<service>.followup`, `{"key": ..., "from": <outbox id>}`) marks "followup:<key>"
when it is consumed. A payload that is not a JSON object is dead.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import emit, log, state
from wit_world.imports.types import (
    Event,
    Outcome,
    Outcome_Ack,
    Outcome_Dead,
    Outcome_Retry,
    RetryRequest,
)


class Handler(exports.Handler):
    def handle(self, event: Event) -> Outcome:
        try:
            payload = json.loads(event.payload)
        except ValueError as e:
            return Outcome_Dead(f"payload is not JSON: {e}")
        if not isinstance(payload, dict):
            return Outcome_Dead("payload is not a JSON object")
        key = str(payload.get("key", event.message_key or event.event_id))
        action = payload.get("action", "ack")
        log.log(
            log.Level.INFO,
            f"python handler: {event.event_type} #{event.outbox_id} key={key} "
            f"action={action} attempt={event.attempt}",
        )
        try:
            if event.event_type.endswith(".followup"):
                state.set(f"followup:{key}", json.dumps({"from": payload.get("from")}).encode())
                return Outcome_Ack()
            if action == "dead":
                return Outcome_Dead(str(payload.get("reason", "dead on request")))
            if action == "retry" and event.attempt < int(payload.get("until_attempt", 1 << 32)):
                delay = payload.get("delay_ms")
                return Outcome_Retry(
                    RetryRequest(
                        f"retry on request (attempt {event.attempt})",
                        int(delay) if delay is not None else None,
                    )
                )
            if action not in ("ack", "retry"):
                return Outcome_Dead(f"unknown action {action!r}")
            seen = state.get(f"count:{key}")
            count = int(seen) + 1 if seen is not None else 1
            state.set(f"count:{key}", str(count).encode())
            state.set(f"last:{key}", event.payload)
            emit.emit(
                emit.FollowUp(
                    event_type=f"{event.service}.followup",
                    event_version="v1",
                    aggregate_id=key,
                    message_key=key,
                    payload=json.dumps({"key": key, "from": event.outbox_id}).encode(),
                )
            )
            return Outcome_Ack()
        except Err as e:
            # A budget or grant the host refused: worth another attempt only if it can change,
            # which a refused grant cannot; log it and retry so an operator sees the reason.
            log.log(log.Level.ERROR, f"python handler: host refused a call: {e.value}")
            return Outcome_Retry(RetryRequest(f"host refused a call: {e.value}", None))
