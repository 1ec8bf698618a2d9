//! The tokio methods: the same files as the sync ones, byte for byte, and the same errors.

mod common;

use common::{AppState, AppStateV1, copy_of_fixture, listing, sample};
use persist::{Error, Options, Persisted};

#[tokio::test]
async fn sync_and_async_saves_write_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let sync_path = dir.path().join("sync.json");
    let async_path = dir.path().join("async.json");
    let state = sample();
    state.save(&sync_path).unwrap();
    state.clone().save_async(&async_path).await.unwrap();
    assert_eq!(
        std::fs::read(&sync_path).unwrap(),
        std::fs::read(&async_path).unwrap()
    );
    let old = AppStateV1 {
        user: "grace".into(),
        dark_mode: true,
    };
    old.save(&sync_path).unwrap();
    Options::new().save_async(old, &async_path).await.unwrap();
    assert_eq!(
        std::fs::read(&sync_path).unwrap(),
        std::fs::read(&async_path).unwrap()
    );
}

#[tokio::test]
async fn owned_and_shared_async_saves_write_the_bytes_of_save() {
    let dir = tempfile::tempdir().unwrap();
    let sync_path = dir.path().join("sync.json");
    let state = sample();
    state.save(&sync_path).unwrap();
    let expected = std::fs::read(&sync_path).unwrap();

    let owned = dir.path().join("owned.json");
    state.clone().save_async(&owned).await.unwrap();
    assert_eq!(std::fs::read(&owned).unwrap(), expected);

    let shared = dir.path().join("shared.json");
    let value = std::sync::Arc::new(state.clone());
    let future = Options::new().save_shared_async(std::sync::Arc::clone(&value), &shared);
    // Spawnable: the future owns what it needs.
    tokio::spawn(future).await.unwrap().unwrap();
    assert_eq!(std::fs::read(&shared).unwrap(), expected);

    // With a checksum the streamed bytes still match.
    let options = Options::new().checksum(true);
    options.save(&state, &sync_path).unwrap();
    options.save_async(state, &owned).await.unwrap();
    assert_eq!(
        std::fs::read(&owned).unwrap(),
        std::fs::read(&sync_path).unwrap()
    );
}

#[tokio::test]
async fn async_load_migrates_like_sync_load() {
    for fixture in ["v1-unversioned.json", "v1.json", "v2.json", "v4.json"] {
        let (_dir, path) = copy_of_fixture(fixture);
        assert_eq!(
            AppState::load_async(&path).await.unwrap(),
            AppState::load(&path).unwrap(),
            "{fixture}"
        );
    }
}

#[tokio::test]
async fn async_load_or_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.json");
    assert_eq!(
        AppState::load_or_default_async(&path).await.unwrap(),
        AppState::default()
    );
    assert!(!path.exists());
    let (_dir, future) = copy_of_fixture("v5-future.json");
    assert!(matches!(
        AppState::load_or_default_async(&future).await,
        Err(Error::FutureVersion { .. })
    ));
}

#[tokio::test]
async fn async_errors_leave_the_file_alone() {
    let (dir, path) = copy_of_fixture("v2-unknown-theme.json");
    let before = listing(dir.path());
    assert!(matches!(
        AppState::load_async(&path).await,
        Err(Error::Migration { from: 2, to: 4, .. })
    ));
    let fifo_dir = tempfile::tempdir().unwrap();
    let target = fifo_dir.path().join("state.json");
    std::fs::create_dir(&target).unwrap();
    assert!(matches!(
        sample().save_async(&target).await,
        Err(Error::NotRegularFile { .. })
    ));
    assert_eq!(listing(dir.path()), before);
}

#[tokio::test(flavor = "current_thread")]
async fn the_futures_are_send_and_static_and_can_be_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // The value is handed over: the future owns it.
    let save = {
        let state = sample();
        state.save_async(&path)
    };
    tokio::spawn(save).await.unwrap().unwrap();
    let loaded = tokio::spawn(AppState::load_async(path))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded, sample());
}

#[test]
fn the_futures_need_no_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    common::block_on(sample().save_async(&path)).unwrap();
    assert_eq!(
        common::block_on(AppState::load_async(&path)).unwrap(),
        sample()
    );
    let updated = common::block_on(AppState::update_async(&path, |state| {
        state.user = "edited".into()
    }))
    .unwrap();
    assert_eq!(updated.user, "edited");
}

#[tokio::test]
async fn a_panic_in_the_work_resumes_in_the_caller_and_writes_nothing() {
    let (dir, path) = copy_of_fixture("v4.json");
    let before = listing(dir.path());
    let update = AppState::update_async(&path, |_: &mut AppState| panic!("closure failed"));
    let panic = tokio::spawn(update).await.unwrap_err();
    assert!(panic.is_panic());
    let mut lock = path.clone().into_os_string();
    lock.push(".lock");
    let lock = std::path::PathBuf::from(lock);
    let mut after = listing(dir.path());
    after.retain(|(entry, _)| entry != &lock);
    assert_eq!(after, before);
    // The worker threads still serve.
    assert_eq!(
        AppState::load_async(&path).await.unwrap(),
        AppState::load(&path).unwrap()
    );
}
