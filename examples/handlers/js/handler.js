// An event handler for Switchyard, in JavaScript (ComponentizeJS).
//
// The payload says what to do, so each outcome of the contract can be driven from outside:
//
//   {"key": "k1", "action": "ack"}                       count the event under "count:k1", remember
//                                                        the payload under "last:k1", emit
//                                                        <service>.followup
//   {"key": "k1", "action": "retry", "delay_ms": 50}     retry (after at least 50 ms)
//   {"key": "k1", "action": "retry", "until_attempt": 2} retry, then ack from attempt 2 on
//   {"key": "k1", "action": "dead", "reason": "..."}     dead with that reason
//
// The follow-up (`<service>.followup`, `{"key": ..., "from": <outbox id>}`) marks
// "followup:<key>" when it is consumed. A payload that is not a JSON object is dead.

import { get, set } from "switchyard:handler/state@0.2.0";
import { emit } from "switchyard:handler/emit@0.2.0";
import { log } from "switchyard:handler/log@0.2.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function handle(event) {
  let payload;
  try {
    payload = JSON.parse(decoder.decode(event.payload));
  } catch (e) {
    return { tag: "dead", val: `payload is not JSON: ${e.message}` };
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    return { tag: "dead", val: "payload is not a JSON object" };
  }
  const key = String(payload.key ?? (event.messageKey || event.eventId));
  const action = payload.action ?? "ack";
  log(
    "info",
    `js handler: ${event.eventType} #${event.outboxId} key=${key} action=${action} attempt=${event.attempt}`,
  );
  try {
    if (event.eventType.endsWith(".followup")) {
      set(`followup:${key}`, encoder.encode(JSON.stringify({ from: payload.from })));
      return { tag: "ack" };
    }
    if (action === "dead") {
      return { tag: "dead", val: String(payload.reason ?? "dead on request") };
    }
    if (action === "retry" && event.attempt < (payload.until_attempt ?? Infinity)) {
      const delay = payload.delay_ms;
      return {
        tag: "retry",
        val: {
          reason: `retry on request (attempt ${event.attempt})`,
          // u64 travels as a BigInt; `undefined` is `none`.
          delayMs: delay === undefined || delay === null ? undefined : BigInt(delay),
        },
      };
    }
    if (action !== "ack" && action !== "retry") {
      return { tag: "dead", val: `unknown action ${JSON.stringify(action)}` };
    }
    const seen = get(`count:${key}`);
    const count = seen === undefined ? 1 : Number(decoder.decode(seen)) + 1;
    set(`count:${key}`, encoder.encode(String(count)));
    set(`last:${key}`, event.payload);
    emit({
      eventType: `${event.service}.followup`,
      eventVersion: "v1",
      aggregateId: key,
      messageKey: key,
      // outbox-id is an s64: a BigInt, which JSON.stringify refuses, so send it as a number.
      payload: encoder.encode(JSON.stringify({ key, from: Number(event.outboxId) })),
    });
    return { tag: "ack" };
  } catch (e) {
    // An import's `err(string)` is thrown; its string is `e.payload`. A budget or a grant the
    // host refused: log it and retry so an operator sees the reason.
    const why = e?.payload ?? String(e);
    log("error", `js handler: host refused a call: ${why}`);
    return { tag: "retry", val: { reason: `host refused a call: ${why}`, delayMs: undefined } };
  }
}

export const handler = { handle };
