//! The redactor's behaviour, and its one-pass search checked against today's search of one
//! value at a time on random inputs.

use super::*;

mod reference;

const FAKE_ANTHROPIC: &str = "sk-ant-api03-FAKEFAKEFAKEFAKEFAKEFAKEFAKE-0123456789abcdef";
const FAKE_GITHUB: &str = "ghp_FAKE0123456789abcdefghijklmnopqrstu";

fn with(vars: &[(&str, &str)]) -> Redactor {
    Redactor::from_vars(vars.iter().copied())
}

#[test]
fn values_of_secret_variables_are_replaced_by_their_name() {
    let redactor = with(&[
        ("ANTHROPIC_API_KEY", FAKE_ANTHROPIC),
        ("HOME", "/home/someone"),
    ]);
    let text = format!("key={FAKE_ANTHROPIC} home=/home/someone");
    assert_eq!(
        redactor.redact(&text),
        "key=[redacted ANTHROPIC_API_KEY] home=/home/someone"
    );
    assert_eq!(
        redactor.find(&text),
        Some(Found::Value {
            name: "ANTHROPIC_API_KEY"
        })
    );
    assert_eq!(
        redactor.find(&text).unwrap().to_string(),
        "the value of ANTHROPIC_API_KEY"
    );
}

#[test]
fn short_values_are_ignored() {
    let redactor = with(&[("FOO_KEY", "1"), ("BAR_TOKEN", "seven77")]);
    assert_eq!(redactor.names().count(), 0);
    let text = "1 seven77 11";
    assert_eq!(redactor.redact(text), text);
    assert_eq!(redactor.find(text), None);
}

#[test]
fn empty_short_and_blank_values_are_ignored_after_trimming() {
    let redactor = Redactor::new()
        .with_value("EMPTY", "")
        .with_value("BLANK", "   \n\t  ")
        .with_value("SEVEN", "1234567")
        .with_value("PADDED_SEVEN", "   1234567   ")
        .with_value("EIGHT", " 12345678 ");
    assert_eq!(redactor.names().collect::<Vec<_>>(), ["EIGHT"]);
    assert_eq!(
        redactor.redact("1234567 and 12345678, then   "),
        "1234567 and [redacted EIGHT], then   "
    );
    // Nothing learnt, nothing rebuilt: the builder hands the same values back.
    let same = redactor.clone().with_value("SHORT", "tiny");
    assert!(Arc::ptr_eq(&same.known, &redactor.known));
}

#[test]
fn every_occurrence_is_replaced() {
    let redactor = with(&[("MY_SECRET", "hunter2hunter2")]);
    assert_eq!(
        redactor.redact("hunter2hunter2 and hunter2hunter2, hunter2hunter2"),
        "[redacted MY_SECRET] and [redacted MY_SECRET], [redacted MY_SECRET]"
    );
}

#[test]
fn the_longer_of_overlapping_values_wins() {
    // One value inside another: the longer is labelled with its own name.
    let redactor = with(&[
        ("SHORT_TOKEN", "abcdefgh"),
        ("LONG_TOKEN", "abcdefgh-12345678"),
    ]);
    assert_eq!(
        redactor.redact("x abcdefgh-12345678 y abcdefgh z"),
        "x [redacted LONG_TOKEN] y [redacted SHORT_TOKEN] z"
    );
    // Two values that overlap without one containing the other: nothing of either is left.
    let redactor = with(&[("ONE_KEY", "aaaa1111bbbb"), ("TWO_KEY", "bbbb2222cccc")]);
    assert_eq!(
        redactor.redact("<aaaa1111bbbb2222cccc>"),
        "<[redacted ONE_KEY]>"
    );
}

