//! A loopback HTTP proxy in front of moto: it records every AWS request a test makes (so tests
//! count exactly their own) and, when asked, injects AWS-shaped throttling errors, 500s and
//! connection resets into a chosen fraction of requests. It also gives moto's one answer the
//! SDK refuses (GetBucketVersioning's root element) the shape S3 gives it.

use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The signing name of the service (`kms`, `cloudformation`, `s3`, …).
    pub service: String,
    /// `X-Amz-Target`, the query `Action`, or `METHOD /path` for REST services.
    pub operation: String,
    /// The URL's query string (REST services put sub-operations there: `?versions`).
    pub query: String,
    /// The region of the request's SigV4 credential scope.
    pub region: String,
    /// The request body (lossy UTF-8): the parameters of query and JSON protocols.
    pub body: String,
    /// Whether a fault was injected instead of forwarding.
    pub fault: Option<Fault>,
}

impl Seen {
    /// The write the request makes to what a cluster runs, by its API name: a change set
    /// executed, a stack deleted or Route53 records changed (Route53 is a REST protocol, so
    /// its operation is seen as `POST /2013-04-01/hostedzone/ZONE/rrset`).
    pub fn cluster_write(&self) -> Option<&'static str> {
        match (self.service.as_str(), self.operation.as_str()) {
            ("cloudformation", "ExecuteChangeSet") => Some("ExecuteChangeSet"),
            ("cloudformation", "DeleteStack") => Some("DeleteStack"),
            ("route53", op) if op.starts_with("POST ") && op.ends_with("/rrset") => {
                Some("ChangeResourceRecordSets")
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    ServerError,
    Reset,
}

/// A request offered to an interceptor: a test may answer it itself, with a response shaped
/// like AWS's documented one, instead of letting moto answer.
pub struct Intercepted<'a> {
    pub service: &'a str,
    pub operation: &'a str,
    pub body: &'a str,
}

/// (status, body) to send instead of forwarding.
pub type Interceptor = Arc<dyn Fn(&Intercepted<'_>) -> Option<(u16, String)> + Send + Sync>;

/// Which requests fail: a deterministic pseudo-random `fraction` of them.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub fraction: f64,
    pub seed: u64,
}

pub struct Proxy {
    pub endpoint: String,
    faults_on: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    interceptor: Arc<Mutex<Option<Interceptor>>>,
    hold: Arc<Hold>,
}

/// Holding one request unanswered, so a test can kill the client at that exact point.
#[derive(Default)]
struct Hold {
    /// 1-based index of the request to hold; 0 for none.
    at: AtomicU64,
    /// Set once that request has arrived and is being held.
    held: std::sync::atomic::AtomicBool,
    seen: AtomicU64,
    release: tokio::sync::Notify,
}

impl Proxy {
    pub fn start(upstream: &str, faults: Option<Faults>) -> Proxy {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let interceptor = Arc::new(Mutex::new(None));
        let hold = Arc::new(Hold::default());
        let faults_on = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let state = Arc::new(Shared {
            faults_on: faults_on.clone(),
            upstream: upstream.trim_end_matches('/').to_string(),
            seen: seen.clone(),
            interceptor: interceptor.clone(),
            hold: hold.clone(),
            faults,
            counter: AtomicU64::new(0),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        });
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { state.handle(req).await }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Proxy {
            endpoint,
            faults_on,
            seen,
            interceptor,
            hold,
        }
    }

    /// Stops injecting faults: every later request is forwarded.
    pub fn stop_faults(&self) {
        self.faults_on.store(false, Ordering::SeqCst);
    }

    /// Lets `interceptor` answer requests before they reach moto.
    pub fn intercept(&self, interceptor: Interceptor) {
        *self.interceptor.lock().unwrap() = Some(interceptor);
    }

    /// Holds the `n`-th request from now (1-based) without answering it.
    pub fn hold_request(&self, n: u64) {
        self.hold.held.store(false, Ordering::SeqCst);
        self.hold.seen.store(0, Ordering::SeqCst);
        self.hold.at.store(n, Ordering::SeqCst);
    }

    /// Whether the held request has arrived.
    pub fn holding(&self) -> bool {
        self.hold.held.load(Ordering::SeqCst)
    }

    /// Stops holding: the held request's connection is dropped.
    pub fn release(&self) {
        self.hold.at.store(0, Ordering::SeqCst);
        self.hold.release.notify_waiters();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The cluster writes (`Seen::cluster_write`) among the requests seen, in order.
    pub fn cluster_writes(&self) -> Vec<&'static str> {
        self.seen().iter().filter_map(Seen::cluster_write).collect()
    }

