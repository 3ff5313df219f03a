//! The YAML text as a tree that remembers where every node was written.
//!
//! Built from `yaml-rust2`'s event parser (which reports a position with each
//! event). Scalars keep their text exactly as written (the scenario format
//! decides what `0`, `30s` or `true` mean, not YAML's type guessing) and whether
//! they were quoted. Anchors and aliases are expanded (with a size bound, so an
//! alias bomb is an error, not an exhausted machine); duplicate keys, non-scalar
//! keys and more than one document are errors.

use std::collections::BTreeMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::error::Origin;

/// Nodes a document may expand to (aliases included); real scenarios hold a few thousand.
const NODES_MAX: usize = 200_000;
/// Nesting deeper than this is refused (a scenario nests about eight levels).
const DEPTH_MAX: usize = 64;

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub origin: Origin,
    pub kind: NodeKind,
}

#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    /// `plain` is false for quoted and block scalars.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A plain `null`, `~` or nothing at all.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// What the node is, for messages: `a mapping`, `a list`, `` `text` ``.
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "nothing".to_owned(),
            NodeKind::Scalar { text, .. } => format!("`{}`", shorten(text)),
            NodeKind::Seq(_) => "a list".to_owned(),
            NodeKind::Map(_) => "a mapping".to_owned(),
        }
    }
}

/// Long values are cut in messages.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// A YAML syntax error at a position.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub origin: Origin,
    pub message: String,
}

fn origin_of(mark: Marker) -> Origin {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Origin::new(u32::try_from(mark.line()).unwrap_or(u32::MAX), u32::try_from(mark.col() + 1).unwrap_or(u32::MAX))
}

/// Parses one YAML document. `Ok(None)` for a document with no content.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    // The parser is third-party code fed untrusted text; a panic in it must
    // become an error, never take the simulator down.
    match std::panic::catch_unwind(|| Builder::new(text).run()) {
        Ok(result) => result,
        Err(_) => {
            Err(SyntaxError { origin: Origin::new(1, 1), message: "invalid YAML: the parser gave up".to_owned() })
        }
    }
}

enum Frame {
    Seq { origin: Origin, anchor: usize, items: Vec<Node> },
    Map { origin: Origin, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node> },
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    stack: Vec<Frame>,
    anchors: BTreeMap<usize, Node>,
    nodes: usize,
    documents: usize,
    root: Option<Node>,
}

