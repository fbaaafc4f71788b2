//! Embedding ferry in a smol program: a proxy in front of the backend(s) given as arguments, on
//! a free loopback port, until Ctrl-C.
//!
//! ```text
//! cargo run -p ferry-smol --example embed -- 127.0.0.1:3306 [more backends...]
//! mariadb -h127.0.0.1 -P<printed port> -uapp -p
//! ```
//!
//! Every login is routed by a [`BackendChooser`](ferry_smol::BackendChooser) closure that prints
//! who logs in and leaves the choice to the built-in policy (least sessions among healthy
//! backends); return `Choice::Backend("db2".into())` instead to pin a user to a backend.

use std::time::Duration;

use ferry_smol::{Choice, ChooseRequest, Config, ConfigFile, Proxy};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backends: Vec<String> = std::env::args().skip(1).collect();
    if backends.is_empty() {
        eprintln!("usage: embed BACKEND_ADDR [BACKEND_ADDR...]   (e.g. 127.0.0.1:3306)");
        std::process::exit(2);
    }
    // The same configuration the `ferry` binary reads; here built from text (parsing TOML takes
    // ferry-core's feature `toml`, which the library itself does without).
    let mut toml = String::from("[health]\ninterval = \"2s\"\n");
    for (i, addr) in backends.iter().enumerate() {
        toml.push_str(&format!(
            "[[backends]]\nname = \"db{}\"\naddr = \"{addr}\"\n",
            i + 1
        ));
    }
    let config = Config::from_file(&ConfigFile::parse(&toml, None)?)?;

    let proxy = Proxy::builder(&config)
        .chooser(|req: &ChooseRequest<'_>| {
            println!(
                "session {} from {}: user {:?}, database {:?}",
                req.session, req.client, req.user, req.database
            );
            Choice::Default
        })
        .build()?;
    let handle = proxy.handle();

    // Ctrl-C (or SIGTERM): graceful shutdown, 10 s for statements in flight.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let stopper = handle.clone();
    let stopping = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            println!("stopping...");
            let outcome = smol::block_on(stopper.shutdown(Duration::from_secs(10)));
            println!("stopped: {outcome:?}");
        }
    });

    smol::block_on(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
        println!(
            "ferry (smol) listening on port {}",
            listener.local_addr()?.port()
        );
        proxy.run(listener).await?;
        // `run` returns once the shutdown is done; let the stopper report it.
        let _ = stopping.join();
        for b in handle.backends() {
            println!("backend {} ({}): healthy {}", b.name, b.addr, b.healthy);
        }
        Ok(())
    })
}
