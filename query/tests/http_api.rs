//! The HTTP API against a real head over a real socket: exact JSON bodies, GET and form POST,
//! parameter errors with Prometheus's errorType and status.

use std::sync::Arc;

use query::{router, EngineOptions, QueryState};

fn get(url: &str) -> (u16, String) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn post(url: &str, form: &[(&str, &str)]) -> (u16, String) {
    match ureq::post(url).send_form(form) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_like_prometheus() {
    let (_d, db) = tsdb::testing::temp_db(tsdb::testing::memory_options(0));
    let head = Arc::clone(db.head());
    {
        let mut app = head.appender();
        for i in 0..10i64 {
            app.append_pairs(&[("__name__", "up"), ("job", "a"), ("instance", "x")], i * 15_000, 1.0)
                .unwrap_or_else(|e| panic!("{e}"));
            app.append_pairs(&[("__name__", "req_total"), ("job", "b")], i * 15_000, (i * 10) as f64)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        app.commit().unwrap_or_else(|e| panic!("{e}"));
    }
    let app = router(QueryState { db: Arc::clone(&db), opts: EngineOptions::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}/api/v1");
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            get(&format!("{base}/query?query=up&time=60.5")),
            (200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"x","job":"a"},"value":[60.500,"1"]}]}}"#.to_string())
        );
        assert_eq!(
            post(&format!("{base}/query"), &[("query", "1e-7 * 2"), ("time", "1970-01-01T00:01:00Z")]),
            (200, r#"{"status":"success","data":{"resultType":"scalar","result":[60,"2e-07"]}}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/query?query=rate(req_total%5B1m%5D)&time=135")),
            (200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"b"},"value":[135,"0.6666666666666666"]}]}}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/query_range?query=req_total/0&start=0&end=30&step=15s")),
            (200, r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"b"},"values":[[0,"NaN"],[15,"+Inf"],[30,"+Inf"]]}]}}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/query?query=up%5B20s%5D&time=30")),
            (200, r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"x","job":"a"},"values":[[15,"1"],[30,"1"]]}]}}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/series?match[]=up&match[]=%7Bjob%3D%22b%22%7D")),
            (200, r#"{"status":"success","data":[{"__name__":"req_total","job":"b"},{"__name__":"up","instance":"x","job":"a"}]}"#.to_string())
        );
        assert_eq!(get(&format!("{base}/labels")), (200, r#"{"status":"success","data":["__name__","instance","job"]}"#.to_string()));
        assert_eq!(
            get(&format!("{base}/labels?match[]=req_total")),
            (200, r#"{"status":"success","data":["__name__","job"]}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/label/__name__/values")),
            (200, r#"{"status":"success","data":["req_total","up"]}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/label/job/values?limit=1")),
            (200, r#"{"status":"success","data":["a"],"warnings":["results truncated due to limit"]}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/series")),
            (400, r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/query_range?query=up&start=10&end=0&step=1")),
            (400, r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"end\": end timestamp must not be before start time"}"#.to_string())
        );
        assert_eq!(
            get(&format!("{base}/query_range?query=up&start=0&end=100000&step=1")),
            (400, r#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"}"#.to_string())
        );
        let (code, body) = get(&format!("{base}/query?query=up%7B&time=1"));
        assert_eq!(code, 400);
        assert!(body.contains(r#""errorType":"bad_data","error":"invalid parameter \"query\": "#), "{body}");
        let (code, body) = get(&format!("{base}/query?query=sort_by_label(up,%22job%22)"));
        assert_eq!((code, body.contains("not supported: ")), (400, true), "{body}");
        let q = r#"label_replace(label_replace({__name__=~".+"} * 0, "instance", "", "", ""), "job", "z", "", "")"#;
        let (code, body) = post(&format!("{base}/query"), &[("query", q), ("time", "30")]);
        assert_eq!(
            (code, body),
            (422, r#"{"status":"error","errorType":"execution","error":"vector cannot contain metrics with the same labelset"}"#.to_string())
        );
        let (code, body) = get(&format!("{base}/status/buildinfo"));
        assert_eq!(code, 200);
        assert!(body.contains(r#""version":"2.42.0""#));
        let (code, body) = get(&format!("{base}/status/tsdb"));
        assert_eq!(code, 200);
        assert!(body.contains(r#""headStats":{"numSeries":2,"#), "{body}");
        assert!(body.contains(r#""seriesCountByMetricName":[{"name":"req_total","value":1},{"name":"up","value":1}]"#), "{body}");
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
