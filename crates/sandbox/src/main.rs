//! `cargo sandbox`: the WUTS gateway without a phone.
//!
//! Starts wa-sim (a WhatsApp stand-in that speaks the real protocol, on loopback), a TEST BUILD of
//! the gateway in this process on a fresh `wuts_sandbox` database, and a webhook receiver. Creates
//! a small world on wa-sim (the account that plays your phone, people with names, a business, a
//! group and a community owned by someone else), a tenant and a device, pairs the device through
//! the simulated phone, and prints a walk-through to paste, with the real token, device id and
//! numbers in it. `--check` runs that walk-through itself, checks every answer, and exits.

mod receiver;
mod walkthrough;
mod world;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use sqlx::Connection;
use wuts_gateway::config::{Cli, Command};

/// Try the WUTS gateway without a phone: wa-sim, a test build of the gateway and a small world,
/// paired and ready, with a walk-through to paste.
#[derive(Parser)]
#[command(name = "wuts-sandbox", version, about, long_about = None)]
struct Args {
    /// First of four ports: the gateway, wa-sim's control API, the webhook receiver and wa-sim's
    /// WebSocket, in that order. 0: any free ports.
    #[arg(long, default_value_t = 8180)]
    port: u16,

    /// Address the gateway, wa-sim's control API and the receiver listen on (0.0.0.0 in a
    /// container). The printed calls use 127.0.0.1.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,

    /// The PostgreSQL server (its database part is ignored).
    #[arg(
        long,
        env = "WUTS_SANDBOX_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,

    /// The database the sandbox creates afresh on that server (dropped first when it exists). Its
    /// name must start with `wuts_sandbox`, so that no other database can be dropped by mistake.
    #[arg(long, default_value = "wuts_sandbox")]
    database: String,

    /// Run the walk-through's calls (with bash, curl and jq), check each answer and the events
    /// the receiver got, stop, drop the database and exit: 0 when all of it worked.
    #[arg(long)]
    check: bool,
}

const BANNER: &str = "\
┌──────────────────────────────────────────────────────────────────────────────┐
│ WUTS SANDBOX: a TEST BUILD of the gateway (feature insecure-test-server).    │
│ It talks only to wa-sim, a WhatsApp stand-in in this process, and skips      │
│ WhatsApp's certificate checks. Never pair a real phone with it, never deploy │
│ it. The production gateway is the `wuts` binary: `cargo run --release`.      │
└──────────────────────────────────────────────────────────────────────────────┘";

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\nerror: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The ports of the four listeners.
struct Ports {
    gateway: u16,
    control: u16,
    receiver: u16,
    websocket: u16,
}

impl Ports {
    fn from_base(base: u16) -> anyhow::Result<Self> {
        if base == 0 {
            return Ok(Self {
                gateway: free_port()?,
                control: 0,
                receiver: 0,
                websocket: 0,
            });
        }
        if base > u16::MAX - 3 {
            bail!("--port {base}: the sandbox needs four ports from there");
        }
        Ok(Self {
            gateway: base,
            control: base + 1,
            receiver: base + 2,
            websocket: base + 3,
        })
    }
}

/// A port nobody listens on right now (the gateway binds its own listener from a port number).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

