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

pub async fn figures(state: &WebState, today: NaiveDate) -> Result<Figures, StoreError> {
    let pool = &state.store.pool;
    let mut f = Figures::default();
    let disputed = "c.kind = 'dispute' AND c.status <> 'resolved'";
    for r in sqlx::query(sqlx::AssertSqlSafe(format!("SELECT c.category, COUNT(*) AS n, CAST(SUM(COALESCE(c.disputed_cents, c.amount_cents)) AS BIGINT) AS a FROM cases c WHERE {disputed} GROUP BY c.category ORDER BY a DESC")))
        .fetch_all(pool)
        .await?
    {
        let (cat, n, a): (String, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get::<Option<i64>, _>(2)?.unwrap_or(0));
        f.open_disputes += n;
        f.open_disputed_cents += a;
        f.by_category.push((cat, n, a));
    }
    for r in sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(u.name, '-') AS owner, COUNT(*) AS n, CAST(SUM(COALESCE(c.disputed_cents, c.amount_cents)) AS BIGINT) AS a FROM cases c LEFT JOIN users u ON u.id = c.owner_id WHERE {disputed} GROUP BY COALESCE(u.name, '-') ORDER BY a DESC"
    )))
    .fetch_all(pool)
    .await?
    {
        f.by_owner.push((r.try_get(0)?, r.try_get(1)?, r.try_get::<Option<i64>, _>(2)?.unwrap_or(0)));
    }
    let mut spans: Vec<f64> = sqlx::query("SELECT CAST(closed_at - opened_at AS BIGINT) FROM cases WHERE closed_at IS NOT NULL")
        .fetch_all(pool)
        .await?
        .iter()
        .filter_map(|r| r.try_get::<i64, _>(0).ok())
        .map(|s| s as f64 / 86_400.0)
        .collect();
    f.resolved = spans.len();
    if !spans.is_empty() {
        f.resolve_mean_days = Some(spans.iter().sum::<f64>() / spans.len() as f64);
    }
    f.resolve_median_days = median(&mut spans);
    // Motives by the month the client wrote (the message date), else when
    // the case opened.
    let mut months: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in sqlx::query("SELECT c.category, COALESCE((SELECT MIN(m.date_at) FROM messages m WHERE m.case_id = c.id), c.opened_at) FROM cases c WHERE c.kind = 'dispute'").fetch_all(pool).await? {
        let cat: String = r.try_get(0)?;
        let at: i64 = r.try_get::<Option<i64>, _>(1)?.unwrap_or(0);
        let month = chrono::DateTime::from_timestamp(at, 0).map(|d| d.format("%Y-%m").to_string()).unwrap_or_default();
        *months.entry((month, cat)).or_default() += 1;
    }
    f.motives = months.into_iter().map(|((m, c), n)| (m, c, n)).collect();
    let iso = today.format("%Y-%m-%d").to_string();
    for r in sqlx::query("SELECT due_date, amount_cents - paid_cents FROM invoices WHERE status <> 'paid' AND amount_cents > paid_cents AND due_date < $1").bind(&iso).fetch_all(pool).await? {
        let due: String = r.try_get(0)?;
        let left: i64 = r.try_get(1)?;
        if let Ok(d) = NaiveDate::parse_from_str(&due, "%Y-%m-%d") {
            f.overdue[bucket((today - d).num_days())] += left;
        }
    }
    // DSO, countback-free simple form: receivables / sales of the last 90
    // days × 90.
    let receivable: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(amount_cents - paid_cents), 0) AS BIGINT) FROM invoices WHERE status <> 'paid' AND amount_cents > paid_cents").fetch_one(pool).await?;
    let since = (today - chrono::Duration::days(90)).format("%Y-%m-%d").to_string();
    let sales: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM invoices WHERE issue_date >= $1 AND issue_date <= $2").bind(&since).bind(&iso).fetch_one(pool).await?;
    f.dso_days = (sales > 0).then(|| receivable as f64 / sales as f64 * 90.0);
    let now = crate::store::now();
    for r in sqlx::query("SELECT created_at FROM drafts WHERE status = 'pending' AND kind <> 'brief'").fetch_all(pool).await? {
        let at: i64 = r.try_get(0)?;
        let days = (now - at).max(0) as f64 / 86_400.0;
        f.drafts_waiting += 1;
        f.oldest_draft_days = Some(f.oldest_draft_days.unwrap_or(0).max(days as i64));
        f.draft_ages[if days < 1.0 { 0 } else if days < 3.0 { 1 } else if days < 7.0 { 2 } else { 3 }] += 1;
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
    fn charts_escape_labels() {
        let s = bars("t", &[("<b>".into(), 1.0, "1".into())]);
        assert!(s.starts_with("<svg") && s.contains("&lt;b&gt;") && !s.contains("<b>"));
    }
}
