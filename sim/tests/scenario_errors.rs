//! Every kind of mistake a scenario file can hold is reported with its exact
//! `file:line:col` and message, and a file with mistakes never loads.

use sim::scenario::{self, load_str};

const FILE: &str = "scenarios/lifecycle/t.yaml";

/// The displayed errors of loading `text` as `scenarios/lifecycle/t.yaml`.
fn errors(text: &str) -> Vec<String> {
    match load_str(FILE, text) {
        Ok(_) => panic!("expected errors, the scenario loaded:\n{text}"),
        Err(e) => e.lines(),
    }
}

/// Asserts the exact list of errors (each prefixed with the file).
#[track_caller]
fn assert_errors(text: &str, expected: &[&str]) {
    let expected: Vec<String> = expected.iter().map(|e| format!("{FILE}:{e}")).collect();
    assert_eq!(errors(text), expected, "\n--- scenario ---\n{text}");
}

const WORLD: &str = "
world:
  users:
    - {name: alice}
    - {name: bob, roles: [admin]}
  templates:
    - name: dev
      versions: [v1, v2]
      presets:
        - {name: small, version: v1}
        - {name: small, version: v2}
  workspaces:
    - {name: w1, owner: alice, template: dev}
";

fn with_world(rest: &str) -> String {
    format!("name: t\nrun_for: 3h\n{WORLD}{rest}")
}

#[test]
fn unknown_field_with_a_suggestion() {
    assert_errors(
        "name: t\nrun_fro: 3h\n",
        &["1:1: missing field `run_for`", "2:1: unknown field `run_fro`, expected `run_for`"],
    );
}

#[test]
fn unknown_field_without_a_close_one_lists_the_accepted() {
    assert_errors(
        "name: t\nrun_for: 3h\nprovisioners:\n  workers: 3\n",
        &["4:3: unknown field `workers`, expected one of `count`, `build_duration`, `failure_rate`, `templates`"],
    );
}

#[test]
fn unknown_field_deep_in_the_world() {
    let text = with_world("")
        .replace("- {name: w1, owner: alice, template: dev}", "- {name: w1, owner: alice, template: dev, ttll: 1h}");
    assert_errors(&text, &["15:47: unknown field `ttll`, expected `ttl`"]);
}

#[test]
fn name_must_equal_the_file_stem() {
    assert_errors(
        "name: other\nrun_for: 1h\n",
        &["1:7: scenario name `other` differs from the file name, expected `t`"],
    );
}

#[test]
fn bad_durations() {
    assert_errors(
        "name: t\nrun_for: 3 hours\nsettle: 30\n",
        &[
            "2:10: invalid `run_for`: expected a duration like `500ms`, `30s`, `1h30m`, `2d` or `0`, found `3 hours`",
            "3:9: invalid `settle`: duration `30` needs a unit (`ms`, `s`, `m`, `h`, `d`, `w`); only `0` goes without",
        ],
    );
    assert_errors(
        "name: t\nrun_for: -5m\n",
        &["2:10: invalid `run_for`: expected a duration like `500ms`, `30s`, `1h30m`, `2d` or `0`, found `-5m`"],
    );
    assert_errors(
        "name: t\nrun_for: 30m1h\n",
        &["2:10: invalid `run_for`: duration `30m1h` repeats or misorders its units, expected the largest unit first (`1h30m`)"],
    );
}

#[test]
fn bad_autostart_cron() {
    let text = with_world("").replace("template: dev}", "template: dev, autostart: \"CRON_TZ=Mars/Base 0 9 * * *\"}");
    assert_errors(
        &text,
        &["15:58: invalid `autostart`: unknown time zone `Mars/Base`, expected a weekly cron like `CRON_TZ=UTC 0 9 * * 1-5`"],
    );
}

#[test]
fn bad_quiet_hours_cron() {
    let text = with_world("").replace("{name: alice}", "{name: alice, quiet_hours: \"0 0 * * 1\"}");
    assert_errors(
        &text,
        &["6:34: invalid `quiet_hours`: day-of-week must be `*` in a daily schedule, found `1`, expected a daily cron like `CRON_TZ=UTC 0 0 * * *`"],
    );
}

