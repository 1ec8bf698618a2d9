//! `Collection<T>` on a real PostgreSQL server: the one `.ci/postgres` starts, named by
//! `PERSIST_TEST_POSTGRES` (the shared suite is `tests/remote/mod.rs`).
#![cfg(feature = "postgres")]

mod common;
mod remote;

use persist::backend::Postgres;
use persist::{Collection, Error, RemoteOp};
use remote::{Counter, Store};

struct Pg;

impl Store for Pg {
    const VARIABLE: &'static str = "PERSIST_TEST_POSTGRES";
    const SCRIPT: &'static str = ".ci/postgres";
    type Backend = Postgres;

    fn place(test: &str) -> String {
        format!("persist_test_{test}_{}", std::process::id())
    }

    fn backend(server: &str, place: &str) -> Postgres {
        Postgres::connect(server, place).unwrap()
    }
}

#[test]
fn get_put_update_delete_and_keys() {
    remote::basics::<Pg>();
}

#[test]
fn conditional_writes_are_compare_and_swap() {
    remote::conditional_writes::<Pg>();
}

#[test]
#[ignore = "the body of a child process, run by the test that spawns it"]
fn child() {
    remote::child::<Pg>();
}

#[test]
fn processes_updating_one_key_lose_nothing() {
    remote::processes_lose_nothing::<Pg>();
}

#[test]
fn a_migration_racing_a_newer_writer_loses_nothing() {
    remote::migration_racing_a_newer_writer::<Pg>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_constructor_and_twins() {
    let Some(server) = Pg::server() else { return };
    let counters: Collection<Counter> = Collection::postgres(&server, &Pg::place("async"))
        .await
        .unwrap();
    remote::async_twins(counters).await;
}

#[test]
fn an_unreachable_server_is_a_typed_error() {
    // A closed port on this machine: refused at once.
    let error = Postgres::connect("host=127.0.0.1 port=1 user=nobody", "t").unwrap_err();
    assert!(
        matches!(
            error,
            Error::Remote {
                op: RemoteOp::Connect,
                transient: true,
                ref server,
                ..
            } if server.contains("127.0.0.1:1")
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("postgres://127.0.0.1"), "{message}");
    // The server with its port, and the operating system's cause.
    assert!(
        message.contains("PostgreSQL server at 127.0.0.1:1"),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    assert!(!message.contains("file"), "{message}");
    let error = Postgres::connect("not a = connection = string", "t").unwrap_err();
    assert!(
        matches!(
            error,
            Error::Remote {
                transient: false,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.to_string().contains("file"), "{error}");
}
