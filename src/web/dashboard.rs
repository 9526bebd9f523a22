//! web::dashboard: the manager's view of the receivables: open disputes by
//! count and amount (by category, by owner), time to resolve, motives by
//! month, overdue amount by age bucket, DSO, and the drafts waiting. Charts are
//! small SVG drawn here on the server (no JavaScript, no chart library).

use super::{escape, money, Error, Lang, Session, WebState};
use crate::domain::Role;
use crate::store::StoreError;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use sqlx::Row;
use std::collections::BTreeMap;

pub fn router() -> Router<WebState> {
    Router::new().route("/dashboard", get(dashboard))
}

const PALETTE: &[&str] = &["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563", "#65a30d", "#9333ea"];

/// A horizontal bar chart: one bar per (label, value), the value's text at
/// the bar's end.
pub fn bars(title: &str, items: &[(String, f64, String)]) -> String {
    let row = 26.0;
    let left = 190.0;
    let width = 640.0;
    let h = 34.0 + row * items.len().max(1) as f64;
    let max = items.iter().map(|i| i.1).fold(0.0_f64, f64::max).max(1e-9);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {width} {h}\" width=\"{width}\" height=\"{h}\" class=\"chart\"><text x=\"0\" y=\"16\" class=\"ct\">{t}</text>", t = escape(title));
    if items.is_empty() {
        s.push_str("<text x=\"0\" y=\"46\" class=\"cl\">—</text>");
    }
    for (i, (label, v, text)) in items.iter().enumerate() {
        let y = 28.0 + row * i as f64;
        let w = ((width - left - 120.0) * v / max).max(if *v > 0.0 { 2.0 } else { 0.0 });
        s.push_str(&format!(
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" class=\"cl\">{l}</text><rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"18\" fill=\"{c}\"/><text x=\"{vx:.1}\" y=\"{ty}\" class=\"cv\">{v}</text>",
            lx = left - 8.0,
            ty = y + 14.0,
            l = escape(label),
            c = PALETTE[i % PALETTE.len()],
            vx = left + w + 6.0,
            v = escape(text)
        ));
    }
    s.push_str("</svg>");
    s
}

/// Stacked columns: one column per period, one colour per series, with a
/// legend.
pub fn stacked(title: &str, periods: &[String], series: &[(String, Vec<f64>)]) -> String {
    let (width, height, left, top, bottom) = (640.0, 260.0, 40.0, 28.0, 200.0);
    let n = periods.len().max(1) as f64;
    let totals: Vec<f64> = (0..periods.len()).map(|i| series.iter().map(|s| s.1.get(i).copied().unwrap_or(0.0)).sum()).collect();
    let max = totals.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let col = ((width - left - 150.0) / n).min(60.0);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" class=\"chart\"><text x=\"0\" y=\"16\" class=\"ct\">{t}</text>", t = escape(title));
    s.push_str(&format!("<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{x2}\" y2=\"{bottom}\" stroke=\"#999\"/><text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\" class=\"cl\">{max}</text>", x2 = width - 150.0, tx = left - 4.0, ty = top + 10.0, max = max as i64));
    for (i, p) in periods.iter().enumerate() {
        let x = left + 8.0 + i as f64 * col;
        let mut y = bottom;
        for (k, (_, vals)) in series.iter().enumerate() {
            let v = vals.get(i).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let hgt = (bottom - top) * v / max;
            y -= hgt;
            s.push_str(&format!("<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{hgt:.1}\" fill=\"{c}\"><title>{v}</title></rect>", w = col - 8.0, c = PALETTE[k % PALETTE.len()]));
        }
        s.push_str(&format!("<text x=\"{cx:.1}\" y=\"{ly}\" text-anchor=\"middle\" class=\"cl\">{p}</text>", cx = x + (col - 8.0) / 2.0, ly = bottom + 16.0, p = escape(p)));
    }
    for (k, (name, _)) in series.iter().enumerate() {
        let y = top + 4.0 + 18.0 * k as f64;
        s.push_str(&format!("<rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{tx}\" y=\"{ty}\" class=\"cl\">{n}</text>", x = width - 140.0, c = PALETTE[k % PALETTE.len()], tx = width - 122.0, ty = y + 11.0, n = escape(name)));
    }
    s.push_str("</svg>");
    s
}

