//! The example consumers of `examples/consumers/`, run as a user runs them.
//!
//! hookfan delivers every signed Stream fixture to two moto queues (one `raw`, one
//! `stream_compressed`), a message with a bad signature is added to each, and then the Python
//! (boto3) or Node (AWS SDK v3) consumer drains the queue as a subprocess. Each must print
//! every event's type and webhook id, refuse the forged one, delete exactly what it handled,
//! and leave the forged one to the queue's redrive policy (it reaches the dead-letter queue).
//! The Lambda handler is called with its recorded SQS event and must report exactly the
//! forged record in `batchItemFailures`.
//!
//! The consumers' dependencies are installed by the tests, pinned, once per target dir:
//! `pip install -r examples/consumers/python/requirements.txt` into `target/consumers-venv`,
//! and `npm ci` of `examples/consumers/node/` in `target/consumers-node` (node and npm must
//! be on PATH: Debian/Ubuntu `apt-get install nodejs npm`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};

use crate::harness::*;
use crate::moto::*;

/// How long one consumer run may take (interpreter start, SDK imports, a few receives).
const CONSUMER_TIMEOUT: Duration = Duration::from_secs(120);
/// The queues' visibility timeout: long enough that a consumer's last, empty receive comes
/// before the refused message is visible again, short enough for the redrive to be seen.
const VISIBILITY_SECONDS: u64 = 5;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn consumers() -> PathBuf {
    repo().join("examples/consumers")
}

/// `<target>/<name>` filled by `install` once per target dir and per content of `inputs`
/// (a marker file holds them), under a lock shared by parallel tests and test binaries.
fn install_once(name: &str, inputs: &[PathBuf], install: impl FnOnce(&Path)) -> PathBuf {
    let parent = target_dir();
    std::fs::create_dir_all(&parent).expect("create the target dir");
    let dir = parent.join(name);
    let marker = dir.join(".hookfan-installed");
    let wanted: String = inputs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        .collect();
    let _lock = install_lock(&parent.join(format!("{name}.lock")));
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("remove the unfinished {}: {e}", dir.display()));
    }
    eprintln!(
        "[consumers] installing {} (once per target dir)",
        dir.display()
    );
    install(&dir);
    std::fs::write(&marker, wanted).expect("write the install marker");
    dir
}

/// The venv of the Python consumer and the Lambda handler (one requirements file pins both:
/// the test checks they agree).
fn python() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let requirements = consumers().join("python/requirements.txt");
        let venv = install_once("consumers-venv", std::slice::from_ref(&requirements), |venv| {
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "venv"]).arg(venv);
            run_or_panic(cmd, "The consumer tests need python3 with the venv module (Debian/Ubuntu: apt-get install python3-venv).");
            let mut cmd = Command::new(venv.join("bin/pip"));
            cmd.args(["install", "--disable-pip-version-check", "--no-input", "--quiet", "-r"])
                .arg(&requirements);
            run_or_panic(cmd, "The consumer tests need boto3 and getstream from PyPI (pip must reach the package index).");
        });
        venv.join("bin/python")
    })
    .clone()
}

/// A copy of `examples/consumers/node` with its locked dependencies installed.
fn node_consumer() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let source = consumers().join("node");
        let files = ["package.json", "package-lock.json", "consumer.mjs"];
        let inputs: Vec<PathBuf> = files.iter().map(|f| source.join(f)).collect();
        install_once("consumers-node", &inputs, |dir| {
            std::fs::create_dir_all(dir).expect("create the node consumer dir");
            for file in files {
                std::fs::copy(source.join(file), dir.join(file))
                    .unwrap_or_else(|e| panic!("copy {file}: {e}"));
            }
            let mut cmd = Command::new("npm");
            cmd.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(dir);
            run_or_panic(cmd, "The Node consumer test needs node and npm on PATH (Debian/Ubuntu: apt-get install nodejs npm) and the npm registry.");
        })
    })
    .clone()
}

