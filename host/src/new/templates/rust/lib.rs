//! {{name}}: a Switchyard event handler. It counts, per user, the `{{name}}.requested` events
//! it has seen, in the service's state. Replace [`apply`] with your rule; keep it plain Rust so
//! `cargo test` checks it without a host.

use serde::{Deserialize, Serialize};
use switchyard_sdk::{Event, Handler, HandlerResult, dead, log, state};

/// The payload of `{{name}}.requested` (`event.json` holds one).
#[derive(Debug, Deserialize)]
pub struct Request {
    pub user_id: i64,
    pub name: String,
}

/// What the handler keeps per user, as JSON under `seen:<user_id>`.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub count: u64,
    pub last_name: String,
}

/// The business rule: a request with a positive user and a name counts once more.
///
/// # Errors
/// Dead for a request that can never succeed, whatever the attempt.
pub fn apply(seen: Seen, req: &Request) -> HandlerResult<Seen> {
    if req.user_id <= 0 {
        return dead(format!("user_id must be positive, got {}", req.user_id));
    }
    let name = req.name.trim();
    if name.is_empty() {
        return dead("name must not be empty");
    }
    Ok(Seen {
        count: seen.count + 1,
        last_name: name.to_owned(),
    })
}

struct Component;

impl Handler for Component {
    fn handle(event: &Event) -> HandlerResult {
        // A payload that does not decode is dead, with serde's message.
        let req: Request = switchyard_sdk::payload(event)?;
        let key = format!("seen:{}", req.user_id);
        let seen = apply(state::get(&key)?.unwrap_or_default(), &req)?;
        state::set(&key, &seen)?;
        log::info(&format!("{} seen {} time(s)", seen.last_name, seen.count));
        // A follow-up, once the route grants its type (`emits = ["{{name}}.greeted"]`):
        // switchyard_sdk::emit::event("{{name}}.greeted", &seen).key(req.user_id).send()?;
        Ok(())
    }
}

switchyard_sdk::handler!(Component);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_sdk::Failure;

    #[test]
    fn each_request_counts_once_more_under_its_name() {
        let req = Request { user_id: 7, name: " Ada ".into() };
        let once = apply(Seen::default(), &req).unwrap();
        let twice = apply(once, &req).unwrap();
        assert_eq!(twice, Seen { count: 2, last_name: "Ada".into() });
    }

    #[test]
    fn a_request_without_a_user_or_a_name_is_dead() {
        let nobody = Request { user_id: 0, name: "Ada".into() };
        assert_eq!(
            apply(Seen::default(), &nobody),
            Err(Failure::Dead("user_id must be positive, got 0".into()))
        );
        let blank = Request { user_id: 7, name: " ".into() };
        assert!(matches!(apply(Seen::default(), &blank), Err(Failure::Dead(_))));
    }
}
