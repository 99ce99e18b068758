//! SmartFlow's promotion rule, pure (no table, no clock of its own), so it is unit-tested here.

use time::OffsetDateTime;

/// The priority a task is promoted to at `now`, or `None` when it stays as it is: 2 → 1 and
/// 4 → 3 once its urgency threshold has passed (at or before `now`); never a completed task,
/// never a task without a threshold.
pub fn promoted(
    priority: i64,
    threshold: Option<OffsetDateTime>,
    completed: bool,
    now: OffsetDateTime,
) -> Option<i64> {
    if completed || threshold.is_none_or(|t| t > now) {
        return None;
    }
    match priority {
        2 => Some(1),
        4 => Some(3),
        _ => None,
    }
}

/// Important and urgent, and still to do: what the scheduler is told about.
pub fn is_urgent(priority: i64, completed: bool) -> bool {
    priority == 1 && !completed
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartflow_kit::parse_time;

    fn at(t: &str) -> OffsetDateTime {
        parse_time("t", t).unwrap()
    }

    #[test]
    fn important_and_neither_are_promoted_once_the_threshold_has_passed() {
        let now = at("2026-12-02T06:00:00Z");
        let passed = Some(at("2026-12-02T05:59:59Z"));
        assert_eq!(promoted(2, passed, false, now), Some(1));
        assert_eq!(promoted(4, passed, false, now), Some(3));
        assert_eq!(
            promoted(2, Some(now), false, now),
            Some(1),
            "at the instant"
        );
        for p in [1, 3] {
            assert_eq!(promoted(p, passed, false, now), None, "priority {p} stays");
        }
    }

    #[test]
    fn future_missing_threshold_and_completed_tasks_are_left_alone() {
        let now = at("2026-12-02T06:00:00Z");
        assert_eq!(
            promoted(2, Some(at("2026-12-02T06:00:01Z")), false, now),
            None
        );
        assert_eq!(promoted(2, None, false, now), None);
        assert_eq!(
            promoted(2, Some(at("2020-01-01T00:00:00Z")), true, now),
            None
        );
        assert!(is_urgent(1, false) && !is_urgent(1, true) && !is_urgent(2, false));
    }
}
