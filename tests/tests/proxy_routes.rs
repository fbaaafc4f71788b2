//! `[[routes]]` through the real proxy program, for every driver: the configuration's routes
//! place new sessions by their login (the core's `BackendChooser` hook, from the config file),
//! first match first. (Sessions no route matches take the built-in policy: the core's endpoint
//! tests cover that.)

mod proxy_common;

use ferry_tests::{driver_tests, Driver, FerryProcess};
use proxy_common::{backend, PASSWORD, USER};

driver_tests!(routes_place_sessions_by_user_and_database);

fn routes_place_sessions_by_user_and_database(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db1.addr())
        .backend("db2", db2.addr())
        .extra_toml(&format!(
            "[[routes]]\nuser = \"{USER}\"\ndatabase = \"mysql\"\nbackend = \"db1\"\n\
             [[routes]]\nuser = \"{USER}\"\nbackend = \"db2\"\n"
        ))
        .start();
    let server_id = |extra: &[&str]| {
        let out = ferry.mariadb(USER, PASSWORD, extra, "select @@server_id");
        assert!(out.status.success(), "{out:?}\n{}", ferry.log_tail(30));
        out.stdout.trim().to_owned()
    };
    // Without a database, every login matches the second route: db2, never balanced onto db1.
    for _ in 0..3 {
        assert_eq!(server_id(&[]), "2");
    }
    // With database `mysql`, the first route matches first.
    assert_eq!(server_id(&["--database=mysql"]), "1");
}