async fn run(args: Args) -> anyhow::Result<()> {
    println!("{BANNER}\n");
    if !args.database.starts_with("wuts_sandbox")
        || !args
            .database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!(
            "--database {}: the sandbox only creates (and drops) databases named wuts_sandbox…",
            args.database
        );
    }
    if args.check {
        for tool in ["bash", "curl", "jq"] {
            require(tool).await?;
        }
    } else if require("jq").await.is_err() {
        println!("note: the walk-through pipes answers through jq, which is not installed\n");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ports = Ports::from_base(args.port)?;
    let database_url = fresh_database(&args.postgres, &args.database).await?;
    let log_path = std::env::temp_dir().join(format!("wuts-sandbox-{}.log", std::process::id()));
    init_logging(&log_path)?;

    // wa-sim: WhatsApp's WebSocket on loopback (only this process's gateway uses it), the control
    // API where people can reach it.
    let sim = wa_sim::WaSim::start_on(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), ports.websocket),
        SocketAddr::new(args.bind, ports.control),
    )
    .await
    .context("starting wa-sim")?;
    let control_port = port_of(sim.control_url())?;
    let control_url = format!("http://127.0.0.1:{control_port}");
    let control = wa_sim::ControlClient::new(&control_url);
    let world = world::create(&control).await?;

    let webhook_secret = wuts_gateway::delivery::sign::generate();
    let (receiver, receiver_port) = receiver::Receiver::start(
        SocketAddr::new(args.bind, ports.receiver),
        &webhook_secret,
        !args.check,
    )
    .await?;

    // The gateway: the library's own `serve`, configured as `wuts serve` would be.
    let master_token = format!("sandbox-master-{}", random_hex());
    let listen = SocketAddr::new(args.bind, ports.gateway);
    let serve_args = gateway_args(&listen, &database_url, &master_token, sim.ws_url())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut gateway = tokio::spawn(wuts_gateway::startup::serve(serve_args, async {
        let _ = stopped.await;
    }));
    let base = format!("http://127.0.0.1:{}", ports.gateway);
    let http = reqwest::Client::new();
    wait_ready(&http, &base, &mut gateway, &log_path).await?;

    let started = Instant::now();
    let (token, device) = tenant_and_device(&http, &base, &master_token).await?;
    println!("Pairing a device with the simulated phone…");
    pair(&http, &base, &token, &device, &control, world.you.phone).await?;
    println!(
        "Paired device {device} with the simulated phone of +{} in {:.1} s.\n",
        world.you.phone,
        started.elapsed().as_secs_f64()
    );
    print_cast(&world);

    let setting = walkthrough::Setting {
        gateway: base.clone(),
        control: control_url.clone(),
        receiver: format!("http://127.0.0.1:{receiver_port}"),
        token,
        device,
        webhook_secret,
        world: &world,
    };
    let outcome = if args.check {
        check(&setting, &receiver).await
    } else {
        println!("{}", walkthrough::render(&setting));
        println!(
            "\nThe gateway's log: {}\nwa-sim's control API: {control_url} (tests/wa-sim/README.md lists its routes)\n\
             Events delivered to the webhook appear below. Ctrl-C stops the sandbox.\n",
            log_path.display()
        );
        let _ = tokio::signal::ctrl_c().await;
        Ok(())
    };

    println!("\nStopping…");
    let _ = stop.send(());
    let served = tokio::time::timeout(Duration::from_secs(30), gateway).await;
    drop(receiver);
    drop(sim);
    let clean = match served {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(err))) => Err(err.context("the gateway stopped with an error")),
        Ok(Err(join)) => Err(anyhow::anyhow!("the gateway's task failed: {join}")),
        Err(_) => Err(anyhow::anyhow!("the gateway did not stop within 30 s")),
    };
    if args.check {
        // Best effort: the check's outcome is what it reports.
        let _ = drop_database(&args.postgres, &args.database).await;
    } else {
        println!(
            "The database {} is kept; the next `cargo sandbox` starts it afresh.",
            args.database
        );
    }
    outcome?;
    clean?;
    println!("Stopped cleanly.");
    Ok(())
}

async fn require(tool: &str) -> anyhow::Result<()> {
    let found = tokio::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !found {
        bail!(
            "the walk-through needs {tool}, which is not installed (Debian: apt-get install {tool})"
        );
    }
    Ok(())
}

fn random_hex() -> String {
    wuts_gateway::domain::ApiToken::generate()
        .reveal()
        .replace('-', "")
}

fn port_of(url: &str) -> anyhow::Result<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| {
            p.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .with_context(|| format!("no port in {url}"))
}

/// Drops the sandbox database if it exists and answers its URL; the gateway creates and
/// migrates it at start, as on a first deployment.
async fn fresh_database(server: &str, name: &str) -> anyhow::Result<String> {
    drop_database(server, name).await?;
    Ok(wuts_test_support::with_database(server, name))
}

async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let admin = wuts_test_support::with_database(server, "postgres");
    let mut connection = sqlx::PgConnection::connect(&admin).await.with_context(|| {
        format!(
            "cannot reach PostgreSQL at {} (start one, or point WUTS_SANDBOX_POSTGRES at yours)",
            wuts_gateway::config::redact_url_password(server)
        )
    })?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut connection)
    .await
    .with_context(|| format!("dropping the {name} database"))?;
    let _ = connection.close().await;
    Ok(())
}

/// The gateway's log goes to a file, so the terminal keeps the walk-through and the events.
fn init_logging(path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("creating the log file {}", path.display()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(wuts_gateway::telemetry::filter())
        .with_ansi(false)
        .fmt_fields(wuts_gateway::telemetry::OneLineFields)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// `wuts serve`'s settings for the sandbox: flags win over the environment.
fn gateway_args(
    listen: &SocketAddr,
    database_url: &str,
    master_token: &str,
    wa_url: &str,
) -> anyhow::Result<wuts_gateway::config::ServeArgs> {
    let cli = Cli::try_parse_from([
        "wuts",
        "serve",
        "--listen",
        &listen.to_string(),
        "--database-url",
        database_url,
        "--master-token",
        master_token,
        "--wa-url",
        wa_url,
        "--webhook-allow-private",
        "true",
        "--node-id",
        "sandbox",
    ])
    .context("the sandbox's gateway settings")?;
    match cli.command {
        Some(Command::Serve(args)) => Ok(*args),
        _ => Ok(cli.serve),
    }
}

async fn wait_ready(
    http: &reqwest::Client,
    base: &str,
    gateway: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if gateway.is_finished() {
            let ended = gateway.await;
            return match ended {
                Ok(Err(err)) => Err(err.context("the gateway did not start")),
                _ => bail!("the gateway stopped at start (log: {})", log.display()),
            };
        }
        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the gateway was not ready within 60 s (log: {})",
        log.display()
    )
}

/// An answer's JSON, or an error that quotes it.
async fn answer(response: reqwest::Response, what: &str) -> anyhow::Result<serde_json::Value> {
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("{what}: the answer is not JSON"))?;
    if !status.is_success() {
        bail!("{what}: {status} {body}");
    }
    Ok(body)
}

