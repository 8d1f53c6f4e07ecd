//! A programmable HTTP receiver: what it answers, what it saw.

#[allow(unused_imports)]
use super::*;

/// One request as a receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    /// The query string, when the request had one.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the receiver had read the whole request.
    pub at: std::time::Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or_else(|_| panic!("header {name} is not ASCII: {v:?}"))
        })
    }

    /// `X-Webhook-Id`, which every delivery must carry.
    pub fn webhook_id(&self) -> &str {
        self.header("x-webhook-id")
            .unwrap_or_else(|| panic!("delivery without X-Webhook-Id: {self:?}"))
    }

    /// `X-Webhook-Attempt`, which every delivery must carry.
    pub fn attempt(&self) -> &str {
        self.header("x-webhook-attempt")
            .unwrap_or_else(|| panic!("delivery without X-Webhook-Attempt: {self:?}"))
    }
}

/// What the receiver answers to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Wait this long before answering (to keep deliveries in flight).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    pub fn retry_after(mut self, value: &str) -> Reply {
        self.retry_after = Some(value.to_owned());
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

pub(crate) struct ReceiverState {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    tx: mpsc::UnboundedSender<Recorded>,
}

/// An HTTP server on 127.0.0.1 that records every request and answers from a
/// script (a queue of replies, then a default reply). It can be stopped and
/// started again on the same port to simulate an outage.
pub struct Receiver {
    pub addr: SocketAddr,
    pub(crate) state: Arc<ReceiverState>,
    pub(crate) rx: mpsc::UnboundedReceiver<Recorded>,
    pub(crate) server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// While stopped: the port, bound but not listening. Connections to it are refused, and
    /// no other socket can be given it: a daemon started meanwhile on `127.0.0.1:0` once got
    /// this very port, and delivered the route's events to itself.
    pub(crate) held: Option<tokio::net::TcpSocket>,
}