/// Runs `cmd` to completion off the runtime, with no proxy settings; returns (stdout,
/// stderr) and requires exit 0.
async fn run(mut cmd: Command) -> (String, String) {
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    let described = format!("{cmd:?}");
    let out = tokio::time::timeout(
        CONSUMER_TIMEOUT,
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .unwrap_or_else(|_| panic!("{described} did not finish within {CONSUMER_TIMEOUT:?}"))
    .expect("join the consumer")
    .unwrap_or_else(|e| panic!("run {described}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "[consumers] {described} -> {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    assert!(
        out.status.success(),
        "{described} failed: {}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// A queue whose redrive policy moves a message to `dlq` on its second receive.
async fn queue_with_redrive(aws: &Aws, name: &str, dlq_arn: &str) -> String {
    let url = aws.create_queue(&unique_name(name)).await;
    let policy = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1 });
    aws.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            VISIBILITY_SECONDS.to_string(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("SetQueueAttributes {url}: {e:?}"));
    url
}

/// A message that looks like hookfan's but whose body is not what its signature signs;
/// returns its message id.
async fn send_forged(aws: &Aws, queue_url: &str) -> String {
    let body = event_body("message.new", "forged");
    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .expect("attribute")
    };
    let out = aws
        .sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(String::from_utf8(body).expect("UTF-8"))
        .message_attributes("event_type", attr("message.new"))
        .message_attributes("webhook_id", attr("forged"))
        .message_attributes("signature", attr(&sign(SECRET, b"another body")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("SendMessage {queue_url}: {e:?}"));
    out.message_id().expect("a message id").to_owned()
}

/// `(ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible)`.
async fn counts(aws: &Aws, queue_url: &str) -> (usize, usize) {
    let out = aws
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetQueueAttributes {queue_url}: {e:?}"));
    let get = |name: &QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(name))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} for {queue_url}: {out:?}"))
    };
    (
        get(&QueueAttributeName::ApproximateNumberOfMessages),
        get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Which consumer a test runs.
#[derive(Clone, Copy, Debug)]
enum Consumer {
    Python,
    Node,
}

impl Consumer {
    fn command(self, moto: &Moto, queue_url: &str) -> Command {
        let mut cmd = match self {
            Consumer::Python => {
                let mut cmd = Command::new(python());
                cmd.arg(consumers().join("python/consumer.py"));
                cmd
            }
            Consumer::Node => {
                let dir = node_consumer();
                let mut cmd = Command::new("node");
                cmd.arg(dir.join("consumer.mjs")).current_dir(dir);
                cmd
            }
        };
        cmd.arg("--drain")
            .envs(daemon_aws_env())
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("SQS_QUEUE_URL", queue_url)
            .env("STREAM_API_KEY", API_KEY)
            .env("STREAM_API_SECRET", SECRET);
        cmd
    }
}

/// The whole story for one consumer: hookfan → two queues (raw and compressed) → the
/// consumer, which handles every fixture, refuses the forged message and leaves it to the
/// redrive policy.
async fn consumer_handles_what_hookfan_sends(consumer: Consumer) {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let dlq = aws.create_queue(&unique_name("consumer-dlq")).await;
    let dlq_arn = aws.queue_arn(&dlq).await;
    let raw = queue_with_redrive(&aws, "consumer-raw", &dlq_arn).await;
    let compressed = queue_with_redrive(&aws, "consumer-compressed", &dlq_arn).await;

    let config = aws_config()
        .route(
            AwsRoute::sqs("raw", &raw)
                .endpoint_url(moto.endpoint())
                .region(REGION),
        )
        .route(
            AwsRoute::sqs("compressed", &compressed)
                .endpoint_url(moto.endpoint())
                .region(REGION)
                .body("stream_compressed"),
        );
    let daemon = Daemon::start(config).await;
    let client = client();
    let fixtures = valid_fixtures();
    let mut expected = BTreeSet::new();
    for f in &fixtures {
        let id = format!("{}-{}", f.name, new_id());
        let answer = post_webhook(
            &client,
            &daemon.url(),
            f.body.clone(),
            &stream_headers(&id, &f.signature),
        )
        .await;
        assert_eq!(answer.status, 200, "{}: {answer:?}", f.name);
        expected.insert(format!("ok {} {id}", f.expected_type));
    }

    for queue in [&raw, &compressed] {
        aws.until_visible(queue, fixtures.len(), Duration::from_secs(15))
            .await;
        let forged = send_forged(&aws, queue).await;

        let (stdout, stderr) = run(consumer.command(moto, queue)).await;
        let handled: BTreeSet<String> = stdout.lines().map(str::to_owned).collect();
        assert_eq!(
            handled, expected,
            "{consumer:?} on {queue}: every fixture handled once, nothing else"
        );
        assert_eq!(stdout.lines().count(), fixtures.len(), "{stdout}");
        let failed: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("failed "))
            .collect();
        assert_eq!(failed.len(), 1, "only the forged message fails: {stderr}");
        assert!(
            failed[0].starts_with(&format!("failed {forged}: "))
                && failed[0].contains("signature mismatch"),
            "{failed:?}"
        );
        assert_eq!(
            counts(&aws, queue).await,
            (0, 1),
            "{queue}: handled messages deleted, the forged one in flight"
        );
    }

    // The forged messages were left to the queues: once visible again, the next receive
    // moves each to the dead-letter queue (maxReceiveCount 1).
    let within = Duration::from_secs(VISIBILITY_SECONDS * 4);
    let what = "the forged messages in the dead-letter queue";
    eventually(within, what, || async {
        for queue in [&raw, &compressed] {
            assert!(aws.drain(queue).await.is_empty(), "{queue} redelivered");
        }
        counts(&aws, &dlq).await.0 == 2
    })
    .await;
    let dead = aws.drain(&dlq).await;
    assert!(dead.iter().all(|m| m.webhook_id() == "forged"), "{dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_consumer_verifies_decodes_deletes_and_leaves_failures_to_the_redrive_policy() {
    consumer_handles_what_hookfan_sends(Consumer::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_consumer_verifies_decodes_deletes_and_leaves_failures_to_the_redrive_policy() {
    consumer_handles_what_hookfan_sends(Consumer::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_handler_reports_only_the_forged_record_as_a_batch_item_failure() {
    let dir = consumers().join("lambda");
    let event = dir.join("sqs-event.json");
    let mut cmd = Command::new(python());
    cmd.args([
        "-c",
        "import json, sys, handler; print(json.dumps(handler.handler(json.load(open(sys.argv[1])), None)))",
    ])
    .arg(&event)
    .current_dir(&dir)
    .env("STREAM_API_SECRET", SECRET);
    let (stdout, _) = run(cmd).await;
    let lines: Vec<&str> = stdout.lines().collect();
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&event).expect("read the event")).unwrap();
    let records = recorded["Records"].as_array().expect("Records");
    assert_eq!(records.len(), 3);
    assert_eq!(
        &lines[..2],
        ["ok message.new wh-0001", "ok channel.created wh-0002"],
        "a raw and a stream_compressed record are handled: {stdout}"
    );
    let answer: serde_json::Value =
        serde_json::from_str(lines.last().expect("the handler's answer")).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({ "batchItemFailures": [{ "itemIdentifier": records[2]["messageId"] }] }),
        "only the record whose signature does not match goes back to the queue"
    );
}

#[test]
fn the_lambda_handler_and_the_python_consumer_pin_the_same_packages() {
    let read = |p: &str| std::fs::read_to_string(consumers().join(p)).expect(p);
    assert_eq!(
        read("python/requirements.txt"),
        read("lambda/requirements.txt")
    );
}
