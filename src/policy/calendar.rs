//! calendar: French working days. Public holidays of metropolitan France
//! (Code du travail L3133-1): eleven days, three of them tied to Easter.
//! Alsace-Moselle's two extra days are not counted (a company there can add
//! them as `extra_holidays` in `policies/statuses.toml`).

use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// Easter Sunday (Gregorian), by the anonymous Gregorian algorithm
/// (Meeus/Jones/Butcher).
pub fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("easter is a valid date")
}

/// The public holidays of `year`.
pub fn holidays(year: i32) -> Vec<NaiveDate> {
    let d = |m, day| NaiveDate::from_ymd_opt(year, m, day).expect("fixed holiday");
    let e = easter(year);
    vec![
        d(1, 1),                  // Jour de l'an
        e + Duration::days(1),    // Lundi de Pâques
        d(5, 1),                  // Fête du travail
        d(5, 8),                  // Victoire 1945
        e + Duration::days(39),   // Ascension
        e + Duration::days(50),   // Lundi de Pentecôte
        d(7, 14),                 // Fête nationale
        d(8, 15),                 // Assomption
        d(11, 1),                 // Toussaint
        d(11, 11),                // Armistice
        d(12, 25),                // Noël
    ]
}

/// Working days: Monday to Friday, not a public holiday nor an extra one.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    pub extra_holidays: Vec<NaiveDate>,
}

impl Calendar {
    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !holidays(day.year()).contains(&day) && !self.extra_holidays.contains(&day)
    }

    /// The day `n` working days after `from` (`from` itself not counted);
    /// with n = 0, `from` or the next working day.
    pub fn add_working_days(&self, from: NaiveDate, n: u32) -> NaiveDate {
        let mut day = from;
        if n == 0 {
            while !self.is_working_day(day) {
                day += Duration::days(1);
            }
            return day;
        }
        let mut left = n;
        while left > 0 {
            day += Duration::days(1);
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn easter_matches_published_dates() {
        for (y, want) in [(2024, "2024-03-31"), (2025, "2025-04-20"), (2026, "2026-04-05"), (2027, "2027-03-28"), (2019, "2019-04-21"), (2038, "2038-04-25")] {
            assert_eq!(easter(y), d(want), "{y}");
        }
    }

    #[test]
    fn moving_holidays_of_2026() {
        let h = holidays(2026);
        for day in ["2026-04-06", "2026-05-14", "2026-05-25", "2026-07-14", "2026-11-11"] {
            assert!(h.contains(&d(day)), "{day}");
        }
        assert_eq!(h.len(), 11);
    }

    #[test]
    fn working_days_skip_weekends_and_holidays() {
        let c = Calendar::default();
        // (from, n, expected)
        for (from, n, want) in [
            ("2026-03-02", 2, "2026-03-04"), // Monday + 2
            ("2026-03-05", 2, "2026-03-09"), // Thursday + 2 crosses the weekend
            ("2026-04-02", 2, "2026-04-07"), // Thursday + 2: Friday, (weekend, Easter Monday), Tuesday
            ("2026-05-07", 1, "2026-05-11"), // Thursday + 1: Friday 8 May is a holiday
            ("2026-12-24", 1, "2026-12-28"), // Christmas on a Friday
            ("2026-12-31", 1, "2027-01-04"), // Year end: Friday 1 January
            ("2026-03-07", 0, "2026-03-09"), // Saturday, 0 days: next working day
            ("2026-05-13", 1, "2026-05-15"), // Ascension Thursday skipped
        ] {
            assert_eq!(c.add_working_days(d(from), n), d(want), "{from} + {n}");
        }
        // Alsace-Moselle adds Good Friday.
        let alsace = Calendar { extra_holidays: vec![d("2026-04-03")] };
        assert!(c.is_working_day(d("2026-04-03")) && !alsace.is_working_day(d("2026-04-03")));
        assert_eq!(alsace.add_working_days(d("2026-04-02"), 1), d("2026-04-07"));
    }
}