#[test]
fn overlapping_values_are_found_in_one_pass_whatever_their_order() {
    // A chain of three, each overlapping the next, in both orders of adding them; and the
    // middle one alone, which the others must not hide.
    let values = [
        ("FIRST_KEY", "aaaa1111bbbb"),
        ("SECOND_KEY", "bbbb2222cccc"),
        ("THIRD_KEY", "cccc3333dddd"),
    ];
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let redactor = with(&order.map(|index| values[index]));
        assert_eq!(
            redactor.redact("(aaaa1111bbbb2222cccc3333dddd) [bbbb2222cccc] cccc3333dddd"),
            "([redacted FIRST_KEY]) [[redacted SECOND_KEY]] [redacted THIRD_KEY]",
            "{order:?}"
        );
    }
    // Of two that end together, the one that starts first (the longer) labels the span; and
    // `find` names the longest value in the text, not the leftmost.
    let redactor = with(&[("INNER_KEY", "2222cccc"), ("OUTER_KEY", "bbbb2222cccc")]);
    assert_eq!(
        redactor.redact("aaaa1111bbbb2222cccc"),
        "aaaa1111[redacted OUTER_KEY]"
    );
    assert_eq!(
        redactor.find("aaaa2222cccc bbbb2222cccc"),
        Some(Found::Value { name: "OUTER_KEY" })
    );
}

#[test]
fn a_value_that_is_a_prefix_of_another_is_redacted_under_its_own_name() {
    let redactor = with(&[
        ("SHORT_TOKEN", "prefix-secret"),
        ("LONG_TOKEN", "prefix-secret-and-more"),
    ]);
    assert_eq!(
        redactor.redact("a prefix-secret-and-more b prefix-secret c prefix-secret-and-m"),
        "a [redacted LONG_TOKEN] b [redacted SHORT_TOKEN] c [redacted LONG_TOKEN]"
    );
    assert_eq!(
        redactor.redact("prefix-secret-and"),
        "[redacted LONG_TOKEN]",
        "the text is a head of the long value and holds the short one"
    );
    assert_eq!(
        redactor.find("only prefix-secret here"),
        Some(Found::Value {
            name: "SHORT_TOKEN"
        })
    );
    assert_eq!(
        redactor.find("prefix-secret then prefix-secret-and-more"),
        Some(Found::Value { name: "LONG_TOKEN" })
    );
}

#[test]
fn a_value_that_overlaps_itself_is_replaced_as_str_match_indices_finds_it() {
    // Today's search took each value's occurrences left to right without overlaps; the one
    // pass keeps that, so what is left over stays the same.
    let redactor = with(&[("LOOP_TOKEN", "abababab")]);
    assert_eq!(
        redactor.redact("xabababababab"),
        "x[redacted LOOP_TOKEN]abab"
    );
    assert_eq!(
        redactor.redact("abababababababab!"),
        "[redacted LOOP_TOKEN][redacted LOOP_TOKEN]!"
    );
}

#[test]
fn token_shapes_are_replaced_whatever_their_source() {
    let redactor = Redactor::new();
    let cases = [
        (FAKE_ANTHROPIC, "an Anthropic API key"),
        (
            "sk-proj-FAKEfake0123456789FAKEfake0123456789",
            "an OpenAI-style API key",
        ),
        (FAKE_GITHUB, "a GitHub token"),
        (
            "github_pat_FAKE0123456789_abcdefghijklmnop",
            "a GitHub token",
        ),
        ("xoxb-0123456789-FAKEFAKE", "a Slack token"),
        ("AKIAFAKEFAKEFAKE0123", "an AWS access key id"),
        ("glpat-FAKEfake0123456789ab", "a GitLab token"),
        (
            "AIzaFAKEfake0123456789FAKEfake012345678",
            "a Google API key",
        ),
    ];
    for (token, kind) in cases {
        let text = format!("use {token} please");
        assert_eq!(redactor.redact(&text), "use [redacted] please", "{token}");
        assert_eq!(redactor.find(&text), Some(Found::Token { kind }), "{token}");
    }
    let header = "Authorization: Bearer eyJFAKE.fake0123456789.sig";
    assert_eq!(redactor.redact(header), "Authorization: Bearer [redacted]");
    assert_eq!(
        redactor.find(header),
        Some(Found::Token {
            kind: "a bearer token"
        })
    );
    assert_eq!(
        redactor.find(header).unwrap().to_string(),
        "what looks like a bearer token"
    );
}

