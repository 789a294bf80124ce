//! Reading inside parsed FHIR JSON on the hot paths.
//!
//! The display code reads two forms through [`Node`]: the `serde_json::Value` a write builds, and
//! [`Lite`], the borrowed form a read parses from stored text (issue 15: parsing stored bodies into
//! `Value`, with a map and a `String` per object and key, and dropping them again was two fifths of
//! the visits page's CPU; the borrowed form allocates a vector per object and array, nothing per
//! key or plain string). The rules read the same fields either way.

use serde_json::Value;

/// Parsed JSON that borrows its strings from the text it was parsed from.
pub type Lite<'a> = serde_json_borrow::Value<'a>;

/// Parse stored text into its borrowed form.
pub fn lite(text: &str) -> Option<Lite<'_>> {
    serde_json::from_str(text).ok()
}

/// Read-only steps through parsed JSON, implemented for references to either form (so a node is
/// `Copy`, and what it yields lives as long as the document).
pub trait Node<'a>: Copy + 'a {
    /// The member `key` of an object.
    fn field(self, key: &str) -> Option<Self>;
    /// One step of a JSON Pointer: an object's member, or an array's element by its index.
    fn step(self, segment: &str) -> Option<Self>;
    fn text(self) -> Option<&'a str>;
    fn number(self) -> Option<f64>;
    /// The elements of an array (none for anything else).
    fn items(self) -> impl Iterator<Item = Self> + 'a;
    fn is_array(self) -> bool;
}

/// The two forms have the same reading methods; one body serves both.
macro_rules! node_for {
    ($lt:lifetime, $ty:ty, $value:ident) => {
        impl<$lt> Node<$lt> for $ty {
            fn field(self, key: &str) -> Option<Self> {
                self.as_object()?.get(key)
            }
            fn step(self, segment: &str) -> Option<Self> {
                match self {
                    $value::Object(m) => m.get(segment),
                    $value::Array(a) => a.get(index(segment)?),
                    _ => None,
                }
            }
            fn text(self) -> Option<&$lt str> {
                self.as_str()
            }
            fn number(self) -> Option<f64> {
                self.as_f64()
            }
            fn items(self) -> impl Iterator<Item = Self> + $lt {
                self.as_array().into_iter().flatten()
            }
            fn is_array(self) -> bool {
                self.as_array().is_some()
            }
        }
    };
}

node_for!('a, &'a Value, Value);
node_for!('a, &'a Lite<'a>, Lite);

/// A parsed document in either form.
pub enum Doc<'a> {
    Value(&'a Value),
    Lite(Lite<'a>),
}

impl Doc<'_> {
    /// Its root.
    pub fn node(&self) -> DocNode<'_> {
        match self {
            Doc::Value(v) => DocNode::Value(v),
            Doc::Lite(l) => DocNode::Lite(l),
        }
    }
}

/// A node of a [`Doc`].
#[derive(Clone, Copy)]
pub enum DocNode<'a> {
    Value(&'a Value),
    Lite(&'a Lite<'a>),
}

impl<'a> Node<'a> for DocNode<'a> {
    fn field(self, key: &str) -> Option<Self> {
        match self {
            DocNode::Value(v) => v.field(key).map(DocNode::Value),
            DocNode::Lite(l) => l.field(key).map(DocNode::Lite),
        }
    }
    fn step(self, segment: &str) -> Option<Self> {
        match self {
            DocNode::Value(v) => v.step(segment).map(DocNode::Value),
            DocNode::Lite(l) => l.step(segment).map(DocNode::Lite),
        }
    }
    fn text(self) -> Option<&'a str> {
        match self {
            DocNode::Value(v) => v.text(),
            DocNode::Lite(l) => l.text(),
        }
    }
    fn number(self) -> Option<f64> {
        match self {
            DocNode::Value(v) => v.number(),
            DocNode::Lite(l) => l.number(),
        }
    }
    fn items(self) -> impl Iterator<Item = Self> + 'a {
        let (values, lites) = match self {
            DocNode::Value(v) => (Some(v.items().map(DocNode::Value)), None),
            DocNode::Lite(l) => (None, Some(l.items().map(DocNode::Lite))),
        };
        values
            .into_iter()
            .flatten()
            .chain(lites.into_iter().flatten())
    }
    fn is_array(self) -> bool {
        match self {
            DocNode::Value(v) => v.is_array(),
            DocNode::Lite(l) => l.is_array(),
        }
    }
}