/// The figures of the dashboard, computed from the database.
#[derive(Debug, Default, serde::Serialize)]
pub struct Figures {
    pub open_disputes: i64,
    pub open_disputed_cents: i64,
    pub by_category: Vec<(String, i64, i64)>,
    pub by_owner: Vec<(String, i64, i64)>,
    pub resolve_mean_days: Option<f64>,
    pub resolve_median_days: Option<f64>,
    pub resolved: usize,
    /// (YYYY-MM, category, count)
    pub motives: Vec<(String, String, i64)>,
    /// 0-30, 31-60, 61-90, 90+ (cents).
    pub overdue: [i64; 4],
    pub dso_days: Option<f64>,
    pub drafts_waiting: i64,
    pub oldest_draft_days: Option<i64>,
    /// <1, 1-3, 3-7, 7+ days.
    pub draft_ages: [i64; 4],
}

pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Overdue bucket of an invoice `days` past due (0-30, 31-60, 61-90, 90+).
pub fn bucket(days: i64) -> usize {
    match days {
        ..=30 => 0,
        31..=60 => 1,
        61..=90 => 2,
        _ => 3,
    }
}

/// Months shown in the "motives over time" chart (the current one included).
pub const MOTIVE_MONTHS: usize = 12;

/// The first instants (UTC seconds) of the last `n` months up to `today`'s,
/// oldest first, with their labels (YYYY-MM).
pub fn month_starts(today: NaiveDate, n: usize) -> Vec<(i64, String)> {
    use chrono::Datelike;
    let mut out = Vec::with_capacity(n);
    let (mut y, mut m) = (today.year(), today.month());
    for _ in 0..n {
        let d = NaiveDate::from_ymd_opt(y, m, 1).expect("first of a month");
        out.push((d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp(), d.format("%Y-%m").to_string()));
        (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    }
    out.reverse();
    out
}

/// The due dates (ISO) that bound the overdue buckets of `bucket`: an
/// invoice due on or after `[0]` is 0-30 days late, on or after `[1]` 31-60,
/// on or after `[2]` 61-90, before it 90+.
pub fn bucket_bounds(today: NaiveDate) -> [String; 3] {
    [30, 60, 90].map(|d| (today - chrono::Duration::days(d)).format("%Y-%m-%d").to_string())
}

/// The dashboard's figures, each aggregated by the database along an index
/// of migrations/*/0007_desk.sql (no query returns a row per case or per
/// invoice), the independent queries run concurrently on the pool.
pub async fn figures(state: &WebState, today: NaiveDate) -> Result<Figures, StoreError> {
    let pool = &state.store.pool;
    let disputed = "c.kind = 'dispute' AND c.status <> 'resolved'";
    let by_category = async {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT c.category, COUNT(*) AS n, CAST(SUM(COALESCE(c.disputed_cents, c.amount_cents)) AS BIGINT) AS a FROM cases c WHERE {disputed} GROUP BY c.category ORDER BY a DESC")))
            .fetch_all(pool)
            .await
    };
    let by_owner = async {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(u.name, '-') AS owner, o.n, o.a FROM (SELECT c.owner_id, COUNT(*) AS n, CAST(SUM(COALESCE(c.disputed_cents, c.amount_cents)) AS BIGINT) AS a FROM cases c WHERE {disputed} GROUP BY c.owner_id) o LEFT JOIN users u ON u.id = o.owner_id ORDER BY o.a DESC"
        )))
        .fetch_all(pool)
        .await
    };
    // Mean in SQL; the median by walking the span index to its middle.
    let spans = async {
        let r = sqlx::query("SELECT COUNT(*), CAST(SUM(closed_at - opened_at) AS BIGINT) FROM cases WHERE closed_at IS NOT NULL").fetch_one(pool).await?;
        let n: i64 = r.try_get(0)?;
        let mean = r.try_get::<Option<i64>, _>(1)?.filter(|_| n > 0).map(|sum| sum as f64 / n as f64);
        let mut mid: Vec<f64> = vec![];
        if n > 0 {
            for r in sqlx::query("SELECT closed_at - opened_at FROM cases WHERE closed_at IS NOT NULL ORDER BY closed_at - opened_at LIMIT $1 OFFSET $2").bind(2 - n % 2).bind((n - 1) / 2).fetch_all(pool).await? {
                mid.push(r.try_get::<i64, _>(0)? as f64 / 86_400.0);
            }
        }
        Ok::<_, sqlx::Error>((n, mean.map(|m| m / 86_400.0), median(&mut mid)))
    };
    // Motives by the month the client first wrote (cases.first_at).
    let months = month_starts(today, MOTIVE_MONTHS);
    let motives = async {
        let case = months.iter().enumerate().rev().map(|(i, _)| format!("WHEN c.first_at >= ${} THEN {i}", i + 1)).collect::<Vec<_>>().join(" ");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT c.category, CASE {case} END AS k, COUNT(*) FROM cases c WHERE c.kind = 'dispute' AND c.first_at >= $1 GROUP BY c.category, k")));
        for (t, _) in &months {
            q = q.bind(*t);
        }
        q.fetch_all(pool).await
    };
    // Overdue by age bucket and all receivables, from the unpaid invoices.
    let b = bucket_bounds(today);
    let iso = today.format("%Y-%m-%d").to_string();
    let unpaid = async {
        sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN due_date < $1 AND due_date >= $2 THEN amount_cents - paid_cents ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN due_date < $2 AND due_date >= $3 THEN amount_cents - paid_cents ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN due_date < $3 AND due_date >= $4 THEN amount_cents - paid_cents ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN due_date < $4 THEN amount_cents - paid_cents ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(amount_cents - paid_cents), 0) AS BIGINT) \
             FROM invoices WHERE status <> 'paid' AND amount_cents > paid_cents",
        )
        .bind(&iso)
        .bind(&b[0])
        .bind(&b[1])
        .bind(&b[2])
        .fetch_one(pool)
        .await
    };
    // DSO, countback-free simple form: receivables / sales of the last 90
    // days × 90.
    let since = (today - chrono::Duration::days(90)).format("%Y-%m-%d").to_string();
    let sales = async { sqlx::query_scalar::<_, i64>("SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM invoices WHERE issue_date >= $1 AND issue_date <= $2").bind(&since).bind(&iso).fetch_one(pool).await };
    let now = crate::store::now();
    let drafts = async {
        sqlx::query(
            "SELECT COUNT(*), MIN(created_at), \
             COALESCE(SUM(CASE WHEN created_at > $1 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN created_at <= $1 AND created_at > $2 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN created_at <= $2 AND created_at > $3 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN created_at <= $3 THEN 1 ELSE 0 END), 0) \
             FROM drafts WHERE status = 'pending' AND kind <> 'brief'",
        )
        .bind(now - 86_400)
        .bind(now - 3 * 86_400)
        .bind(now - 7 * 86_400)
        .fetch_one(pool)
        .await
    };
    let (cat_rows, owner_rows, (resolved, mean, med), motive_rows, unpaid, sales, drafts) = tokio::try_join!(by_category, by_owner, spans, motives, unpaid, sales, drafts)?;

    let mut f = Figures::default();
    for r in cat_rows {
        let (cat, n, a): (String, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get::<Option<i64>, _>(2)?.unwrap_or(0));
        f.open_disputes += n;
        f.open_disputed_cents += a;
        f.by_category.push((cat, n, a));
    }
    for r in owner_rows {
        f.by_owner.push((r.try_get(0)?, r.try_get(1)?, r.try_get::<Option<i64>, _>(2)?.unwrap_or(0)));
    }
    f.resolved = resolved as usize;
    f.resolve_mean_days = mean;
    f.resolve_median_days = med;
    let mut counts: BTreeMap<(usize, String), i64> = BTreeMap::new();
    for r in motive_rows {
        let k: Option<i64> = r.try_get(1)?;
        if let Some(k) = k {
            *counts.entry((k as usize, r.try_get(0)?)).or_default() += r.try_get::<i64, _>(2)?;
        }
    }
    f.motives = counts.into_iter().filter_map(|((k, c), n)| Some((months.get(k)?.1.clone(), c, n))).collect();
    for (i, slot) in f.overdue.iter_mut().enumerate() {
        *slot = unpaid.try_get(i)?;
    }
    let receivable: i64 = unpaid.try_get(4)?;
    f.dso_days = (sales > 0).then(|| receivable as f64 / sales as f64 * 90.0);
    f.drafts_waiting = drafts.try_get(0)?;
    f.oldest_draft_days = drafts.try_get::<Option<i64>, _>(1)?.map(|at| (now - at).max(0) / 86_400);
    for (i, slot) in f.draft_ages.iter_mut().enumerate() {
        *slot = drafts.try_get(i + 2)?;
    }
    Ok(f)
}

