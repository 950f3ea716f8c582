use std::collections::{BTreeMap, HashMap};

use super::chargeback::{adjustments, exact_usd, is_gl_account, ChargebackLine, LineSums};
use super::period::Period;
use crate::domain::aggregate::coverage;

#[test]
fn months_and_weeks_parse_strictly_and_name_their_parameter() {
    let nov = Period::parse_month("month", "2026-11").expect("month");
    assert_eq!(nov.to_string(), "2026-11");
    assert_eq!(nov.previous().to_string(), "2026-10");
    assert_eq!(
        Period::parse_month("month", "2026-12").map(|p| p.next().to_string()),
        Ok("2027-01".into())
    );
    assert_eq!(nov.days(), 30);
    for bad in [
        "2026-13",
        "2026-1",
        "26-11",
        "2026-11-01",
        "",
        "2026-00",
        "abcd-ef",
    ] {
        let err = Period::parse_month("month", bad).expect_err(bad);
        assert!(err.starts_with("month: "), "{err}");
    }
    let w = Period::parse_week("week", "2026-W01").expect("week");
    // ISO week 1 of 2026 starts on Monday 2025-12-29.
    assert_eq!(
        crate::domain::time::format_rfc3339_ms(w.range_ms().0),
        "2025-12-29T00:00:00Z"
    );
    assert_eq!(w.previous().to_string(), "2025-W52");
    assert_eq!(
        Period::parse_week("week", "2026-W53").map(|p| p.next().to_string()),
        Ok("2027-W01".into())
    );
    assert!(
        Period::parse_week("week", "2025-W53").is_err(),
        "2025 has 52 weeks"
    );
    assert!(Period::parse_week("week", "2026-48").is_err());
}

#[test]
fn coverage_is_null_without_cost_and_clamped() {
    assert_eq!(coverage(0.0, 0.0), None);
    assert_eq!(coverage(1.0, 4.0), Some(0.25));
    assert_eq!(coverage(4.0000001, 4.0), Some(1.0));
}

#[test]
fn exact_costs_keep_every_digit_without_exponent() {
    assert_eq!(exact_usd(0.0), "0.0");
    assert_eq!(exact_usd(-0.0), "0.0");
    assert_eq!(exact_usd(3.0), "3.0");
    assert_eq!(exact_usd(3.45e-9), "0.00000000345");
    assert_eq!(exact_usd(0.1 + 0.2).parse::<f64>(), Ok(0.1 + 0.2));
}

#[test]
fn gl_accounts_are_plain_text_for_csv() {
    assert!(is_gl_account("6120-AI"));
    assert!(is_gl_account("GL 6120/AI"));
    for bad in ["", " 6120", "6120,AI", "a\"b", "UNMAPPED", "tab\there"] {
        assert!(!is_gl_account(bad), "{bad:?}");
    }
}

#[test]
fn adjustments_are_live_minus_everything_booked_and_skip_zero() {
    let key = |cc: &str| (cc.to_owned(), "t".to_owned(), String::new());
    let sums = |r: i64, c: f64| LineSums {
        requests: r,
        input_tokens: 10 * r,
        output_tokens: r,
        cost_usd: c,
    };
    let live = BTreeMap::from([
        (key("A"), sums(5, 0.5)),
        (key("B"), sums(2, 0.2)),
        (key("C"), sums(1, 0.1)),
    ]);
    let booked = |month: &str, adjusts: Option<&str>, cc: &str, s: LineSums| ChargebackLine {
        month: month.into(),
        key: key(cc),
        gl_account: "x".into(),
        sums: s,
        adjusts: adjusts.map(str::to_owned),
    };
    let already = vec![
        booked("2026-10", None, "A", sums(3, 0.3)),
        booked("2026-11", Some("2026-10"), "A", sums(1, 0.1)),
        booked("2026-10", None, "B", sums(2, 0.2)),
    ];
    let accounts = HashMap::from([("A".to_owned(), "6100".to_owned())]);
    let lines = adjustments("2026-12", "2026-10", &live, &already, &accounts);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].key, key("A"));
    assert_eq!(lines[0].sums.requests, 1);
    assert!((lines[0].sums.cost_usd - 0.1).abs() < 1e-12);
    assert_eq!(lines[0].gl_account, "6100");
    assert_eq!(lines[0].adjusts.as_deref(), Some("2026-10"));
    assert_eq!(lines[1].key, key("C"));
    assert_eq!(lines[1].gl_account, "UNMAPPED");
}