    /// Requests forwarded to AWS (not faulted), optionally only of one service.
    pub fn forwarded(&self, service: Option<&str>) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.fault.is_none() && service.is_none_or(|name| s.service == name))
            .collect()
    }

    pub fn reset(&self) {
        self.seen.lock().unwrap().clear();
    }
}

struct Shared {
    faults_on: Arc<std::sync::atomic::AtomicBool>,
    upstream: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    interceptor: Arc<Mutex<Option<Interceptor>>>,
    hold: Arc<Hold>,
    faults: Option<Faults>,
    counter: AtomicU64,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One part of the SigV4 credential scope, `Credential=AKID/date/REGION/SERVICE/aws4_request`.
fn credential_scope(req: &Request<Incoming>, part: usize) -> String {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(part))
        .unwrap_or("unknown")
        .to_string()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The error each protocol uses to say "slow down", as AWS documents it.
fn throttle_response(service: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match service {
        "kms" => (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.1",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
        ),
        "s3" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>FAULT</RequestId></Error>".to_string(),
        ),
        "ec2" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>FAULT</RequestID></Response>".to_string(),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "text/xml",
            "<?xml version=\"1.0\"?><ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>FAULT</RequestId></ErrorResponse>".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "FAULT")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

impl Shared {
    fn pick_fault(&self) -> Option<Fault> {
        let faults = self.faults?;
        if !self.faults_on.load(Ordering::SeqCst) {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let roll = splitmix(faults.seed ^ n);
        if (roll % 10_000) as f64 >= faults.fraction * 10_000.0 {
            return None;
        }
        Some(match (roll >> 32) % 3 {
            0 => Fault::Throttle,
            1 => Fault::ServerError,
            _ => Fault::Reset,
        })
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        let service = credential_scope(&req, 3);
        let region = credential_scope(&req, 2);
        let target = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let method = req.method().clone();
        let path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        let action = String::from_utf8_lossy(&body)
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .map(str::to_string);
        let operation = target.or(action).unwrap_or_else(|| {
            format!(
                "{method} {}",
                path_and_query.split('?').next().unwrap_or("/")
            )
        });
        let at = self.hold.at.load(Ordering::SeqCst);
        if at > 0 && self.hold.seen.fetch_add(1, Ordering::SeqCst) + 1 == at {
            let released = self.hold.release.notified();
            self.hold.held.store(true, Ordering::SeqCst);
            released.await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "held request dropped",
            ));
        }
        let fault = self.pick_fault();
        self.seen.lock().unwrap().push(Seen {
            service: service.clone(),
            operation: operation.clone(),
            query: path_and_query
                .split_once('?')
                .map(|(_, q)| q.to_string())
                .unwrap_or_default(),
            region,
            body: String::from_utf8_lossy(&body).into_owned(),
            fault,
        });
        let interceptor = self.interceptor.lock().unwrap().clone();
        if fault.is_none()
            && let Some(interceptor) = interceptor
            && let Some((status, body)) = interceptor(&Intercepted {
                service: &service,
                operation: &operation,
                body: &String::from_utf8_lossy(&body),
            })
        {
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "text/xml")
                .header("x-amzn-requestid", "served-by-test")
                .body(Full::new(Bytes::from(body)))
                .unwrap());
        }
        match fault {
            Some(Fault::Throttle) => return Ok(throttle_response(&service)),
            Some(Fault::ServerError) => {
                return Ok(Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .body(Full::new(Bytes::from_static(b"injected fault")))
                    .unwrap());
            }
            Some(Fault::Reset) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                ));
            }
            None => {}
        }
        let uri: hyper::Uri = format!("{}{path_and_query}", self.upstream)
            .parse()
            .unwrap();
        let mut forward = Request::builder().method(parts.method).uri(uri);
        for (name, value) in parts.headers.iter() {
            forward = forward.header(name, value);
        }
        let response = self
            .client
            .request(forward.body(Full::new(body)).unwrap())
            .await
            .map_err(std::io::Error::other)?;
        let (mut parts, body) = response.into_parts();
        let mut body = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        if service == "s3"
            && method == hyper::Method::GET
            && path_and_query.ends_with("?versioning")
        {
            // moto names GetBucketVersioning's root element GetBucketVersioningResponse; S3
            // (and so the SDK, which refuses moto's) says VersioningConfiguration.
            body = Bytes::from(
                String::from_utf8_lossy(&body)
                    .replace("GetBucketVersioningResponse", "VersioningConfiguration"),
            );
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
        }
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}
