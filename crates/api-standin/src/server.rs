//! The HTTP side: a loopback server on its own thread that records requests and plays the
//! script.
//!
//! It is built on hyper's HTTP/1 server rather than a hand-written parser: the CLI's HTTP
//! client uses keep-alive, may pipeline and sends bodies of tens of kilobytes, and a stand-in
//! that mis-frames one of those would make the tests flaky in ways that look like CLI bugs.
//! hyper with only `server` + `http1` builds quickly and does the framing right.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use agent::Usage;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::request::RecordedRequest;
use crate::script::{Answer, AnswerKind, Block, Script};
use crate::sse;

/// A Messages-API stand-in listening on `127.0.0.1` at an ephemeral port.
///
/// It serves from a thread of its own with its own runtime, so it works the same from a
/// synchronous test, a `#[tokio::test]`, or any runtime flavour. Dropping it stops the server;
/// requests still waiting on an answer (see [`Answer::hang`]) are cut off.
///
/// What it answers:
/// - `POST /v1/messages` with `"stream": true`: the next answer of the [`Script`], as
///   server-sent events (or as the scripted HTTP error, delay or silence);
/// - `POST /v1/messages` without `stream`: a whole message with the text `stand-in` and zero
///   usage, without using up the script (the CLI 2.1.328 sends none in `-p` mode);
/// - `POST /v1/messages/count_tokens`: `{"input_tokens": 1}`;
/// - anything else: `404` with the API's `not_found_error` body.
///
/// Every request is recorded, in the order received (see [`StandIn::requests`]).
pub struct StandIn {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    received: watch::Receiver<usize>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    script: Script,
    requests: Vec<RecordedRequest>,
    served: Usage,
    next_id: u64,
    /// Counts streaming message requests received, for [`StandIn::wait_for_message_requests`].
    received: watch::Sender<usize>,
}

