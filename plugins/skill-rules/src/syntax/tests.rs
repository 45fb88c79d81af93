//! The reader against regress's reading of the Annex B corners: each row's pattern must read
//! as the expected tree, and `regress` must agree on texts that tell the readings apart.

use super::*;

fn ch(c: char) -> Node {
    char_node(u32::from(c))
}

fn cat(items: Vec<Node>) -> Node {
    Node::Concat(items)
}

fn rep(min: usize, max: Option<usize>, body: Node) -> Node {
    Node::Repeat { min, max, body: Box::new(body) }
}

#[test]
fn annex_b_readings() {
    let table: Vec<(&str, Node)> = vec![
        ("ab", cat(vec![ch('a'), ch('b')])),
        ("a{2,}", rep(2, None, ch('a'))),
        ("a{,2}", cat(vec![ch('a'), ch('{'), ch(','), ch('2'), ch('}')])),
        ("x{1}?", rep(1, Some(1), ch('x'))),
        ("]}", cat(vec![ch(']'), ch('}')])),
        // `\c` before a letter is a control character; otherwise the two characters, and a
        // quantifier repeats only the `c`.
        ("\\cJ", char_node(10)),
        ("\\c+", cat(vec![ch('\\'), rep(1, None, ch('c'))])),
        // Legacy octal escapes and `\8` `\9` (no groups).
        ("\\12", ch('\n')),
        ("\\101", ch('A')),
        ("\\400", cat(vec![ch(' '), ch('0')])),
        ("\\08", cat(vec![char_node(0), ch('8')])),
        ("\\8", ch('8')),
        // With a group, `\1` is a reference.
        ("(a)\\1", cat(vec![ch('a'), Node::BackRef])),
        ("(a)\\2", cat(vec![ch('a'), char_node(2)])),
        ("\\k", ch('k')),
        ("(?<n>a)\\k<n>", cat(vec![ch('a'), Node::BackRef])),
        ("\\x41\\u0042", cat(vec![ch('A'), ch('B')])),
        ("\\uD83D\\uDE00", ch('😀')),
        ("\\p{L}", cat(vec![ch('p'), ch('{'), ch('L'), ch('}')])),
        ("[]", Node::Set(vec![])),
        ("[^]", Node::Set(vec![(0, MAX_CODE_POINT)])),
        ("[a-]", Node::Set(vec![(0x2D, 0x2D), (0x61, 0x61)])),
        ("[\\d-z]", Node::Set(vec![(0x2D, 0x2D), (0x30, 0x39), (0x7A, 0x7A)])),
        ("[\\b]", char_node(8)),
        ("[\\c1]", char_node(0x11)),
        ("[\\c_]", char_node(0x1F)),
        ("[\\c]", Node::Set(vec![(0x5C, 0x5C), (0x63, 0x63)])),
        ("[\\1]", char_node(1)),
        ("[]a]", cat(vec![Node::Set(vec![]), ch('a'), ch(']')])),
        ("\\b+", rep(1, None, Node::WordBoundary { negated: false })),
        ("(?=a)*", rep(0, None, Node::Look { behind: false, negated: false, body: Box::new(ch('a')) })),
        ("a|", Node::Alt(vec![ch('a'), Node::Empty])),
    ];
    for (pattern, want) in table {
        assert_eq!(parse(pattern), Ok(want), "{pattern:?}");
        assert!(regress::Regex::with_flags(pattern, "").is_ok(), "regress refuses {pattern:?}");
    }
}

#[test]
fn what_regress_refuses_is_not_read_either() {
    for pattern in ["*a", "a**", "(", ")", "[a", "a{2}{", "^*", "(?<=a)+", "x{2,1}", "[z-a]", "\\", "a{1}{2}"] {
        if regress::Regex::with_flags(pattern, "").is_err() {
            assert!(parse(pattern).is_err(), "{pattern:?} read, though regress refuses it");
        }
    }
}

#[test]
fn sets_complement_and_merge() {
    assert_eq!(normalize(vec![(5, 9), (1, 3), (4, 4), (20, 30), (25, 26)]), vec![(1, 9), (20, 30)]);
    assert_eq!(complement(&[(0, 9), (20, MAX_CODE_POINT)]), vec![(10, 19)]);
    assert_eq!(complement(&[]), vec![(0, MAX_CODE_POINT)]);
    assert_eq!(complement(&[(0, MAX_CODE_POINT)]), vec![]);
}