/// A block collection's start event is reported after its first key; a flow
/// collection's at its bracket. The earlier of the two is where it begins.
fn earliest(start: Origin, first: Option<Origin>) -> Origin {
    match first {
        Some(first) if first.key() < start.key() => first,
        _ => start,
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => 1 + entries.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum::<usize>(),
    }
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        Builder {
            parser: Parser::new_from_str(text),
            stack: Vec::new(),
            anchors: BTreeMap::new(),
            nodes: 0,
            documents: 0,
            root: None,
        }
    }

    fn run(mut self) -> Result<Option<Node>, SyntaxError> {
        loop {
            let (event, mark) = self.parser.next_token().map_err(|error| SyntaxError {
                origin: origin_of(*error.marker()),
                message: format!("invalid YAML: {}", error.info()),
            })?;
            let origin = origin_of(mark);
            match event {
                Event::StreamEnd => return Ok(self.root),
                Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
                Event::DocumentStart => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(SyntaxError {
                            origin,
                            message: "a second YAML document, expected one scenario per file".to_owned(),
                        });
                    }
                }
                Event::Alias(id) => {
                    let Some(node) = self.anchors.get(&id).cloned() else {
                        return Err(SyntaxError { origin, message: "unknown alias".to_owned() });
                    };
                    self.nodes += count_nodes(&node);
                    self.push(Node { origin, ..node })?;
                }
                Event::Scalar(text, style, anchor, _tag) => {
                    let node = Node { origin, kind: NodeKind::Scalar { text, plain: style == TScalarStyle::Plain } };
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.nodes += 1;
                    self.push(node)?;
                }
                Event::SequenceStart(anchor, _tag) => {
                    self.open(origin)?;
                    self.stack.push(Frame::Seq { origin, anchor, items: Vec::new() });
                }
                Event::MappingStart(anchor, _tag) => {
                    self.open(origin)?;
                    self.stack.push(Frame::Map { origin, anchor, entries: Vec::new(), key: None });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let node = match self.stack.pop() {
                        Some(Frame::Seq { origin, anchor, items }) => {
                            let origin = earliest(origin, items.first().map(|n| n.origin));
                            let node = Node { origin, kind: NodeKind::Seq(items) };
                            (anchor, node)
                        }
                        Some(Frame::Map { origin, anchor, entries, .. }) => {
                            let origin = earliest(origin, entries.first().map(|(k, _)| k.origin));
                            let node = Node { origin, kind: NodeKind::Map(entries) };
                            (anchor, node)
                        }
                        None => {
                            return Err(SyntaxError {
                                origin,
                                message: "invalid YAML: unbalanced collection".to_owned(),
                            })
                        }
                    };
                    let (anchor, node) = node;
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.nodes += 1;
                    self.push(node)?;
                }
            }
            if self.nodes > NODES_MAX {
                return Err(SyntaxError {
                    origin,
                    message: format!("the document expands to more than {NODES_MAX} nodes"),
                });
            }
        }
    }

    fn open(&mut self, origin: Origin) -> Result<(), SyntaxError> {
        if self.stack.len() >= DEPTH_MAX {
            return Err(SyntaxError { origin, message: format!("nesting deeper than {DEPTH_MAX} levels") });
        }
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(SyntaxError {
                origin,
                message: "a list or mapping as a key, expected a field name".to_owned(),
            });
        }
        Ok(())
    }

    fn push(&mut self, node: Node) -> Result<(), SyntaxError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let Some(name) = node.scalar() else {
                        return Err(SyntaxError {
                            origin: node.origin,
                            message: "a list or mapping as a key, expected a field name".to_owned(),
                        });
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.scalar() == Some(name)) {
                        return Err(SyntaxError {
                            origin: node.origin,
                            message: format!("duplicate field `{}` (first at {})", shorten(name), first.origin),
                        });
                    }
                    *key = Some(node);
                    Ok(())
                }
                Some(name) => {
                    entries.push((name, node));
                    Ok(())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn positions_are_one_based() {
        let node = root("name: x\nworld:\n  users:\n    - name: alice\n      status: active\n");
        let NodeKind::Map(entries) = &node.kind else { panic!() };
        assert_eq!(entries[0].0.origin.key(), (1, 1));
        assert_eq!(entries[0].1.origin.key(), (1, 7));
        let NodeKind::Map(world) = &entries[1].1.kind else { panic!() };
        assert_eq!(world[0].0.origin.key(), (3, 3));
        let NodeKind::Seq(users) = &world[0].1.kind else { panic!() };
        assert_eq!(users[0].origin.key(), (4, 7));
    }

    #[test]
    fn flow_collections_start_at_their_bracket() {
        let node = root("a: {x: 1}\nb: [1, 2]\n");
        let NodeKind::Map(entries) = &node.kind else { panic!() };
        assert_eq!(entries[0].1.origin.key(), (1, 4));
        assert_eq!(entries[1].1.origin.key(), (2, 4));
    }

    #[test]
    fn rejects_duplicates_and_second_documents() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((err.origin.key(), err.message.as_str()), ((3, 1), "duplicate field `a` (first at 1:1)"));
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.origin.key().0, 2);
        assert!(parse("").unwrap().is_none());
    }

    #[test]
    fn expands_aliases_within_bounds() {
        let node = root("a: &x {k: 1}\nb: *x\n");
        let NodeKind::Map(entries) = &node.kind else { panic!() };
        assert!(matches!(entries[1].1.kind, NodeKind::Map(_)));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        assert!(parse(&bomb).unwrap_err().message.contains("more than"));
    }
}