/// What `Value::pointer(path)` returns, without its allocations: `pointer` unescapes every
/// segment into a new `String` (`~1`, `~0`), which was a sixth of the visits page's CPU (issue 15).
/// The paths the display code reads are literals without `~`; a segment with `~` is unescaped.
pub fn at<'a, N: Node<'a>>(v: N, path: &str) -> Option<N> {
    if path.is_empty() {
        return Some(v);
    }
    let mut here = v;
    for seg in path.strip_prefix('/')?.split('/') {
        here = if seg.contains('~') {
            here.step(&seg.replace("~1", "/").replace("~0", "~"))?
        } else {
            here.step(seg)?
        };
    }
    Some(here)
}

/// The string at `path`, if there is one.
pub fn str_at<'a, N: Node<'a>>(v: N, path: &str) -> Option<&'a str> {
    at(v, path).and_then(Node::text)
}

/// An array index as JSON Pointer (RFC 6901) writes it: digits, no leading zero, no sign.
fn index(seg: &str) -> Option<usize> {
    if seg.is_empty()
        || seg.starts_with('+')
        || (seg.starts_with('0') && seg.len() != 1)
        || !seg.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    seg.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Same answers as `Value::pointer` on every path shape, found or not.
    #[test]
    fn at_agrees_with_pointer() {
        let v = json!({"a": {"b": [{"c": 1}, {"c": "two", "": 3}]}, "x~y": 4, "s/t": 5, "n": null,
            "arr": [[0, 1], [2]]});
        for p in [
            "",
            "/",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/1/",
            "/a/b/2",
            "/a/b/01",
            "/a/b/+1",
            "/a/b/-1",
            "/a/b/1x",
            "/a/b/c",
            "/a/c",
            "a",
            "/x~0y",
            "/x~1y",
            "/s~1t",
            "/n",
            "/n/z",
            "/arr/0/1",
            "/arr/1/0",
            "/arr/1/1",
            "/a//",
            "//",
            "/a/b/0/c/d",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p}");
            // The borrowed form finds the same node.
            let text = v.to_string();
            let l = lite(&text).unwrap();
            let found = at(&l, p).map(|n| serde_json::to_value(n).unwrap());
            assert_eq!(found.as_ref(), v.pointer(p), "lite {p}");
            let doc = Doc::Lite(lite(&text).unwrap());
            let via_doc = at(doc.node(), p).map(|n| match n {
                DocNode::Lite(l) => serde_json::to_value(l).unwrap(),
                DocNode::Value(v) => v.clone(),
            });
            assert_eq!(via_doc.as_ref(), v.pointer(p), "doc {p}");
        }
        assert_eq!(str_at(&v, "/a/b/1/c"), Some("two"));
        assert_eq!(str_at(&v, "/a/b/0/c"), None);
    }

    /// Both forms read the same strings (escapes decoded), numbers and arrays.
    #[test]
    fn both_forms_read_alike() {
        let text =
            r#"{"t": "a\"b\u00e4\n", "k\u00e4": 1, "n": 1.5e2, "i": -3, "arr": [1, "x"], "o": {}}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        let l = lite(text).unwrap();
        for key in ["t", "kä", "n", "i", "arr", "o", "missing"] {
            let (a, b) = (v.field(key), l.field(key));
            assert_eq!(a.and_then(Node::text), b.and_then(Node::text), "{key}");
            assert_eq!(a.and_then(Node::number), b.and_then(Node::number), "{key}");
            assert_eq!(
                a.is_some_and(Node::is_array),
                b.is_some_and(Node::is_array),
                "{key}"
            );
            assert_eq!(
                a.map_or(0, |n| n.items().count()),
                b.map_or(0, |n| n.items().count()),
                "{key}"
            );
        }
        assert_eq!(l.field("t").and_then(Node::text), Some("a\"bä\n"));
        assert!(lite("{not json").is_none());
    }
}