#[test]
fn bad_preset_schedule_cron() {
    let text = with_world("").replace(
        "{name: small, version: v1}",
        "{name: small, version: v1, schedules: {rules: [{cron: \"0 8-18 * * 1-5\", instances: 2}]}}",
    );
    assert_errors(
        &text,
        &["12:65: invalid `cron` `0 8-18 * * 1-5`: minute must be `*`, found `0`, expected `* HOUR DOM MONTH DOW` like `* 8-18 * * 1-5`"],
    );
    let text = with_world("").replace(
        "{name: small, version: v1}",
        "{name: small, version: v1, schedules: {rules: [{cron: \"* 8-25 * * 1-5\", instances: 2}]}}",
    );
    assert_errors(
        &text,
        &["12:65: invalid `cron` `* 8-25 * * 1-5`: hour `8-25` is out of range 0-23, expected `* HOUR DOM MONTH DOW` like `* 8-18 * * 1-5`"],
    );
}

#[test]
fn unchecked_values_skip_their_rules() {
    let text = with_world("").replace(
        "template: dev}",
        "template: dev, autostart: {unchecked: \"CRON_TZ=Mars/Base 0 9 * * *\"}, ttl: {unchecked: 10s}}",
    );
    let s = load_str(FILE, &text).unwrap();
    assert!(s.world.workspaces[0].autostart.as_ref().unwrap().unchecked);
    assert_eq!(s.world.workspaces[0].next_start_at, scenario::Derived::Given(None));
    // ...but only where a stored value may be bad.
    assert_errors(
        "name: t\nrun_for: {unchecked: 1h}\n",
        &["2:10: invalid `run_for`: `{unchecked: VALUE}` is not accepted here, expected a duration"],
    );
}

#[test]
fn rates_and_settings_out_of_range() {
    assert_errors(
        "name: t\nrun_for: 1h\nprovisioners: {failure_rate: 1.5}\nsettings:\n  db_pool_size: 4\n  lifecycle_interval: 2h\n  reconcile_interval: 0\n",
        &[
            "3:30: invalid `failure_rate`: rate 1.5 is out of range, expected a number between 0 and 1",
            "5:17: `db_pool_size` is 4, expected at least 5",
            "6:23: `lifecycle_interval` is 2h, expected 1s..1h",
            "7:23: `reconcile_interval` is 0, expected 1s..1h",
        ],
    );
}

#[test]
fn chat_stale_after_needs_two_heartbeats() {
    assert_errors(
        "name: t\nrun_for: 1h\nsettings:\n  chat_heartbeat_interval: 1m\n  chat_stale_after: 90s\n",
        &["5:3: `chat_stale_after` is 1m30s, expected at least twice `chat_heartbeat_interval` (2m)"],
    );
}

#[test]
fn timeline_at_outside_run_for() {
    assert_errors(
        &with_world("timeline:\n  - {at: 4h, activity: {workspace: w1}}\n  - {at: -1m, activity: {workspace: w1}}\n"),
        &[
            "17:10: `at` is +4h, expected a point within `run_for` (0 to 3h)",
            "18:10: `at` is -1m, expected a point within `run_for` (0 to 3h)",
        ],
    );
}

#[test]
fn timeline_entry_needs_exactly_one_action() {
    assert_errors(
        &with_world("timeline:\n  - {at: 1h, start: {workspace: w1}, stop: {workspace: w1}}\n  - {at: 2h}\n  - {at: 2h, strat: {workspace: w1}}\n"),
        &[
            "17:38: timeline entry has more than one action (`start` and `stop`), expected exactly one",
            "18:5: timeline entry has no action, expected one of `activity`, `start`, `stop`, `delete`, `extend`, `create_workspace`, `update_workspace`, `update_template`, `publish_version`, `set_user`, `set_setting`, `chat`, `store_fault`, `pool_hog`, `pubsub_fault`, `notification_fault`, `provisioner_fault`, `shutdown`, `crash`, `restart`, `clock_skew`",
            "19:14: unknown field `strat`, expected `start`",
        ],
    );
    assert_errors(
        &with_world("timeline:\n  - activity: {workspace: w1}\n"),
        &["17:5: missing field `at` in timeline entry (every action states when it happens)"],
    );
}

