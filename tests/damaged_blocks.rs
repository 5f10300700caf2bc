//! A block whose chunk file is damaged while the server runs: queries touching it answer an error
//! naming the file (never a silently shorter answer), `partial_response=true` answers without the
//! block with a warning, queries that do not touch it are unaffected, and `/metrics` counts it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{block_dirs, format_time, request, series, Server};

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const MIN: i64 = 60_000;

/// Flips one byte in the middle of `path` (the file stays the same length, as a bad disk sector would).
fn flip_middle_byte(path: &Path) {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let at = len / 2;
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xFF]).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn a_damaged_chunk_file_fails_the_query_that_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--storage.tsdb.compaction-interval=200ms"]);
    // Five hours of one sample a minute for 20 series: the first two hours become a block.
    for part in 0..10 {
        let ts = (0..20)
            .map(|s| {
                let samples: Vec<(i64, f64)> =
                    (part * 30..(part + 1) * 30).map(|i| (T0 + i * MIN, (s * 1000 + i) as f64)).collect();
                series("dmg", &[("s", &s.to_string())], &samples)
            })
            .collect();
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while block_dirs(&data).is_empty() {
        assert!(Instant::now() < deadline, "no block was written\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let block = block_dirs(&data).remove(0);
    let query = |q: &str, t: i64, extra: &[(&str, &str)]| {
        let t = format_time(t);
        let mut params = vec![("query", q), ("time", t.as_str())];
        params.extend_from_slice(extra);
        srv.get_json("/api/v1/query", &params)
    };
    let in_block = "count_over_time(dmg[1h])";
    let (code, before) = query(in_block, T0 + 60 * MIN, &[]);
    assert_eq!(code, 200, "{before}");
    assert_eq!(before["data"]["result"].as_array().unwrap().len(), 20, "{before}");
    let errors_before = srv.metric("strata_storage_read_errors_total").unwrap_or(0.0);

    flip_middle_byte(&block.join("chunks").join("000001"));

    // The query reading the block fails, naming the file.
    let (code, body) = query(in_block, T0 + 60 * MIN, &[]);
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["errorType"], "internal", "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("000001") && msg.contains("checksum"), "the error names the damaged file: {msg}");
    // So does a range query, and the series and label APIs over the block's range.
    let (start, end) = (format_time(T0), format_time(T0 + 60 * MIN));
    let (code, body) =
        srv.get_json("/api/v1/query_range", &[("query", "dmg"), ("start", &start), ("end", &end), ("step", "60")]);
    assert_eq!(code, 500, "{body}");
    let (code, body) = srv.get_json("/api/v1/series", &[("match[]", "dmg"), ("start", &start), ("end", &end)]);
    assert_eq!(code, 500, "{body}");

    // Asked for a partial answer, it answers without the block and says so.
    let (code, body) = query(in_block, T0 + 60 * MIN, &[("partial_response", "true")]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["result"].as_array().unwrap().len(), 0, "{body}");
    let warnings = body["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings.iter().any(|w| w.as_str().is_some_and(|w| w.contains("000001"))),
        "a warning names the damaged file: {body}"
    );

    // Data outside the block (in the head) is answered as before.
    let (code, body) = query("count_over_time(dmg[30m])", T0 + 299 * MIN, &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["result"].as_array().unwrap().len(), 20, "{body}");

    let errors_after = srv.metric("strata_storage_read_errors_total").unwrap_or(0.0);
    assert!(errors_after >= errors_before + 4.0, "read errors counted: {errors_before} -> {errors_after}");
}
