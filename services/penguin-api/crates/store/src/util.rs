//! Small helpers shared by the record modules: ids, timestamps, limits and
//! column decoding.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{types::Type, Row};

use crate::StoreError;

/// The largest `limit` any list method honours.
pub const MAX_LIMIT: usize = 1000;

/// A fresh id: `prefix` followed by a simple (hyphen-less) v4 UUID.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Clamps a caller's `limit` to `1..=MAX_LIMIT`, as an SQL parameter.
pub(crate) fn clamp_limit(limit: usize) -> i64 {
    // MAX_LIMIT fits comfortably in i64.
    limit.clamp(1, MAX_LIMIT) as i64
}

/// The current time.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Fixed-width RFC 3339 with nanoseconds and `Z`, so text order is time order
/// and a value read back compares equal to the one written.
pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

fn conversion_error<E>(idx: usize, ty: Type, e: E) -> rusqlite::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    rusqlite::Error::FromSqlConversionFailure(idx, ty, Box::new(e))
}

/// Reads a timestamp column.
pub(crate) fn col_time(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let s: String = row.get(idx)?;
    parse_time(&s).map_err(|e| conversion_error(idx, Type::Text, e))
}

/// Reads a nullable timestamp column.
pub(crate) fn col_time_opt(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let s: Option<String> = row.get(idx)?;
    s.map(|s| parse_time(&s).map_err(|e| conversion_error(idx, Type::Text, e)))
        .transpose()
}

/// Reads a JSON text column.
pub(crate) fn col_json(row: &Row<'_>, idx: usize) -> rusqlite::Result<serde_json::Value> {
    let s: String = row.get(idx)?;
    serde_json::from_str(&s).map_err(|e| conversion_error(idx, Type::Text, e))
}

/// Reads a nullable JSON text column.
pub(crate) fn col_json_opt(
    row: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<serde_json::Value>> {
    let s: Option<String> = row.get(idx)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| conversion_error(idx, Type::Text, e)))
        .transpose()
}

/// Reads a column holding an enum's `as_str()` form.
pub(crate) fn col_enum<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = StoreError>,
{
    let s: String = row.get(idx)?;
    s.parse::<T>()
        .map_err(|e| conversion_error(idx, Type::Text, e))
}

/// Reads a non-negative count column.
pub(crate) fn col_count(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let n: i64 = row.get(idx)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Serialises a JSON value for a text column, turning `null` into `{}` (the
/// stored metadata is always an object or whatever non-null value was given).
pub(crate) fn metadata_or_empty(v: serde_json::Value) -> serde_json::Value {
    if v.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_have_prefix_and_simple_uuid() {
        let id = new_id("conv_");
        assert!(id.starts_with("conv_"));
        let rest = &id["conv_".len()..];
        assert_eq!(rest.len(), 32);
        assert!(rest.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(new_id("conv_"), new_id("conv_"));
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(clamp_limit(0), 1);
        assert_eq!(clamp_limit(1), 1);
        assert_eq!(clamp_limit(50), 50);
        assert_eq!(clamp_limit(1000), 1000);
        assert_eq!(clamp_limit(usize::MAX), 1000);
    }

    #[test]
    fn times_round_trip_and_sort_as_text() {
        let t = now();
        assert_eq!(parse_time(&fmt_time(t)).unwrap(), t);
        let a = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let b = a + chrono::Duration::nanoseconds(1);
        let c = a + chrono::Duration::seconds(1);
        assert!(fmt_time(a) < fmt_time(b));
        assert!(fmt_time(b) < fmt_time(c));
        assert_eq!(fmt_time(a).len(), fmt_time(b).len());
        assert_eq!(fmt_time(a), "2024-01-02T03:04:05.000000000Z");
    }

    #[test]
    fn null_metadata_becomes_object() {
        assert_eq!(
            metadata_or_empty(serde_json::Value::Null),
            serde_json::json!({})
        );
        assert_eq!(
            metadata_or_empty(serde_json::json!([1])),
            serde_json::json!([1])
        );
    }
}
