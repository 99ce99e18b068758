//! Guest-supplied text, made safe for where it goes: reasons cut to SmartFlow's 2,000-byte
//! `last_error`, control characters escaped before they reach a human-readable log line (so a
//! handler cannot forge a line of its own). Pure functions.

use std::borrow::Cow;

/// SmartFlow's `last_error` is cut to this many bytes; every reason that enters the host is.
pub const MAX_REASON_BYTES: usize = 2000;

/// `text` cut to at most `max` bytes, on a char boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A failure reason as the host keeps it: at most [`MAX_REASON_BYTES`], with any NUL written
/// as `\0` (PostgreSQL refuses NUL in a text column, and with it the whole transaction).
pub fn cut_reason(reason: &str) -> String {
    let reason: Cow<'_, str> = if reason.contains('\0') {
        Cow::Owned(reason.replace('\0', "\\0"))
    } else {
        Cow::Borrowed(reason)
    };
    cut(&reason, MAX_REASON_BYTES).to_owned()
}

/// `text` with `\n`, `\r` and every other control character but tab written as escapes
/// (`\n`, `\r`, `\u{1b}`), so it stays on one log line and cannot carry terminal sequences.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let s = "é".repeat(1500);
        let cut = cut_reason(&s);
        assert!(cut.len() <= MAX_REASON_BYTES && s.starts_with(&cut));
        assert_eq!(cut_reason("short"), "short");
        assert_eq!(cut_reason("bad\0byte"), "bad\\0byte");
    }

    #[test]
    fn a_forged_log_line_stays_on_one_line() {
        let forged = "ok\n2026-12-02T00:00:00Z ERROR switchyard: service=payments\r\x1b[31m";
        let escaped = escape_controls(forged);
        assert!(!escaped.contains('\n') && !escaped.contains('\r') && !escaped.contains('\x1b'));
        assert!(escaped.starts_with("ok\\n2026") && escaped.contains("\\u{1b}"));
        assert!(matches!(escape_controls("plain\ttext"), Cow::Borrowed(_)));
    }
}
