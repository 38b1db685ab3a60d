//! Hostile input against the whole ingest handler over real HTTP: arbitrary bytes, mangled
//! fixtures, deep nesting, huge numbers, invalid UTF-8, duplicate keys, NaN-like strings,
//! enormous arrays. Every answer is a JSON `{"code","message"}` error or a success, never a
//! 5xx, and the service keeps serving.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use wdtpipe_tests::{PipelineOptions, fixtures};

fn mangled_fixture() -> impl Strategy<Value = Vec<u8>> {
    let bodies: Vec<Vec<u8>> = fixtures().into_iter().map(|f| f.body).collect();
    (
        0..bodies.len(),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        any::<usize>(),
        any::<bool>(),
    )
        .prop_map(move |(i, flips, cut, truncate)| {
            let mut body = bodies[i].clone();
            for (at, byte) in flips {
                let at = at % body.len();
                body[at] = byte;
            }
            if truncate {
                body.truncate(cut % (body.len() + 1));
            }
            body
        })
}

fn hostile_json() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (1usize..5000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        (1usize..100).prop_map(|n| format!(r#"{{"paid": {}}}"#, "9".repeat(n * 10)).into_bytes()),
        Just(br#"{"tid":"T1","tid":{"x":1},"details_list":[{"num":"NaN"}]}"#.to_vec()),
        Just(br#"{"tid":"T1","paid":"NaN","details_list":[{"num":"Infinity","goods_no":"G","goods_name":"n"}]}"#.to_vec()),
        (0usize..20_000).prop_map(|n| format!("[{}]", vec!["{}"; n].join(",")).into_bytes()),
        Just(b"{\"tid\":\"\xc3\x28\"}".to_vec()),
        Just(br#"{"details_list":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]"}"#.to_vec()),
        Just(br#"{"kuaidi100Data":"{\"ischeck\":{\"a\":[1,2,{\"b\":null}]}}"}"#.to_vec()),
        "\\PC{0,200}".prop_map(String::into_bytes),
    ]
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1024),
        mangled_fixture(),
        hostile_json(),
    ]
}

/// No body makes ingest panic, answer 5xx, or answer anything but a JSON error or success;
/// afterwards a valid callback is still accepted.
#[test]
fn hostile_bodies_get_clean_answers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sandbox, pipeline) =
        runtime.block_on(wdtpipe_tests::with_sandbox(PipelineOptions::default()));
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&any_body(), |body| {
            let (status, answer) = runtime.block_on(pipeline.post(&body));
            prop_assert!(
                [200, 400, 413, 415, 422].contains(&status),
                "status {} for {:?}: {}",
                status,
                String::from_utf8_lossy(&body[..body.len().min(200)]),
                answer
            );
            let answer: &Value = &answer;
            if status == 200 {
                prop_assert_eq!(&answer["code"], 0);
            } else {
                prop_assert_eq!(&answer["code"], status);
                prop_assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
            Ok(())
        })
        .unwrap();
    runtime.block_on(async {
        let (status, _) = pipeline.post(&wdtpipe_tests::fixture("01-").body).await;
        assert_eq!(status, 200, "still serving");
        pipeline.shutdown().await;
        sandbox.stop().await;
    });
}
