//! `latchkey-loadgen`: the open-loop refresh benchmark (`bench/run`'s `openloop`
//! scenarios; method in BENCHMARKS.md "How latency is measured").
//!
//! wrk is closed-loop: a connection sends its next request only when the last one has
//! answered, so a 40 ms stall on the server delays one request per connection and then
//! simply lowers the request rate; the stall hardly shows in the percentiles
//! ("coordinated omission"). Here each request has an *intended* start on a fixed
//! schedule (the target rate, spread evenly over the refresh chains), and its latency is
//! counted from that intended start to the end of its answer. A stall therefore shows
//! as latency for every request it held back, as a user would see it.
//!
//! Each line of `--tokens` is the refresh token of one family; each family is one
//! chain on its own keep-alive HTTP/1.1 connection, rotating its token on every
//! request, as a client does. A chain whose refresh fails stops (its token state is
//! unknown) and is counted, so errors cannot silently shorten the tail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(
    name = "latchkey-loadgen",
    about = "Refresh at a fixed request rate; latency from each request's intended start"
)]
struct Cli {
    /// latchkey's base URL (plain http, e.g. http://127.0.0.1:8080)
    #[arg(long)]
    url: String,
    /// One refresh token per line: each is one chain
    #[arg(long)]
    tokens: PathBuf,
    /// Requests per second over all chains
    #[arg(long)]
    rate: f64,
    /// Measured seconds (after the warm-up)
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds sent at the same rate before measuring
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

/// What one chain saw in the measured window.
struct ChainReport {
    /// From the intended start to the end of the answer.
    intended: Histogram<u64>,
    /// From the moment the request was written to the end of the answer.
    service: Histogram<u64>,
    /// The worst intended-start latency per measured second, in µs.
    worst_per_second: Vec<u64>,
    /// Requests sent more than 1 ms after their intended start (a backlog: the
    /// previous answer of the chain was late, or this generator fell behind).
    late: u64,
    /// Why the chain stopped early, if it did.
    failure: Option<String>,
}

struct Target {
    addr: SocketAddr,
    host: String,
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--url must be plain http://host:port (the benchmark talks to latchkey directly)");
    };
    let host = rest.trim_end_matches('/').to_string();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    Ok(Target { addr, host })
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("cannot connect to {}", target.addr))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One rotation: the new refresh token, or why not.
async fn refresh(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &str,
    token: &str,
) -> anyhow::Result<String> {
    sender.ready().await.context("connection closed")?;
    let request = Request::post("/oauth/token")
        .header("host", host)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "grant_type=refresh_token&refresh_token={token}"
        ))))
        .context("request")?;
    let response = sender.send_request(request).await.context("send")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("read the answer")?
        .to_bytes();
    if status != StatusCode::OK {
        // The body is latchkey's error object; it never echoes the token.
        bail!(
            "refresh answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let answer: serde_json::Value = serde_json::from_slice(&body).context("JSON answer")?;
    answer["refresh_token"]
        .as_str()
        .map(str::to_owned)
        .context("answer without refresh_token")
}

struct Schedule {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    seconds: usize,
}

async fn chain(
    schedule: std::sync::Arc<Schedule>,
    target: std::sync::Arc<Target>,
    mut token: String,
    mut due: mpsc::UnboundedReceiver<Instant>,
) -> ChainReport {
    let mut report = ChainReport {
        intended: histogram(),
        service: histogram(),
        worst_per_second: vec![0; schedule.seconds],
        late: 0,
        failure: None,
    };
    let mut sender = match connect(&target).await {
        Ok(sender) => sender,
        Err(e) => {
            report.failure = Some(format!("{e:#}"));
            return report;
        }
    };
    // Each message is one request's intended start, sent by the ticker at that time. A
    // chain still waiting for its previous answer finds them queued and sends late: the
    // wait is counted, from the intended start.
    while let Some(intended) = due.recv().await {
        let sent = Instant::now();
        let outcome = refresh(&mut sender, &target.host, &token).await;
        let done = Instant::now();
        match outcome {
            Ok(next) => token = next,
            Err(e) => {
                report.failure = Some(format!("{e:#}"));
                return report;
            }
        }
        if intended >= schedule.measure_from {
            let latency = micros(done - intended);
            let _ = report.intended.record(latency);
            let _ = report
                .service
                .record(micros(done.saturating_duration_since(sent)));
            if sent.saturating_duration_since(intended) > Duration::from_millis(1) {
                report.late += 1;
            }
            let second = (intended - schedule.measure_from).as_secs() as usize;
            if let Some(worst) = report.worst_per_second.get_mut(second) {
                *worst = (*worst).max(latency);
            }
        }
    }
    report
}

/// The schedule's clock, on a thread of its own: request `k` is due at
/// `start + k / rate`, on chain `k mod chains`. The runtime's timer has millisecond
/// granularity and rounds up, which would send most requests up to a millisecond late
/// and count that against the server; the thread's sleep is precise to tens of µs.
fn tick(schedule: &Schedule, rate: f64, chains: Vec<mpsc::UnboundedSender<Instant>>) {
    for k in 0u64.. {
        let due = schedule.start + Duration::from_secs_f64(k as f64 / rate);
        if due >= schedule.end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // A chain that stopped has dropped its receiver; its requests are not sent.
        let _ = chains[(k % chains.len() as u64) as usize].send(due);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !(cli.rate > 0.0 && cli.seconds > 0.0 && cli.warmup >= 0.0) {
        bail!("--rate and --seconds must be positive, --warmup not negative");
    }
    let target = std::sync::Arc::new(parse_url(&cli.url)?);
    let tokens: Vec<String> = std::fs::read_to_string(&cli.tokens)
        .with_context(|| format!("cannot read {}", cli.tokens.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        bail!("{} holds no refresh token", cli.tokens.display());
    }
    // One thread: the generator must take as little of the machine as it can from the
    // server it measures; a few thousand requests per second fit in one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let chains = tokens.len();
    let reports = runtime.block_on(async {
        // Start a little ahead so every chain is connected before its first due time.
        let start = Instant::now() + Duration::from_millis(200);
        let measure_from = start + Duration::from_secs_f64(cli.warmup);
        let schedule = std::sync::Arc::new(Schedule {
            start,
            measure_from,
            end: measure_from + Duration::from_secs_f64(cli.seconds),
            seconds: cli.seconds.ceil() as usize,
        });
        let (senders, tasks): (Vec<_>, Vec<_>) = tokens
            .into_iter()
            .map(|token| {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(chain(schedule.clone(), target.clone(), token, rx));
                (tx, task)
            })
            .unzip();
        let ticker = {
            let (schedule, rate) = (schedule.clone(), cli.rate);
            std::thread::spawn(move || tick(&schedule, rate, senders))
        };
        let mut reports = Vec::with_capacity(tasks.len());
        for task in tasks {
            reports.push(task.await.context("a chain panicked")?);
        }
        ticker
            .join()
            .map_err(|_| anyhow::anyhow!("the ticker panicked"))?;
        anyhow::Ok(reports)
    })?;

    let mut intended = histogram();
    let mut service = histogram();
    let mut worst_per_second = vec![0u64; cli.seconds.ceil() as usize];
    let (mut late, mut failed) = (0, 0);
    for r in &reports {
        intended.add(&r.intended).context("merge histograms")?;
        service.add(&r.service).context("merge histograms")?;
        for (w, c) in worst_per_second.iter_mut().zip(&r.worst_per_second) {
            *w = (*w).max(*c);
        }
        late += r.late;
        if let Some(why) = &r.failure {
            failed += 1;
            eprintln!("chain stopped: {why}");
        }
    }
    let done = intended.len();
    // Stderr: the detail behind the summary — where the worst seconds were, and the
    // service time (from the write) beside the intended-start latency.
    let mut worst: Vec<(usize, u64)> = worst_per_second.iter().copied().enumerate().collect();
    worst.sort_by_key(|w| std::cmp::Reverse(w.1));
    let worst: Vec<String> = worst
        .iter()
        .take(3)
        .map(|(s, w)| format!("second {s}: {:.1} ms", ms(*w)))
        .collect();
    eprintln!(
        "    {done} refreshes by {chains} chains; service time p50 {:.2} p99 {:.2} max {:.2} ms; \
         {late} sent >1 ms late; worst: {}",
        ms(service.value_at_quantile(0.5)),
        ms(service.value_at_quantile(0.99)),
        ms(service.max()),
        worst.join(", ")
    );
    // Stdout, one line: target achieved p50 p99 p99.9 max errors.
    println!(
        "{:.0} {:.0} {:.2} {:.2} {:.2} {:.2} {}",
        cli.rate,
        done as f64 / cli.seconds,
        ms(intended.value_at_quantile(0.5)),
        ms(intended.value_at_quantile(0.99)),
        ms(intended.value_at_quantile(0.999)),
        ms(intended.max()),
        failed
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_accepted() {
        assert!(parse_url("https://127.0.0.1:8080").is_err());
        let t = parse_url("http://127.0.0.1:8080/").unwrap();
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.addr.port(), 8080);
    }

    #[test]
    fn latency_is_never_recorded_as_zero_microseconds() {
        // HdrHistogram's lowest trackable value is 1 µs.
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_millis(3)), 3000);
    }
}
