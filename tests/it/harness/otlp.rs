//! A real OTLP/HTTP trace collector on loopback: `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, decoded with the OpenTelemetry protocol's own types, answered
//! as a collector does. It keeps every span, and every request body as received (to look for
//! what must never be exported).

#[allow(unused_imports)]
use super::*;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
pub use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use prost::Message as _;

#[derive(Default)]
struct Received {
    spans: Vec<OtlpSpan>,
    bodies: Vec<u8>,
}

pub struct Collector {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> Collector {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", axum::routing::post(collect))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("collector addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the collector");
        });
        Collector {
            addr,
            received,
            task,
        }
    }

    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<OtlpSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Every request body received so far, one after the other.
    pub fn bodies(&self) -> Vec<u8> {
        self.received.lock().unwrap().bodies.clone()
    }

    /// Waits for the spans named `name` whose attribute `key` is the string `value`, until
    /// `count` have arrived.
    pub async fn await_spans(
        &self,
        name: &str,
        key: &str,
        value: &str,
        count: usize,
    ) -> Vec<OtlpSpan> {
        eventually(
            Duration::from_secs(15),
            &format!("{count} span(s) {name} with {key}={value} at the collector"),
            || async {
                let found: Vec<OtlpSpan> = self
                    .spans()
                    .into_iter()
                    .filter(|s| s.name == name && attribute(s, key).as_deref() == Some(value))
                    .collect();
                (found.len() >= count).then_some(found)
            },
        )
        .await
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn collect(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> Response {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let mut received = received.lock().unwrap();
    received.bodies.extend_from_slice(&body);
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            received.spans.extend(scope.spans);
        }
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// Lower-case hex of trace and span ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attribute, as text (strings as they are, numbers in decimal).
pub fn attribute(span: &OtlpSpan, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        OtlpValue::StringValue(s) => Some(s.clone()),
        OtlpValue::IntValue(i) => Some(i.to_string()),
        OtlpValue::BoolValue(b) => Some(b.to_string()),
        OtlpValue::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}