#[tracing::instrument(skip_all, fields(user = %s.user.id))]
async fn dashboard(State(state): State<WebState>, s: Session) -> Result<Response, Error> {
    s.require(&[Role::Manager])?;
    let today = chrono::Local::now().date_naive();
    let f = figures(&state, today).await?;
    let l = s.lang;
    let w = |k: &str| super::i18n::word(l, k);
    let eur = |c: i64| money(l, c);
    let charts = vec![
        bars(&format!("{} {} — {}", w("open_disputes"), w("by_category"), w("amount")), &f.by_category.iter().map(|(c, n, a)| (c.clone(), *a as f64, format!("{} ({n})", eur(*a)))).collect::<Vec<_>>()),
        bars(&format!("{} {} — {}", w("open_disputes"), w("by_owner"), w("amount")), &f.by_owner.iter().map(|(o, n, a)| (o.clone(), *a as f64, format!("{} ({n})", eur(*a)))).collect::<Vec<_>>()),
        bars(&format!("{} {} — {}", w("open_disputes"), w("by_category"), w("count")), &f.by_category.iter().map(|(c, n, _)| (c.clone(), *n as f64, n.to_string())).collect::<Vec<_>>()),
        bars(w("overdue_by_age"), &["0-30", "31-60", "61-90", "90+"].iter().zip(f.overdue).map(|(b, c)| (format!("{b} {}", w("days")), c as f64, eur(c))).collect::<Vec<_>>()),
        motives_chart(l, &f),
        bars(w("drafts_waiting"), &["< 1", "1-3", "3-7", "7+"].iter().zip(f.draft_ages).map(|(b, n)| (format!("{b} {}", w("days")), n as f64, n.to_string())).collect::<Vec<_>>()),
    ];
    let mut ctx = tera::Context::new();
    ctx.insert("charts", &charts);
    ctx.insert("open_disputes", &f.open_disputes);
    ctx.insert("open_amount", &eur(f.open_disputed_cents));
    ctx.insert("mean", &f.resolve_mean_days.map(|d| format!("{d:.1}")));
    ctx.insert("median", &f.resolve_median_days.map(|d| format!("{d:.1}")));
    ctx.insert("resolved", &f.resolved);
    ctx.insert("overdue_total", &eur(f.overdue.iter().sum()));
    ctx.insert("dso", &f.dso_days.map(|d| format!("{d:.0}")));
    ctx.insert("drafts_waiting", &f.drafts_waiting);
    ctx.insert("oldest_draft", &f.oldest_draft_days);
    state.render("dashboard.html", &s, ctx)
}