#[test]
fn expectation_needs_exactly_one_kind() {
    assert_errors(
        &with_world("expect:\n  - {builds: {count: 1}, workspace: {name: w1, status: running}}\n  - violations: 3\n"),
        &[
            "17:26: expectation has more than one kind (`builds` and `workspace`), expected exactly one",
            "18:17: `violations` is always 0 (stated for readers), found `3`",
        ],
    );
}

#[test]
fn fault_rules() {
    assert_errors(
        &with_world(
            "timeline:\n  - {at: 1h, store_fault: {kind: restart, replica: 0, rate: 0.5}}\n  - {at: 1h, provisioner_fault: {offline: true, template: dev}}\n  - {at: 1h, store_fault: {kind: latency}}\n  - {at: 1h, store_fault: {kind: error, latency: 1s}}\n",
        ),
        &[
            "17:43: `replica` does not apply to kind `restart`, which concerns the whole database",
            "17:55: `rate` does not apply to kind `restart`, which concerns the whole database",
            "18:49: `template` does not apply with `offline: true`, which concerns every template",
            "19:27: missing field `latency` in `store_fault` of kind `latency`",
            "20:41: `latency` does not apply to kind `error` (only to kind `latency`)",
        ],
    );
}

#[test]
fn replica_out_of_range() {
    assert_errors(
        &with_world("replicas: 2\ntimeline:\n  - {at: 1h, crash: {replica: 2}}\n  - {at: 1h, shutdown: {}}\n"),
        &[
            "18:31: replica 2 is out of range, expected 0 to 1 (`replicas` is 2)",
            "19:24: missing field `replica` in `shutdown`",
        ],
    );
}

#[test]
fn unknown_names_in_the_world() {
    let text = with_world("")
        .replace("{name: w1, owner: alice, template: dev}", "{name: w1, owner: alcie, template: deb, version: v1}");
    assert_errors(
        &text,
        &["15:25: unknown user `alcie`, expected `alice`", "15:42: unknown template `deb`, expected `dev`"],
    );
    let text = with_world("").replace("template: dev}", "template: dev, version: v3, preset: big}");
    assert_errors(&text, &["15:56: unknown version `v3` of template `dev`, expected one of `v1`, `v2`"]);
}

#[test]
fn unknown_names_follow_the_timeline() {
    assert_errors(
        &with_world(
            "timeline:\n  - {at: 1h, start: {workspace: w2}}\n  - {at: 2h, create_workspace: {name: w2, owner: alice, template: dev}}\n  - {at: 2h, stop: {workspace: w9, user: carol}}\nexpect:\n  - workspace: {name: w2, at: 2h, status: running}\n",
        ),
        &[
            "17:33: workspace `w2` does not exist yet at +1h: it is created at +2h (18:39)",
            "19:32: unknown workspace `w9`, expected one of `w1`, `w2`",
            "19:42: unknown user `carol`, expected one of `alice`, `bob`",
            "21:23: workspace `w2` does not exist yet for an expectation at +2h: it is created at +2h (18:39)",
        ],
    );
}

#[test]
fn duplicate_names() {
    let text = with_world("").replace("    - {name: bob, roles: [admin]}\n", "    - {name: alice}\n").replace(
        "    - {name: w1, owner: alice, template: dev}\n",
        "    - {name: w1, owner: alice, template: dev}\n    - {name: w1, owner: alice, template: dev}\n",
    );
    assert_errors(
        &text,
        &[
            "7:14: duplicate user `alice` (first declared at 6:14)",
            "16:14: duplicate workspace `w1` (first declared at 15:14; names are unique among workspaces not deleted)",
        ],
    );
    let text = with_world("").replace("{name: small, version: v2}", "{name: small, version: v1}");
    assert_errors(&text, &["13:18: duplicate preset `small` in version `v1` (first declared at 12:18)"]);
}