impl StandIn {
    /// Starts a stand-in that answers with `script`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound or the server thread cannot start: this is test
    /// support, and a test cannot go on without it.
    pub fn start(script: Script) -> StandIn {
        let listener = StdTcpListener::bind("127.0.0.1:0")
            .expect("api-standin: cannot bind a port on 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("api-standin: cannot make the listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("api-standin: a bound listener has an address");
        let (received_tx, received_rx) = watch::channel(0);
        let state = Arc::new(Mutex::new(State {
            script,
            requests: Vec::new(),
            served: Usage::ZERO,
            next_id: 1,
            received: received_tx,
        }));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("api-standin-{}", addr.port()))
            .spawn(move || serve_until_shutdown(listener, thread_state, shutdown_rx))
            .expect("api-standin: cannot start the server thread");
        StandIn {
            addr,
            state,
            received: received_rx,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// Adds answers to the end of the script's queue.
    pub fn enqueue(&self, answers: impl IntoIterator<Item = Answer>) {
        self.lock().script.enqueue(answers);
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The streaming `POST /v1/messages` requests received so far: the ones the script
    /// answered.
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|request| request.is_messages() && request.is_streaming())
            .cloned()
            .collect()
    }

    /// The usage of every scripted message streamed to the end so far: what the CLI should
    /// report it used.
    pub fn served_usage(&self) -> Usage {
        self.lock().served
    }

    /// Waits until at least `count` streaming message requests have arrived, for at most
    /// `within`. Returns whether they did. Call it from a tokio runtime with time enabled.
    pub async fn wait_for_message_requests(&self, count: usize, within: Duration) -> bool {
        let mut received = self.received.clone();
        tokio::time::timeout(within, received.wait_for(|seen| *seen >= count))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("addr", &self.addr).finish()
    }
}

/// Locks the state, shrugging off poisoning: a panic in one handler must not hide the
/// requests from the test that wants to see what happened.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn serve_until_shutdown(
    listener: StdTcpListener,
    state: Arc<Mutex<State>>,
    shutdown: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("api-standin: cannot build the server's runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .expect("api-standin: cannot register the listener with the runtime");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            handle(Arc::clone(&state), request)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    });
    // Dropping the runtime cancels every connection task, including answers that hang.
    drop(runtime);
}

/// What to do with one request, decided under the lock.
enum Plan {
    Scripted { answer: Answer, message_id: u64 },
    WholeMessage { message_id: u64 },
    CountTokens,
    NotFound,
}

async fn handle(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<ChannelBody>, Infallible> {
    let recorded = record(request).await;
    let model = recorded.model().unwrap_or("claude-standin").to_owned();
    let plan = lock(&state).plan(recorded);
    let response = match plan {
        Plan::Scripted { answer, message_id } => scripted(state, answer, message_id, &model).await,
        Plan::WholeMessage { message_id } => json_response(
            StatusCode::OK,
            &sse::whole_message(
                &format!("msg_standin_{message_id}"),
                &model,
                "stand-in",
                Usage::ZERO,
            ),
            &[],
        ),
        Plan::CountTokens => {
            json_response(StatusCode::OK, &serde_json::json!({"input_tokens": 1}), &[])
        }
        Plan::NotFound => json_response(
            StatusCode::NOT_FOUND,
            &sse::error_body(
                "not_found_error",
                "the api-standin serves /v1/messages only",
                "req_standin_404",
            ),
            &[],
        ),
    };
    Ok(response)
}

/// Reads a whole request into the record a test sees.
async fn record(request: Request<Incoming>) -> RecordedRequest {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let mut headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map(|path| path.as_str().to_owned())
            .unwrap_or_else(|| parts.uri.path().to_owned()),
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

impl State {
    /// Decides what to do with a request, takes its answer from the script when it has one,
    /// and records it.
    fn plan(&mut self, recorded: RecordedRequest) -> Plan {
        let message_id = self.next_id;
        let plan = if recorded.is_messages() && recorded.is_streaming() {
            self.next_id += 1;
            let answer = self.script.next_answer(&recorded);
            Plan::Scripted { answer, message_id }
        } else if recorded.is_messages() {
            self.next_id += 1;
            match self.script.whole_messages.clone() {
                Some(answer) => Plan::Scripted { answer, message_id },
                None => Plan::WholeMessage { message_id },
            }
        } else if recorded.method == "POST"
            && recorded.path.starts_with("/v1/messages/count_tokens")
        {
            Plan::CountTokens
        } else {
            Plan::NotFound
        };
        let streaming = recorded.is_messages() && recorded.is_streaming();
        self.requests.push(recorded);
        if streaming {
            self.received.send_modify(|seen| *seen += 1);
        }
        plan
    }
}

/// The response to a streaming message request: the script's answer.
async fn scripted(
    state: Arc<Mutex<State>>,
    answer: Answer,
    message_id: u64,
    model: &str,
) -> Response<ChannelBody> {
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    match answer.kind {
        AnswerKind::Hang => std::future::pending().await,
        AnswerKind::Error {
            status,
            error_type,
            message,
            headers,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(
                status,
                &sse::error_body(&error_type, &message, &format!("req_standin_{message_id}")),
                &headers,
            )
        }
        AnswerKind::Message {
            blocks,
            stop_reason,
        } => {
            let stream = MessageStream {
                message_id,
                model: model.to_owned(),
                blocks,
                stop_reason,
                usage: answer.usage,
                pause: answer.mid_stream_pause,
            };
            let (sender, body) = ChannelBody::channel();
            tokio::spawn(stream.send(sender, state));
            event_stream_response(body, message_id)
        }
    }
}

/// A scripted message on its way out as server-sent events.
struct MessageStream {
    message_id: u64,
    model: String,
    blocks: Vec<Block>,
    stop_reason: String,
    usage: Usage,
    /// Waited after `message_start`.
    pause: Duration,
}

impl MessageStream {
    /// Sends the events one by one; the usage counts as served once the last is sent. Stops
    /// when the client hangs up.
    async fn send(self, sender: mpsc::Sender<Bytes>, state: Arc<Mutex<State>>) {
        let id = format!("msg_standin_{}", self.message_id);
        if !send(&sender, sse::message_opening(&id, &self.model, self.usage)).await {
            return;
        }
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
        for (index, block) in self.blocks.iter().enumerate() {
            let tool_id = format!("toolu_standin_{}_{index}", self.message_id);
            if !send(&sender, sse::content_block(index, block, &tool_id)).await {
                return;
            }
        }
        if send(&sender, sse::message_closing(&self.stop_reason, self.usage)).await {
            lock(&state).served += self.usage;
        }
    }
}

fn event_stream_response(body: ChannelBody, message_id: u64) -> Response<ChannelBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&format!("req_standin_{message_id}")) {
        headers.insert("request-id", value);
    }
    response
}

async fn send(sender: &mpsc::Sender<Bytes>, text: String) -> bool {
    sender.send(Bytes::from(text)).await.is_ok()
}

fn json_response(
    status: StatusCode,
    body: &Value,
    extra_headers: &[(String, String)],
) -> Response<ChannelBody> {
    let bytes = Bytes::from(body.to_string());
    let length = bytes.len();
    let mut response = Response::new(ChannelBody::full(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    for (name, value) in extra_headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

/// A response body fed through a channel, so a stream can pause between events.
struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    fn channel() -> (mpsc::Sender<Bytes>, ChannelBody) {
        let (sender, receiver) = mpsc::channel(16);
        (sender, ChannelBody { receiver })
    }

    fn full(bytes: Bytes) -> ChannelBody {
        let (sender, body) = ChannelBody::channel();
        sender
            .try_send(bytes)
            .expect("invariant: a new channel with room for 16 has room for one");
        body
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// A bare HTTP/1.1 exchange, so these tests exercise the server without an HTTP client.
    fn post(standin: &StandIn, path: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(standin.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-Claude-Code-Session-Id: s-1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn streams_a_scripted_text_answer_and_counts_its_usage() {
        let usage = Usage {
            input_tokens: 7,
            output_tokens: 3,
            cache_read_tokens: 2,
            cache_creation_tokens: 1,
        };
        let standin = StandIn::start(Script::queue([Answer::text("hi there").with_usage(usage)]));
        let response = post(
            &standin,
            "/v1/messages?beta=true",
            r#"{"model":"m1","stream":true,"messages":[]}"#,
        );
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("text/event-stream"));
        for name in [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ] {
            assert!(response.contains(&format!("event: {name}\n")), "{name}");
        }
        assert!(response.contains(r#""text":"hi there""#));
        assert!(response.contains(r#""model":"m1""#));
        assert_eq!(standin.served_usage(), usage);
        let requests = standin.message_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].session_id(), Some("s-1"));
        assert_eq!(requests[0].path, "/v1/messages?beta=true");
    }

    #[test]
    fn answers_errors_with_the_api_error_body_and_headers() {
        let standin = StandIn::start(Script::queue([
            Answer::overloaded(),
            Answer::rate_limited(Duration::from_secs(30)),
        ]));
        let body = r#"{"stream":true}"#;
        let overloaded = post(&standin, "/v1/messages", body);
        assert!(overloaded.starts_with("HTTP/1.1 529"), "{overloaded}");
        assert!(overloaded.contains(r#""type":"overloaded_error""#));
        let limited = post(&standin, "/v1/messages", body);
        assert!(limited.starts_with("HTTP/1.1 429"), "{limited}");
        assert!(limited.contains("retry-after: 30"));
        assert!(limited.contains("anthropic-ratelimit-requests-reset: "));
        assert_eq!(standin.served_usage(), Usage::ZERO);
    }

    #[test]
    fn side_requests_do_not_use_up_the_script() {
        let standin = StandIn::start(Script::queue([Answer::text("scripted")]));
        let whole = post(&standin, "/v1/messages", r#"{"model":"m"}"#);
        assert!(whole.contains(r#""text":"stand-in""#), "{whole}");
        let count = post(&standin, "/v1/messages/count_tokens", "{}");
        assert!(count.contains(r#"{"input_tokens":1}"#), "{count}");
        let missing = post(&standin, "/v1/other", "{}");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let streamed = post(&standin, "/v1/messages", r#"{"stream":true}"#);
        assert!(streamed.contains("scripted"), "{streamed}");
        assert_eq!(standin.requests().len(), 4);
        assert_eq!(standin.message_requests().len(), 1);
    }

    #[test]
    fn delays_come_before_the_headers_and_inside_the_stream() {
        let pause = Duration::from_millis(150);
        let standin = StandIn::start(Script::queue([Answer::text("late")
            .with_delay(pause)
            .with_mid_stream_pause(pause)]));
        let started = std::time::Instant::now();
        let response = post(&standin, "/v1/messages", r#"{"stream":true}"#);
        assert!(started.elapsed() >= pause * 2, "{:?}", started.elapsed());
        assert!(response.contains(r#""text":"late""#), "{response}");
    }

    #[test]
    fn a_hanging_answer_is_cut_off_when_the_stand_in_stops() {
        let standin = StandIn::start(Script::always(Answer::hang()));
        let mut stream = TcpStream::connect(standin.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let body = r#"{"stream":true}"#;
        write!(
            stream,
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(runtime.block_on(standin.wait_for_message_requests(1, Duration::from_secs(10))));
        drop(standin);
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response);
        assert!(read.is_ok(), "the connection closes instead of timing out");
        assert!(response.is_empty(), "nothing was answered");
    }
}
