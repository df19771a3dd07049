//! Tail sampling in `chaintrace serve --sample-rate`: one generated stream
//! (fixed seed) sent to a server that samples and to one that keeps
//! everything, so the kept traces are checked against the whole truth.

use std::time::Duration;

use serde_json::Value;

use crate::conventions::sql;
use crate::harness::{chaintrace, urlencode, Server};
use crate::metrics::scrape;

const TRACES: u64 = 800;
const RATE: f64 = 0.05;

async fn send(server: &Server) {
    let url = server.otlp_http.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&[
            "gen",
            "--otlp-http",
            &url,
            "--traces",
            &TRACES.to_string(),
            "--concurrency",
            "2",
            "--error-rate",
            "0.1",
            "--seed",
            "23",
            "--time-spread",
            "20m",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let result: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(result["acked_spans"], TRACES * 7, "{result}");
}

/// The ids of the traces `q` finds in the last hour (at most 1 000).
async fn found(server: &Server, q: &str) -> Vec<String> {
    let path = format!("/api/v1/search?q={}&since=1h&limit=1000", urlencode(q));
    let (status, body) = server.get_json(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncated"], false, "{q}: {}", body["inspected"]);
    let mut ids: Vec<String> = body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_keeps_every_error_and_the_rest_at_its_rate() {
    let all_dir = tempfile::tempdir().unwrap();
    let all = Server::start(all_dir.path(), &[]);
    let sampled_dir = tempfile::tempdir().unwrap();
    let sampled = Server::start(
        sampled_dir.path(),
        &[
            "--sample-rate",
            "5%",
            "--sample-decision-wait",
            "0s",
            "--block-max-age",
            "1s",
        ],
    );
    send(&all).await;
    send(&sampled).await;

    // Wait until every trace has been decided (cuts come each second).
    let policies = ["error", "slow", "warm_up", "rate", "young", "dropped"];
    let mut decided = 0.0;
    for _ in 0..600 {
        let s = scrape(&sampled).await;
        decided = policies
            .iter()
            .map(|p| s.value("chaintrace_sampling_traces_total", &[("policy", p)]))
            .sum::<f64>();
        if decided >= TRACES as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(decided, TRACES as f64, "traces decided");
    let s = scrape(&sampled).await;
    let count = |p: &str| s.value("chaintrace_sampling_traces_total", &[("policy", p)]);
    eprintln!(
        "sampling {TRACES} traces: {}",
        policies.map(|p| format!("{p} {}", count(p))).join(", ")
    );

    // Every trace with an error is kept: the same set as without sampling.
    let errors = found(&all, "{ status = error }").await;
    assert!(errors.len() > 50, "{} error traces", errors.len());
    assert_eq!(found(&sampled, "{ status = error }").await, errors);
    assert_eq!(count("error"), errors.len() as f64);

    // Whatever is kept is a subset of what was sent, and says why.
    let everything = found(&all, "{ }").await;
    assert_eq!(everything.len() as u64, TRACES);
    let kept = found(&sampled, "{ }").await;
    assert!(kept.iter().all(|id| everything.binary_search(id).is_ok()));
    let kept_count = TRACES as f64 - count("dropped");
    assert_eq!(kept.len() as f64, kept_count);
    let labelled = found(&sampled, "{ span.chaintrace.sampling.policy != \"\" }").await;
    assert_eq!(labelled, kept, "every kept root carries its policy");

    // The plain rest is kept at the rate: within four standard deviations.
    let by_rate = found(&sampled, "{ span.chaintrace.sampling.rate = 0.05 }").await;
    assert_eq!(by_rate.len() as f64, count("rate"));
    let rest = count("rate") + count("dropped");
    let sigma = (rest * RATE * (1.0 - RATE)).sqrt();
    assert!(
        (count("rate") - rest * RATE).abs() < 4.0 * sigma,
        "{} of {rest} kept at {RATE}",
        count("rate")
    );
    // Weighted by 1 / rate, the kept traces estimate all that were sent.
    let estimate = (kept_count - count("rate")) + count("rate") / RATE;
    let spread = (rest * (1.0 - RATE) / RATE).sqrt();
    assert!(
        (estimate - TRACES as f64).abs() < 4.0 * spread,
        "estimated {estimate} of {TRACES}"
    );
    // Analytics say so, and weight: the estimate of traces and of
    // process_query spans is the one above; errors stay exact.
    let (status, ops) = sampled
        .get_json("/api/v1/analytics/operations?since=1h")
        .await;
    assert_eq!(status, 200, "{ops}");
    assert_eq!(ops["estimated"], true, "{ops}");
    assert_eq!(ops["sampled_traces"].as_f64(), Some(kept_count));
    assert_eq!(ops["traces"].as_f64(), Some(estimate), "{ops}");
    let (_, truth) = all.get_json("/api/v1/analytics/operations?since=1h").await;
    assert_eq!(truth["estimated"], false);
    assert_eq!(truth["traces"], TRACES);
    let roots = |answer: &Value| -> (f64, f64, f64) {
        answer["operations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["name"] == "process_query")
            .fold((0.0, 0.0, 0.0), |(c, s, e), o| {
                (
                    c + o["count"].as_f64().unwrap(),
                    s + o["sampled_count"].as_f64().unwrap(),
                    e + o["error_count"].as_f64().unwrap(),
                )
            })
    };
    let (count, sampled_count, _) = roots(&ops);
    assert_eq!((count, sampled_count), (estimate, kept_count));
    let (true_count, _, _) = roots(&truth);
    assert_eq!(true_count, TRACES as f64);
    let (status, sampled_errors) = sampled.get_json("/api/v1/analytics/errors?since=1h").await;
    assert_eq!(status, 200);
    let (_, all_errors) = all.get_json("/api/v1/analytics/errors?since=1h").await;
    assert_eq!(
        sampled_errors["estimated"], false,
        "every error trace is kept"
    );
    let groups = |answer: &Value| -> Vec<String> {
        let mut g: Vec<String> = answer["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} ×{}",
                    e["service"], e["operation"], e["error_type"], e["count"]
                )
            })
            .collect();
        g.sort();
        g
    };
    assert_eq!(groups(&sampled_errors), groups(&all_errors));
    // SQL does not weight by itself; sample_weight gives the same estimate.
    let roots = sql(
        &sampled,
        "SELECT count(*) AS n, sum(sample_weight) AS est FROM spans WHERE parent_span_id IS NULL",
    )
    .await;
    assert_eq!(roots["rows"][0][0].as_f64(), Some(kept_count), "{roots}");
    assert_eq!(roots["rows"][0][1].as_f64(), Some(estimate), "{roots}");
    let spans = s.value("chaintrace_sampling_spans_kept_total", &[])
        + s.value("chaintrace_sampling_spans_dropped_total", &[]);
    assert_eq!(spans, (TRACES * 7) as f64);
}

#[test]
fn a_bad_sample_rate_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (rate, says) in [
        ("0", "out of range"),
        ("150%", "out of range"),
        ("lots", "not a rate"),
    ] {
        let (ok, _, err) = chaintrace(&["serve", "--data-dir", data, "--sample-rate", rate]);
        assert!(!ok, "--sample-rate {rate} accepted");
        assert!(err.contains(says), "--sample-rate {rate}: {err}");
    }
    let file = dir.path().join("sampling.toml");
    std::fs::write(&file, "base_rate = 0.05\n[[keep]]\nquery = '{ name = }'\n").unwrap();
    let (ok, _, err) = chaintrace(&[
        "serve",
        "--data-dir",
        data,
        "--sampling",
        file.to_str().unwrap(),
    ]);
    assert!(!ok, "a keep rule that does not parse was accepted");
    assert!(err.contains("keep rule 1") && err.contains("at 9"), "{err}");
}
