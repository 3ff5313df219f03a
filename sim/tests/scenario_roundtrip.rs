//! `to_yaml` writes a scenario that loads back to an equal one (what `--shrink`
//! relies on), and no input makes the loader panic.

use std::path::Path;

use sim::scenario::{self, load_str};

fn fixture(name: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (path.display().to_string(), text)
}

#[test]
fn to_yaml_round_trips() {
    for name in ["minimal.yaml", "rich.yaml", "scenarios_md_example.yaml"] {
        let (path, text) = fixture(name);
        let original = load_str(&path, &text).unwrap();
        let written = scenario::to_yaml(&original);
        let reloaded = match load_str(&path, &written) {
            Ok(s) => s,
            Err(e) => panic!("{name}: to_yaml output does not load:\n{e}\n--- output ---\n{written}"),
        };
        assert_eq!(reloaded, original, "{name}: round trip changed the scenario\n--- output ---\n{written}");
        // Writing is stable: the reloaded scenario writes the same text.
        assert_eq!(scenario::to_yaml(&reloaded), written, "{name}");
    }
}

#[test]
fn to_yaml_keeps_unchecked_and_computed_values() {
    let (path, text) = fixture("rich.yaml");
    let written = scenario::to_yaml(&load_str(&path, &text).unwrap());
    assert!(written.contains("unchecked: bad cron"), "{written}");
    assert!(written.contains("unchecked: -1h"), "{written}");
    // w2's next_start_at and deadlines are left to the engine: not written.
    let w2 = &written[written.find("- name: w2").unwrap()..written.find("- name: w3").unwrap()];
    assert!(!w2.contains("next_start_at") && !w2.contains("deadline"), "{w2}");
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random edit of the text: delete, insert, duplicate or swap lines,
/// replace a token.
fn mutate(rng: &mut Rng, text: &str) -> String {
    const SNIPPETS: &[&str] = &[
        ":",
        "-",
        "[",
        "]",
        "{",
        "}",
        ",",
        "#",
        "&a",
        "*a",
        "!",
        "|",
        ">",
        "'",
        "\"",
        "\n",
        "  ",
        "\t",
        "0",
        "-1h",
        "1h..",
        "..",
        "none",
        "{unchecked: x}",
        "owner:",
        "99999999999999999999w",
        "2026-13-45T99:00:00Z",
        "~",
        "null",
        "true",
        "at",
        "workspace",
        "1/h",
        "nan",
        "1e309",
        "\u{feff}",
        "é",
        "%YAML 1.2\n---\n",
        "---\n",
    ];
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len();
    match rng.below(7) {
        0 if n > 1 => {
            lines.remove(rng.below(n));
        }
        1 => {
            let i = rng.below(n);
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        2 if n > 1 => {
            let (a, b) = (rng.below(n), rng.below(n));
            lines.swap(a, b);
        }
        3 => {
            let i = rng.below(n);
            let chars: Vec<char> = lines[i].chars().collect();
            let cut = rng.below(chars.len() + 1);
            lines[i] = chars[..cut].iter().collect();
        }
        _ => {
            let i = rng.below(n);
            let chars: Vec<char> = lines[i].chars().collect();
            let at = rng.below(chars.len() + 1);
            let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
            let rest: String = chars[at..].iter().collect();
            let keep: String = chars[..at].iter().collect();
            let skip = if rng.below(2) == 0 { rest.chars().count().min(rng.below(6)) } else { 0 };
            lines[i] = format!("{keep}{snippet}{}", rest.chars().skip(skip).collect::<String>());
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // `SIM_FUZZ_ROUNDS=100000` for a longer local run.
    let rounds: usize = std::env::var("SIM_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1500);
    let mut rejected = 0;
    for name in ["rich.yaml", "scenarios_md_example.yaml"] {
        let (path, text) = fixture(name);
        let mut current = text.clone();
        for round in 0..rounds {
            // Mostly single edits of the valid file, sometimes edits piling up.
            if round % 10 == 0 {
                current = text.clone();
            }
            current = mutate(&mut rng, &current);
            match load_str(&path, &current) {
                Ok(s) => {
                    // Whatever loads also writes and reloads.
                    let written = scenario::to_yaml(&s);
                    assert!(load_str(&path, &written).is_ok(), "mutated scenario does not round-trip:\n{current}");
                }
                Err(errors) => {
                    rejected += 1;
                    assert!(!errors.is_empty());
                    for line in errors.lines() {
                        assert!(line.starts_with(&format!("{path}:")), "{line}");
                    }
                }
            }
        }
    }
    assert!(rejected > rounds * 2 / 3, "the mutations should mostly produce mistakes, got {rejected} rejections");
}

#[test]
fn hostile_crons_are_errors_not_panics() {
    let crons = [
        "*/0 * * * *",
        "0 */0 * * *",
        "0-59/0 * * * *",
        "99999999999999999999 * * * *",
        "0 5-1 * * *",
        "0 0 * * 7-0",
        "0 0 * * mon-sun/0",
        "0 0 * * */99999999999",
        ",,, * * * *",
        "- - - - -",
        "/ / / / /",
        "CRON_TZ= * * * * *",
        "CRON_TZ=UTC",
        "CRON_TZ=UTC CRON_TZ=UTC 0 0 * * *",
        "0 0 * * 1#5",
        "\u{0}\u{0}\u{0}\u{0}\u{0}",
    ];
    for cron in crons {
        for (field, body) in [("autostart", "workspaces"), ("quiet_hours", "users")] {
            let quoted = serde_yaml::to_string(cron).unwrap();
            let text = if body == "users" {
                format!("name: t\nrun_for: 1h\nworld:\n  users:\n    - name: a\n      {field}: {quoted}")
            } else {
                format!(
                    "name: t\nrun_for: 1h\nworld:\n  users: [{{name: a}}]\n  templates: [{{name: d}}]\n  workspaces:\n    - name: w\n      owner: a\n      template: d\n      {field}: {quoted}"
                )
            };
            // Loading must answer (usually an error), never panic.
            let _ = load_str("x/t.yaml", &text);
        }
        let preset = format!(
            "name: t\nrun_for: 1h\nworld:\n  templates:\n    - name: d\n      presets:\n        - name: p\n          schedules: {{rules: [{{cron: {}, instances: 1}}]}}\n",
            serde_yaml::to_string(cron).unwrap().trim()
        );
        let _ = load_str("x/t.yaml", &preset);
    }
}