async fn tenant_and_device(
    http: &reqwest::Client,
    base: &str,
    master_token: &str,
) -> anyhow::Result<(String, String)> {
    let registered = answer(
        http.post(format!("{base}/register"))
            .bearer_auth(master_token)
            .json(&json!({"tenant_name": "Sandbox", "email": "you@sandbox.example"}))
            .send()
            .await?,
        "creating the tenant",
    )
    .await?;
    let token = registered["token"]
        .as_str()
        .context("no token in POST /register's answer")?
        .to_owned();
    let created = answer(
        http.post(format!("{base}/devices"))
            .bearer_auth(&token)
            .json(&json!({"name": "Sandbox phone"}))
            .send()
            .await?,
        "creating the device",
    )
    .await?;
    let device = created["device"]["id"]
        .as_str()
        .context("no device id in POST /devices' answer")?
        .to_owned();
    Ok((token, device))
}

/// Pairs as a user does: the gateway's QR code, scanned by the simulated phone.
async fn pair(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    device: &str,
    control: &wa_sim::ControlClient,
    phone: &str,
) -> anyhow::Result<()> {
    let qr = answer(
        http.get(format!("{base}/qr?device_id={device}"))
            .bearer_auth(token)
            .send()
            .await?,
        "GET /qr",
    )
    .await?;
    let code = qr["data"]["qr_code"]
        .as_str()
        .context("no qr_code in GET /qr's answer")?;
    control
        .scan_qr(phone, code)
        .await
        .context("the simulated phone scanning the QR code")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let status = answer(
            http.get(format!("{base}/status?device_id={device}"))
                .bearer_auth(token)
                .send()
                .await?,
            "GET /status",
        )
        .await?;
        if status["data"]["status"] == "connected" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the device did not connect within 30 s of the scan")
}

fn print_cast(world: &world::World) {
    println!("The world on wa-sim:");
    for person in world.people() {
        println!(
            "  {:<26} +{}  {}",
            person.name, person.phone, person.lid_jid
        );
    }
    println!("  {:<26} +{}  (not on WhatsApp)", "nobody", world.nobody);
    println!(
        "  Carla's group {} and community {}, you are in both\n",
        world.group_jid, world.community_jid
    );
}

/// A test on a received event.
type EventMatch<'a> = Box<dyn Fn(&serde_json::Value) -> bool + 'a>;

/// `--check`: the walk-through, then the events its phone-side calls must have produced.
async fn check(
    setting: &walkthrough::Setting<'_>,
    receiver: &receiver::Receiver,
) -> anyhow::Result<()> {
    println!("Running the walk-through:");
    let steps = walkthrough::check(setting).await?;
    let world = setting.world;
    let wanted: [(&str, EventMatch<'_>); 3] = [
        (
            "privacy.blocklist from the phone",
            Box::new(|e| e["event"] == "privacy.blocklist" && e["data"]["source"] == "phone"),
        ),
        (
            "group.info participants_added in Carla's community",
            Box::new(move |e| {
                e["event"] == "group.info"
                    && e["data"]["change"] == "participants_added"
                    && e["data"]["jid"] == world.community_jid.as_str()
            }),
        ),
        (
            "privacy.blocklist from the API",
            Box::new(|e| e["event"] == "privacy.blocklist" && e["data"]["source"] == "api"),
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let received = receiver.received();
        if let Some(bad) = received.iter().find(|r| !r.signature_ok) {
            bail!("a delivery's signature did not verify: {}", bad.event);
        }
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|(_, matches)| !received.iter().any(|r| matches(&r.event)))
            .map(|(name, _)| *name)
            .collect();
        if missing.is_empty() {
            println!(
                "  ✓ the receiver got {} signed events, among them {}",
                received.len(),
                wanted
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            break;
        }
        if Instant::now() > deadline {
            let got: Vec<String> = received
                .iter()
                .map(|r| format!("{} {}", r.event["event"], r.event["data"]))
                .collect();
            bail!(
                "no {} arrived within 20 s; the receiver got:\n{}",
                missing.join(", "),
                got.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("All {steps} calls of the walk-through answered as expected.");
    Ok(())
}
