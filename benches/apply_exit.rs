//! How late apply notices that a stack's change has ended: the schedule apply follows stacks
//! with (`PollSchedule::APPLY`: the status every second, events backing off) beside the one it
//! had before (status and events together, 0.5 s growing by half up to 10 s), run side by
//! side in one run against stacks served from loopback in the shape of CloudFormation's Query
//! API, each ending at a set time, through the real SDK client.
//! `cargo bench --bench apply_exit` (about 45 s; the stacks run at once).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudformation::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kube_aws::aws::cloudformation::CloudFormation;
use kube_aws::aws::cloudformation::watch::{self, Followed, PollSchedule};
use tokio::time::Instant;

/// When each served stack's change ends, after the follow starts.
const ENDS_AFTER_SECONDS: [f64; 10] = [1.7, 3.1, 4.9, 7.3, 10.6, 13.9, 17.2, 21.8, 26.4, 31.0];

const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

/// The served stacks: when each was started and ends, and the requests each was asked.
#[derive(Default)]
struct Served {
    stacks: Mutex<BTreeMap<String, ServedStack>>,
}

struct ServedStack {
    started: Instant,
    ends_after: Duration,
    status_requests: u32,
    event_requests: u32,
}

impl Served {
    fn answer(&self, form: &BTreeMap<String, String>) -> String {
        let name = form.get("StackName").cloned().unwrap_or_default();
        let mut stacks = self.stacks.lock().unwrap();
        let stack = stacks.get_mut(&name).expect("a served stack");
        let ended = stack.started.elapsed() >= stack.ends_after;
        let id = format!("arn:aws:cloudformation:us-west-2:123456789012:stack/{name}/1");
        match form.get("Action").map(String::as_str) {
            Some("DescribeStacks") => {
                stack.status_requests += 1;
                let status = if ended {
                    "UPDATE_COMPLETE"
                } else {
                    "UPDATE_IN_PROGRESS"
                };
                format!(
                    r#"<DescribeStacksResponse xmlns="{NS}"><DescribeStacksResult><Stacks><member><StackName>{name}</StackName><StackId>{id}</StackId><CreationTime>2026-12-07T06:00:00.000Z</CreationTime><StackStatus>{status}</StackStatus></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeStacksResponse>"#
                )
            }
            Some("DescribeStackEvents") => {
                stack.event_requests += 1;
                let event = |n: &str, status: &str| {
                    format!(
                        r#"<member><EventId>{n}</EventId><StackId>{id}</StackId><StackName>{name}</StackName><LogicalResourceId>{name}</LogicalResourceId><ResourceType>AWS::CloudFormation::Stack</ResourceType><Timestamp>2026-12-07T06:00:00.000Z</Timestamp><ResourceStatus>{status}</ResourceStatus></member>"#
                    )
                };
                let mut events = String::new();
                if ended {
                    events.push_str(&event("end", "UPDATE_COMPLETE"));
                }
                events.push_str(&event("start", "UPDATE_IN_PROGRESS"));
                format!(
                    r#"<DescribeStackEventsResponse xmlns="{NS}"><DescribeStackEventsResult><StackEvents>{events}</StackEvents></DescribeStackEventsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeStackEventsResponse>"#
                )
            }
            other => panic!("not served: {other:?}"),
        }
    }
}

async fn handle(
    served: Arc<Served>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let form: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let xml = served.answer(&form);
    Ok(Response::builder()
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .unwrap())
}

/// Serves CloudFormation from loopback on its own thread; returns the endpoint.
fn serve(served: Arc<Served>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let served = served.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(served.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    endpoint
}

/// How late one follow returned after its stack ended.
async fn late(
    cfn: &CloudFormation,
    served: &Served,
    name: String,
    ends_after: Duration,
    schedule: PollSchedule,
) -> (Duration, u32, u32) {
    let started = Instant::now();
    served.stacks.lock().unwrap().insert(
        name.clone(),
        ServedStack {
            started,
            ends_after,
            status_requests: 0,
            event_requests: 0,
        },
    );
    let followed = watch::follow(
        cfn,
        &name,
        None,
        &schedule,
        |_| {},
        async |delay| {
            tokio::time::sleep(delay).await;
            true
        },
    )
    .await
    .expect("served");
    let late = started.elapsed().saturating_sub(ends_after);
    assert!(matches!(followed, Followed::Ended { .. }));
    let stacks = served.stacks.lock().unwrap();
    let stack = &stacks[&name];
    (late, stack.status_requests, stack.event_requests)
}

fn main() {
    let served = Arc::new(Served::default());
    let endpoint = serve(served.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = aws_sdk_cloudformation::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url(&endpoint)
        .build();
    let cfn = CloudFormation::new(aws_sdk_cloudformation::Client::from_conf(config));
    let before = PollSchedule {
        status: PollSchedule::APPLY.events,
        events: PollSchedule::APPLY.events,
    };
    let cfn = Arc::new(cfn);
    let rows = runtime.block_on(async {
        // Every stack at once, each followed by both schedules: one run, side by side.
        let mut runs = Vec::new();
        for (i, &seconds) in ENDS_AFTER_SECONDS.iter().enumerate() {
            let ends_after = Duration::from_secs_f64(seconds);
            for (label, schedule) in [("before", before), ("after", PollSchedule::APPLY)] {
                let (cfn, served) = (cfn.clone(), served.clone());
                let name = format!("{label}-{i}");
                runs.push(tokio::spawn(async move {
                    late(&cfn, &served, name, ends_after, schedule).await
                }));
            }
        }
        let mut rows = Vec::new();
        for run in runs {
            rows.push(run.await.expect("a follow"));
        }
        rows
    });

    println!("apply's exit after the stack's end, served CloudFormation on loopback");
    println!(
        "{:>10}  {:>24}  {:>24}",
        "stack ends", "before: late (requests)", "after: late (requests)"
    );
    let (mut worst, mut sum) = ([Duration::ZERO; 2], [Duration::ZERO; 2]);
    let mut requests = [0u32; 2];
    for (seconds, runs) in ENDS_AFTER_SECONDS.iter().zip(rows.chunks(2)) {
        let cells = [runs[0], runs[1]].map(|(late, statuses, events)| {
            format!("{:>6.2} s ({statuses} + {events})", late.as_secs_f64())
        });
        println!("{:>8.1} s  {:>24}  {:>24}", seconds, cells[0], cells[1]);
        for (k, &(late, statuses, events)) in runs.iter().enumerate() {
            worst[k] = worst[k].max(late);
            sum[k] += late;
            requests[k] += statuses + events;
        }
    }
    let n = ENDS_AFTER_SECONDS.len() as u32;
    let ratio = |k: usize, of: [Duration; 2]| of[k].as_secs_f64() / of[0].as_secs_f64();
    println!(
        "worst: before {:.2} s, after {:.2} s (ratio {:.2})",
        worst[0].as_secs_f64(),
        worst[1].as_secs_f64(),
        ratio(1, worst)
    );
    println!(
        "mean:  before {:.2} s, after {:.2} s (ratio {:.2})",
        (sum[0] / n).as_secs_f64(),
        (sum[1] / n).as_secs_f64(),
        ratio(1, sum)
    );
    println!(
        "requests (DescribeStacks + DescribeStackEvents, all stacks): before {}, after {} (ratio {:.2})",
        requests[0],
        requests[1],
        f64::from(requests[1]) / f64::from(requests[0])
    );
}