fn motives_chart(l: Lang, f: &Figures) -> String {
    let periods: Vec<String> = f.motives.iter().map(|m| m.0.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let cats: Vec<String> = f.motives.iter().map(|m| m.1.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let series: Vec<(String, Vec<f64>)> = cats
        .iter()
        .map(|c| (c.clone(), periods.iter().map(|p| f.motives.iter().find(|m| &m.0 == p && &m.1 == c).map(|m| m.2 as f64).unwrap_or(0.0)).collect()))
        .collect();
    stacked(super::i18n::word(l, "motives_over_time"), &periods, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_median() {
        assert_eq!([0, 30, 31, 60, 61, 90, 91, 400].map(bucket), [0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn bucket_bounds_agree_with_bucket() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let b = bucket_bounds(today);
        for days in 1..200 {
            let due = (today - chrono::Duration::days(days)).format("%Y-%m-%d").to_string();
            let by_bounds = if due >= b[0] { 0 } else if due >= b[1] { 1 } else if due >= b[2] { 2 } else { 3 };
            assert_eq!(by_bounds, bucket(days), "{days} days late");
        }
    }

    #[test]
    fn month_starts_cross_the_year() {
        let m = month_starts(NaiveDate::from_ymd_opt(2026, 2, 17).unwrap(), 3);
        assert_eq!(m.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(), ["2025-12", "2026-01", "2026-02"]);
        assert_eq!(m[2].0, NaiveDate::from_ymd_opt(2026, 2, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp());
    }

    #[test]
    fn charts_escape_labels() {
        let s = bars("t", &[("<b>".into(), 1.0, "1".into())]);
        assert!(s.starts_with("<svg") && s.contains("&lt;b&gt;") && !s.contains("<b>"));
    }
}
