//! The ready-to-paste curl lines printed at startup.

use std::net::SocketAddr;

use axum::http::StatusCode;
use ferroserve::{Limits, ModelStore, example};

use crate::support::{Fixture, loaded, post};

#[tokio::test]
async fn curl_lines_use_training_means_and_work() {
    let fx = Fixture::new();
    let store = ModelStore::open(&fx.repository()).unwrap();
    store.load_all().await;
    let lines = example::curl_examples(&store, SocketAddr::from(([0, 0, 0, 0], 8080)));
    assert_eq!(lines.len(), 4, "{lines:#?}");
    // Sorted by model name, v2 then v1; v2 of anomaly-detector has metadata.json with means 1.25 and -0.5.
    assert_eq!(
        lines[0],
        r#"curl -s http://127.0.0.1:8080/v2/models/anomaly-detector/infer -H 'content-type: application/json' -d '{"inputs":[{"name":"input-0","datatype":"FP32","shape":[1,2],"data":[1.25,-0.5]}]}'"#
    );
    assert_eq!(
        lines[1],
        r#"curl -s http://127.0.0.1:8080/v1/models/anomaly-detector:predict -H 'content-type: application/json' -d '{"instances":[[1.25,-0.5]]}'"#
    );
    assert!(lines[2].starts_with("curl -s http://127.0.0.1:8080/v2/models/bare/infer "), "{}", lines[2]);
    assert!(lines[2].contains(r#""data":[0.0,0.0]"#), "no metadata: zeros; {}", lines[2]);
    assert!(lines[3].ends_with(r#"-d '{"instances":[[0.0,0.0]]}'"#), "{}", lines[3]);
    let bound = example::curl_examples(&store, SocketAddr::from(([10, 1, 2, 3], 9000)));
    assert!(bound[0].contains("http://10.1.2.3:9000/"), "{}", bound[0]);

    // The printed body is a valid request.
    let app = loaded(&fx.repository(), Limits::default()).await;
    for line in &lines {
        let body = line.split(" -d '").nth(1).unwrap().trim_end_matches('\'');
        let uri = line.split(' ').nth(2).unwrap().trim_start_matches("http://127.0.0.1:8080");
        assert_eq!(post(&app, uri, body.to_owned()).await.0, StatusCode::OK, "{line}");
    }
}