#[test]
fn a_known_value_is_found_before_a_token_shape() {
    let redactor = with(&[("DB_PASSWORD", "correct-horse-battery")]);
    let text = format!("{FAKE_GITHUB} then correct-horse-battery");
    assert_eq!(
        redactor.find(&text),
        Some(Found::Value {
            name: "DB_PASSWORD"
        })
    );
    assert_eq!(
        redactor.redact(&text),
        "[redacted] then [redacted DB_PASSWORD]"
    );
    // A value that is itself shaped like a token is labelled with its name.
    let redactor = with(&[("GITHUB_TOKEN", FAKE_GITHUB)]);
    assert_eq!(
        redactor.redact(&format!("push {FAKE_GITHUB}")),
        "push [redacted GITHUB_TOKEN]"
    );
}

#[test]
fn ordinary_text_is_left_alone() {
    let redactor = Redactor::new();
    for text in [
        "the task-runner-with-a-very-long-hyphenated-name-indeed ran",
        "sk-short",
        "a bearer of news",
        "AKIA is a prefix",
        "grep -q hello hello.txt",
    ] {
        assert_eq!(redactor.redact(text), text);
        assert_eq!(redactor.find(text), None, "{text}");
    }
}

#[test]
fn a_value_cut_off_at_either_end_of_the_text_is_replaced() {
    let redactor = with(&[("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)]);
    let tail = &FAKE_ANTHROPIC[10..];
    assert_eq!(
        redactor.redact(&format!("{tail}\nmore output")),
        "[redacted ANTHROPIC_API_KEY]\nmore output"
    );
    let head = &FAKE_ANTHROPIC[..12];
    assert_eq!(
        redactor.redact(&format!("output\n{head}")),
        "output\n[redacted ANTHROPIC_API_KEY]"
    );
    // Fewer bytes than a secret's minimum are not a secret.
    let scrap = format!("{} x", &FAKE_ANTHROPIC[FAKE_ANTHROPIC.len() - 5..]);
    assert_eq!(redactor.redact(&scrap), scrap);
}

#[test]
fn a_cut_off_value_is_cut_at_a_character_boundary() {
    let redactor = with(&[("CAFE_SECRET", "café-crème-brûlée")]);
    assert_eq!(
        redactor.redact("crème-brûlée, then"),
        "[redacted CAFE_SECRET], then"
    );
    assert_eq!(
        redactor.redact("before: café-crè"),
        "before: [redacted CAFE_SECRET]"
    );
}

#[test]
fn multi_megabyte_text_is_redacted_throughout() {
    let redactor = with(&[("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)]);
    let filler = "compiling crate foo v1.2.3 (/src/foo) ... ok\n".repeat(100_000);
    let text = format!("{FAKE_ANTHROPIC}\n{filler}{FAKE_GITHUB}\n{filler}{FAKE_ANTHROPIC}");
    assert!(text.len() > 8_000_000);
    let redacted = redactor.redact(&text);
    let redacted = redacted.as_str();
    assert!(!redacted.contains(FAKE_ANTHROPIC));
    assert!(!redacted.contains(FAKE_GITHUB));
    assert_eq!(redacted.matches("[redacted ANTHROPIC_API_KEY]").count(), 2);
    assert_eq!(redacted.matches("[redacted]").count(), 1);
    assert_eq!(
        redacted.len(),
        text.len() - 2 * FAKE_ANTHROPIC.len() - FAKE_GITHUB.len() + 2 * 28 + 10
    );
    // Nothing to do costs no copy.
    let address = filler.as_ptr();
    assert_eq!(redactor.redact_owned(filler).as_str().as_ptr(), address);
}

#[test]
fn added_values_are_trimmed_and_known_once() {
    let redactor = Redactor::new()
        .with_value("FIRST", "  value-one-long\n")
        .with_value("SECOND", "value-one-long")
        .with_value("SHORT", "tiny");
    assert_eq!(redactor.names().collect::<Vec<_>>(), ["FIRST"]);
    assert_eq!(
        redactor.redact("a value-one-long b"),
        "a [redacted FIRST] b"
    );
}

#[test]
fn values_are_known_longest_first_and_in_the_order_given_among_equals() {
    let redactor = Redactor::from_vars([
        ("B_TOKEN", "bbbbbbbb"),
        ("LONG_TOKEN", "llllllllllll"),
        ("A_TOKEN", "aaaaaaaa"),
        ("PATH", "/usr/bin:/bin"),
    ])
    .with_vars([("C_TOKEN", "cccccccc"), ("GIT_AUTHOR_NAME", "Someone Else")])
    .with_value("EXTRA", "eeeeeeeeee");
    assert_eq!(
        redactor.names().collect::<Vec<_>>(),
        ["LONG_TOKEN", "EXTRA", "B_TOKEN", "A_TOKEN", "C_TOKEN"]
    );
}

#[test]
fn debug_output_names_variables_but_never_shows_values() {
    let redactor = with(&[("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)]);
    let debug = format!("{redactor:?}");
    assert!(debug.contains("ANTHROPIC_API_KEY"), "{debug}");
    assert!(!debug.contains("FAKEFAKE"), "{debug}");
}

#[test]
fn clones_share_values_until_one_changes() {
    let redactor = with(&[("ANTHROPIC_API_KEY", FAKE_ANTHROPIC)]);
    let clone = redactor.clone();
    assert_eq!(clone, redactor);
    assert!(Arc::ptr_eq(&clone.known, &redactor.known));
    let redactor = redactor.with_value("GITHUB_TOKEN", FAKE_GITHUB);
    assert_ne!(clone, redactor);
    assert_eq!(clone.names().count(), 1);
    assert_eq!(redactor.names().count(), 2);
}

#[test]
fn random_texts_are_redacted_as_searching_each_value_on_its_own_would() {
    let mut random = reference::Random::new(0x5eed_0001);
    for case in 0..3_000 {
        let (redactor, text) = reference::small_case(&mut random);
        let expected = reference::redact(&redactor, &text);
        assert_eq!(redactor.redact(&text), expected, "case {case}: {text:?}");
        assert_eq!(
            redactor.find(&text),
            reference::find(&redactor, &text),
            "case {case}: {text:?}"
        );
        // Without the automaton (values too many for one) the same comes out.
        let each_on_its_own = reference::without_automaton(&redactor);
        assert_eq!(each_on_its_own.redact(&text), expected, "case {case}");
        assert_eq!(each_on_its_own.find(&text), redactor.find(&text));
    }
}

#[test]
fn a_mebibyte_with_fifty_secrets_is_redacted_in_one_pass_as_the_reference_does() {
    let mut random = reference::Random::new(0x5eed_0050);
    let (redactor, text, secrets) = reference::large_case(&mut random);
    assert!(text.len() >= 1 << 20, "{}", text.len());
    assert_eq!(redactor.names().count(), 50);
    // One automaton holds all fifty: the values are searched for in one pass, not fifty.
    let automaton = redactor.known.automaton.as_ref();
    assert_eq!(automaton.map(AhoCorasick::patterns_len), Some(50));

    let redacted = redactor.redact(&text);
    assert_eq!(redacted, reference::redact(&redactor, &text));
    for secret in &secrets {
        assert!(!redacted.as_str().contains(secret.as_str()), "{secret}");
    }
    assert!(redacted.as_str().matches("[redacted S").count() >= 1_000);
}
