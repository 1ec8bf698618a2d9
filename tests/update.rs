//! The forms of `update`: a fallible change that may write nothing and returns its own result,
//! and an explicit initial value instead of `Default`; sync and async, under the same lock.

mod common;

use std::fs;

use common::listing;
use persist::{Error, Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Wallet {
    balance: u64,
    payments: u32,
}

/// A caller's own error type, which also carries persist's.
#[derive(Debug, thiserror::Error)]
enum PayError {
    #[error("insufficient funds: {0} left")]
    Insufficient(u64),
    #[error(transparent)]
    State(#[from] Error),
}

fn pay(wallet: &mut Wallet, amount: u64) -> Result<u64, PayError> {
    if wallet.balance < amount {
        return Err(PayError::Insufficient(wallet.balance));
    }
    wallet.balance -= amount;
    wallet.payments += 1;
    Ok(wallet.balance)
}

#[test]
fn a_failed_change_writes_nothing_and_returns_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.json");
    Wallet {
        balance: 50,
        payments: 0,
    }
    .save(&path)
    .unwrap();

    let left: u64 = Wallet::try_update(&path, |wallet| pay(wallet, 30)).unwrap();
    assert_eq!(left, 20);
    assert_eq!(Wallet::load(&path).unwrap().payments, 1);

    let before = listing(dir.path());
    match Wallet::try_update(&path, |wallet| pay(wallet, 30)) {
        Err(PayError::Insufficient(20)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn a_refused_change_on_a_missing_file_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.json");
    let result = Options::new().try_update(&path, |wallet: &mut Wallet| pay(wallet, 1));
    assert!(matches!(result, Err(PayError::Insufficient(0))));
    assert!(!path.exists());
}

#[test]
fn persist_errors_reach_the_callers_error_type_and_the_change_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.json");
    fs::write(&path, b"{\"version\":1,\"data\":{\"balance\":\"lots\"}}").unwrap();
    let before = listing(dir.path());
    let mut ran = false;
    let result = Wallet::try_update(&path, |wallet| {
        ran = true;
        pay(wallet, 1)
    });
    assert!(matches!(
        result,
        Err(PayError::State(Error::Corrupt { .. }))
    ));
    assert!(!ran);
    let mut after = listing(dir.path());
    after.retain(|(entry, _)| !entry.to_string_lossy().ends_with(".lock"));
    assert_eq!(after, before);
}

/// No `Default`: the first value must be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct Install {
    id: String,
    launches: u32,
}

#[test]
fn an_initial_value_replaces_default_and_is_used_only_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("install.json");
    let options = Options::new();
    let first = options
        .update_or(
            &path,
            || Install {
                id: "abc".into(),
                launches: 0,
            },
            |install| install.launches += 1,
        )
        .unwrap();
    assert_eq!(first.launches, 1);
    let second = options
        .update_or(
            &path,
            || -> Install { panic!("the file exists: no initial value is needed") },
            |install| install.launches += 1,
        )
        .unwrap();
    assert_eq!(
        second,
        Install {
            id: "abc".into(),
            launches: 2
        }
    );
    let launches: u32 = options
        .try_update_or(
            &path,
            || -> Install { unreachable!() },
            |install| Ok::<_, Error>(install.launches),
        )
        .unwrap();
    assert_eq!(launches, 2);
}

#[test]
fn threads_paying_at_once_never_overdraw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.json");
    Wallet {
        balance: 100,
        payments: 0,
    }
    .save(&path)
    .unwrap();
    // 4 threads x 20 payments of 3 against 100: exactly 33 succeed, whatever the interleaving.
    let accepted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = &path;
                scope.spawn(move || {
                    (0..20)
                        .filter(|_| Wallet::try_update(path, |wallet| pay(wallet, 3)).is_ok())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(accepted, 33);
    let wallet = Wallet::load(&path).unwrap();
    assert_eq!((wallet.balance, wallet.payments), (1, 33));
}

#[tokio::test]
async fn the_async_forms_behave_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.json");
    Wallet {
        balance: 10,
        payments: 0,
    }
    .save(&path)
    .unwrap();
    let left = Wallet::try_update_async(&path, |wallet| pay(wallet, 4))
        .await
        .unwrap();
    assert_eq!(left, 6);
    let before = fs::read(&path).unwrap();
    let refused = Options::new()
        .try_update_async(&path, |wallet: &mut Wallet| pay(wallet, 7))
        .await;
    assert!(matches!(refused, Err(PayError::Insufficient(6))));
    assert_eq!(fs::read(&path).unwrap(), before);

    let install_path = dir.path().join("install.json");
    let install = Options::new()
        .update_or_async(
            &install_path,
            || Install {
                id: "xyz".into(),
                launches: 0,
            },
            |install| install.launches += 1,
        )
        .await
        .unwrap();
    assert_eq!(install.launches, 1);
    let launches = Options::new()
        .try_update_or_async(
            &install_path,
            || -> Install { unreachable!() },
            |install| {
                install.launches += 1;
                Ok::<_, Error>(install.launches)
            },
        )
        .await
        .unwrap();
    assert_eq!(launches, 2);
}
