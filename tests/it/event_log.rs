//! The in-process bus kept in PostgreSQL, as the launcher runs it with
//! `DATABASE_URL=postgres://…` and no `KAFKA_BROKERS`: many publishers at
//! once, and a subscriber that must see every message once, in log order.

use std::time::Duration;

use migration::BusMigrator;
use sea_orm::ConnectionTrait;
use tenancy::bus::EventBus;
use tenancy::host::{DatabaseHost, PoolOptions};
use tenancy::local_bus::LocalBus;

use crate::stack::database_url;

const PUBLISHERS: usize = 8;
const MESSAGES_EACH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_reach_a_subscriber_once_each_and_in_order() {
    let name = format!(
        "t{}_events",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let host = DatabaseHost::parse(&database_url()).unwrap();
    let db = host
        .open_control_database::<BusMigrator>(&name)
        .await
        .unwrap();

    // Commits that take a while, as on a busy server: each insert waits up
    // to 20 ms after taking its id, so ids would commit out of order.
    db.execute_unprepared(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(random() * 0.02); RETURN NULL; END $$;
         CREATE TRIGGER slow_commit AFTER INSERT ON bus_messages \
         FOR EACH ROW EXECUTE FUNCTION slow_commit();",
    )
    .await
    .unwrap();
    let bus = LocalBus::new(db);

    // The subscriber on a pool of its own, as in another process, so it is
    // not queued behind the publishers and keeps up with the newest ids.
    let options = PoolOptions {
        max_connections: 1,
        idle: Duration::from_secs(5),
    };
    let reader = LocalBus::new(host.connect(&name, options).await.unwrap());
    let mut subscription = reader.subscribe("signups", "provisioner").await.unwrap();

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in 0..MESSAGES_EACH {
                    let payload = format!("{publisher}:{n}");
                    bus.publish("signups", "key", payload.as_bytes())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();

    // Read while they publish. Each publisher's messages must arrive in the
    // order it sent them, with none left out, and offsets only grow.
    let mut next_from = [0; PUBLISHERS];
    let mut last_offset = -1;
    for _ in 0..PUBLISHERS * MESSAGES_EACH {
        let delivery = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .unwrap_or_else(|_| panic!("messages missing; next expected: {next_from:?}"))
            .unwrap();
        let payload = String::from_utf8(delivery.payload.clone()).unwrap();
        let (publisher, n) = payload.split_once(':').unwrap();
        let (publisher, n): (usize, usize) = (publisher.parse().unwrap(), n.parse().unwrap());
        assert_eq!(
            n, next_from[publisher],
            "publisher {publisher}: got message {n}, expected {}",
            next_from[publisher]
        );
        assert!(delivery.offset > last_offset, "offset went back");
        next_from[publisher] += 1;
        last_offset = delivery.offset;
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }

    // Nothing more: a message seen twice would be read here.
    let more = tokio::time::timeout(Duration::from_millis(700), subscription.next()).await;
    assert!(more.is_err(), "an extra message: {more:?}");
    drop(subscription);
    drop(reader);
    drop(bus);
    host.drop_database(&name).await.unwrap();
}
