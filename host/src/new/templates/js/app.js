// {{name}}: a Switchyard event handler (ComponentizeJS).
//
// It counts, per user, the `{{name}}.requested` events it has seen, in the service's state.
// Replace `apply` with your rule; it is plain JavaScript, testable without a host.

import { get, set } from "switchyard:handler/state@0.2.0";
import { log } from "switchyard:handler/log@0.2.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class Dead extends Error {}

// The business rule: a request with a positive user and a name counts once more.
function apply(seen, req) {
  const name = String(req.name ?? "").trim();
  if (!Number.isInteger(req.user_id) || req.user_id <= 0) {
    throw new Dead(`user_id must be a positive integer, got ${JSON.stringify(req.user_id)}`);
  }
  if (!name) throw new Dead("name must not be empty");
  return { count: (seen.count ?? 0) + 1, last_name: name };
}

function handle(event) {
  let req;
  try {
    req = JSON.parse(decoder.decode(event.payload));
    if (req === null || typeof req !== "object") throw new Dead("payload is not a JSON object");
    const key = `seen:${req.user_id}`;
    const stored = get(key);
    const seen = apply(stored === undefined ? {} : JSON.parse(decoder.decode(stored)), req);
    set(key, encoder.encode(JSON.stringify(seen)));
    log("info", `${seen.last_name} seen ${seen.count} time(s)`);
    return { tag: "ack" };
  } catch (e) {
    if (e instanceof Dead || e instanceof SyntaxError) {
      return { tag: "dead", val: `invalid ${event.eventType} payload: ${e.message}` };
    }
    // The host refused a call (a budget, a store failure): try again later.
    return { tag: "retry", val: { reason: `host refused a call: ${e.payload ?? e}` } };
  }
}

export const handler = { handle };
