use super::*;
use chrono::TimeZone;
use clap::CommandFactory;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("kubectl-pim").chain(args.iter().copied()))
}

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn request_takes_every_flag() {
    let cli = parse(&[
        "request",
        "db",
        "-n",
        "payments,ledger",
        "-n",
        "audit",
        "--for",
        "1h30m",
        "--reason",
        "INC-1 crash",
        "--ticket",
        "INC-1",
        "--at",
        "+2h",
        "--wait",
        "--timeout",
        "5m",
        "--kubeconfig",
        "/tmp/kc",
        "--context",
        "prod",
    ])
    .unwrap();
    assert_eq!(
        cli.kubeconfig.as_deref(),
        Some(std::path::Path::new("/tmp/kc"))
    );
    assert_eq!(cli.context.as_deref(), Some("prod"));
    let Command::Request(r) = cli.command else {
        panic!("not a request: {:?}", cli.command)
    };
    assert_eq!(r.role, "db");
    assert_eq!(r.namespaces, vec!["payments", "ledger", "audit"]);
    assert_eq!(
        std::time::Duration::from(r.duration.unwrap()),
        std::time::Duration::from_secs(5400)
    );
    assert_eq!(r.reason, "INC-1 crash");
    assert_eq!(r.ticket.as_deref(), Some("INC-1"));
    assert_eq!(r.at, Some(At::In(std::time::Duration::from_secs(7200))));
    assert!(r.wait);
    assert_eq!(
        std::time::Duration::from(r.timeout),
        std::time::Duration::from_secs(300)
    );
}

#[test]
fn request_defaults() {
    let Command::Request(r) = parse(&["request", "db", "--reason", "x"]).unwrap().command else {
        panic!()
    };
    assert!(r.namespaces.is_empty() && r.duration.is_none() && !r.wait && r.name.is_none());
    assert_eq!(
        std::time::Duration::from(r.timeout),
        std::time::Duration::from_secs(600)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["request", "db"][..],                                 // --reason is required
        &["deny", "r1"],                                        // so is a denial's reason
        &["request", "db", "--reason", "x", "--timeout", "5m"], // --timeout needs --wait
        &["request", "db", "--reason", "x", "--for", "soon"],   // not a duration
        &["request", "db", "--reason", "x", "--for", "0s"],     // not positive
        &["request", "db", "--reason", "x", "--at", "tomorrow"], // not a time
        &["ls", "--to-approve", "-A"],                          // mutually exclusive
        &["ls", "-o", "xml"],
        &["completion", "powershell-core"],
        &["extend", "r1"], // not (yet) a command
    ] {
        let err = parse(args).expect_err(&format!("{args:?} parsed"));
        assert_eq!(err.exit_code(), i32::from(exit::USAGE), "{args:?}: {err}");
    }
}

#[test]
fn bad_values_say_what_is_expected() {
    let err = parse(&["request", "db", "--reason", "x", "--for", "soon"]).unwrap_err();
    assert!(err.to_string().contains("not a duration like 30m"), "{err}");
    let err = parse(&["request", "db", "--reason", "x", "--at", "noon"]).unwrap_err();
    assert!(err.to_string().contains("RFC 3339"), "{err}");
}

#[test]
fn at_resolves_against_the_clock() {
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    assert_eq!(
        parse_at("+90m").unwrap().resolve(now),
        now + chrono::Duration::minutes(90)
    );
    let fixed = parse_at("2026-03-02T08:00:00+01:00").unwrap();
    assert_eq!(
        fixed.resolve(now),
        Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap()
    );
}

#[test]
fn ls_and_show_take_output_formats() {
    let Command::Ls(ls) = parse(&["ls", "-A", "--active", "-o", "wide"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert!(ls.all && ls.active && !ls.to_approve);
    assert_eq!(ls.output.output, Some(Output::Wide));
    let Command::Show(show) = parse(&["show", "r1", "-o", "yaml"]).unwrap().command else {
        panic!()
    };
    assert_eq!(
        (show.name.as_str(), show.output.output),
        ("r1", Some(Output::Yaml))
    );
    let Command::Roles(roles) = parse(&["roles", "--output", "json"]).unwrap().command else {
        panic!()
    };
    assert_eq!(roles.output, Some(Output::Json));
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let help = Cli::command().render_long_help().to_string();
    for needle in [
        "Exit codes:",
        "3  refused or denied",
        "4  timed out",
        "kubectl pim request",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn review_decide_needs_exactly_one_of_keep_and_remove() {
    let cli = parse(&[
        "review",
        "decide",
        "q3",
        "--item",
        "pay/User/alice",
        "--remove",
        "--comment",
        "left the team",
    ])
    .unwrap();
    match cli.command {
        Command::Review(ReviewCommand::Decide(args)) => {
            assert_eq!(
                (
                    args.name.as_str(),
                    args.item.as_str(),
                    args.keep,
                    args.remove
                ),
                ("q3", "pay/User/alice", false, true)
            );
            assert_eq!(args.comment.as_deref(), Some("left the team"));
        }
        other => panic!("parsed as {other:?}"),
    }
    for bad in [
        &["review", "decide", "q3", "--item", "x"][..],
        &[
            "review", "decide", "q3", "--item", "x", "--keep", "--remove",
        ],
        &["review", "decide", "q3", "--keep"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} must be a usage error");
    }
    assert!(matches!(
        parse(&["review", "ls"]).unwrap().command,
        Command::Review(ReviewCommand::List(ReviewListArgs { name: None, .. }))
    ));
}
