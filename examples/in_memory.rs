//! Two devices and a server, all in memory: the smallest complete use of the engine.
//!
//! `cargo run --example in_memory` prints what each sync did, including a conflict and where
//! its losing side was kept.

use std::sync::Arc;

use sync_core::memory::{LocalTransport, MemoryReplica, MemoryServerStore, MemoryStateStore};
use sync_core::{Engine, EngineConfig, Key, ServerConfig, TenantId};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Arc::new(MemoryServerStore::new(ServerConfig::default()));
    let tenant = TenantId::new("demo");
    let device = || {
        Engine::new(
            LocalTransport::new(server.clone(), tenant.clone()),
            MemoryStateStore::default(),
            MemoryReplica::default(),
            EngineConfig::default(),
        )
    };
    let (mut laptop, mut phone) = (device(), device());
    let note = Key::new("notes/today.txt")?;

    laptop.replica().put(&note, "buy milk");
    println!("laptop: {:?}", laptop.sync_once().await?);
    println!("phone:  {:?}", phone.sync_once().await?);

    // Both edit the same note before syncing: a conflict. The newer edit wins everywhere.
    laptop.replica().put(&note, "buy milk and eggs");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    phone.replica().put(&note, "buy oat milk");
    println!("laptop: {:?}", laptop.sync_once().await?);
    println!("phone:  {:?}", phone.sync_once().await?);
    println!("laptop: {:?}", laptop.sync_once().await?);

    let text = |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
    println!("laptop has {:?}", text(laptop.replica().get(&note)));
    println!("phone has  {:?}", text(phone.replica().get(&note)));
    for v in sync_core::full_history(&*server, &tenant, &note).await? {
        println!(
            "server history: rev {} hash {:?}",
            v.rev,
            v.hash.map(|h| h.short())
        );
    }
    Ok(())
}
