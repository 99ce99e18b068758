"""{{name}}: a Switchyard event handler (componentize-py).

It counts, per user, the `{{name}}.requested` events it has seen, in the service's state.
Replace `apply` with your rule; it is plain Python, testable without a host.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, state
from wit_world.imports.types import Event, Outcome, Outcome_Ack, Outcome_Dead, Outcome_Retry, RetryRequest


class Dead(Exception):
    """The event can never succeed: its row goes dead with this reason."""


def apply(seen: dict, req: dict) -> dict:
    """The business rule: a request with a positive user and a name counts once more."""
    user_id, name = req.get("user_id"), str(req.get("name", "")).strip()
    if not isinstance(user_id, int) or user_id <= 0:
        raise Dead(f"user_id must be a positive integer, got {user_id!r}")
    if not name:
        raise Dead("name must not be empty")
    return {"count": seen.get("count", 0) + 1, "last_name": name}


class Handler(exports.Handler):
    def handle(self, event: Event) -> Outcome:
        try:
            req = json.loads(event.payload)
            if not isinstance(req, dict):
                raise Dead("payload is not a JSON object")
            key = f"seen:{req.get('user_id')}"
            stored = state.get(key)
            seen = apply(json.loads(stored) if stored is not None else {}, req)
            state.set(key, json.dumps(seen).encode())
            log.log(log.Level.INFO, f"{seen['last_name']} seen {seen['count']} time(s)")
            return Outcome_Ack()
        except (Dead, ValueError) as e:
            return Outcome_Dead(f"invalid {event.event_type} payload: {e}")
        except Err as e:
            # The host refused a call (a budget, a store failure): try again later.
            return Outcome_Retry(RetryRequest(f"host refused a call: {e.value}", None))