#[test]
fn workspace_names_are_unique_among_live_workspaces_at_every_instant() {
    // w1 is live at 1h: taken.
    assert_errors(
        &with_world("timeline:\n  - {at: 1h, create_workspace: {name: w1, owner: bob, template: dev}}\n"),
        &["17:39: workspace name `w1` is taken at +1h: the workspace declared at 15:14 is not deleted by then (names are unique among workspaces not deleted)"],
    );
    // Deleted first: the name may be free again (the API refuses it at run time if not).
    let text = with_world("timeline:\n  - {at: 1h, delete: {workspace: w1}}\n  - {at: 2h, create_workspace: {name: w1, owner: bob, template: dev}}\n");
    assert!(load_str(FILE, &text).is_ok());
}

#[test]
fn ambiguous_preset() {
    assert_errors(
        &with_world("expect:\n  - preset: {name: small, status: healthy}\n  - prebuilds: {preset: small, version: v2, ready: 1}\n"),
        &["17:20: preset `small` is ambiguous: it matches `small` of `dev` version `v1`, `small` of `dev` version `v2`, expected `template`, `version` or `name` to tell them apart"],
    );
}

#[test]
fn settle_too_short() {
    assert_errors(
        "name: t\nrun_for: 1h\nprovisioners: {build_duration: 5m..9m}\n",
        &["1:1: `settle` is 10m (the default), expected at least 12m: 2 × 1m (the longer of `lifecycle_interval` and `reconcile_interval`) + 9m (the longest build duration) + 1m"],
    );
    assert_errors(
        "name: t\nrun_for: 1h\nsettle: 5m\nsettings: {chat_stale_after: 10m}\nworld:\n  users: [{name: a}]\n  chats: [{name: c, owner: a}]\n",
        &["3:1: `settle` is 5m, expected at least 11m: 2 × 1m (the longer of `lifecycle_interval` and `reconcile_interval`) + 1m (the longest build duration) + 1m, and with chats at least `chat_stale_after` + 1m (11m)"],
    );
}