impl Receiver {
    /// Starts a receiver answering 200 to everything.
    pub async fn start() -> Receiver {
        let socket = port_sharing_socket();
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind receiver");
        let listener = socket.listen(1024).expect("listen receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(ReceiverState {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::status(200)),
            tx,
        });
        let server = Some(serve_receiver(listener, state.clone()));
        Receiver {
            addr,
            state,
            rx,
            server,
            held: None,
        }
    }

    /// `http://ADDR/hook`
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Queues replies for the next requests (in order); then the default.
    pub fn push_replies(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn set_default_reply(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// Stops accepting and closes every connection (idle keep-alive ones
    /// included); the port refuses connections until [`Receiver::restart`], and stays this
    /// receiver's meanwhile.
    pub async fn stop(&mut self) {
        let (stop_tx, handle) = self.server.take().expect("receiver is not running");
        // Held before the listener closes, so the port is never free for a moment: taken back
        // only after the close, another socket of the suite once got it in that gap.
        let held = port_sharing_socket();
        held.bind(self.addr).unwrap_or_else(|e| {
            panic!(
                "could not hold the receiver's port {} beside its listener: {e}",
                self.addr
            )
        });
        let _ = stop_tx.send(());
        timeout(Duration::from_secs(10), handle)
            .await
            .expect("receiver did not shut down within 10s")
            .expect("receiver task panicked");
        self.held = Some(held);
        eprintln!("[harness] receiver {} stopped", self.addr);
    }

    /// Starts serving again on the same port.
    pub async fn restart(&mut self) {
        assert!(self.server.is_none(), "receiver is already running");
        let held = self.held.take().expect("a stopped receiver holds its port");
        let listener = held
            .listen(1024)
            .unwrap_or_else(|e| panic!("could not listen again on {}: {e}", self.addr));
        self.server = Some(serve_receiver(listener, self.state.clone()));
        eprintln!("[harness] receiver {} started again", self.addr);
    }

    /// The next recorded request, waiting at most `within`.
    pub async fn next_within(&mut self, within: Duration, what: &str) -> Recorded {
        match timeout(within, self.rx.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => unreachable!("the receiver state holds a sender"),
            Err(_) => panic!(
                "receiver {}: no request within {within:?} while waiting for {what}",
                self.addr
            ),
        }
    }

    /// The next recorded request, waiting at most [`DELIVERY_TIMEOUT`].
    pub async fn next(&mut self, what: &str) -> Recorded {
        self.next_within(DELIVERY_TIMEOUT, what).await
    }

    /// Exactly the next `n` requests.
    pub async fn next_n(&mut self, n: usize, what: &str) -> Vec<Recorded> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => got.push(r),
                Ok(None) => unreachable!("the receiver state holds a sender"),
                Err(_) => panic!(
                    "receiver {}: got {} of {n} requests within {DELIVERY_TIMEOUT:?} \
                     while waiting for {what}; ids so far: {:?}",
                    self.addr,
                    got.len(),
                    got.iter()
                        .map(|r| r.header("x-webhook-id"))
                        .collect::<Vec<_>>()
                ),
            }
        }
        got
    }

    /// Receives until every id in `ids` has been seen at least once (or
    /// `within` passes, which fails naming the missing ids). Returns every
    /// request received meanwhile, including ones with other ids and repeats.
    pub async fn until_ids(
        &mut self,
        ids: &HashSet<String>,
        within: Duration,
        what: &str,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + within;
        let mut missing: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut got = Vec::new();
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => {
                    if let Some(id) = r.header("x-webhook-id") {
                        missing.remove(id);
                    }
                    got.push(r);
                }
                Ok(None) => unreachable!("the receiver state holds a sender"),
                Err(_) => {
                    let mut missing: Vec<&str> = missing.into_iter().collect();
                    missing.sort_unstable();
                    panic!(
                        "receiver {}: {} of {} ids never arrived within {within:?} ({what}); \
                         missing: {:?}",
                        self.addr,
                        missing.len(),
                        ids.len(),
                        missing
                    );
                }
            }
        }
        got
    }

    /// Receives until a request with `X-Webhook-Id: id` arrives; returns the
    /// requests received before it (the marker itself is not included).
    pub async fn until_marker(&mut self, id: &str) -> Vec<Recorded> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        let mut before = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) if r.header("x-webhook-id") == Some(id) => return before,
                Ok(Some(r)) => before.push(r),
                Ok(None) => unreachable!("the receiver state holds a sender"),
                Err(_) => panic!(
                    "receiver {}: marker {id} did not arrive within {DELIVERY_TIMEOUT:?}; \
                     received meanwhile: {:?}",
                    self.addr,
                    before
                        .iter()
                        .map(|r| r.header("x-webhook-id"))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Requests already received and not yet consumed (does not wait).
    pub fn drain_now(&mut self) -> Vec<Recorded> {
        let mut got = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            got.push(r);
        }
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some((stop_tx, handle)) = self.server.take() {
            let _ = stop_tx.send(());
            handle.abort();
        }
    }
}

pub(crate) fn serve_receiver(
    listener: tokio::net::TcpListener,
    state: Arc<ReceiverState>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = Router::new().fallback(receive).with_state(state);
    let handle = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
            .expect("receiver server");
    });
    (stop_tx, handle)
}

pub(crate) async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.default.lock().unwrap().clone());
    let _ = state.tx.send(Recorded {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
        at: std::time::Instant::now(),
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).expect("valid status");
    let mut response = (status, "receiver says hi").into_response();
    if let Some(value) = reply.retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&value).expect("Retry-After value"),
        );
    }
    response
}

/// A TCP listener that accepts connections and never answers (a hung
/// destination). Stops when dropped.
pub struct Blackhole {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Blackhole {
    pub async fn start() -> Blackhole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind blackhole");
        let addr = listener.local_addr().expect("blackhole addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Blackhole { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL on 127.0.0.1 where nothing listens (connections are refused).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/hook")
}
