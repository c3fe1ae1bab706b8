//! Folder names across servers that name folders differently: a Courier-style Dovecot
//! (`.` separator, every folder below `INBOX.`) and a `/` Dovecot without a prefix replicate
//! onto each other with the names users expect, both ways.

use crate::mr::{account, assert_same_accounts, sync, verify};
use crate::support::imap_client::TestImap;
use crate::support::servers::{fresh_user, TestServer};

fn message(folder: &str, i: usize) -> Vec<u8> {
    format!(
        "From: a{i}@example.org\r\nTo: user@example.org\r\nSubject: {folder} {i}\r\nMessage-ID: <{i}.{}@names.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody {folder} {i}\r\n",
        folder.replace('/', "-")
    )
    .into_bytes()
}

#[tokio::test]
async fn a_prefixed_dotted_primary_replicates_to_a_slash_server_and_back() {
    let dotted = TestServer::dovecot_dotted();
    let slash = TestServer::dovecot_recovery();
    dotted.require();
    slash.require();
    let (user, back) = (fresh_user("dotted"), fresh_user("dottedback"));
    let mut d = TestImap::connect(&dotted, &user).await;
    // The test client speaks server names: on this server `INBOX/Projects/A` is
    // `INBOX.Projects.A`, and `INBOX.Sent` is `\Sent` (the instance's config).
    // Leaves only: Dovecot makes `INBOX.Projects` a \Noselect parent, as a mail client would.
    for folder in ["INBOX.Sent", "INBOX.Projects.A", "INBOX.Projects.B"] {
        d.run(&format!("CREATE {folder}"), |_| {}).await.unwrap();
    }
    for folder in [
        "INBOX",
        "INBOX/Sent",
        "INBOX/Projects/A",
        "INBOX/Projects/B",
    ] {
        for i in 0..4 {
            let flags: &[&str] = if i % 2 == 0 { &["\\Seen"] } else { &[] };
            d.append(
                folder,
                flags,
                Some("01-Jan-2024 10:00:00 +0000"),
                &message(folder, i),
            )
            .await;
        }
    }

    // A mail client's subscriptions: two of the folders.
    for folder in ["INBOX.Sent", "INBOX.Projects.A"] {
        d.run(&format!("SUBSCRIBE {folder}"), |_| {}).await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dotted.url(&user), slash.url(&user));
    let run = sync(&src, &dst, &dir.path().join("there.redb"), &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.count("copied"), 16);
    let mut s = TestImap::connect(&slash, &user).await;
    assert_eq!(
        s.folders().await,
        ["INBOX", "Projects/A", "Projects/B", "Sent"],
        "the INBOX. prefix comes off and . becomes /"
    );
    assert_eq!(
        subscribed(&mut s).await,
        ["Projects/A", "Sent"],
        "subscriptions follow"
    );
    // verify compares subscriptions and special-use too (INBOX.Sent and Sent are \Sent).
    let v = verify(&src, &dst).await;
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let again = sync(&src, &dst, &dir.path().join("there.redb"), &[]).await;
    assert_eq!(again.count("copied"), 0, "{}", again.stdout);

    // And back, onto a fresh account of the dotted server.
    let (src2, dst2) = (slash.url(&user), dotted.url(&back));
    let run = sync(&src2, &dst2, &dir.path().join("back.redb"), &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut b = TestImap::connect(&dotted, &back).await;
    assert_eq!(
        b.folders().await,
        [
            "INBOX",
            "INBOX/Projects/A",
            "INBOX/Projects/B",
            "INBOX/Sent"
        ],
        "the prefix goes back on"
    );
    let v = verify(&src2, &dst2).await;
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    // Same messages, flags and dates on the original and the round-tripped account.
    assert_same_accounts(&account(&mut d).await, &account(&mut b).await);
}

/// The subscribed folders, by server name with `/` for the server's separator.
async fn subscribed(imap: &mut TestImap) -> Vec<String> {
    let delimiter = imap.delimiter().await.unwrap_or_else(|| "/".into());
    let mut names = Vec::new();
    imap.run("LSUB \"\" \"*\"", |r| {
        if let imap_proto::Response::MailboxData(imap_proto::MailboxDatum::List(l)) = r {
            names.push(l.name.replace(delimiter.as_str(), "/"));
        }
    })
    .await
    .unwrap();
    names.sort();
    names
}

#[tokio::test]
async fn a_name_holding_the_other_servers_separator_round_trips() {
    let slash = TestServer::dovecot_primary();
    let dotted = TestServer::dovecot_dotted();
    slash.require();
    dotted.require();
    let (user, there, back) = (fresh_user("sepa"), fresh_user("sepb"), fresh_user("sepc"));
    let mut a = TestImap::connect(&slash, &user).await;
    for folder in ["v1.2", "v1.2/notes", "plain"] {
        a.create(folder).await;
        a.append(
            folder,
            &["\\Seen"],
            Some("01-Jan-2024 10:00:00 +0000"),
            &message(folder, 0),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, mid, dst) = (slash.url(&user), dotted.url(&there), slash.url(&back));
    let run = sync(&src, &mid, &dir.path().join("a.redb"), &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.count("copied"), 3, "{}", run.stdout);
    let mut m = TestImap::connect(&dotted, &there).await;
    let names = m.folders().await;
    assert!(
        names.contains(&"INBOX/v1\u{2024}2".to_string())
            && names.contains(&"INBOX/v1\u{2024}2/notes".to_string()),
        "the '.' inside a name has a stand-in on the '.' server: {names:?}"
    );
    let v = verify(&src, &mid).await;
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);

    let run = sync(&mid, &dst, &dir.path().join("b.redb"), &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut b = TestImap::connect(&slash, &back).await;
    assert_eq!(
        b.folders().await,
        ["INBOX", "plain", "v1.2", "v1.2/notes"],
        "and is '.' again on a '/' server"
    );
    assert_same_accounts(&account(&mut a).await, &account(&mut b).await);
}

#[tokio::test]
async fn a_special_use_folder_lands_in_the_targets_folder_of_that_use() {
    let dotted = TestServer::dovecot_dotted();
    let slash = TestServer::dovecot_recovery();
    dotted.require();
    slash.require();
    let user = fresh_user("suse");
    let mut d = TestImap::connect(&dotted, &user).await;
    // "Sent Messages" is \Sent on the dotted instance; the target already has its "Sent".
    d.run("CREATE \"INBOX.Sent Messages\"", |_| {})
        .await
        .unwrap();
    d.run("CREATE \"INBOX.Sent Messages.2023\"", |_| {})
        .await
        .unwrap();
    for folder in ["INBOX/Sent Messages", "INBOX/Sent Messages/2023"] {
        for i in 0..3 {
            d.append(
                folder,
                &["\\Seen"],
                Some("01-Jan-2024 10:00:00 +0000"),
                &message(folder, i),
            )
            .await;
        }
    }
    let mut s = TestImap::connect(&slash, &user).await;
    s.create("Sent").await;
    let (src, dst) = (dotted.url(&user), slash.url(&user));
    let dir = tempfile::tempdir().unwrap();
    let run = sync(&src, &dst, &dir.path().join("s.redb"), &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.count("copied"), 6);
    assert!(
        run.stdout
            .contains("Sent Messages maps onto the target's Sent"),
        "the mapping is reported: {}",
        run.stdout
    );
    assert_eq!(
        s.folders().await,
        ["INBOX", "Sent", "Sent/2023"],
        "the sent folder and its child go where the target keeps sent mail"
    );
    assert_eq!(s.messages("Sent").await.len(), 3);
    assert_eq!(s.messages("Sent/2023").await.len(), 3);
    let v = verify(&src, &dst).await;
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let again = sync(&src, &dst, &dir.path().join("s.redb"), &[]).await;
    assert_eq!(
        (again.count("copied"), again.count("folders_created")),
        (0, 0),
        "{}",
        again.stdout
    );
}