#[test]
fn yaml_syntax_and_structure() {
    assert_errors("name: t\nrun_for: 1h\nname: u\n", &["3:1: duplicate field `name` (first at 1:1)"]);
    let e = errors("name: t\nrun_for: [1h\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("scenarios/lifecycle/t.yaml:3:1: invalid YAML: "), "{e:?}");
    assert_errors("", &["1:1: empty file, expected a scenario (a mapping with `name` and `run_for`)"]);
    assert_errors("- 1\n- 2\n", &["1:1: expected a scenario (a mapping with `name` and `run_for`), found a list"]);
    assert_errors("name: t\nrun_for: 1h\nworld: [1]\n", &["3:8: invalid `world`: expected a mapping, found a list"]);
}

#[test]
fn unknown_enum_values() {
    assert_errors(
        &with_world("expect:\n  - builds: {reason: autostrat, transition: strat, count: 1}\n  - notifications: {kind: reminder, at_least: 1}\n"),
        &[
            "17:22: unknown reason `autostrat`, expected `autostart`",
            "17:45: unknown transition `strat`, expected `start`",
            "18:27: unknown kind `reminder`, expected one of `autostop_reminder`, `workspace_dormant`, `workspace_marked_for_deletion`, `workspace_deleted`, `autobuild_failed`, `workspace_auto_updated`, `prebuild_failure_limit`, `prebuild_resource_replaced`, `chat_archive_digest`",
        ],
    );
}

#[test]
fn counts_windows_and_points() {
    assert_errors(
        &with_world("expect:\n  - builds: {count: 1, at_least: 2}\n  - builds: {between: [2h, 1h], count: 1}\n  - notifications: {}\n  - workspace: {name: w1, at: 4h, status: running}\n"),
        &[
            "17:24: `count` is exact, expected no `at_least` or `at_most` with it",
            "18:23: invalid `between`: window `[+2h, +1h]` is empty, expected `from` at most `to`",
            "19:20: missing count, expected `count`, `at_least` or `at_most`",
            "20:31: `at` is +4h, expected a point within the run (0 to 3h10m, `run_for` + `settle`)",
        ],
    );
}

#[test]
fn seeded_build_rules() {
    let text = with_world("").replace(
        "template: dev}",
        "template: dev, latest_build: {transition: stop, deadline: +1h, status: running, completed: -1h}}",
    );
    assert_errors(
        &text,
        &[
            "15:80: `deadline` applies to succeeded start builds only (only they carry a deadline)",
            "15:112: `completed` does not apply to a `running` job, which is unfinished",
        ],
    );
}

#[test]
fn chat_action_rules() {
    // Stage one: each action on its own.
    assert_errors(
        &with_world("timeline:\n  - {at: 1h, chat: {name: c1, op: archive, turn: {duration: 1m}}}\n  - {at: 1h, chat: {name: c2, op: create}}\n"),
        &["17:44: `turn` does not apply to chat op `archive`", "18:20: missing field `owner` in `chat`"],
    );
    // Stage two (only for a file without stage-one mistakes): names along the timeline.
    assert_errors(
        &with_world("timeline:\n  - {at: 1h, chat: {name: c1, op: archive}}\n  - {at: 1h, chat: {name: c2, op: create, owner: alice}}\n  - {at: 2h, chat: {name: c2, op: create, owner: alice}}\n  - {at: 2h, stop: {workspace: w1, replica: \"owner:c3\"}}\n"),
        &[
            "17:27: unknown chat `c1`: none is declared",
            "19:27: duplicate chat `c2` (first declared at 18:27)",
            "20:45: unknown chat `c3`, expected `c2`",
        ],
    );
}

#[test]
fn fields_one_level_too_high() {
    assert_errors(
        &with_world("timeline:\n  - {at: 1h, store_fault: {kind: error}, for: 5m}\nexpect:\n  - at: 2h\n    builds: {count: 1}\n"),
        &[
            "17:42: field `for` goes inside the fault, like `store_fault: {kind: error, for: 5m}`",
            "19:5: field `at` goes inside the expectation's kind, like `builds: {at: 2h, count: 1}`",
        ],
    );
}

#[test]
fn templates_need_a_version() {
    // Left out, or written with no value: one version `v1`.
    for versions in ["", "\n      versions:"] {
        let text = format!("name: t\nrun_for: 1h\nworld:\n  templates:\n    - name: dev{versions}\n");
        let s = load_str(FILE, &text).unwrap();
        assert_eq!(s.world.templates[0].active_version().unwrap().name.value, "v1");
    }
    assert_errors(
        "name: t\nrun_for: 1h\nworld:\n  templates:\n    - {name: dev, versions: []}\n",
        &["5:29: invalid `versions`: expected at least one version (the last one is the active version)"],
    );
}

#[test]
fn errors_compare_with_their_positions() {
    let a = scenario::LoadError::at(FILE, scenario::Origin::new(1, 1), "x");
    let b = scenario::LoadError::at(FILE, scenario::Origin::new(2, 1), "x");
    assert_ne!(a, b);
    assert_eq!(a, a.clone());
}

#[test]
fn library_names_are_unique() {
    let dir = std::env::temp_dir().join(format!("sim-scenario-library-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join("same.yaml"), "name: same\nrun_for: 1h\n").unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a scenario").unwrap();
    std::fs::write(dir.join("b").join("other.yml"), "name: other\nrun_for: 1h\n").unwrap();
    let paths = scenario::discover(&dir).unwrap();
    let shown: Vec<String> = paths.iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
    assert_eq!(shown, ["a/same.yaml", "b/other.yml", "b/same.yaml"]);
    let err = scenario::load_library(&paths).unwrap_err();
    let a = dir.join("a/same.yaml").display().to_string();
    let b = dir.join("b/same.yaml").display().to_string();
    assert_eq!(
        err.lines(),
        [format!(
            "{b}:1:7: duplicate scenario name `same`, also in {a}:1:7 (scenario names are unique across the library)"
        )]
    );
    let missing = scenario::discover(&dir.join("nope")).unwrap_err();
    assert!(missing.to_string().contains("nope: cannot read: no such file or directory"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
